"""An original-format (`rfdetr` `LWDETR.state_dict()`) checkpoint made from our model's weights, without `rfdetr`.

`to_original_state_dict` inverts `hf_rfdetr.conversion.convert_original_state_dict`; `original_checkpoint_bytes`
checks the round trip (the forward mapping is the verified one, so a round trip that returns every tensor unchanged
shows the inverse gives the original's keys and layouts) and serialises `{"model", "args", "model_name"}` as the
original's checkpoints do.
"""

from __future__ import annotations

import io
import re

import torch

from hf_rfdetr.conversion import convert_original_state_dict

_BACKBONE = "backbone.0.encoder.encoder."
_PROJECTOR = "backbone.0.projector."
#: (our pattern, original replacement), first match wins.
_INVERSE: list[tuple[str, str]] = [
    (r"model\.backbone\.embeddings\.", _BACKBONE + "embeddings."),
    (r"model\.backbone\.layers\.(\d+)\.attention\.proj\.", _BACKBONE + r"encoder.layer.\1.attention.output.dense."),
    (r"model\.backbone\.layers\.(\d+)\.layer_scale(\d)$", _BACKBONE + r"encoder.layer.\1.layer_scale\2.lambda1"),
    (r"model\.backbone\.layers\.(\d+)\.", _BACKBONE + r"encoder.layer.\1."),
    (r"model\.backbone\.layernorm\.", _BACKBONE + "layernorm."),
    (r"model\.projector\.levels\.(\d+)\.samplers\.(\d+)\.norm\.", _PROJECTOR + r"stages_sampling.\1.\2.0.bn."),
    (r"model\.projector\.levels\.(\d+)\.samplers\.(\d+)\.", _PROJECTOR + r"stages_sampling.\1.\2.0."),
    (
        r"model\.projector\.levels\.(\d+)\.c2f\.bottlenecks\.(\d+)\.(cv\d)\.norm\.",
        _PROJECTOR + r"stages.\1.0.m.\2.\3.bn.",
    ),
    (r"model\.projector\.levels\.(\d+)\.c2f\.bottlenecks\.(\d+)\.", _PROJECTOR + r"stages.\1.0.m.\2."),
    (r"model\.projector\.levels\.(\d+)\.c2f\.(cv\d)\.norm\.", _PROJECTOR + r"stages.\1.0.\2.bn."),
    (r"model\.projector\.levels\.(\d+)\.c2f\.", _PROJECTOR + r"stages.\1.0."),
    (r"model\.projector\.levels\.(\d+)\.norm\.", _PROJECTOR + r"stages.\1.1."),
    (r"model\.decoder\.layers\.(\d+)\.self_attn_norm\.", r"transformer.decoder.layers.\1.norm1."),
    (r"model\.decoder\.layers\.(\d+)\.cross_attn_norm\.", r"transformer.decoder.layers.\1.norm2."),
    (r"model\.decoder\.layers\.(\d+)\.ffn_norm\.", r"transformer.decoder.layers.\1.norm3."),
    (r"model\.decoder\.layers\.(\d+)\.fc1\.", r"transformer.decoder.layers.\1.linear1."),
    (r"model\.decoder\.layers\.(\d+)\.fc2\.", r"transformer.decoder.layers.\1.linear2."),
    (r"model\.decoder\.", "transformer.decoder."),
    (r"model\.(refpoint_embed|query_feat)\.", r"\1."),
    (r"(class_embed|bbox_embed)\.", r"\1."),
    (r"segmentation_head\.", "segmentation_head."),  # the mask head keeps the original's names
]
_GROUPED = re.compile(r"model\.(enc_output|enc_output_norm|enc_out_class_embed|enc_out_bbox_embed)\.(.+)$")
_QKV = re.compile(r"model\.backbone\.layers\.(\d+)\.attention\.qkv\.(weight|bias)$")
_QK = re.compile(r"model\.decoder\.layers\.(\d+)\.self_attn\.qk_proj\.(weight|bias)$")


def _rename(key: str) -> str:
    for pattern, replacement in _INVERSE:
        renamed, count = re.subn("^" + pattern, replacement, key)
        if count:
            return renamed
    raise KeyError(key)


def to_original_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our `RFDetrForObjectDetection` state dict -> the original `LWDETR` keys and layouts."""
    original: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if grouped := _GROUPED.match(key):
            for group, part in enumerate(tensor):
                original[f"transformer.{grouped[1]}.{group}.{grouped[2]}"] = part.clone()
        elif qkv := _QKV.match(key):
            prefix = f"{_BACKBONE}encoder.layer.{qkv[1]}.attention.attention"
            for name, part in zip(("query", "key", "value"), tensor.chunk(3)):
                original[f"{prefix}.{name}.{qkv[2]}"] = part.clone()
        elif qk := _QK.match(key):
            value = state_dict[f"model.decoder.layers.{qk[1]}.self_attn.v_proj.{qk[2]}"]
            original[f"transformer.decoder.layers.{qk[1]}.self_attn.in_proj_{qk[2]}"] = torch.cat([tensor, value])
        elif ".self_attn.v_proj." not in key:
            original[_rename(key)] = tensor.clone()
    return original


def original_checkpoint_bytes(model: torch.nn.Module, args: dict, model_name: str) -> bytes:
    """`torch.save` of an original-style checkpoint holding `model`'s weights (round trip checked)."""
    state_dict = model.state_dict()
    original = to_original_state_dict(state_dict)
    back = convert_original_state_dict(original)
    assert back.keys() == state_dict.keys(), set(back) ^ set(state_dict)
    assert all(torch.equal(back[key], state_dict[key]) for key in state_dict)
    buffer = io.BytesIO()
    torch.save({"model": original, "args": args, "model_name": model_name}, buffer)
    return buffer.getvalue()
