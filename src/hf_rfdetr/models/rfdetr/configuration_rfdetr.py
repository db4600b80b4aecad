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
"""RF-DETR configuration and the named variants of the original `rfdetr` package (1.11.2)."""

from __future__ import annotations

import copy
import types
import typing
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig

from .coco_classes import COCO_ID2LABEL

# Every detection variant of `rfdetr/config.py`, field for field (see `RFDetrConfig.from_variant`).
_SMALL_BACKBONE = {"backbone_hidden_size": 384, "backbone_num_attention_heads": 6}
_BASE_BACKBONE = {"backbone_hidden_size": 768, "backbone_num_attention_heads": 12}
_PATCH16 = {"patch_size": 16, "num_windows": 2, "out_feature_indexes": [3, 6, 9, 12]}
_PATCH14 = {"patch_size": 14, "num_windows": 4, "out_feature_indexes": [2, 5, 8, 11]}

VARIANTS: dict[str, dict[str, Any]] = {
    "nano": {**_SMALL_BACKBONE, **_PATCH16, "resolution": 384, "positional_encoding_size": 24, "decoder_layers": 2},
    "small": {**_SMALL_BACKBONE, **_PATCH16, "resolution": 512, "positional_encoding_size": 32, "decoder_layers": 3},
    "medium": {**_SMALL_BACKBONE, **_PATCH16, "resolution": 576, "positional_encoding_size": 36, "decoder_layers": 4},
    "large": {**_SMALL_BACKBONE, **_PATCH16, "resolution": 704, "positional_encoding_size": 44, "decoder_layers": 4},
    "base": {**_SMALL_BACKBONE, **_PATCH14, "resolution": 560, "positional_encoding_size": 37, "decoder_layers": 3},
    "large-legacy": {
        **_BASE_BACKBONE,
        **_PATCH14,
        "resolution": 560,
        "positional_encoding_size": 37,
        "decoder_layers": 3,
        "d_model": 384,
        "decoder_self_attention_heads": 12,
        "decoder_cross_attention_heads": 24,
        "decoder_n_points": 4,
        "projector_scale": ["P3", "P5"],
    },
    **{
        f"seg-{name}": {
            **_SMALL_BACKBONE,
            "patch_size": 12,
            "num_windows": windows,
            "out_feature_indexes": [3, 6, 9, 12],
            "resolution": resolution,
            "positional_encoding_size": resolution // 12,
            "decoder_layers": layers,
            "num_queries": queries,
            "segmentation_head": True,
        }
        for name, resolution, windows, layers, queries in (
            ("preview", 432, 2, 4, 200),
            ("nano", 312, 1, 4, 100),
            ("small", 384, 2, 4, 100),
            ("medium", 432, 2, 5, 200),
            ("large", 504, 2, 5, 200),
            ("xlarge", 624, 2, 6, 300),
            ("2xlarge", 768, 2, 6, 300),
        )
    },
}
#: Other spellings users bring from the original package.
VARIANT_ALIASES = {
    "rfdetrnano": "nano",
    "rfdetrsmall": "small",
    "rfdetrmedium": "medium",
    "rfdetrlarge": "large",
    "large-2026": "large",
    "rfdetrbase": "base",
    "rfdetrlargedeprecated": "large-legacy",
    "large-deprecated": "large-legacy",
    "legacy-large": "large-legacy",
    **{f"rfdetrseg{name}": f"seg-{name}" for name in ("preview", "nano", "small", "medium", "large", "xlarge")},
    "rfdetrseg2xlarge": "seg-2xlarge",
    "seg-xxlarge": "seg-2xlarge",
    "rfdetrsegxxlarge": "seg-2xlarge",
}
#: Variants whose position-embedding grid is DINOv2's pretrained 37x37, kept when the resolution changes.
_FIXED_POSITIONAL_ENCODING = {"base", "large-legacy"}
_PROJECTOR_LEVELS = ("P3", "P4", "P5")


