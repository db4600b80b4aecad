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
"""Stage 2 of converting transformers' own RF-DETR checkpoints: weight renaming and loading.

In: the state dict of transformers' `RfDetrForObjectDetection` / `RfDetrForInstanceSegmentation` (or the model
itself) and the `RFDetrConfig` that `config_mapping.config_from_transformers` made of its configuration.
Out: the same tensors under this package's names and shapes (`convert_transformers_state_dict`), loaded into our
`RFDetrForObjectDetection` / `RFDetrForInstanceSegmentation` (`load_transformers_state_dict`,
`load_transformers_model`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import TYPE_CHECKING

import torch

from ..models.rfdetr.configuration_rfdetr import RFDetrConfig
from .config_mapping import config_from_transformers

if TYPE_CHECKING:  # pragma: no cover
    from transformers import RfDetrForInstanceSegmentation, RfDetrForObjectDetection

    from ..models.rfdetr.modeling_rfdetr import RFDetrForInstanceSegmentation, RFDetrForObjectDetection

_ENCODER = r"model\.backbone\.backbone\."
_LAYER = _ENCODER + r"encoder\.layer\.(\d+)\."
_PROJECTOR = r"model\.backbone\.projector\."
_DECODER_LAYER = r"model\.decoder\.layers\.(\d+)\."

#: (pattern, replacement), first match wins; keys matched by `_GROUPED`, `_FUSED` or `_VALUE_PROJ` never get here.
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
#: Separate projections fused here: (pattern, our prefix, the parts in their order along the output dimension).
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
#: The decoder self-attention's value projection, which stays separate (its query and key are fused).
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
    from ..models.rfdetr.modeling_rfdetr import RFDetrForInstanceSegmentation, RFDetrForObjectDetection

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


__all__ = ["convert_transformers_state_dict", "load_transformers_model", "load_transformers_state_dict"]
