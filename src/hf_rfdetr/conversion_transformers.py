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
"""Checkpoints of transformers' own RF-DETR (`RfDetrForObjectDetection` / `RfDetrForInstanceSegmentation`,
model_type "rf_detr") -> this package.

transformers (5.x) ships a port of RF-DETR with its own config and weight names. This module maps both onto
`RFDetrConfig` / `RFDetrForObjectDetection` (`RFDetrForInstanceSegmentation` for transformers' segmentation models,
whose detection weights sit one `model.` level deeper and whose mask head has other names):

* `config_from_transformers(rf_config)`: transformers' `RfDetrConfig` (+ its `RfDetrDinov2Config` backbone) ->
  `RFDetrConfig`, raising `ValueError` naming the field when the checkpoint uses something this port cannot express.
* `convert_transformers_state_dict(state_dict, config)`: transformers' weight names -> ours (fused backbone `qkv`,
  decoder self-attention `qk_proj` + `v_proj`, the per-group two-stage heads stacked on a leading group dimension).
* `load_transformers_model(model)`: an instantiated transformers model -> our model with the same weights.
* `verify_against_transformers(ours, theirs)`: both models on the same deterministic images, raising on a mismatch.
* `convert_transformers_checkpoint(folder_or_repo, output_dir, verify)`: a transformers folder / Hub repository ->
  our folder (weights, config, image processor).

Numerics: transformers' model computes the same function as the original `rfdetr` package (and as ours), for every
window layout, when its `layer_norm_eps` is 1e-6, the original projector's epsilon; its default is 1e-5 (see
`config_from_transformers` for what that means for a conversion). In float32 it rounds
differently from the original in one place: its projector convolutions receive the channel-permuted (non-contiguous)
output of the channel LayerNorm, which takes another convolution kernel. The ~1e-6 relative difference is harmless
except where two two-stage proposals have nearly tied scores: `topk` may then order them differently, the queries
pair with other learned query embeddings and the outputs of a few queries change completely. Verification therefore
decides in float64, where the two implementations agree to ~1e-6, and reports the float32 deltas next to it.

Segmentation: transformers' mask logits of the decoder layers equal the original's (and ours), but its two-stage
proposals' masks (`enc_outputs_mask_logits`, training only) skip the mask head's `spatial_features_proj`, which the
original applies; ours follow the original, so those are not compared.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import warnings
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .conversion import CheckpointError
from .models.rfdetr.configuration_rfdetr import VARIANTS, RFDetrConfig

if TYPE_CHECKING:  # pragma: no cover
    from transformers import RfDetrForInstanceSegmentation, RfDetrForObjectDetection

    from .models.rfdetr.modeling_rfdetr import RFDetrForInstanceSegmentation, RFDetrForObjectDetection

logger = logging.getLogger(__name__)

#: transformers' LayerNorms whose epsilon is fixed in its code (not read from the config).
TRANSFORMERS_DECODER_LAYER_NORM_EPS = 1e-5  # nn.LayerNorm default: decoder layers, decoder norm, two-stage norms
TRANSFORMERS_PROJECTOR_OUTPUT_EPS = 1e-6  # RfDetrLayerNorm default: the projector's output norm

# ----------------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------------

#: transformers' `RfDetrConfig` fields copied as they are.
_SAME_NAME_FIELDS = (
    "d_model",
    "decoder_layers",
    "decoder_self_attention_heads",
    "decoder_cross_attention_heads",
    "decoder_n_points",
    "decoder_ffn_dim",
    "decoder_activation_function",
    "dropout",
    "num_queries",
    "group_detr",
    "init_std",
    "auxiliary_loss",
    "class_cost",
    "bbox_cost",
    "giou_cost",
    "class_loss_coefficient",
    "bbox_loss_coefficient",
    "giou_loss_coefficient",
    "focal_alpha",
)
#: transformers' `RfDetrDinov2Config` field -> ours.
_BACKBONE_FIELDS = {
    "hidden_size": "backbone_hidden_size",
    "num_hidden_layers": "backbone_num_hidden_layers",
    "num_attention_heads": "backbone_num_attention_heads",
    "hidden_act": "backbone_hidden_act",
    "layer_norm_eps": "backbone_layer_norm_eps",
    "layerscale_value": "backbone_layerscale_value",
    "drop_path_rate": "drop_path_rate",
    "num_channels": "num_channels",
    "num_windows": "num_windows",
}
#: Architecture switches that this port implements in one state only: (config, field) -> required value.
_REQUIRED = {
    ("config", "num_feature_levels"): 1,
    ("config", "hidden_expansion"): 0.5,
    ("config", "activation_function"): "silu",
    ("config", "attention_bias"): True,
    ("backbone_config", "qkv_bias"): True,
    ("backbone_config", "use_swiglu_ffn"): False,
    ("backbone_config", "apply_layernorm"): True,
    ("backbone_config", "reshape_hidden_states"): True,
    ("backbone_config", "num_register_tokens"): 0,
}
#: The fields of a named variant that fix its architecture (everything but the resolution).
_VARIANT_ARCHITECTURE_FIELDS = (
    "backbone_hidden_size",
    "backbone_num_attention_heads",
    "patch_size",
    "num_windows",
    "out_feature_indexes",
    "positional_encoding_size",
    "decoder_layers",
    "d_model",
    "decoder_self_attention_heads",
    "decoder_cross_attention_heads",
    "decoder_n_points",
    "projector_scale",
    "segmentation_head",
)
#: transformers' segmentation fields -> ours (its mask loss coefficients are also its matcher's mask costs).
_SEGMENTATION_FIELDS = {
    "mask_downsample_ratio": ("mask_downsample_ratio",),
    "mask_point_sample_ratio": ("mask_point_sample_ratio",),
    "mask_class_loss_coefficient": ("mask_ce_loss_coefficient", "mask_ce_cost"),
    "mask_dice_loss_coefficient": ("mask_dice_loss_coefficient", "mask_dice_cost"),
}


def _square(value: Any, field: str) -> int:
    """An int, or a square (h, w) pair as one int; `ValueError` naming `field` otherwise."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"backbone_config.{field}={value!r}: only square values are supported")
        value = value[0]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"backbone_config.{field}={value!r} must be an integer")
    return value