class RFDetrConfig(PretrainedConfig):
    r"""Configuration of an RF-DETR detector ([`RFDetrForObjectDetection`]) or, with `segmentation_head`, instance
    segmenter.

    The defaults are the Nano variant; `RFDetrConfig.from_variant(name)` gives every detection and segmentation
    variant of the original `rfdetr` package. Logits have `num_labels` slots (`len(id2label)`); without labels the config takes the
    91 COCO-id slots of the original COCO checkpoints.

    Args:
        variant (`str`, *optional*): name of the variant the config was made from (informational).
        backbone_hidden_size, backbone_num_hidden_layers, backbone_num_attention_heads, backbone_mlp_ratio,
        backbone_hidden_act, backbone_layer_norm_eps, backbone_layerscale_value: the DINOv2 encoder.
        drop_path_rate (`float`): stochastic depth in the encoder blocks.
        num_channels (`int`): input channels.
        patch_size (`int`): ViT patch size.
        num_windows (`int`): windows per side in the windowed-attention blocks (1 disables windowing).
        positional_encoding_size (`int`): side of the learned position-embedding grid, interpolated to the input.
        out_feature_indexes (`list[int]`): 1-based encoder stages tapped for the projector; the blocks at these
            0-based positions (and those after the last tap) use global attention, the others windowed attention.
        resolution (`int`): the square training / inference resolution; must be divisible by
            `patch_size * num_windows`.
        projector_scale (`list[str]`): pyramid levels built by the projector, a sorted subset of P3, P4, P5.
        projector_num_blocks (`int`): bottlenecks in each C2f block.
        projector_layer_norm_eps (`float`): epsilon of the channel LayerNorms of the projector.
        d_model (`int`): decoder width.
        decoder_layers, decoder_self_attention_heads, decoder_cross_attention_heads, decoder_n_points,
        decoder_ffn_dim, decoder_activation_function: the LW-DETR decoder.
        dropout (`float`): dropout in the decoder (0 in the original).
        layer_norm_eps (`float`): epsilon of the decoder and two-stage LayerNorms.
        num_queries (`int`): object queries per group.
        group_detr (`int`): Group DETR query groups used in training (one group at inference).
        init_std (`float`): standard deviation of the truncated-normal initialisation.
        initializer_bias_prior_prob (`float`): prior probability that sets the classification bias.
        auxiliary_loss (`bool`): also supervise every earlier decoder layer and the two-stage proposals.
        class_cost, bbox_cost, giou_cost (`float`): weights of the focal, L1 and GIoU matching costs.
        class_loss_coefficient, bbox_loss_coefficient, giou_loss_coefficient (`float`): weights of the IA-BCE,
            L1 and GIoU losses.
        focal_alpha (`float`): alpha of the focal matching cost and exponent of the IA-BCE quality target.
        segmentation_head (`bool`): whether the model predicts instance masks (the RF-DETR Seg variants).
        mask_downsample_ratio (`int`): mask logits are predicted at the input size divided by this.
        mask_point_sample_ratio (`int`): the mask cost and losses sample (h * w) / this points of each mask.
        mask_ce_cost, mask_dice_cost (`float`): weights of the sigmoid cross-entropy and dice matching costs.
        mask_ce_loss_coefficient, mask_dice_loss_coefficient (`float`): weights of the mask losses.
    """

    model_type = "rfdetr"

    def __init__(
        self,
        variant: str | None = None,
        backbone_hidden_size: int = 384,
        backbone_num_hidden_layers: int = 12,
        backbone_num_attention_heads: int = 6,
        backbone_mlp_ratio: int = 4,
        backbone_hidden_act: str = "gelu",
        backbone_layer_norm_eps: float = 1e-6,
        backbone_layerscale_value: float = 1.0,
        drop_path_rate: float = 0.0,
        num_channels: int = 3,
        patch_size: int = 16,
        num_windows: int = 2,
        positional_encoding_size: int = 24,
        out_feature_indexes: list[int] | tuple[int, ...] = (3, 6, 9, 12),
        resolution: int = 384,
        projector_scale: list[str] | tuple[str, ...] = ("P4",),
        projector_num_blocks: int = 3,
        projector_layer_norm_eps: float = 1e-6,
        d_model: int = 256,
        decoder_layers: int = 2,
        decoder_self_attention_heads: int = 8,
        decoder_cross_attention_heads: int = 16,
        decoder_n_points: int = 2,
        decoder_ffn_dim: int = 2048,
        decoder_activation_function: str = "relu",
        dropout: float = 0.0,
        layer_norm_eps: float = 1e-5,
        num_queries: int = 300,
        group_detr: int = 13,
        init_std: float = 0.02,
        initializer_bias_prior_prob: float = 0.01,
        auxiliary_loss: bool = True,
        class_cost: float = 2.0,
        bbox_cost: float = 5.0,
        giou_cost: float = 2.0,
        class_loss_coefficient: float = 1.0,
        bbox_loss_coefficient: float = 5.0,
        giou_loss_coefficient: float = 2.0,
        focal_alpha: float = 0.25,
        segmentation_head: bool = False,
        mask_downsample_ratio: int = 4,
        mask_point_sample_ratio: int = 16,
        mask_ce_cost: float = 5.0,
        mask_dice_cost: float = 5.0,
        mask_ce_loss_coefficient: float = 5.0,
        mask_dice_loss_coefficient: float = 5.0,
        **kwargs: Any,
    ) -> None:
        if "id2label" not in kwargs and "num_labels" not in kwargs:
            kwargs["id2label"] = dict(COCO_ID2LABEL)
        try:
            _check_id2label(kwargs.get("id2label"))
        except ValueError as error:
            raise RFDetrConfigError(str(error)) from None
        self.variant = variant
        self.backbone_hidden_size = backbone_hidden_size
        self.backbone_num_hidden_layers = backbone_num_hidden_layers
        self.backbone_num_attention_heads = backbone_num_attention_heads
        self.backbone_mlp_ratio = backbone_mlp_ratio
        self.backbone_hidden_act = backbone_hidden_act
        self.backbone_layer_norm_eps = backbone_layer_norm_eps
        self.backbone_layerscale_value = backbone_layerscale_value
        self.drop_path_rate = drop_path_rate
        self.num_channels = num_channels
        self.patch_size = patch_size
        self.num_windows = num_windows
        self.positional_encoding_size = positional_encoding_size
        self.out_feature_indexes = _as_list(out_feature_indexes)
        self.resolution = resolution
        self.projector_scale = _as_list(projector_scale)
        self.projector_num_blocks = projector_num_blocks
        self.projector_layer_norm_eps = projector_layer_norm_eps
        self.d_model = d_model
        self.decoder_layers = decoder_layers
        self.decoder_self_attention_heads = decoder_self_attention_heads
        self.decoder_cross_attention_heads = decoder_cross_attention_heads
        self.decoder_n_points = decoder_n_points
        self.decoder_ffn_dim = decoder_ffn_dim
        self.decoder_activation_function = decoder_activation_function
        self.dropout = dropout
        self.layer_norm_eps = layer_norm_eps
        self.num_queries = num_queries
        self.group_detr = group_detr
        self.init_std = init_std
        self.initializer_bias_prior_prob = initializer_bias_prior_prob
        self.auxiliary_loss = auxiliary_loss
        self.class_cost = class_cost
        self.bbox_cost = bbox_cost
        self.giou_cost = giou_cost
        self.class_loss_coefficient = class_loss_coefficient
        self.bbox_loss_coefficient = bbox_loss_coefficient
        self.giou_loss_coefficient = giou_loss_coefficient
        self.focal_alpha = focal_alpha
        self.segmentation_head = segmentation_head
        self.mask_downsample_ratio = mask_downsample_ratio
        self.mask_point_sample_ratio = mask_point_sample_ratio
        self.mask_ce_cost = mask_ce_cost
        self.mask_dice_cost = mask_dice_cost
        self.mask_ce_loss_coefficient = mask_ce_loss_coefficient
        self.mask_dice_loss_coefficient = mask_dice_loss_coefficient
        super().__init__(**kwargs)
        if not getattr(self, "label2id", None):  # transformers 5 leaves it unset when only id2label is given
            self.label2id = {label: index for index, label in self.id2label.items()}
        self.check_types()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> RFDetrConfig:
        """`PretrainedConfig.from_pretrained`; an invalid value raises `RFDetrConfigError` naming the file."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except RFDetrConfigError as error:
            raise error.located(pretrained_model_name_or_path) from None

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> RFDetrConfig:
        """`PretrainedConfig.from_dict`; `AutoConfig.from_pretrained` passes the folder or Hub id it read as
        `name_or_path`, which an `RFDetrConfigError` then names. transformers' own `rf_detr` configuration (another
        layout of other fields) is refused with an `RFDetrConfigError` saying how to convert it."""
        if config_dict.get("model_type") == "rf_detr":
            error = RFDetrConfigError(
                "this is transformers' own rf_detr configuration (model_type 'rf_detr'), not this package's "
                f"'{cls.model_type}': convert the checkpoint first, with hf_rfdetr.pretrained(FOLDER_OR_REPO) (a "
                "cached folder of this package, for any from_pretrained) or RFDetrForObjectDetection.from_pretrained"
                "(FOLDER_OR_REPO), which converts on load"
            )
            raise error.located(kwargs.get("name_or_path")) from None
        try:
            return super().from_dict(config_dict, **kwargs)
        except RFDetrConfigError as error:
            raise error.located(kwargs.get("name_or_path")) from None

    def to_diff_dict(self) -> dict[str, Any]:
        """`PretrainedConfig.to_diff_dict` (what `save_pretrained` writes), always with `id2label` and `label2id`.

        transformers 5 leaves them out when they equal its own default labels (`{0: "LABEL_0", 1: "LABEL_1"}`), but
        a config without labels is read back with this class's default, COCO's 91: a 2-label model saved so could not
        be loaded again (class heads of 2 rows in the weights, 91 in the model)."""
        diff = super().to_diff_dict()
        full = self.to_dict()
        return diff | {key: full[key] for key in ("id2label", "label2id")}

    # transformers reads these generic names (pipelines, Trainer, Optimum).
    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def num_attention_heads(self) -> int:
        return self.decoder_self_attention_heads

    @property
    def num_feature_levels(self) -> int:
        return len(self.projector_scale)

    @property
    def block_size(self) -> int:
        """Input height and width must be multiples of this (`patch_size * num_windows`)."""
        return self.patch_size * self.num_windows

    def check_types(self) -> None:
        """Raise `RFDetrConfigError` naming the field when a value has the wrong type (run on construction, so every
        loader refuses a `config.json` with, e.g., a string `layer_norm_eps`)."""
        try:
            for name, expected in _FIELD_TYPES.items():
                _check_type(name, getattr(self, name), expected)
        except ValueError as error:
            raise RFDetrConfigError(str(error)) from None

    def validate(self) -> None:
        """Raise `RFDetrConfigError` naming the field when the configuration cannot describe a working model.

        Types are checked on construction; value ranges and consistency here, which every model built from the
        configuration runs first (and `from_variant`). As with transformers' own configurations, a configuration
        object may hold values no model accepts (e.g. `RFDetrConfig(d_model=0)`) until a model is built from it."""
        self.check_types()
        try:
            self._check_values()
        except ValueError as error:
            raise RFDetrConfigError(str(error)) from None

    def _check_values(self) -> None:
        for name in ("backbone_layer_norm_eps", "projector_layer_norm_eps", "layer_norm_eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be positive")
        if self.variant is not None and self.variant not in VARIANTS:
            raise ValueError(f"variant={self.variant!r} is unknown; expected one of {sorted(VARIANTS)} or None")
        for name in (
            "backbone_hidden_size",
            "backbone_num_hidden_layers",
            "backbone_num_attention_heads",
            "num_channels",
            "patch_size",
            "num_windows",
            "positional_encoding_size",
            "resolution",
            "projector_num_blocks",
            "d_model",
            "decoder_layers",
            "decoder_self_attention_heads",
            "decoder_cross_attention_heads",
            "decoder_n_points",
            "decoder_ffn_dim",
            "num_queries",
            "group_detr",
            "mask_downsample_ratio",
            "mask_point_sample_ratio",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if self.resolution % self.block_size:
            raise ValueError(
                f"resolution={self.resolution} must be divisible by patch_size * num_windows = "
                f"{self.patch_size} * {self.num_windows} = {self.block_size}; allowed values are multiples of "
                f"{self.block_size}, e.g. {max(1, self.resolution // self.block_size) * self.block_size}"
            )
        indexes = self.out_feature_indexes
        if (
            not indexes
            or sorted(set(indexes)) != indexes
            or indexes[0] < 1
            or indexes[-1] > self.backbone_num_hidden_layers
        ):
            raise ValueError(
                f"out_feature_indexes={indexes} must be a non-empty, strictly increasing list of encoder stages in "
                f"1..{self.backbone_num_hidden_layers} (backbone_num_hidden_layers)"
            )
        if not self.projector_scale or any(level not in _PROJECTOR_LEVELS for level in self.projector_scale):
            raise ValueError(
                f"projector_scale={self.projector_scale} must be a non-empty subset of {_PROJECTOR_LEVELS}"
            )
        if sorted(set(self.projector_scale)) != self.projector_scale:
            raise ValueError(f"projector_scale={self.projector_scale} must be sorted ascending without repeats")
        for size, heads, name in (
            (self.backbone_hidden_size, self.backbone_num_attention_heads, "backbone_num_attention_heads"),
            (self.d_model, self.decoder_self_attention_heads, "decoder_self_attention_heads"),
            (self.d_model, self.decoder_cross_attention_heads, "decoder_cross_attention_heads"),
        ):
            if size % heads:
                raise ValueError(f"{name}={heads} must divide the width it splits ({size})")
        if self.decoder_activation_function not in ("relu", "gelu", "silu"):
            raise ValueError(
                f"decoder_activation_function={self.decoder_activation_function!r}; allowed: 'relu', 'gelu', 'silu'"
            )
        for name in (
            "class_cost",
            "bbox_cost",
            "giou_cost",
            "mask_ce_cost",
            "mask_dice_cost",
            "class_loss_coefficient",
            "bbox_loss_coefficient",
            "giou_loss_coefficient",
            "mask_ce_loss_coefficient",
            "mask_dice_loss_coefficient",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be a non-negative number")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"dropout={self.dropout} and drop_path_rate={self.drop_path_rate} must be in [0, 1)")

    @classmethod
    def variant_names(cls) -> list[str]:
        return sorted(VARIANTS)

    @classmethod
    def from_variant(cls, name: str, **overrides: Any) -> RFDetrConfig:
        """The configuration of a named variant of the original package, with optional overrides.

        Args:
            name: one of `nano`, `small`, `medium`, `base`, `large` (the 2026 704-px model), `large-legacy` (the
                DINOv2-base Large), the segmentation variants `seg-preview`, `seg-nano`, `seg-small`, `seg-medium`,
                `seg-large`, `seg-xlarge`, `seg-2xlarge`, or an original class name such as `RFDETRBase` or
                `RFDETRSegNano`.
            overrides: any config field. A new `resolution` rescales `positional_encoding_size` to
                `resolution // patch_size`, as the original does, except for `base` and `large-legacy`, whose
                37x37 grid is DINOv2's.
        """
        key = name.lower().replace("_", "-")
        key = VARIANT_ALIASES.get(key, VARIANT_ALIASES.get(key.replace("-", ""), key))
        if key not in VARIANTS:
            raise ValueError(f"Unknown RF-DETR variant {name!r}; expected one of {sorted(VARIANTS)}")
        values = copy.deepcopy(VARIANTS[key])
        if (
            "resolution" in overrides
            and "positional_encoding_size" not in overrides
            and key not in _FIXED_POSITIONAL_ENCODING
        ):
            values["positional_encoding_size"] = overrides["resolution"] // overrides.get(
                "patch_size", values["patch_size"]
            )
        values.update(overrides)
        config = cls(variant=key, **values)
        config.validate()
        return config


class RFDetrConfigError(ValueError):
    """A configuration value that cannot describe a working model. The message names the field, its value and what is
    expected, and, when the configuration was read from a folder or the Hub, the `config.json` it came from."""

    def __init__(self, problem: str, source: str | None = None) -> None:
        self.problem, self.source = problem, source
        super().__init__(f"{_config_file(source)}: {problem}" if source else problem)

    def located(self, source: str | Path | None) -> RFDetrConfigError:
        """This error, naming the config file of `source` (a folder or Hub id) unless it already names one."""
        return self if self.source is not None or not source else RFDetrConfigError(self.problem, str(source))


def _config_file(source: str) -> str:
    """The config file read for `source` (a folder, a JSON file or a Hub id), as the user should look for it."""
    path = Path(source)
    if path.is_dir():
        return str(path / "config.json")
    return source if path.is_file() else f"config.json of {source!r}"


def _as_list(value: Any) -> Any:
    """Lists and tuples as a list; anything else unchanged (for `validate` to name)."""
    return list(value) if isinstance(value, (list, tuple)) else value


def _matches(value: Any, expected: Any) -> bool:
    """Whether `value` (as read from JSON or passed in Python) fits the type annotation `expected`. An int fits
    `float`; a bool fits only `bool`."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(expected))
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_matches(v, typing.get_args(expected)[0]) for v in value)
    if expected is type(None):
        return value is None
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)


