"""Weights of the original `rfdetr` package (`LWDETR.state_dict()`, the `model` / `ema_model` entry of its `.pth`
checkpoints) -> this package's `RFDetrForObjectDetection` state dict."""

from __future__ import annotations

import re
from collections import defaultdict

import torch

from .configuration_rfdetr import RFDetrConfig

_BACKBONE = r"backbone\.0\.encoder\.encoder\."
_PROJECTOR = r"backbone\.0\.projector\."
_DECODER_LAYER = r"transformer\.decoder\.layers\.(\d+)\."

#: (pattern, replacement) applied in order; the first match renames the key.
_RENAMES: list[tuple[str, str]] = [
    (_BACKBONE + r"embeddings\.", r"model.backbone.embeddings."),
    (_BACKBONE + r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"model.backbone.layers.\1.attention.proj."),
    (_BACKBONE + r"encoder\.layer\.(\d+)\.layer_scale(\d)\.lambda1$", r"model.backbone.layers.\1.layer_scale\2"),
    (_BACKBONE + r"encoder\.layer\.(\d+)\.", r"model.backbone.layers.\1."),
    (_BACKBONE + r"layernorm\.", r"model.backbone.layernorm."),
    (_PROJECTOR + r"stages_sampling\.(\d+)\.(\d+)\.0\.bn\.", r"model.projector.levels.\1.samplers.\2.norm."),
    (_PROJECTOR + r"stages_sampling\.(\d+)\.(\d+)\.0\.", r"model.projector.levels.\1.samplers.\2."),
    (
        _PROJECTOR + r"stages\.(\d+)\.0\.m\.(\d+)\.(cv\d)\.bn\.",
        r"model.projector.levels.\1.c2f.bottlenecks.\2.\3.norm.",
    ),
    (_PROJECTOR + r"stages\.(\d+)\.0\.m\.(\d+)\.", r"model.projector.levels.\1.c2f.bottlenecks.\2."),
    (_PROJECTOR + r"stages\.(\d+)\.0\.(cv\d)\.bn\.", r"model.projector.levels.\1.c2f.\2.norm."),
    (_PROJECTOR + r"stages\.(\d+)\.0\.", r"model.projector.levels.\1.c2f."),
    (_PROJECTOR + r"stages\.(\d+)\.1\.", r"model.projector.levels.\1.norm."),
    (_DECODER_LAYER + r"norm1\.", r"model.decoder.layers.\1.self_attn_norm."),
    (_DECODER_LAYER + r"norm2\.", r"model.decoder.layers.\1.cross_attn_norm."),
    (_DECODER_LAYER + r"norm3\.", r"model.decoder.layers.\1.ffn_norm."),
    (_DECODER_LAYER + r"linear1\.", r"model.decoder.layers.\1.fc1."),
    (_DECODER_LAYER + r"linear2\.", r"model.decoder.layers.\1.fc2."),
    (_DECODER_LAYER, r"model.decoder.layers.\1."),
    (r"transformer\.decoder\.", r"model.decoder."),
    (r"(refpoint_embed|query_feat)\.", r"model.\1."),
    (r"(class_embed|bbox_embed)\.", r"\1."),
]
#: Per-group modules of the original, stacked into one grouped parameter here.
_GROUPED = re.compile(r"transformer\.(enc_output|enc_output_norm|enc_out_class_embed|enc_out_bbox_embed)\.(\d+)\.(.+)$")
#: Original keys that hold no weights of the architecture.
_IGNORED = re.compile(r"(^|\.)_kp_active_mask$")


def _rename(key: str) -> str:
    for pattern, replacement in _RENAMES:
        renamed, count = re.subn("^" + pattern, replacement, key)
        if count:
            return renamed
    raise KeyError(f"no rule converts the original checkpoint key {key!r}")


def convert_original_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename and reshape an original `LWDETR` state dict into `RFDetrForObjectDetection` keys.

    The backbone's separate query/key/value projections are fused into `qkv`; the decoder self-attention's
    `in_proj` is split into the shared query/key projection and the value projection; the per-group two-stage
    modules (`enc_output.{g}`, ...) are stacked along a leading group dimension.
    """
    converted: dict[str, torch.Tensor] = {}
    grouped: dict[str, dict[int, torch.Tensor]] = defaultdict(dict)
    qkv_parts: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, tensor in state_dict.items():
        if _IGNORED.search(key):
            continue
        match = _GROUPED.match(key)
        if match:
            module, group, rest = match.groups()
            grouped[f"model.{module}.{rest}"][int(group)] = tensor
            continue
        new_key = _rename(key)
        attention = re.match(r"(.+\.attention)\.attention\.(query|key|value)\.(weight|bias)$", new_key)
        if attention:
            prefix, part, kind = attention.groups()
            qkv_parts[f"{prefix}.qkv.{kind}"][part] = tensor
        elif new_key.endswith("self_attn.in_proj_weight") or new_key.endswith("self_attn.in_proj_bias"):
            prefix, kind = new_key.rsplit(".in_proj_", 1)
            width = tensor.shape[0] // 3
            converted[f"{prefix}.qk_proj.{kind}"] = tensor[: 2 * width]
            converted[f"{prefix}.v_proj.{kind}"] = tensor[2 * width :]
        else:
            converted[new_key] = tensor
    for key, parts in qkv_parts.items():
        converted[key] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    for key, groups in grouped.items():
        converted[key] = torch.stack([groups[g] for g in sorted(groups)])
    return {key: tensor.contiguous() for key, tensor in converted.items()}


def load_original_state_dict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load an original state dict into `model`, failing on any missing, unexpected or mis-shaped weight."""
    converted = convert_original_state_dict(state_dict)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    mismatched = [
        f"{key}: checkpoint {tuple(converted[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(converted))
        if converted[key].shape != expected[key].shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            "The original checkpoint does not fit this configuration:\n"
            f"  missing: {missing[:10]}{' ...' if len(missing) > 10 else ''}\n"
            f"  unexpected: {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}\n"
            f"  mismatched: {mismatched[:10]}"
        )
    model.load_state_dict(converted, strict=True)


__all__ = ["convert_original_state_dict", "load_original_state_dict", "RFDetrConfig"]
