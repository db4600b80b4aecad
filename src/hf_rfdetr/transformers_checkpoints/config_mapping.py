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
"""Stage 1 of converting transformers' own RF-DETR checkpoints: configuration mapping.

In: transformers' `RfDetrConfig` (model_type "rf_detr", with its `RfDetrDinov2Config` backbone) or its `to_dict()`.
Out: an `RFDetrConfig` of this package (`config_from_transformers`), or a `ValueError` naming the field this port
cannot express. The weights (stage 2, `weights.py`) are then loaded into a model built from this configuration.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from ..models.rfdetr.configuration_rfdetr import VARIANTS, RFDetrConfig

#: transformers' LayerNorms whose epsilon is fixed in its code (not read from the config).
TRANSFORMERS_DECODER_LAYER_NORM_EPS = 1e-5  # nn.LayerNorm default: decoder layers, decoder norm, two-stage norms
TRANSFORMERS_PROJECTOR_OUTPUT_EPS = 1e-6  # RfDetrLayerNorm default: the projector's output norm
#: The original `rfdetr` package's epsilon of all projector LayerNorms: what `convert_transformers_checkpoint` (so also
#: the on-load conversion of `RFDetrForObjectDetection.from_pretrained` / `pretrained` and
#: `conversion/convert_transformers_to_hf.py`) uses by default, whatever the checkpoint's `layer_norm_eps`.
ORIGINAL_PROJECTOR_EPS = 1e-6

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


__all__ = [
    "ORIGINAL_PROJECTOR_EPS",
    "TRANSFORMERS_DECODER_LAYER_NORM_EPS",
    "TRANSFORMERS_PROJECTOR_OUTPUT_EPS",
    "config_from_transformers",
]