def _type_name(expected: Any) -> str:
    return expected.__name__ if isinstance(expected, type) else str(expected).replace("NoneType", "None")


def _check_type(name: str, value: Any, expected: Any) -> None:
    if not _matches(value, expected):
        raise ValueError(f"{name}={value!r} is of type {type(value).__name__}; expected {_type_name(expected)}")


def _check_id2label(id2label: Any) -> None:
    """`id2label` must map the label indexes 0..K-1 (ints, or their decimal strings as in JSON) to names."""
    if id2label is None:
        return
    if not isinstance(id2label, dict) or not id2label:
        raise ValueError(f"id2label={id2label!r} must be a non-empty mapping of label index -> name")
    keys = [key for key in id2label if not isinstance(key, bool)]
    indexes = sorted(
        int(key) for key in keys if isinstance(key, int) or (isinstance(key, str) and key.isascii() and key.isdigit())
    )
    if len(indexes) != len(id2label) or indexes != list(range(len(id2label))):
        raise ValueError(
            f"id2label keys {list(id2label)[:12]}{' ...' if len(id2label) > 12 else ''} must be the label indexes "
            f"0..{len(id2label) - 1} (one per class-logit slot), each once"
        )
    names = [name for name in id2label.values() if not isinstance(name, str)]
    if names:
        raise ValueError(f"id2label values must be class names (strings); got {names[:5]!r}")


#: Every field of `RFDetrConfig.__init__` -> its annotation, the type `validate` requires of it.
_FIELD_TYPES: dict[str, Any] = {
    name: hint
    for name, hint in typing.get_type_hints(RFDetrConfig.__init__).items()
    if name not in ("return", "kwargs")
}

__all__ = ["RFDetrConfig", "RFDetrConfigError", "VARIANTS"]
