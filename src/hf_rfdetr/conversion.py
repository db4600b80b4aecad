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
"""Weights of the original `rfdetr` package (`LWDETR.state_dict()`, the `model` / `ema_model` entry of its `.pth`
checkpoints) -> this package's `RFDetrForObjectDetection` state dict, or `RFDetrForInstanceSegmentation`'s for the
Seg checkpoints (`segmentation_head.*` keys, which keep their names)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import torch

from .models.rfdetr.configuration_rfdetr import RFDetrConfig

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
    (r"segmentation_head\.", r"segmentation_head."),  # the mask head keeps the original's names
]
#: Per-group modules of the original, stacked into one grouped parameter here.
_GROUPED = re.compile(r"transformer\.(enc_output|enc_output_norm|enc_out_class_embed|enc_out_bbox_embed)\.(\d+)\.(.+)$")
#: Original keys that hold no weights of the architecture.
_IGNORED = re.compile(r"(^|\.)_kp_active_mask$")


def _rename(key: str) -> str | None:
    """Our name for an original key, or None when no rule converts it."""
    for pattern, replacement in _RENAMES:
        renamed, count = re.subn("^" + pattern, replacement, key)
        if count:
            return renamed
    return None


def convert_original_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename and reshape an original `LWDETR` state dict into `RFDetrForObjectDetection` keys.

    The backbone's separate query/key/value projections are fused into `qkv`; the decoder self-attention's
    `in_proj` is split into the shared query/key projection and the value projection; the per-group two-stage
    modules (`enc_output.{g}`, ...) are stacked along a leading group dimension.

    Raises:
        CheckpointError: naming the original keys that no rule converts (or q/k/v projections missing partners).
    """
    converted, unconverted, _ = _convert(state_dict)
    if unconverted:
        raise CheckpointError(f"no rule converts the original checkpoint keys {_some(unconverted)}")
    return converted


def _convert(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], dict[str, str]]:
    """`convert_original_state_dict`, returning the original keys it could not convert instead of raising, and the
    original key each renamed key came from."""
    converted: dict[str, torch.Tensor] = {}
    unconverted: list[str] = []
    origins: dict[str, str] = {}
    grouped: dict[str, dict[int, torch.Tensor]] = defaultdict(dict)
    qkv_parts: dict[str, dict[str, tuple[str, torch.Tensor]]] = defaultdict(dict)
    for key, tensor in state_dict.items():
        if _IGNORED.search(key):
            continue
        match = _GROUPED.match(key)
        if match:
            module, group, rest = match.groups()
            grouped[f"model.{module}.{rest}"][int(group)] = tensor
            continue
        new_key = _rename(key)
        if new_key is None:
            unconverted.append(key)
            continue
        attention = re.match(r"(.+\.attention)\.attention\.(query|key|value)\.(weight|bias)$", new_key)
        if attention:
            prefix, part, kind = attention.groups()
            qkv_parts[f"{prefix}.qkv.{kind}"][part] = (key, tensor)
        elif new_key.endswith("self_attn.in_proj_weight") or new_key.endswith("self_attn.in_proj_bias"):
            prefix, kind = new_key.rsplit(".in_proj_", 1)
            width = tensor.shape[0] // 3
            converted[f"{prefix}.qk_proj.{kind}"] = tensor[: 2 * width]
            converted[f"{prefix}.v_proj.{kind}"] = tensor[2 * width :]
        else:
            converted[new_key] = tensor
            origins[new_key] = key
    for key, parts in qkv_parts.items():
        if set(parts) == {"query", "key", "value"}:
            converted[key] = torch.cat([parts[name][1] for name in ("query", "key", "value")], dim=0)
        else:  # the fused weight is then missing; name the partial projections as unusable
            unconverted += [
                f"{original} (no {'/'.join(sorted({'query', 'key', 'value'} - set(parts)))})"
                for original, _ in parts.values()
            ]
    for key, groups in grouped.items():
        converted[key] = torch.stack([groups[g] for g in sorted(groups)])
    return {key: tensor.contiguous() for key, tensor in converted.items()}, unconverted, origins


