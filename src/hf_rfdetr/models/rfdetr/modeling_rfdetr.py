# Copyright 2026 The hf_rfdetr Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""RF-DETR as a transformers model: RFDetrModel (backbone -> projector -> two-stage selection -> decoder),
RFDetrForObjectDetection (class and box heads on top) and RFDetrForInstanceSegmentation (plus the mask head).

pixel_values (B, C, H, W), H and W multiples of `config.block_size`
  -> RFDetrBackbone: windowed DINOv2, one (B, C_vit, H/p, W/p) map per tap
  -> RFDetrMultiScaleProjector: one (B, d_model, h_l, w_l) map per pyramid level
  -> two-stage selection: the top `num_queries` memory positions per group become reference boxes
  -> RFDetrDecoder: (L, B, Q, d_model)
  -> heads: logits (B, Q, num_labels), pred_boxes (B, Q, 4) normalised cxcywh
  -> (segmentation) mask head on the projector's first level map and the decoder states: pred_masks (B, Q, H/4, W/4)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import logging

from .backbone_rfdetr import RFDetrBackbone
from .configuration_rfdetr import RFDetrConfig, RFDetrConfigError
from .decoder_rfdetr import RFDetrDecoder, encoder_proposals
from .heads_rfdetr import (
    RFDetrGroupedLayerNorm,
    RFDetrGroupedLinear,
    RFDetrGroupedMLPHead,
    RFDetrMaskFactors,
    RFDetrMLPHead,
    RFDetrSegmentationHead,
    apply_box_delta,
)
from .initialization_rfdetr import RFDetrInit
from .loss_rfdetr import RFDetrLoss, check_labels
from .outputs_rfdetr import (
    _OPTIONAL_OUTPUTS,
    RFDetrInstanceSegmentationOutput,
    RFDetrModelOutput,
    RFDetrObjectDetectionOutput,
)
from .pretrained_rfdetr import RFDetrPreTrainedModel
from .projector_rfdetr import RFDetrMultiScaleProjector

logger = logging.get_logger(__name__)


def _tag_decoder_heads_as_copies(model: nn.Module) -> None:
    """Tag the decoder heads (`class_embed`, `bbox_embed`) of a model with heads to start as copies of group 0 of the
    two-stage heads in `model.model`, which `_init_weights` initialises first (registered first)."""
    model.class_embed.init_mode = RFDetrInit.COPY
    model.class_embed.init_source = "model.enc_out_class_embed"
    for index, layer in enumerate(model.bbox_embed.layers):
        layer.init_mode = RFDetrInit.COPY
        layer.init_source = f"model.enc_out_bbox_embed.layers.{index}"