def _matching_variant(values: dict[str, Any]) -> str | None:
    """The named variant whose architecture equals `values` (ignoring the resolution), if exactly one does."""
    defaults = RFDetrConfig().to_dict()

    def normalised(value: Any) -> Any:
        return list(value) if isinstance(value, (list, tuple)) else value

    matches = [
        name
        for name, variant in VARIANTS.items()
        if all(
            normalised(values[field]) == normalised(variant.get(field, defaults[field]))
            for field in _VARIANT_ARCHITECTURE_FIELDS
        )
    ]
    return matches[0] if len(matches) == 1 else None


def config_from_transformers(
    rf_config: Any,
    resolution: int | None = None,
    projector_layer_norm_eps: float | None = None,
    segmentation: bool = False,
) -> RFDetrConfig:
    """Map transformers' `RfDetrConfig` (model_type "rf_detr") onto an `RFDetrConfig`, field by field.

    Args:
        rf_config: transformers' `RfDetrConfig`, or its `to_dict()`.
        resolution: the inference resolution. transformers keeps it in the image processor, not in the model
            config; without it the resolution of the named variant with the same architecture is used (560 for a
            Base), else `backbone_config.image_size` rounded up to a multiple of `patch_size * num_windows`.
        projector_layer_norm_eps: the epsilon of all projector LayerNorms here. transformers uses its
            `layer_norm_eps` in the projector's convolution blocks but a fixed 1e-6 in the projector's output norm,
            and this port one epsilon for all, so a `layer_norm_eps` other than 1e-6 (transformers' default is 1e-5)
            cannot be reproduced exactly and raises unless this is given: 1e-6 computes what the original `rfdetr`
            package computes with the same weights (it uses 1e-6 throughout); transformers' value follows its
            convolution blocks instead. Either differs from transformers' outputs by ~1e-5.
        segmentation: the configuration of transformers' `RfDetrForInstanceSegmentation` (its mask fields).

    Raises:
        ValueError: naming the field, when the checkpoint uses something this port cannot express (multi-scale or
            non-SiLU projector, SwiGLU or bias-free attention, register tokens, stem taps, non-square patches...).
    """
    if isinstance(rf_config, dict):
        from transformers import RfDetrConfig as TransformersRfDetrConfig

        rf_config = TransformersRfDetrConfig(**rf_config)
    model_type = getattr(rf_config, "model_type", None)
    if model_type != "rf_detr":
        raise ValueError(f"model_type={model_type!r}: expected transformers' RF-DETR config (model_type 'rf_detr')")
    backbone = rf_config.backbone_config
    if getattr(backbone, "model_type", None) != "rf_detr_dinov2":
        raise ValueError(
            f"backbone_config.model_type={getattr(backbone, 'model_type', None)!r}: only the windowed DINOv2 "
            "backbone ('rf_detr_dinov2') is supported"
        )
    for (owner, field), required in _REQUIRED.items():
        source = rf_config if owner == "config" else backbone
        value = getattr(source, field, required)
        if value != required:
            raise ValueError(
                f"{owner + '.' if owner != 'config' else ''}{field}={value!r}: only {required!r} is supported"
            )

    values: dict[str, Any] = {ours: getattr(backbone, theirs) for theirs, ours in _BACKBONE_FIELDS.items()}
    mlp_ratio = backbone.mlp_ratio
    if float(mlp_ratio) != int(mlp_ratio):
        raise ValueError(f"backbone_config.mlp_ratio={mlp_ratio!r} must be a whole number")
    values["backbone_mlp_ratio"] = int(mlp_ratio)
    patch_size = _square(backbone.patch_size, "patch_size")
    image_size = _square(backbone.image_size, "image_size")
    values["patch_size"] = patch_size
    values["positional_encoding_size"] = image_size // patch_size

    out_indices = list(backbone.out_indices)
    if not out_indices or 0 in out_indices or out_indices != sorted(set(out_indices)):
        raise ValueError(
            f"backbone_config.out_indices={out_indices}: the projector taps must be strictly increasing encoder "
            f"stages in 1..{backbone.num_hidden_layers} (stage 0, the stem, is not supported)"
        )
    values["out_feature_indexes"] = out_indices
    # Blocks at the tapped positions attend globally, the others within windows; blocks after the last tap do not
    # reach the outputs.
    derived_windowed = sorted(set(range(out_indices[-1])) - set(out_indices))
    windowed = getattr(backbone, "window_block_indexes", None)
    if windowed is not None and backbone.num_windows > 1:
        windowed = sorted(index for index in windowed if index < out_indices[-1])
        if windowed != derived_windowed:
            raise ValueError(
                f"backbone_config.window_block_indexes={sorted(backbone.window_block_indexes)}: this port derives "
                f"them from out_indices (windowed attention in blocks {derived_windowed}, global in the tapped ones)"
            )

    for field in _SAME_NAME_FIELDS:
        values[field] = getattr(rf_config, field)
    values["projector_scale"] = ["P4"]
    values["projector_num_blocks"] = rf_config.c2f_num_blocks
    # transformers' `layer_norm_eps` is the epsilon of the projector's convolution blocks; its projector output norm
    # is fixed at 1e-6 and its decoder / two-stage norms at 1e-5 (nn.LayerNorm's default).
    if projector_layer_norm_eps is None:
        if rf_config.layer_norm_eps != TRANSFORMERS_PROJECTOR_OUTPUT_EPS:
            raise ValueError(
                f"layer_norm_eps={rf_config.layer_norm_eps}: transformers applies it to the projector's convolution "
                f"blocks but {TRANSFORMERS_PROJECTOR_OUTPUT_EPS} to the projector's output norm, which this port "
                "cannot express (one projector_layer_norm_eps for all). Pass projector_layer_norm_eps=1e-6 to compute "
                "what the original rfdetr package computes with these weights (it uses 1e-6 throughout), or "
                f"projector_layer_norm_eps={rf_config.layer_norm_eps} to follow transformers' convolution blocks"
            )
        projector_layer_norm_eps = rf_config.layer_norm_eps
    values["projector_layer_norm_eps"] = projector_layer_norm_eps
    values["layer_norm_eps"] = TRANSFORMERS_DECODER_LAYER_NORM_EPS
    if getattr(rf_config, "attention_dropout", 0.0) != rf_config.dropout:
        warnings.warn(
            f"transformers config has attention_dropout={rf_config.attention_dropout} and dropout={rf_config.dropout}; "
            f"this port applies dropout={rf_config.dropout} to the attention weights as well (training only)",
            UserWarning,
            stacklevel=2,
        )
    for field in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if getattr(backbone, field, 0.0):
            warnings.warn(
                f"backbone_config.{field}={getattr(backbone, field)} is ignored: this port has no encoder dropout "
                "(training only, no effect on inference)",
                UserWarning,
                stacklevel=2,
            )

    values["segmentation_head"] = segmentation
    if segmentation:
        values.update(_segmentation_values(rf_config))
    values["id2label"] = {int(index): label for index, label in rf_config.id2label.items()}
    values["label2id"] = {}
    for index, label in values["id2label"].items():
        values["label2id"].setdefault(label, index)

    variant = _matching_variant(values)
    block = patch_size * values["num_windows"]
    if resolution is None:
        resolution = VARIANTS[variant]["resolution"] if variant else math.ceil(image_size / block) * block
    values["resolution"] = resolution
    try:
        config = RFDetrConfig(variant=variant, **values)
        config.validate()
        return config
    except ValueError as error:
        raise ValueError(f"transformers config does not form a valid RFDetrConfig: {error}") from error


