"""RFDetrConfig: the original's variants, validation errors, serialisation."""

from __future__ import annotations

import pytest

from hf_rfdetr import COCO_ID2LABEL, RFDetrConfig, RFDetrForObjectDetection

from .conftest import REFERENCE_CONFIG_CLASSES


@pytest.mark.reference
@pytest.mark.parametrize("variant", list(REFERENCE_CONFIG_CLASSES))
def test_variant_values_equal_the_original(variant: str) -> None:
    from rfdetr import config as reference_configs
    from rfdetr.models._defaults import MODEL_DEFAULTS

    reference = getattr(reference_configs, REFERENCE_CONFIG_CLASSES[variant])(device="cpu")
    ours = RFDetrConfig.from_variant(variant)
    assert ours.backbone_hidden_size == {"dinov2_windowed_small": 384, "dinov2_windowed_base": 768}[reference.encoder]
    assert ours.backbone_num_attention_heads == ours.backbone_hidden_size // 64
    pairs = {
        "patch_size": "patch_size",
        "num_windows": "num_windows",
        "out_feature_indexes": "out_feature_indexes",
        "resolution": "resolution",
        "positional_encoding_size": "positional_encoding_size",
        "decoder_layers": "dec_layers",
        "d_model": "hidden_dim",
        "decoder_self_attention_heads": "sa_nheads",
        "decoder_cross_attention_heads": "ca_nheads",
        "decoder_n_points": "dec_n_points",
        "num_queries": "num_queries",
        "group_detr": "group_detr",
        "projector_scale": "projector_scale",
    }
    for ours_name, reference_name in pairs.items():
        assert getattr(ours, ours_name) == getattr(reference, reference_name), ours_name
    assert ours.num_labels == reference.num_classes + 1
    assert ours.decoder_ffn_dim == MODEL_DEFAULTS.dim_feedforward
    assert ours.dropout == MODEL_DEFAULTS.dropout
    assert ours.variant == variant


@pytest.mark.reference
@pytest.mark.parametrize(("variant", "resolution"), [("nano", 448), ("medium", 640), ("base", 448), ("base", 728)])
def test_custom_resolution_rescales_position_grid_like_the_original(variant: str, resolution: int) -> None:
    from rfdetr import config as reference_configs

    reference = getattr(reference_configs, REFERENCE_CONFIG_CLASSES[variant])(device="cpu", resolution=resolution)
    ours = RFDetrConfig.from_variant(variant, resolution=resolution)
    assert ours.positional_encoding_size == reference.positional_encoding_size


def test_aliases_and_unknown_variant() -> None:
    assert RFDetrConfig.from_variant("RFDETRBase").variant == "base"
    assert RFDetrConfig.from_variant("RFDETRLargeDeprecated").variant == "large-legacy"
    assert RFDetrConfig.from_variant("large_2026").resolution == 704
    with pytest.raises(ValueError, match=r"Unknown RF-DETR variant 'huge'.*'base'"):
        RFDetrConfig.from_variant("huge")


def test_default_labels_are_the_coco_slots() -> None:
    config = RFDetrConfig()
    assert config.num_labels == 91 and config.id2label == COCO_ID2LABEL
    assert (config.id2label[1], config.id2label[12], config.id2label[90]) == ("person", "N/A", "toothbrush")
    assert RFDetrConfig(num_labels=4).num_labels == 4
    assert RFDetrConfig(id2label={0: "a", 1: "b"}).label2id == {"a": 0, "b": 1}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"resolution": 500}, r"resolution=500 must be divisible by patch_size \* num_windows = 16 \* 2 = 32"),
        ({"num_windows": 3, "resolution": 400}, r"divisible by patch_size \* num_windows = 16 \* 3 = 48"),
        ({"out_feature_indexes": [6, 3]}, r"out_feature_indexes=\[6, 3\] must be .*strictly increasing"),
        ({"out_feature_indexes": [3, 13]}, r"1\.\.12 \(backbone_num_hidden_layers\)"),
        ({"projector_scale": ["P6"]}, r"projector_scale=\['P6'\] must be a non-empty subset"),
        ({"projector_scale": ["P5", "P3"]}, r"sorted ascending"),
        ({"decoder_cross_attention_heads": 7}, r"decoder_cross_attention_heads=7 must divide"),
        ({"decoder_activation_function": "tanh"}, r"decoder_activation_function='tanh'; allowed"),
        ({"num_queries": 0}, r"num_queries=0 must be a positive integer"),
        ({"dropout": 1.5}, r"dropout=1.5 .* must be in \[0, 1\)"),
        ({"variant": "giant"}, r"variant='giant' is unknown"),
    ],
)
def test_inconsistent_fields_raise(overrides: dict, message: str) -> None:
    """A configuration holds any well-typed values (as transformers' configurations do); `validate()` and every
    model built from it refuse the ones no model can have, naming the field."""
    config = RFDetrConfig(**overrides)
    with pytest.raises(ValueError, match=message):
        config.validate()
    with pytest.raises(ValueError, match=message):
        RFDetrForObjectDetection(config)


def test_wrong_types_raise_on_construction() -> None:
    with pytest.raises(ValueError, match=r"patch_size=14.0 is of type float; expected int"):
        RFDetrConfig(patch_size=14.0)


def test_from_variant_validates_overrides() -> None:
    with pytest.raises(ValueError, match=r"resolution=570 must be divisible .* 14 \* 4 = 56"):
        RFDetrConfig.from_variant("base", resolution=570)


def test_save_and_load_round_trip(tmp_path) -> None:
    config = RFDetrConfig.from_variant("large-legacy", id2label={0: "cat", 1: "dog"})
    config.save_pretrained(tmp_path)
    loaded = RFDetrConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.projector_scale == ["P3", "P5"] and loaded.id2label == {0: "cat", 1: "dog"}
    assert loaded.block_size == 56 and loaded.num_feature_levels == 2


@pytest.mark.parametrize("labels", [{"num_labels": 2}, {"id2label": {0: "LABEL_0", 1: "LABEL_1"}}, {"num_labels": 1}])
def test_default_named_labels_survive_save_and_load(tmp_path, labels: dict) -> None:
    """transformers 5 leaves `id2label` out of config.json when it equals its own default ({0: LABEL_0, 1: LABEL_1});
    read back without labels, the config took COCO's 91 and the 2-label model's weights no longer fitted it (also a
    transformers rf_detr checkpoint saved with its default labels, converted on load)."""
    from .conftest import tiny_config

    model = RFDetrForObjectDetection(tiny_config(**labels)).eval()
    model.save_pretrained(tmp_path)
    assert RFDetrConfig.from_pretrained(tmp_path).id2label == model.config.id2label
    loaded = RFDetrForObjectDetection.from_pretrained(tmp_path).eval()
    assert loaded.config.num_labels == model.config.num_labels == len(model.config.id2label)
    for name, tensor in model.state_dict().items():
        assert loaded.state_dict()[name].equal(tensor), name