def _some(keys: list[str], limit: int = 10) -> str:
    """Up to `limit` keys, and how many more."""
    return f"{keys[:limit]}" + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_original_state_dict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load an original state dict into `model`, failing on any missing, unexpected or mis-shaped weight.

    Raises:
        CheckpointError: naming the missing weights (this package's names), the unexpected ones (the checkpoint's
            names) and the shape mismatches.
    """
    converted, unconverted, origins = _convert(state_dict)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = unconverted + sorted(origins.get(key, key) for key in set(converted) - set(expected))
    mismatched = [
        f"{key}: checkpoint {tuple(converted[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(converted))
        if converted[key].shape != expected[key].shape
    ]
    if missing or unexpected or mismatched:
        problems = {
            "missing from the checkpoint (this package's names)": missing,
            "unexpected in the checkpoint (its names)": unexpected,
            "mismatched shapes": mismatched,
        }
        raise CheckpointError(
            "The original checkpoint does not fit this configuration:\n"
            + ";\n".join(f"  {what} ({len(keys)}): {_some(keys)}" for what, keys in problems.items() if keys)
        )
    model.load_state_dict(converted, strict=True)


# ----------------------------------------------------------------------------------------------------------------------
# Whole checkpoints: `.pth` file -> RFDetrConfig + weights -> a Hugging Face folder
# ----------------------------------------------------------------------------------------------------------------------

#: `args` fields of the original -> RFDetrConfig fields.
_ARG_FIELDS = {
    "patch_size": "patch_size",
    "num_windows": "num_windows",
    "out_feature_indexes": "out_feature_indexes",
    "resolution": "resolution",
    "positional_encoding_size": "positional_encoding_size",
    "dec_layers": "decoder_layers",
    "hidden_dim": "d_model",
    "sa_nheads": "decoder_self_attention_heads",
    "ca_nheads": "decoder_cross_attention_heads",
    "dec_n_points": "decoder_n_points",
    "num_queries": "num_queries",
    "group_detr": "group_detr",
    "projector_scale": "projector_scale",
    "dim_feedforward": "decoder_ffn_dim",
    "mask_downsample_ratio": "mask_downsample_ratio",
    "num_select": "num_select",  # not a model field: the processor's num_top_queries (`from_config` reads it)
}
#: Architecture switches of the original that this port implements only in their default (True / False) state.
_REQUIRED_FLAGS = {"two_stage": True, "bbox_reparam": True, "lite_refpoint_refine": True, "layer_norm": True}
_UNSUPPORTED_FLAGS = {
    "use_grouppose_keypoints": "keypoint checkpoints",
    "dual_projector": "dual-projector checkpoints",
    "backbone_lora": "LoRA backbones (merge the adapters before converting)",
}
_ENCODER_WIDTH = {"dinov2_windowed_small": 384, "dinov2_windowed_base": 768}
_MODEL_NAME_VARIANT = {
    "RFDETRNano": "nano",
    "RFDETRSmall": "small",
    "RFDETRMedium": "medium",
    "RFDETRBase": "base",
    "RFDETRLarge": "large",
    "RFDETRLargeDeprecated": "large-legacy",
    "RFDETRSegPreview": "seg-preview",
    "RFDETRSegNano": "seg-nano",
    "RFDETRSegSmall": "seg-small",
    "RFDETRSegMedium": "seg-medium",
    "RFDETRSegLarge": "seg-large",
    "RFDETRSegXLarge": "seg-xlarge",
    "RFDETRSeg2XLarge": "seg-2xlarge",
}
#: The key every original Seg checkpoint has (the mask head's scalar bias).
_SEGMENTATION_KEY = "segmentation_head.bias"


class CheckpointError(ValueError):
    """An original checkpoint cannot be converted; the message says why and what to do."""


def load_checkpoint(path: str | Path, trust: bool = False) -> dict:
    """Read an original `.pth` checkpoint, or a Lightning `.ckpt` of the original's training (read as the original
    reads it, see `_from_lightning`).

    Uses `torch.load(weights_only=True)`, allowing the `argparse.Namespace` / `SimpleNamespace` that hold the
    training arguments of older checkpoints. Files that need arbitrary unpickling are refused unless `trust=True`
    (only for files you produced yourself: unpickling can run code).
    """
    import argparse
    import pickle
    import types
    import warnings

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace, types.SimpleNamespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as error:
        if not trust:
            raise CheckpointError(
                f"{str(path)!r} cannot be read with torch.load(weights_only=True): {str(error).splitlines()[0]}\n"
                "It is truncated, not a PyTorch checkpoint, or holds Python objects beyond tensors and namespaces. "
                "If you produced it yourself and trust it, pass --trust-checkpoint (full unpickling can run code)."
            ) from error
        warnings.warn(f"Loading {str(path)!r} with weights_only=False (full unpickling)", UserWarning, stacklevel=2)
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if (
        isinstance(checkpoint, dict)
        and "model" not in checkpoint
        and checkpoint
        and all(isinstance(v, torch.Tensor) for v in checkpoint.values())
    ):
        checkpoint = {"model": checkpoint}  # a bare state dict
    if isinstance(checkpoint, dict) and "model" not in checkpoint and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = _from_lightning(checkpoint, path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        found = list(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{str(path)!r} holds no model weights: neither a 'model' state dict (the original's .pth checkpoints) "
            f"nor a Lightning 'state_dict' (its .ckpt files: last.ckpt, checkpoint_<epoch>.ckpt); found {found}"
        )
    return checkpoint


#: What Lightning puts before the weights of rfdetr's `RFDETRModelModule` (its `model` attribute), and what
#: `torch.compile` adds after it.
_LIGHTNING_PREFIX, _COMPILE_PREFIX = "model.", "_orig_mod."


def _lightning_weights(state_dict: dict, prefix: str = _LIGHTNING_PREFIX) -> dict[str, torch.Tensor]:
    """The LWDETR weights of a Lightning state dict: keys under `prefix`, without it and without `_orig_mod.`."""
    weights = {}
    for key, value in state_dict.items():
        if isinstance(key, str) and key.startswith(prefix):
            key = key[len(prefix) :]
            weights[key[len(_COMPILE_PREFIX) :] if key.startswith(_COMPILE_PREFIX) else key] = value
    return weights


def _from_lightning(checkpoint: dict, path: Path) -> dict:
    """A Lightning `.ckpt` written by rfdetr's training (`last.ckpt`, `checkpoint_<epoch>.ckpt`, or
    `convert_legacy_checkpoint` output) in the layout of the original's `.pth` checkpoints, as rfdetr 1.11.2's
    `load_pretrain_weights` reads it: `model` is `state_dict`'s `model.*` weights without that prefix (nor
    `torch.compile`'s `_orig_mod.`), and `args` falls back to `hyper_parameters`.

    The original loads those regular weights and never the EMA ones of a `.ckpt`; they are kept as `ema_model` for
    `weights="ema"` when present: the EMA callback's `average_model_state_dict` (an `AveragedModel` of the module,
    `module.model.*`), else `legacy_ema_state_dict` (bare keys, from a converted `.pth`).
    """
    model = _lightning_weights(checkpoint["state_dict"])
    if not model:
        raise CheckpointError(
            f"{str(path)!r} is a PyTorch Lightning checkpoint ('state_dict' without 'model'), but none of its "
            f"{len(checkpoint['state_dict'])} weights has the 'model.' prefix of rfdetr's training module, e.g. "
            f"{list(checkpoint['state_dict'])[:5]}; it is not an rfdetr training checkpoint"
        )
    converted = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "optimizer_states", "lr_schedulers")}
    converted["model"] = model
    if "args" not in converted and isinstance(checkpoint.get("hyper_parameters"), dict):
        converted["args"] = checkpoint["hyper_parameters"]
    callbacks = checkpoint.get("callbacks") if isinstance(checkpoint.get("callbacks"), dict) else {}
    for state in callbacks.values():
        average = state.get("average_model_state_dict") if isinstance(state, dict) else None
        if isinstance(average, dict) and (ema := _lightning_weights(average, "module." + _LIGHTNING_PREFIX)):
            converted["ema_model"] = ema
            break
    else:
        if isinstance(checkpoint.get("legacy_ema_state_dict"), dict):
            converted["ema_model"] = checkpoint["legacy_ema_state_dict"]
    return converted


def _args(checkpoint: dict) -> dict:
    args = checkpoint.get("args")
    if args is None:
        return {}
    return dict(args) if isinstance(args, dict) else dict(vars(args))


#: `model_config` entries that describe the training host or run, not the architecture.
_NOT_ARCHITECTURE = ("device", "pretrain_weights", "model_name")


def _architecture(checkpoint: dict) -> dict:
    """The checkpoint's architecture settings, as `RFDETR.from_checkpoint` of rfdetr 1.11.2 restores them: the saved
    `model_config` (the `ModelConfig` dump that newer checkpoints carry, whose `args` is then the `TrainConfig`
    without resolution, patch size or query count) over the legacy `args` (the single namespace of older ones)."""
    architecture = _args(checkpoint)
    model_config = checkpoint.get("model_config")
    if isinstance(model_config, dict):
        architecture.update({k: v for k, v in model_config.items() if k not in _NOT_ARCHITECTURE})
    return architecture


def _setting_source(checkpoint: dict, key: str) -> str:
    """Where `_architecture` read `key` from, for messages: `model_config.KEY` (rfdetr 1.11.2's architecture dump,
    which wins) or `args.KEY` (the legacy namespace, or the TrainConfig of newer checkpoints)."""
    model_config = checkpoint.get("model_config")
    if isinstance(model_config, dict) and key in model_config and key not in _NOT_ARCHITECTURE:
        return f"model_config.{key}"
    return f"args.{key}"


def _settings_source(checkpoint: dict) -> str:
    """What the checkpoint's architecture settings were read from, for messages ("model_config settings (over args)",
    "args", ...)."""
    has_config, has_args = isinstance(checkpoint.get("model_config"), dict), checkpoint.get("args") is not None
    if has_config:
        return "model_config settings" + (" (over args)" if has_args else "")
    return "args" if has_args else "weights"


def _variant_from_weights(state_dict: dict[str, torch.Tensor]) -> str:
    """The named variant whose architecture fits the weights (mask head or not, patch size, widths, decoder depth,
    position grid)."""
    from .models.rfdetr.configuration_rfdetr import VARIANTS

    projection = state_dict[_BACKBONE_KEY + "embeddings.patch_embeddings.projection.weight"]
    grid = int(round((state_dict[_BACKBONE_KEY + "embeddings.position_embeddings"].shape[1] - 1) ** 0.5))
    layers = len({k.split(".")[3] for k in state_dict if k.startswith("transformer.decoder.layers.")})
    levels = len({k.split(".")[3] for k in state_dict if k.startswith("backbone.0.projector.stages.")})
    segmentation = _SEGMENTATION_KEY in state_dict
    candidates = [
        name
        for name, values in VARIANTS.items()
        if bool(values.get("segmentation_head")) == segmentation
        and values["patch_size"] == projection.shape[-1]
        and values["backbone_hidden_size"] == projection.shape[0]
        and values["decoder_layers"] == layers
        and len(values.get("projector_scale", ["P4"])) == levels
    ]
    exact = [name for name in candidates if VARIANTS[name]["positional_encoding_size"] == grid]
    if exact or candidates:
        return (exact or candidates)[0]
    kind = "segmentation" if segmentation else "detection"
    raise CheckpointError(
        f"no known {kind} variant has patch size {projection.shape[-1]}, width {projection.shape[0]} and {layers} "
        "decoder layers; pass --variant and check the checkpoint"
    )


_BACKBONE_KEY = "backbone.0.encoder.encoder."
#: Weights every original detection checkpoint has; the configuration is read from their shapes.
_REQUIRED_KEYS = (
    _BACKBONE_KEY + "embeddings.patch_embeddings.projection.weight",
    _BACKBONE_KEY + "embeddings.position_embeddings",
    "class_embed.bias",
)


def _require_original_keys(state_dict: dict[str, torch.Tensor]) -> None:
    """Raise `CheckpointError` naming the missing keys when `state_dict` is not an original `LWDETR` state dict."""
    missing = [key for key in _REQUIRED_KEYS if key not in state_dict]
    if not missing:
        return
    found = list(state_dict)
    hint = ""
    if any(key.startswith(("model.backbone.", "model.decoder.")) for key in found):
        hint = (
            "; its keys are those of a Hugging Face model (this package's or transformers' rf_detr), not of the "
            "original package: load such weights from a save_pretrained folder"
        )
    raise CheckpointError(
        f"not an original rfdetr (LWDETR) state dict: missing {missing}; it has {len(found)} keys, e.g. "
        f"{found[:5]}{hint}"
    )


#: Config fields that tell the named variants apart and that training a variant does not change (resolution, query
#: count and decoder depth may be set for a run, so they are not compared).
_VARIANT_FIELDS = ("patch_size", "backbone_hidden_size", "d_model")


def _check_forced_variant(forced: str, checkpoint: dict, args: dict, overrides: dict) -> None:
    """Raise CheckpointError when the checkpoint's recorded architecture (its `model_name`, or the architecture
    fields of its args) contradicts the variant asked for with `--variant`: the args would win and the folder would
    carry a variant name that is not its architecture."""
    try:
        expected = RFDetrConfig.from_variant(forced)
    except ValueError as error:
        raise CheckpointError(str(error)) from error
    model_name = checkpoint.get("model_name")
    recorded = _MODEL_NAME_VARIANT.get(model_name) if isinstance(model_name, str) else None
    if recorded is not None and recorded != expected.variant:
        raise CheckpointError(
            f"--variant {forced!r} contradicts the checkpoint, which is {model_name} ({recorded!r}); drop --variant "
            f"or pass --variant {recorded}"
        )
    differing = [
        f"{field}={overrides[field]} (variant {expected.variant!r} has {getattr(expected, field)})"
        for field in _VARIANT_FIELDS
        if field in overrides and overrides[field] != getattr(expected, field)
    ]
    if differing:
        if args.get("encoder"):
            differing.insert(0, f"{_setting_source(checkpoint, 'encoder')}={args['encoder']}")
        raise CheckpointError(
            f"--variant {forced!r} contradicts the checkpoint's recorded architecture: {', '.join(differing)}; "
            "drop --variant (the checkpoint's own architecture is used)"
        )


def config_from_checkpoint(checkpoint: dict, variant: str | None = None, weights: str = "model") -> RFDetrConfig:
    """The RFDetrConfig of an original checkpoint: its saved architecture (`model_config`, else `args`) over the
    named variant's defaults, the class count from the weights, and the class names when the checkpoint has them (else COCO's for 91 slots)."""
    from .models.rfdetr.coco_classes import COCO_ID2LABEL

    args, state_dict = _architecture(checkpoint), checkpoint[weights]
    _require_original_keys(state_dict)
    for flag, required in _REQUIRED_FLAGS.items():
        if flag in args and bool(args[flag]) != required:
            raise CheckpointError(
                f"checkpoint {_setting_source(checkpoint, flag)}={args[flag]}: only {flag}={required} is supported"
            )
    for flag, what in _UNSUPPORTED_FLAGS.items():
        if args.get(flag):
            raise CheckpointError(
                f"checkpoint {_setting_source(checkpoint, flag)}={args[flag]}: {what} are not supported by this "
                "converter yet"
            )
    forced = variant
    variant = (
        variant or _MODEL_NAME_VARIANT.get(checkpoint.get("model_name") or "") or _variant_from_weights(state_dict)
    )
    overrides = {ours: args[theirs] for theirs, ours in _ARG_FIELDS.items() if args.get(theirs) is not None}
    overrides["segmentation_head"] = _SEGMENTATION_KEY in state_dict  # the weights decide, whatever the variant
    if args.get("encoder") in _ENCODER_WIDTH:
        overrides["backbone_hidden_size"] = _ENCODER_WIDTH[args["encoder"]]
        overrides["backbone_num_attention_heads"] = _ENCODER_WIDTH[args["encoder"]] // 64
    if forced:
        _check_forced_variant(forced, checkpoint, args, overrides)
    grid = int(round((state_dict[_BACKBONE_KEY + "embeddings.position_embeddings"].shape[1] - 1) ** 0.5))
    overrides.setdefault("positional_encoding_size", grid)
    num_slots = state_dict["class_embed.bias"].shape[0]
    names = [n for n in (args.get("class_names") or checkpoint.get("class_names") or []) if isinstance(n, str)]
    if names:
        id2label = {i: names[i] if i < len(names) else "N/A" for i in range(num_slots)}
    elif num_slots == len(COCO_ID2LABEL):
        id2label = dict(COCO_ID2LABEL)
    else:
        id2label = {i: f"class_{i}" for i in range(num_slots)}
    overrides["id2label"] = id2label
    overrides["label2id"] = {}
    for index, name in id2label.items():
        overrides["label2id"].setdefault(name, index)
    try:
        return RFDetrConfig.from_variant(variant, **overrides)
    except ValueError as error:
        raise CheckpointError(
            f"the checkpoint's {_settings_source(checkpoint)} do not form a valid configuration of variant "
            f"{variant!r}: {error}"
        ) from error


def verify_against_original(
    model: torch.nn.Module, checkpoint: dict, config: RFDetrConfig, weights: str = "model", atol: float = 1e-4
) -> dict[str, float]:
    """Run the original `rfdetr` model with the same weights next to ours and raise if they disagree.

    Needs the original package (`pip install rfdetr==1.11.2`); nothing is downloaded. Compares logits and boxes (and
    for segmentation models the mask logits) on a batch of two images (the bundled demo picture and a flipped copy)
    preprocessed by our image processor.
    """
    import logging
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("rf-detr").setLevel(logging.ERROR)
    try:
        from rfdetr import config as reference_configs
        from rfdetr.models import build_model_from_config
    except ImportError as error:
        raise CheckpointError("--verify needs the original package: pip install rfdetr==1.11.2") from error

    from .models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor

    class_name = {v: k for k, v in _MODEL_NAME_VARIANT.items()}[config.variant] + "Config"
    reference_class = getattr(reference_configs, class_name)
    # The reference is built from what the checkpoint says it is (its model_config / args), not from our config, so
    # that a setting the conversion lost shows up as a difference; our config fills only what the checkpoint omits.
    options = {
        "resolution": config.resolution,
        "positional_encoding_size": config.positional_encoding_size,
        "num_queries": config.num_queries,
        "group_detr": config.group_detr,
    }
    saved = _architecture(checkpoint)
    for name in (*_ARG_FIELDS, "encoder", *_REQUIRED_FLAGS):
        if name in reference_class.model_fields and name != "num_select" and saved.get(name) is not None:
            options[name] = saved[name]
    reference_config = reference_class(device="cpu", num_classes=config.num_labels - 1, **options)
    reference = build_model_from_config(reference_config).eval()
    reference.load_state_dict(checkpoint[weights], strict=True)
    image = _verification_image()
    images = [image, image.transpose(0)]
    pixel_values = RFDetrImageProcessor.from_config(config)(images, return_tensors="pt")["pixel_values"]
    side = int(reference_config.resolution)
    reference_processor = RFDetrImageProcessor.from_config(config, size={"height": side, "width": side})
    reference_pixel_values = reference_processor(images, return_tensors="pt")["pixel_values"]
    if reference_pixel_values.shape != pixel_values.shape:
        raise CheckpointError(
            f"the converted model takes {tuple(pixel_values.shape[-2:])} inputs (resolution {config.resolution}) but "
            f"the checkpoint was trained at resolution {side}"
        )
    model.eval()
    with torch.no_grad():
        expected, actual = reference(reference_pixel_values), model(pixel_values)
    if expected["pred_logits"].shape != actual.logits.shape:
        raise CheckpointError(
            f"converted model gives logits {tuple(actual.logits.shape)}, the original "
            f"{tuple(expected['pred_logits'].shape)}"
        )
    deltas = {
        "logits": (expected["pred_logits"] - actual.logits).abs().max().item(),
        "pred_boxes": (expected["pred_boxes"] - actual.pred_boxes).abs().max().item(),
    }
    if getattr(config, "segmentation_head", False):
        deltas["pred_masks"] = (expected["pred_masks"] - actual.pred_masks).abs().max().item()
    if max(deltas.values()) > atol:
        raise CheckpointError(f"converted model disagrees with the original: max |delta| {deltas} > {atol}")
    return deltas


def _verification_image():
    from PIL import Image

    asset = Path(__file__).parent / "assets" / "demo.jpg"
    if asset.exists():
        return Image.open(asset).convert("RGB")
    generator = torch.Generator().manual_seed(0)
    return Image.fromarray((torch.rand(480, 640, 3, generator=generator) * 255).byte().numpy())


def convert_checkpoint(
    checkpoint_path: str | Path,
    output_dir: str | Path,
    variant: str | None = None,
    weights: str = "model",
    verify: bool = False,
    push_to_hub: str | None = None,
    trust: bool = False,
) -> Path:
    """Convert an original `rfdetr` `.pth` checkpoint (or a `.ckpt` of its training) into a Hugging Face folder.

    Writes `config.json`, `model.safetensors`, `preprocessor_config.json`, the remote-code files and a model card
    (`README.md`) to `output_dir`; with `verify`, first checks the outputs against the original package; with
    `push_to_hub`, uploads the folder to that Hub repository.

    Args:
        weights: `"model"` (the regular weights) or `"ema"` (the EMA weights of training checkpoints).
    """
    from .model_card import render_model_card
    from .models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor
    from .models.rfdetr.modeling_rfdetr import model_class_for

    checkpoint = load_checkpoint(checkpoint_path, trust=trust)
    key = {"model": "model", "ema": "ema_model"}.get(weights)
    if key is None:
        raise CheckpointError(f"weights={weights!r}; expected 'model' or 'ema'")
    if not isinstance(checkpoint.get(key), dict):
        raise CheckpointError(f"{str(checkpoint_path)!r} has no {key!r} weights; entries: {sorted(checkpoint)}")
    try:
        config = config_from_checkpoint(checkpoint, variant, weights=key)
    except CheckpointError as error:
        raise CheckpointError(f"{str(checkpoint_path)!r}: {error}") from error
    model = model_class_for(config)(config).eval()
    try:
        load_original_state_dict(model, checkpoint[key])
    except ValueError as error:
        raise CheckpointError(f"{str(checkpoint_path)!r} does not match variant {config.variant!r}: {error}") from error
    if verify:
        verify_against_original(model, checkpoint, config, weights=key)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    RFDetrImageProcessor.from_config(config).save_pretrained(output_dir)
    source = f"converted from the original rfdetr checkpoint `{Path(checkpoint_path).name}` ({weights} weights)"
    card = render_model_card(
        config, sum(p.numel() for p in model.parameters()), repo_id=push_to_hub or output_dir.name, source=source
    )
    (output_dir / "README.md").write_text(card, encoding="utf-8")
    if push_to_hub:
        from .hub import push_to_hub as upload

        upload(output_dir, push_to_hub, source=source, commit_message="Convert RF-DETR checkpoint")
    return output_dir


__all__ = [
    "CheckpointError",
    "config_from_checkpoint",
    "convert_checkpoint",
    "convert_original_state_dict",
    "load_checkpoint",
    "load_original_state_dict",
    "verify_against_original",
]