def _segmentation_values(rf_config: Any) -> dict[str, Any]:
    """Our segmentation fields from transformers' config; `ValueError` naming a mask head this port cannot express."""
    activation = getattr(rf_config, "segmentation_head_activation_function", "gelu")
    if activation != "gelu":
        raise ValueError(f"segmentation_head_activation_function={activation!r}: only 'gelu' is supported")
    intermediate = getattr(rf_config, "intermediate_size", 4 * rf_config.d_model)
    if intermediate != 4 * rf_config.d_model:
        raise ValueError(
            f"intermediate_size={intermediate}: the mask head's query MLP is 4 * d_model = {4 * rf_config.d_model} "
            "wide here"
        )
    values = {}
    for theirs, ours in _SEGMENTATION_FIELDS.items():
        for field in ours:
            values[field] = getattr(rf_config, theirs)
    return values


# ----------------------------------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------------------------------

_ENCODER = r"model\.backbone\.backbone\."
_LAYER = _ENCODER + r"encoder\.layer\.(\d+)\."
_PROJECTOR = r"model\.backbone\.projector\."
_DECODER_LAYER = r"model\.decoder\.layers\.(\d+)\."

#: (pattern, replacement), first match wins; keys matched by `_FUSED` or `_GROUPED` never get here.
_RENAMES: list[tuple[str, str]] = [
    (_ENCODER + r"embeddings\.", r"model.backbone.embeddings."),
    (_LAYER + r"attention\.o_proj\.", r"model.backbone.layers.\1.attention.proj."),
    (_LAYER + r"layer_scale(\d)\.lambda1$", r"model.backbone.layers.\1.layer_scale\2"),
    (_LAYER + r"(norm1|norm2|mlp\.fc1|mlp\.fc2)\.", r"model.backbone.layers.\1.\2."),
    (_ENCODER + r"layernorm\.", r"model.backbone.layernorm."),
    (_PROJECTOR + r"projector_layer\.conv(\d)\.", r"model.projector.levels.0.c2f.cv\1."),
    (
        _PROJECTOR + r"projector_layer\.bottlenecks\.(\d+)\.conv(\d)\.",
        r"model.projector.levels.0.c2f.bottlenecks.\1.cv\2.",
    ),
    (_PROJECTOR + r"layer_norm\.", r"model.projector.levels.0.norm."),
    (r"model\.reference_point_embed\.", r"model.refpoint_embed."),
    (r"model\.query_feat\.", r"model.query_feat."),
    (_DECODER_LAYER + r"self_attn\.o_proj\.", r"model.decoder.layers.\1.self_attn.out_proj."),
    (_DECODER_LAYER + r"self_attn_layer_norm\.", r"model.decoder.layers.\1.self_attn_norm."),
    (
        _DECODER_LAYER + r"cross_attn\.(sampling_offsets|attention_weights|value_proj|output_proj)\.",
        r"model.decoder.layers.\1.cross_attn.\2.",
    ),
    (_DECODER_LAYER + r"cross_attn_layer_norm\.", r"model.decoder.layers.\1.cross_attn_norm."),
    (_DECODER_LAYER + r"mlp\.(fc1|fc2)\.", r"model.decoder.layers.\1.\2."),
    (_DECODER_LAYER + r"layer_norm\.", r"model.decoder.layers.\1.ffn_norm."),
    (r"model\.decoder\.layernorm\.", r"model.decoder.norm."),
    (r"model\.decoder\.ref_point_head\.layers\.(\d+)\.", r"model.decoder.ref_point_head.layers.\1."),
    (r"class_embed\.", r"class_embed."),
    (r"bbox_embed\.layers\.(\d+)\.", r"bbox_embed.layers.\1."),
]
#: Separate projections fused here: (pattern, our prefix, part).
_FUSED: list[tuple[re.Pattern, str, str]] = [
    (re.compile(_LAYER + r"attention\.(q|k|v)_proj\.(weight|bias)$"), r"model.backbone.layers.\1.attention.qkv", "qkv"),
    (
        re.compile(_DECODER_LAYER + r"self_attn\.(q|k)_proj\.(weight|bias)$"),
        r"model.decoder.layers.\1.self_attn.qk_proj",
        "qk",
    ),
]
#: Per-group two-stage modules, stacked on a leading group dimension here.
_GROUPED = re.compile(r"model\.(enc_output|enc_output_norm|enc_out_class_embed|enc_out_bbox_embed)\.(\d+)\.(.+)$")
_VALUE_PROJ = re.compile(_DECODER_LAYER + r"self_attn\.v_proj\.(weight|bias)$")
#: transformers' mask head (top level of `RfDetrForInstanceSegmentation`) -> ours (the original's names).
_MASK_HEAD_RENAMES: list[tuple[str, str]] = [
    (r"blocks\.(\d+)\.depthwise_conv\.", r"segmentation_head.blocks.\1.dwconv."),
    (r"blocks\.(\d+)\.layernorm\.", r"segmentation_head.blocks.\1.norm."),
    (r"blocks\.(\d+)\.pointwise_conv\.", r"segmentation_head.blocks.\1.pwconv1."),
    (r"spatial_features_proj\.", r"segmentation_head.spatial_features_proj."),
    (r"query_features_block\.norm\.", r"segmentation_head.query_features_block.norm_in."),
    (r"query_features_block\.mlp\.fc1\.", r"segmentation_head.query_features_block.layers.0."),
    (r"query_features_block\.mlp\.fc2\.", r"segmentation_head.query_features_block.layers.2."),
    (r"query_features_proj\.", r"segmentation_head.query_features_proj."),
    (r"segmentation_bias$", r"segmentation_head.bias"),
]