class RFDetrModel(RFDetrPreTrainedModel):
    """Backbone, projector, two-stage query selection and decoder; returns decoder states and reference boxes."""

    def __init__(self, config: RFDetrConfig) -> None:
        super().__init__(config)
        groups, d_model = config.group_detr, config.d_model
        self.backbone = RFDetrBackbone(config)
        self.projector = RFDetrMultiScaleProjector(config)
        # Two-stage heads, one per Group DETR group.
        self.enc_output = RFDetrGroupedLinear(groups, d_model, d_model, init_mode=RFDetrInit.XAVIER)
        self.enc_output_norm = RFDetrGroupedLayerNorm(groups, d_model, config.layer_norm_eps)
        # As the original: every group's two-stage heads start as copies of one head (which the decoder heads copy).
        self.enc_out_class_embed = RFDetrGroupedLinear(
            groups, d_model, config.num_labels, init_mode=RFDetrInit.PRIOR, identical_groups=True
        )
        self.enc_out_bbox_embed = RFDetrGroupedMLPHead(groups, d_model, d_model, 4, 3, identical_groups=True)
        # Learned content queries and reference-box deltas, `num_queries` per group.
        self.query_feat = nn.Embedding(config.num_queries * groups, d_model)
        self.refpoint_embed = nn.Embedding(config.num_queries * groups, 4)
        self.refpoint_embed.init_mode = RFDetrInit.ZEROS  # no delta on the two-stage boxes
        self.decoder = RFDetrDecoder(config)
        self.post_init()

    def check_inputs(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None) -> None:
        """Raise `ValueError` naming the problem when the inputs cannot go through the model."""
        block = self.config.block_size
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values)
            raise ValueError(f"pixel_values must be a 4-D tensor (batch, channels, height, width); got {shape}")
        if not pixel_values.is_floating_point():
            raise ValueError(f"pixel_values must be a float tensor (normalised image); got dtype {pixel_values.dtype}")
        batch_size, channels, height, width = pixel_values.shape
        if channels != self.config.num_channels:
            raise ValueError(
                f"pixel_values has {channels} channels at dim 1 but config.num_channels is {self.config.num_channels}; "
                "expected shape (batch, channels, height, width)"
            )
        if height < block or width < block or height % block or width % block:
            raise ValueError(
                f"pixel_values height and width must be positive multiples of the block size "
                f"patch_size * num_windows = {block}; got {height}x{width}. Resize or pad the image "
                "(RFDetrImageProcessor does this)"
            )
        if pixel_mask is not None and tuple(pixel_mask.shape) != (batch_size, height, width):
            raise ValueError(
                f"pixel_mask must have shape (batch, height, width) = {(batch_size, height, width)}; "
                f"got {tuple(pixel_mask.shape)}"
            )

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> RFDetrModelOutput | tuple:
        """pixel_values (B, C, H, W); pixel_mask (B, H, W), 1 on image pixels and 0 on padding (optional).

        `output_attentions` / `output_hidden_states` (default: the config's) add the attention weights / hidden
        states of the backbone and decoder; `return_dict=False` returns a tuple of the non-None fields.
        """
        self.check_inputs(pixel_values, pixel_mask)
        output_attentions, output_hidden_states, return_dict = _output_options(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        eager = self.config._attn_implementation == "eager"
        backbone = self.backbone(pixel_values, output_hidden_states, output_attentions, eager)
        feature_maps = self.projector(backbone.feature_maps)
        spatial_shapes = [tuple(feature_map.shape[-2:]) for feature_map in feature_maps]
        memory = torch.cat([feature_map.flatten(2).transpose(1, 2) for feature_map in feature_maps], dim=1)
        padding_mask, valid_ratios = _level_padding(pixel_mask, spatial_shapes)

        num_groups = self.config.group_detr if self.training else 1
        segmentation = self.config.segmentation_head
        enc_logits, enc_boxes, enc_hidden = self.select_proposals(
            memory, spatial_shapes, padding_mask, num_groups, return_hidden=segmentation
        )

        batch_size, num_queries = memory.shape[0], self.config.num_queries * num_groups
        queries = self.query_feat.weight[:num_queries].expand(batch_size, -1, -1)
        reference_boxes = self.refpoint_embed.weight[:num_queries].expand(batch_size, -1, -1)
        selected = enc_boxes.shape[1]
        refined = apply_box_delta(reference_boxes[:, :selected], enc_boxes.detach())
        reference_boxes = torch.cat((refined, reference_boxes[:, selected:]), dim=1)

        sampling_boxes = reference_boxes[:, :, None]
        if valid_ratios is not None:
            sampling_boxes = sampling_boxes * torch.cat((valid_ratios, valid_ratios), dim=-1)[:, None].to(memory.dtype)
        decoder = self.decoder(
            queries,
            sampling_boxes,
            memory,
            spatial_shapes,
            padding_mask,
            num_groups,
            output_hidden_states,
            output_attentions,
            eager,
        )
        output = RFDetrModelOutput(
            last_hidden_state=decoder.intermediate[-1],
            intermediate_hidden_states=decoder.intermediate.transpose(0, 1),  # batch first, as transformers' DETRs
            reference_boxes=reference_boxes,
            enc_logits=enc_logits,
            enc_pred_boxes=enc_boxes,
            hidden_states=decoder.hidden_states,
            attentions=decoder.attentions,
            cross_attentions=decoder.cross_attentions,
            backbone_hidden_states=backbone.hidden_states,
            backbone_attentions=backbone.attentions,
            mask_features=feature_maps[0] if segmentation else None,
            enc_hidden_states=enc_hidden,
        )
        return output if return_dict else output.to_tuple()

    def select_proposals(
        self,
        memory: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
        padding_mask: torch.Tensor | None,
        num_groups: int,
        return_hidden: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Two-stage selection, every group at once: memory (B, S, C) -> logits (B, G * K, num_labels) and boxes
        (B, G * K, 4) of the K = min(num_queries, S) positions with the highest class score in each group, and with
        `return_hidden` their normed memory (B, G * K, C) (else None)."""
        memory, proposals = encoder_proposals(memory, spatial_shapes, padding_mask)
        batch_size, length, channels = memory.shape
        hidden = self.enc_output_norm(self.enc_output(memory.expand(num_groups, -1, -1, -1)))  # G, B, S, C
        logits = self.enc_out_class_embed(hidden)
        top = min(self.config.num_queries, length)
        indices = logits.max(-1).values.topk(top, dim=-1).indices[..., None]  # G, B, K, 1
        hidden = hidden.gather(2, indices.expand(-1, -1, -1, channels))
        logits = logits.gather(2, indices.expand(-1, -1, -1, logits.shape[-1]))
        proposals = proposals.expand(num_groups, -1, -1, -1).gather(2, indices.expand(-1, -1, -1, 4))
        boxes = apply_box_delta(self.enc_out_bbox_embed(hidden), proposals)

        def merge_groups(tensor: torch.Tensor) -> torch.Tensor:  # (G, B, K, D) -> (B, G * K, D), group 0 first
            return tensor.transpose(0, 1).reshape(batch_size, num_groups * top, tensor.shape[-1])

        return merge_groups(logits), merge_groups(boxes), merge_groups(hidden) if return_hidden else None


def _output_options(
    config: RFDetrConfig, output_attentions: bool | None, output_hidden_states: bool | None, return_dict: bool | None
) -> tuple[bool, bool, bool]:
    """The call's `output_attentions`, `output_hidden_states` and `return_dict`, the config's where not given."""
    return (
        bool(config.output_attentions if output_attentions is None else output_attentions),
        bool(config.output_hidden_states if output_hidden_states is None else output_hidden_states),
        bool(getattr(config, "return_dict", True) if return_dict is None else return_dict),
    )


def _level_padding(
    pixel_mask: torch.Tensor | None, spatial_shapes: list[tuple[int, int]]
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """pixel_mask (B, H, W) -> padding mask over the flattened memory (B, S), True on padding, and the valid
    fraction of every level (B, levels, 2) as (width, height). (None, None) without a mask."""
    if pixel_mask is None:
        return None, None
    masks = [F.interpolate(pixel_mask[None].float(), size=shape, mode="nearest")[0] < 0.5 for shape in spatial_shapes]
    valid_ratios = torch.stack(
        [
            torch.stack(((~mask[:, 0, :]).sum(1) / mask.shape[2], (~mask[:, :, 0]).sum(1) / mask.shape[1]), dim=-1)
            for mask in masks
        ],
        dim=1,
    )
    return torch.cat([mask.flatten(1) for mask in masks], dim=1), valid_ratios


class RFDetrForObjectDetection(RFDetrPreTrainedModel):
    """RF-DETR with its class and box heads: pixel_values -> logits (B, Q, num_labels), pred_boxes (B, Q, 4).

    Built from a segmentation configuration (`segmentation_head=True`), it is the detection part of the segmentation
    model (the same weights; the mask head's are not loaded) and says so in a warning: masks need
    [`RFDetrForInstanceSegmentation`].
    """

    def __init__(self, config: RFDetrConfig) -> None:
        if getattr(config, "segmentation_head", False):
            logger.warning(
                "config.segmentation_head is True but RFDetrForObjectDetection predicts boxes only: the mask head "
                "(segmentation_head.*) is left out. Use RFDetrForInstanceSegmentation (AutoModelForInstanceSegmentation) "
                "for masks."
            )
        super().__init__(config)
        self.model = RFDetrModel(config)
        self.class_embed = nn.Linear(config.d_model, config.num_labels)
        self.bbox_embed = RFDetrMLPHead(config.d_model, config.d_model, 4, 3, zero_init_output=True)
        _tag_decoder_heads_as_copies(self)
        # The project's criterion, called explicitly (transformers' `loss_function` lookup would pick another loss).
        self.criterion = RFDetrLoss(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        labels: list[dict[str, torch.Tensor]] | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> RFDetrObjectDetectionOutput | tuple:
        """pixel_values (B, C, H, W) normalised images; pixel_mask (B, H, W) with 1 on real pixels (optional);
        labels: one dict per image with `class_labels` (N,) and `boxes` (N, 4) normalised cxcywh (optional).

        In training mode every Group DETR group runs (Q = num_queries * group_detr); in eval mode one group. The
        earlier decoder layers go through the heads (`auxiliary_outputs`) in training or when `labels` are given.
        `output_attentions`, `output_hidden_states` and `return_dict` as in [`RFDetrModel.forward`].
        """
        output_attentions, output_hidden_states, return_dict = _output_options(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        with_auxiliary = self.training or labels is not None
        outputs, logits, boxes = _detect(
            self, pixel_values, pixel_mask, with_auxiliary, output_attentions, output_hidden_states
        )
        auxiliary_outputs = None
        if with_auxiliary:
            auxiliary_outputs = [{"logits": lg, "pred_boxes": bx} for lg, bx in zip(logits[:-1], boxes[:-1])]
        loss = loss_dict = None
        if labels is not None:
            check_labels(labels, pixel_values.shape[0], self.config.num_labels)
            layers = _criterion_layers(self.config, logits, boxes, outputs)
            loss, loss_dict = self.criterion(layers, labels, self.config.group_detr if self.training else 1)
        output = RFDetrObjectDetectionOutput(
            loss=loss,
            loss_dict=loss_dict,
            logits=logits[-1],
            pred_boxes=boxes[-1],
            auxiliary_outputs=auxiliary_outputs,
            enc_logits=outputs.enc_logits,
            enc_pred_boxes=outputs.enc_pred_boxes,
            last_hidden_state=outputs.last_hidden_state,
            intermediate_hidden_states=outputs.intermediate_hidden_states,
            **{name: outputs[name] for name in _OPTIONAL_OUTPUTS if name in outputs},
        )
        return output if return_dict else output.to_tuple()


def _detect(
    module: RFDetrForObjectDetection | RFDetrForInstanceSegmentation,
    pixel_values: torch.Tensor,
    pixel_mask: torch.Tensor | None,
    with_auxiliary: bool,
    output_attentions: bool,
    output_hidden_states: bool,
) -> tuple[RFDetrModelOutput, torch.Tensor, torch.Tensor]:
    """`module.model` and the class and box heads: the model outputs, logits (L', B, Q, num_labels) and boxes
    (L', B, Q, 4) of every decoder layer (L' = L) with `with_auxiliary`, else of the last one (L' = 1)."""
    outputs = module.model(
        pixel_values,
        pixel_mask,
        output_attentions=output_attentions,
        output_hidden_states=output_hidden_states,
        return_dict=True,
    )
    hidden_states = outputs.intermediate_hidden_states.transpose(0, 1)  # (L, B, Q, d_model)
    if not with_auxiliary:
        hidden_states = hidden_states[-1:]
    logits = module.class_embed(hidden_states)
    boxes = apply_box_delta(module.bbox_embed(hidden_states), outputs.reference_boxes)
    return outputs, logits, boxes


def _criterion_layers(
    config: RFDetrConfig,
    logits: torch.Tensor,
    boxes: torch.Tensor,
    outputs: RFDetrModelOutput,
    masks: list[RFDetrMaskFactors] | None = None,
    enc_masks: RFDetrMaskFactors | None = None,
) -> dict[str, tuple]:
    """What the criterion supervises, in the original's order: "" (the last decoder layer), then with
    `config.auxiliary_loss` "_0", "_1", ... (the earlier layers) and "_enc" (the two-stage proposals). Each is
    (logits, boxes), or (logits, boxes, mask factors) for segmentation."""
    extras = [()] * len(logits) if masks is None else [(factors,) for factors in masks]
    layers = {"": (logits[-1], boxes[-1], *extras[-1])}
    if config.auxiliary_loss:
        for index, (layer_logits, layer_boxes, extra) in enumerate(zip(logits[:-1], boxes[:-1], extras[:-1])):
            layers[f"_{index}"] = (layer_logits, layer_boxes, *extra)
        layers["_enc"] = (outputs.enc_logits, outputs.enc_pred_boxes, *(() if enc_masks is None else (enc_masks,)))
    return layers


class RFDetrForInstanceSegmentation(RFDetrPreTrainedModel):
    # `pipeline("image-segmentation")` loads AutoModelForImageSegmentation.
    _also_auto_mapped = {
        **RFDetrPreTrainedModel._also_auto_mapped,
        "AutoModelForImageSegmentation": "RFDetrForInstanceSegmentation",
    }

    """RF-DETR Seg: the detector plus the mask head (`config.segmentation_head=True`, e.g.
    `RFDetrConfig.from_variant("seg-nano")`): pixel_values -> logits (B, Q, num_labels), pred_boxes (B, Q, 4) and
    pred_masks (B, Q, H // r, W // r) mask logits, r = `config.mask_downsample_ratio`.

    The detection weights have the names of [`RFDetrForObjectDetection`]; the mask head's (`segmentation_head.*`)
    those of the original `rfdetr` package.
    """

    def __init__(self, config: RFDetrConfig) -> None:
        if not getattr(config, "segmentation_head", False):
            raise RFDetrConfigError(
                "RFDetrForInstanceSegmentation needs config.segmentation_head=True (a segmentation variant such as "
                "RFDetrConfig.from_variant('seg-nano')); got segmentation_head=False: use RFDetrForObjectDetection"
            )
        super().__init__(config)
        self.model = RFDetrModel(config)
        self.class_embed = nn.Linear(config.d_model, config.num_labels)
        self.bbox_embed = RFDetrMLPHead(config.d_model, config.d_model, 4, 3, zero_init_output=True)
        _tag_decoder_heads_as_copies(self)
        self.segmentation_head = RFDetrSegmentationHead(
            config.d_model, config.decoder_layers, config.mask_downsample_ratio
        )
        self.criterion = RFDetrLoss(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        labels: list[dict[str, torch.Tensor]] | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> RFDetrInstanceSegmentationOutput | tuple:
        """pixel_values (B, C, H, W) normalised images; pixel_mask (B, H, W) with 1 on real pixels (optional);
        labels: one dict per image with `class_labels` (N,), `boxes` (N, 4) normalised cxcywh and `masks` (N, H, W)
        bool at the input size (optional).

        In eval mode without labels only the last decoder layer's masks are computed, dense. In training mode, or
        with labels, every decoder layer's and the two-stage proposals' masks are computed as `RFDetrMaskFactors`
        (what the loss samples), and `pred_masks` is dense only in eval mode. The outputs carry the `pixel_mask` given
        (for the post-processing of padded inputs, see [`RFDetrInstanceSegmentationOutput`]).
        """
        output_attentions, output_hidden_states, return_dict = _output_options(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        with_auxiliary = self.training or labels is not None
        outputs, logits, boxes = _detect(
            self, pixel_values, pixel_mask, with_auxiliary, output_attentions, output_hidden_states
        )
        image_size = tuple(pixel_values.shape[-2:])
        hidden_states = outputs.intermediate_hidden_states.transpose(0, 1)  # (L, B, Q, d_model)
        if not with_auxiliary:
            hidden_states = hidden_states[-1:]
        masks = self.segmentation_head(outputs.mask_features, hidden_states, image_size, all_layers=with_auxiliary)
        auxiliary_outputs = enc_masks = None
        if with_auxiliary:
            auxiliary_outputs = [
                {"logits": lg, "pred_boxes": bx, "pred_masks": mk} for lg, bx, mk in zip(logits[:-1], boxes[:-1], masks)
            ]
            enc_masks = self.segmentation_head(
                outputs.mask_features, outputs.enc_hidden_states[None], image_size, skip_blocks=True
            )[0]
        loss = loss_dict = None
        if labels is not None:
            check_labels(labels, pixel_values.shape[0], self.config.num_labels, mask_size=pixel_values.shape[-2:])
            layers = _criterion_layers(self.config, logits, boxes, outputs, masks, enc_masks)
            loss, loss_dict = self.criterion(layers, labels, self.config.group_detr if self.training else 1)
        output = RFDetrInstanceSegmentationOutput(
            loss=loss,
            loss_dict=loss_dict,
            logits=logits[-1],
            pred_boxes=boxes[-1],
            pred_masks=masks[-1] if self.training else masks[-1].dense(),
            auxiliary_outputs=auxiliary_outputs,
            enc_logits=outputs.enc_logits,
            enc_pred_boxes=outputs.enc_pred_boxes,
            enc_pred_masks=enc_masks,
            last_hidden_state=outputs.last_hidden_state,
            intermediate_hidden_states=outputs.intermediate_hidden_states,
            **{name: outputs[name] for name in _OPTIONAL_OUTPUTS if name in outputs},
            pixel_mask=pixel_mask,
        )
        return output if return_dict else output.to_tuple()


__all__ = ["RFDetrModel", "RFDetrForObjectDetection", "RFDetrForInstanceSegmentation", "RFDetrPreTrainedModel"]


def model_class_for(config: RFDetrConfig) -> type[RFDetrForObjectDetection | RFDetrForInstanceSegmentation]:
    """The task class of `config`: `RFDetrForInstanceSegmentation` when it has a mask head (`segmentation_head`), else
    `RFDetrForObjectDetection` (both share the config type, so the Auto classes cannot tell them apart)."""
    return RFDetrForInstanceSegmentation if getattr(config, "segmentation_head", False) else RFDetrForObjectDetection


def _name_for_pipelines() -> None:
    """Let transformers' object-detection pipeline accept this class when it is loaded as remote code.

    The pipeline checks a model's class *name* against `MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES` and otherwise logs
    an error listing every supported model (about 150). `import hf_rfdetr` lists the name (`hf_rfdetr.registration`);
    a folder loaded with `trust_remote_code=True` without the package has only this module, so it lists it here.
    Pinned by tests/test_transformers_internals.py.
    """
    if not __name__.startswith("transformers_modules."):
        return
    from transformers.models.auto import modeling_auto

    modeling_auto.MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES.setdefault(
        RFDetrConfig.model_type, (RFDetrForObjectDetection.__name__,)
    )
    modeling_auto.MODEL_FOR_INSTANCE_SEGMENTATION_MAPPING_NAMES.setdefault(
        RFDetrConfig.model_type, RFDetrForInstanceSegmentation.__name__
    )
    _explain_unequal_pipeline_batches()


#: What transformers' pipelines cannot batch for RF-DETR without the package (see `_explain_unequal_pipeline_batches`).
UNEQUAL_BATCH_MESSAGE = (
    "transformers' pipeline (batch_size={batch_size}) concatenates the image processor's pixel_values as they are, "
    "but RFDetrImageProcessor gave these images different sizes {sizes} (keep_aspect_ratio=True, or an "
    "aspect-preserving `size`, pads each image only to its own shape). `import hf_rfdetr` before building the "
    "pipeline (its pipelines pad a batch to a common size), or pass batch_size=1."
)


def _explain_unequal_pipeline_batches() -> None:
    """Make transformers' pipeline batching refuse RF-DETR inputs of different sizes with `UNEQUAL_BATCH_MESSAGE`.

    transformers' `pad_collate_fn` concatenates `pixel_values` without padding (a bare "Sizes of tensors must match"
    `RuntimeError` when they differ) and offers no hook to a processor or model; `import hf_rfdetr` pads such batches
    in its pipeline classes (`hf_rfdetr.pipeline_rfdetr`). For remote code only, the collate function built for an
    `RFDetrImageProcessor` checks the sizes first; other processors get transformers' function unchanged. Pinned by
    tests/test_transformers_internals.py.
    """
    from transformers.pipelines import base

    original = base.pad_collate_fn
    if getattr(original, "explains_rfdetr_batches", False):
        return

    def pad_collate_fn(tokenizer, feature_extractor):
        collate = original(tokenizer, feature_extractor)
        if type(feature_extractor).__name__ != "RFDetrImageProcessor":
            return collate

        def collate_equal_sizes(items):
            sizes = sorted({tuple(item["pixel_values"].shape[-2:]) for item in items if "pixel_values" in item})
            if len(sizes) > 1:
                raise ValueError(UNEQUAL_BATCH_MESSAGE.format(batch_size=len(items), sizes=sizes))
            return collate(items)

        return collate_equal_sizes

    pad_collate_fn.explains_rfdetr_batches = True
    base.pad_collate_fn = pad_collate_fn


_name_for_pipelines()