def _split_segmentation(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A transformers `RfDetrForInstanceSegmentation` state dict -> its detection part with the keys of
    `RfDetrForObjectDetection` (one `model.` level less) and its mask head under our names."""
    detection, head = {}, {}
    for key, tensor in state_dict.items():
        if key.startswith("model."):
            detection[key[len("model.") :]] = tensor
            continue
        for pattern, replacement in _MASK_HEAD_RENAMES:
            renamed, count = re.subn("^" + pattern, replacement, key)
            if count:
                head[renamed] = tensor
                break
        else:
            raise KeyError(f"no rule converts the transformers checkpoint key {key!r}")
    return detection, head


def _rename(key: str) -> str:
    for pattern, replacement in _RENAMES:
        renamed, count = re.subn("^" + pattern, replacement, key)
        if count:
            return renamed
    raise KeyError(f"no rule converts the transformers checkpoint key {key!r}")


def convert_transformers_state_dict(
    state_dict: dict[str, torch.Tensor], config: RFDetrConfig
) -> dict[str, torch.Tensor]:
    """Rename and reshape a transformers `RfDetrForObjectDetection` state dict into `RFDetrForObjectDetection` keys
    (a `RfDetrForInstanceSegmentation` one, recognised by its `segmentation_bias`, into
    `RFDetrForInstanceSegmentation` keys).

    The backbone's `q_proj` / `k_proj` / `v_proj` are fused into `qkv`; the decoder self-attention's `q_proj` and
    `k_proj` into `qk_proj` (its `v_proj` stays); the per-group two-stage modules (`enc_output.{g}`, ...) are
    stacked along a leading group dimension of `config.group_detr` groups.

    Raises:
        KeyError: naming a key no rule places, a projection missing its partners, or a missing group.
    """
    converted: dict[str, torch.Tensor] = {}
    if "segmentation_bias" in state_dict:
        state_dict, converted = _split_segmentation(state_dict)
    fused: dict[tuple[str, str], dict[str, torch.Tensor]] = defaultdict(dict)
    grouped: dict[str, dict[int, torch.Tensor]] = defaultdict(dict)
    for key, tensor in state_dict.items():
        match = _GROUPED.match(key)
        if match:
            module, group, rest = match.groups()
            grouped[f"model.{module}.{rest}"][int(group)] = tensor
            continue
        for pattern, prefix, parts in _FUSED:
            match = pattern.match(key)
            if match:
                layer, part, kind = match.groups()
                fused[(f"{match.expand(prefix)}.{kind}", parts)][part] = tensor
                break
        else:
            match = _VALUE_PROJ.match(key)
            if match:
                converted[f"model.decoder.layers.{match.group(1)}.self_attn.v_proj.{match.group(2)}"] = tensor
            else:
                converted[_rename(key)] = tensor
    for (key, parts), pieces in fused.items():
        missing = [part for part in parts if part not in pieces]
        if missing:
            raise KeyError(f"{key}: the transformers checkpoint lacks the {'/'.join(missing)} projection(s)")
        converted[key] = torch.cat([pieces[part] for part in parts], dim=0)
    for key, groups in grouped.items():
        expected = list(range(config.group_detr))
        if sorted(groups) != expected:
            raise KeyError(
                f"{key}: the transformers checkpoint has groups {sorted(groups)}, config.group_detr={config.group_detr} "
                f"expects {expected}"
            )
        converted[key] = torch.stack([groups[group] for group in expected])
    return {key: tensor.contiguous() for key, tensor in converted.items()}


def load_transformers_state_dict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load a transformers state dict into our `model`, failing on any missing, unexpected or mis-shaped weight."""
    converted = convert_transformers_state_dict(state_dict, model.config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    if "model.backbone.embeddings.mask_token" in missing:  # transformers drops it with use_mask_token=False; unused
        converted["model.backbone.embeddings.mask_token"] = torch.zeros_like(
            expected["model.backbone.embeddings.mask_token"]
        )
        missing.remove("model.backbone.embeddings.mask_token")
    unexpected = sorted(set(converted) - set(expected))
    mismatched = [
        f"{key}: checkpoint {tuple(converted[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(converted))
        if converted[key].shape != expected[key].shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            "The transformers checkpoint does not fit this configuration:\n"
            f"  missing: {missing[:10]}{' ...' if len(missing) > 10 else ''}\n"
            f"  unexpected: {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}\n"
            f"  mismatched: {mismatched[:10]}"
        )
    model.load_state_dict(converted, strict=True)


def load_transformers_model(
    model: RfDetrForObjectDetection | RfDetrForInstanceSegmentation,
    resolution: int | None = None,
    projector_layer_norm_eps: float | None = None,
) -> RFDetrForObjectDetection | RFDetrForInstanceSegmentation:
    """Our `RFDetrForObjectDetection` / `RFDetrForInstanceSegmentation` (eval mode, float32) with the configuration
    and weights of transformers' `RfDetrForObjectDetection` / `RfDetrForInstanceSegmentation`. `resolution`,
    `projector_layer_norm_eps`: see `config_from_transformers`."""
    from .models.rfdetr.modeling_rfdetr import RFDetrForInstanceSegmentation, RFDetrForObjectDetection

    name = type(model).__name__
    if name not in ("RfDetrForObjectDetection", "RfDetrForInstanceSegmentation"):
        raise ValueError(
            f"expected transformers' RfDetrForInstanceSegmentation or RfDetrForObjectDetection, got {name}"
        )
    segmentation = name == "RfDetrForInstanceSegmentation"
    config = config_from_transformers(
        model.config,
        resolution=resolution,
        projector_layer_norm_eps=projector_layer_norm_eps,
        segmentation=segmentation,
    )
    ours = (RFDetrForInstanceSegmentation if segmentation else RFDetrForObjectDetection)(config).eval()
    state_dict = {key: tensor.detach().to("cpu", torch.float32) for key, tensor in model.state_dict().items()}
    load_transformers_state_dict(ours, state_dict)
    return ours


# ----------------------------------------------------------------------------------------------------------------------
# Verification and whole checkpoints
# ----------------------------------------------------------------------------------------------------------------------


def verification_pixel_values(config: RFDetrConfig) -> torch.Tensor:
    """A deterministic batch of two images (the bundled demo picture and its mirror image, or seeded noise without
    the asset) preprocessed by `RFDetrImageProcessor.from_config(config)`: (2, 3, resolution, resolution)."""
    from PIL import Image

    from .models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor

    asset = Path(__file__).parent / "assets" / "demo.jpg"
    if asset.exists():
        image = Image.open(asset).convert("RGB")
    else:  # pragma: no cover - the asset ships with the package
        noise = torch.rand(480, 640, 3, generator=torch.Generator().manual_seed(0))
        image = Image.fromarray((noise * 255).byte().numpy())
    processor = RFDetrImageProcessor.from_config(config)
    return processor([image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], return_tensors="pt")["pixel_values"]


def _projector_norms(reference: torch.nn.Module) -> list[torch.nn.LayerNorm]:
    """The LayerNorms of transformers' projector (convolution blocks and output norm)."""
    detector = reference.model if hasattr(reference.model, "model") else reference  # segmentation: one level deeper
    projector = detector.model.backbone.projector
    return [module for module in projector.modules() if isinstance(module, torch.nn.LayerNorm)]


def _outputs(model: torch.nn.Module, pixel_values: torch.Tensor, dtype: torch.dtype):
    if dtype != torch.float32:
        model = copy.deepcopy(model).to(dtype)
    model.eval()
    with torch.no_grad():
        return model(pixel_values.to(dtype))


def verify_against_transformers(
    model: torch.nn.Module,
    reference: torch.nn.Module,
    pixel_values: torch.Tensor | None = None,
    atol: float = 1e-4,
) -> dict[str, float]:
    """Run our converted `model` and transformers' `reference` on the same images and raise if they disagree.

    Decides on float64 copies of both models (max |delta| of logits and pred_boxes <= `atol`): in float32 a few
    near-tied two-stage proposals may leave `topk` in another order (see the module docstring), which says nothing
    about the conversion. When `model` was converted with a `projector_layer_norm_eps` that transformers does not
    use everywhere in its projector (see `config_from_transformers`), the float64 comparison runs against a copy of
    `reference` with that epsilon, so that it checks the weights. The float32 deltas against `reference` as it is
    and the number of queries whose two-stage proposal differs there are reported as well.

    Args:
        pixel_values: (B, 3, H, W); default: `verification_pixel_values(model.config)`.

    Segmentation models also compare `pred_masks` (not the proposals' masks, see the module docstring).

    Returns:
        {"logits", "pred_boxes"} (float64), {"logits_fp32", "pred_boxes_fp32", "reordered_queries_fp32"}, and
        "pred_masks" / "pred_masks_fp32" for segmentation (no "reordered_queries_fp32": transformers' segmentation
        outputs have no proposal boxes).

    Raises:
        CheckpointError: a float64 delta exceeds `atol`; the message carries every delta.
    """
    if pixel_values is None:
        pixel_values = verification_pixel_values(model.config)
    actual, expected = _outputs(model, pixel_values, torch.float32), _outputs(reference, pixel_values, torch.float32)
    compared = ("logits", "pred_boxes", "pred_masks") if model.config.segmentation_head else ("logits", "pred_boxes")
    deltas = {f"{name}_fp32": (actual[name] - expected[name]).abs().max().item() for name in compared}
    if getattr(expected, "enc_outputs_coord_logits", None) is not None:
        reordered = (actual.enc_pred_boxes - expected.enc_outputs_coord_logits).abs().amax(-1) > 1e-3
        deltas["reordered_queries_fp32"] = int(reordered.sum().item())
    eps = model.config.projector_layer_norm_eps
    if any(norm.eps != eps for norm in _projector_norms(reference)):
        reference = copy.deepcopy(reference)
        for norm in _projector_norms(reference):
            norm.eps = eps
    actual, expected = _outputs(model, pixel_values, torch.float64), _outputs(reference, pixel_values, torch.float64)
    for name in compared:
        deltas[name] = (actual[name] - expected[name]).abs().max().item()
    if max(deltas[name] for name in compared) > atol:
        raise CheckpointError(
            f"converted model disagrees with transformers' {type(reference).__name__}: max |delta| {deltas} > {atol}"
        )
    if max(deltas[f"{name}_fp32"] for name in compared) > atol:
        logger.warning(
            "float32 outputs differ from transformers' by %s (%s queries took another two-stage proposal: near-tied "
            "scores ordered differently by rounding); float64 outputs agree (%s)",
            {f"{name}_fp32": deltas[f"{name}_fp32"] for name in compared},
            deltas.get("reordered_queries_fp32", "some"),
            {name: deltas[name] for name in compared},
        )
    return deltas


def _processor_resolution(folder_or_repo: str | Path) -> int | None:
    """The square `size` of the checkpoint's `preprocessor_config.json`, when it has one."""
    path = Path(folder_or_repo) / "preprocessor_config.json"
    if not path.is_file():
        try:
            from transformers.utils import cached_file

            resolved = cached_file(
                str(folder_or_repo),
                "preprocessor_config.json",
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except (OSError, ValueError):
            resolved = None
        if resolved is None:
            return None
        path = Path(resolved)
    size = json.loads(path.read_text()).get("size") or {}
    height, width = size.get("height"), size.get("width")
    return int(height) if height and height == width else None


def _transformers_class_name(folder_or_repo: str | Path) -> str:
    """ "RfDetrForInstanceSegmentation" when the checkpoint's config lists it in `architectures`, else
    "RfDetrForObjectDetection"."""
    from transformers import AutoConfig

    try:
        architectures = AutoConfig.from_pretrained(str(folder_or_repo)).architectures or []
    except (OSError, ValueError):
        architectures = []  # from_pretrained names the problem
    segmentation = "RfDetrForInstanceSegmentation" in architectures
    return "RfDetrForInstanceSegmentation" if segmentation else "RfDetrForObjectDetection"


def convert_transformers_checkpoint(
    folder_or_repo: str | Path,
    output_dir: str | Path,
    verify: bool = False,
    resolution: int | None = None,
    projector_layer_norm_eps: float | None = None,
) -> Path:
    """Convert a transformers `RfDetrForObjectDetection` (or, when its config's `architectures` says so,
    `RfDetrForInstanceSegmentation`) folder or Hub repository into this package's format.

    Writes `config.json`, `model.safetensors` and `preprocessor_config.json` (`RFDetrImageProcessor.from_config`)
    to `output_dir`. With `verify`, first runs both models on the same images (`verify_against_transformers`) and
    raises before writing anything if they disagree.

    Args:
        resolution: inference resolution; default: the checkpoint's image processor `size` when square, else see
            `config_from_transformers`.
        projector_layer_norm_eps: needed when the checkpoint's `layer_norm_eps` is not 1e-6; see
            `config_from_transformers`.

    Raises:
        CheckpointError: the checkpoint cannot be loaded or converted, or verification fails.
    """
    import transformers

    from .models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor

    if not hasattr(transformers, "RfDetrForObjectDetection"):
        raise CheckpointError(f"transformers {transformers.__version__} has no RfDetrForObjectDetection (needs 5.x)")
    class_name = _transformers_class_name(folder_or_repo)
    try:
        reference = getattr(transformers, class_name).from_pretrained(str(folder_or_repo)).eval()
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot load {str(folder_or_repo)!r} as transformers' {class_name}: {error}") from error
    if resolution is None:
        resolution = _processor_resolution(folder_or_repo)
    try:
        model = load_transformers_model(
            reference, resolution=resolution, projector_layer_norm_eps=projector_layer_norm_eps
        )
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"{str(folder_or_repo)!r} cannot be converted: {error}") from error
    if verify:
        deltas = verify_against_transformers(model, reference)
        logger.info("verified against transformers' %s: %s", class_name, deltas)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    RFDetrImageProcessor.from_config(model.config).save_pretrained(output_dir)
    return output_dir


__all__ = [
    "config_from_transformers",
    "convert_transformers_checkpoint",
    "convert_transformers_state_dict",
    "load_transformers_model",
    "load_transformers_state_dict",
    "verification_pixel_values",
    "verify_against_transformers",
]
