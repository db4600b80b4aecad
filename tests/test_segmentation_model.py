"""RFDetrForInstanceSegmentation: the mask head, its outputs in eval and training mode, registration, remote code, and
numerical parity with the original `rfdetr` 1.11.2 Seg models on the same, perturbed random weights.

The `labels` path (the mask losses) is tested with the criterion in tests/test_segmentation_loss.py.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageSegmentation, AutoModelForInstanceSegmentation

from hf_rfdetr import RFDetrConfig, RFDetrForInstanceSegmentation, RFDetrForObjectDetection, RFDetrModel
from hf_rfdetr.models.rfdetr.configuration_rfdetr import RFDetrConfigError
from hf_rfdetr.models.rfdetr.heads_rfdetr import RFDetrMaskFactors

from .conftest import perturb_, tiny_config
from .segmentation_reference import (
    SEG_PARAMETER_COUNTS,
    SEG_REFERENCE_CONFIG_CLASSES,
    converted_seg_model,
    reference_config,
    reference_seg_model,
)

SEG_VARIANTS = list(SEG_REFERENCE_CONFIG_CLASSES)


def tiny_seg_config(**overrides) -> RFDetrConfig:
    return tiny_config(segmentation_head=True, **overrides)


@pytest.fixture
def tiny_seg_model() -> RFDetrForInstanceSegmentation:
    torch.manual_seed(0)
    return perturb_(RFDetrForInstanceSegmentation(tiny_seg_config()), seed=0, scale=0.1).eval()


def _pixels(batch: int, height: int, seed: int, width: int | None = None) -> torch.Tensor:
    return torch.randn(batch, 3, height, width or height, generator=torch.Generator().manual_seed(seed))


def _assert_close(ours: torch.Tensor, reference: torch.Tensor, atol: float, what: str) -> None:
    assert ours.shape == reference.shape, f"{what}: shape {tuple(ours.shape)} vs {tuple(reference.shape)}"
    delta = (ours - reference).abs().max().item()
    assert delta <= atol, f"{what}: max |delta| {delta:.2e} > {atol:.0e}"


# ----------------------------------------------------------------------------------------------------------------------
# The model on tiny configurations (both transformers versions)
# ----------------------------------------------------------------------------------------------------------------------


def test_needs_a_segmentation_config() -> None:
    with pytest.raises(RFDetrConfigError, match=r"segmentation_head=True.*RFDetrForObjectDetection"):
        RFDetrForInstanceSegmentation(tiny_config())


def test_eval_outputs_dense_masks_of_the_last_layer(tiny_seg_model: RFDetrForInstanceSegmentation) -> None:
    pixel_values = _pixels(2, 64, seed=1)
    with torch.no_grad():
        outputs = tiny_seg_model(pixel_values)
        base = tiny_seg_model.model(pixel_values)
        every_layer = tiny_seg_model.segmentation_head(
            base.mask_features, base.intermediate_hidden_states.transpose(0, 1), (64, 64)
        )
    assert outputs.logits.shape == (2, 20, 3) and outputs.pred_boxes.shape == (2, 20, 4)
    assert outputs.pred_masks.shape == (2, 20, 16, 16)  # (H // 4, W // 4)
    assert outputs.auxiliary_outputs is None and outputs.enc_pred_masks is None
    assert len(every_layer) == 2
    # Only the last layer is computed, after every block: the same as the last of the all-layer computation.
    torch.testing.assert_close(outputs.pred_masks, every_layer[-1].dense(), rtol=0, atol=1e-5)
    assert (every_layer[0].dense() - outputs.pred_masks).abs().max() > 1e-2  # the blocks are cumulative
    assert outputs.pred_masks.std() > 0.1


def test_training_outputs_factors_for_every_layer(tiny_seg_model: RFDetrForInstanceSegmentation) -> None:
    tiny_seg_model.train()
    outputs = tiny_seg_model(_pixels(2, 64, seed=2))
    queries = 20 * 3  # every Group DETR group
    assert isinstance(outputs.pred_masks, RFDetrMaskFactors)
    assert outputs.pred_masks.spatial_features.shape == (2, 32, 16, 16)
    assert outputs.pred_masks.query_features.shape == (2, queries, 32)
    assert outputs.pred_masks.dense().shape == (2, queries, 16, 16)
    assert len(outputs.auxiliary_outputs) == 1
    assert isinstance(outputs.auxiliary_outputs[0]["pred_masks"], RFDetrMaskFactors)
    assert outputs.enc_pred_masks.query_features.shape == (2, queries, 32)
    # Gradients reach every weight of the head through the factors.
    sum(m.dense().square().mean() for m in (outputs.pred_masks, outputs.enc_pred_masks)).backward()
    head = tiny_seg_model.segmentation_head
    missing = [name for name, p in head.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


def test_batch_items_are_independent(tiny_seg_model: RFDetrForInstanceSegmentation) -> None:
    pixel_values = _pixels(3, 64, seed=3)
    with torch.no_grad():
        batched = tiny_seg_model(pixel_values).pred_masks
        single = torch.cat([tiny_seg_model(image[None]).pred_masks for image in pixel_values])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-4)


def test_non_square_input_and_pixel_mask(tiny_seg_model: RFDetrForInstanceSegmentation) -> None:
    pixel_values = _pixels(2, 48, seed=4, width=80)
    pixel_mask = torch.ones(2, 48, 80, dtype=torch.long)
    pixel_mask[1, :, 64:] = 0
    with torch.no_grad():
        outputs = tiny_seg_model(pixel_values, pixel_mask=pixel_mask)
    assert outputs.pred_masks.shape == (2, 20, 12, 20)


def test_detection_configs_do_no_segmentation_work() -> None:
    model = RFDetrModel(tiny_config()).eval()
    with torch.no_grad():
        outputs = model(_pixels(1, 64, seed=5))
    assert outputs.mask_features is None and outputs.enc_hidden_states is None
    assert len(outputs.to_tuple()) == 5  # detection's tuple is unchanged


def test_new_head_initialisation() -> None:
    """The mask head starts as the original's: PyTorch's default init (weights within +-1/sqrt(fan_in)), unit
    LayerNorms, a zero scalar bias."""
    torch.manual_seed(0)
    head = RFDetrForInstanceSegmentation(tiny_seg_config()).segmentation_head
    assert torch.equal(head.bias, torch.zeros(1))
    for name, module in head.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            bound = 1 / module.weight[0].numel() ** 0.5
            assert module.weight.abs().max() <= bound and module.weight.abs().max() > bound / 2, name
            assert module.bias.abs().max() <= bound and module.bias.abs().max() > 0, name
        elif isinstance(module, torch.nn.LayerNorm):
            assert torch.equal(module.weight, torch.ones_like(module.weight)), name
    eps = {name: m.eps for name, m in head.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    assert eps == {"blocks.0.norm": 1e-6, "blocks.1.norm": 1e-6, "query_features_block.norm_in": 1e-5}


def test_detection_class_loads_the_detection_part_of_a_seg_folder(
    tiny_seg_model: RFDetrForInstanceSegmentation, tmp_path: Path, caplog
) -> None:
    """A transformers user loading a Seg checkpoint into the detection class gets a working detector with the same
    boxes (the mask head's weights are reported unused) and a warning naming RFDetrForInstanceSegmentation."""
    tiny_seg_model.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING):
        detector = RFDetrForObjectDetection.from_pretrained(tmp_path).eval()
    assert "RFDetrForInstanceSegmentation" in caplog.text
    assert not any(name.startswith("segmentation_head") for name in detector.state_dict())
    pixel_values = _pixels(1, 64, seed=6)
    with torch.no_grad():
        expected, actual = tiny_seg_model(pixel_values), detector(pixel_values)
    torch.testing.assert_close(actual.logits, expected.logits, rtol=0, atol=0)
    torch.testing.assert_close(actual.pred_boxes, expected.pred_boxes, rtol=0, atol=0)


def test_auto_classes_and_names_tables(tiny_seg_model: RFDetrForInstanceSegmentation, tmp_path: Path) -> None:
    from transformers.models.auto import modeling_auto

    import hf_rfdetr

    config = tiny_seg_config()
    assert type(AutoModelForInstanceSegmentation.from_config(config)) is RFDetrForInstanceSegmentation
    assert type(AutoModelForImageSegmentation.from_config(config)) is RFDetrForInstanceSegmentation
    names = modeling_auto.MODEL_FOR_INSTANCE_SEGMENTATION_MAPPING_NAMES["rfdetr"]
    assert names == ("RFDetrForInstanceSegmentation", "RFDetrOnnxModel")  # the ONNX runner serves the pipeline too
    assert "RfDetrForInstanceSegmentation" not in dir(hf_rfdetr)  # transformers' LOSS_MAPPING trap
    tiny_seg_model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"]["AutoModelForInstanceSegmentation"] == "modeling_rfdetr.RFDetrForInstanceSegmentation"
    assert saved["auto_map"]["AutoModelForImageSegmentation"] == "modeling_rfdetr.RFDetrForInstanceSegmentation"
    assert saved["architectures"] == ["RFDetrForInstanceSegmentation"]
    loaded = AutoModelForImageSegmentation.from_pretrained(tmp_path).eval()
    pixel_values = _pixels(1, 64, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values).pred_masks, tiny_seg_model(pixel_values).pred_masks)


def test_remote_code_loads_without_the_package(tiny_seg_model: RFDetrForInstanceSegmentation, tmp_path: Path) -> None:
    """`trust_remote_code=True` in a process where `hf_rfdetr` cannot be imported: both Auto classes the pipelines
    use build the saved class, with the same masks."""
    folder = tmp_path / "saved"
    tiny_seg_model.save_pretrained(folder)
    pixel_values = _pixels(2, 64, seed=8)
    torch.save(pixel_values, tmp_path / "pixels.pt")
    with torch.no_grad():
        expected = tiny_seg_model(pixel_values)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["hf_rfdetr"] = None  # any import of the package now fails
        import torch
        from transformers import AutoModelForImageSegmentation, AutoModelForInstanceSegmentation
        from transformers.models.auto import modeling_auto
        model = AutoModelForImageSegmentation.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        other = AutoModelForInstanceSegmentation.from_pretrained({str(folder)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert type(model).__name__ == type(other).__name__ == "RFDetrForInstanceSegmentation"
        assert modeling_auto.MODEL_FOR_INSTANCE_SEGMENTATION_MAPPING_NAMES["rfdetr"] == type(model).__name__
        with torch.no_grad():
            out = model(torch.load({str(tmp_path / "pixels.pt")!r}))
        torch.save({{"logits": out.logits, "pred_masks": out.pred_masks}}, {str(tmp_path / "out.pt")!r})
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    actual = torch.load(tmp_path / "out.pt")
    assert (actual["logits"] - expected.logits).abs().max() <= 1e-6
    assert (actual["pred_masks"] - expected.pred_masks).abs().max() <= 1e-5


@pytest.mark.parametrize("variant", SEG_VARIANTS)
def test_parameter_count_equals_the_original(variant: str) -> None:
    """Counts measured on the original (rfdetr 1.11.2); the reference tests below re-measure two of them."""
    model = RFDetrForInstanceSegmentation(RFDetrConfig.from_variant(variant))
    assert sum(p.numel() for p in model.parameters()) == SEG_PARAMETER_COUNTS[variant]
    assert len(model.segmentation_head.blocks) == model.config.decoder_layers


# ----------------------------------------------------------------------------------------------------------------------
# Parity with the original package (env 1)
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.reference
@pytest.mark.parametrize("variant", SEG_VARIANTS)
def test_seg_variant_values_equal_the_original(variant: str) -> None:
    from rfdetr.models._defaults import MODEL_DEFAULTS

    reference, ours = reference_config(variant), RFDetrConfig.from_variant(variant)
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
        "segmentation_head": "segmentation_head",
        "mask_downsample_ratio": "mask_downsample_ratio",
    }
    for ours_name, reference_name in pairs.items():
        assert getattr(ours, ours_name) == getattr(reference, reference_name), ours_name
    assert reference.num_select == ours.num_queries
    assert ours.num_labels == reference.num_classes + 1
    assert ours.decoder_ffn_dim == MODEL_DEFAULTS.dim_feedforward
    assert ours.dropout == MODEL_DEFAULTS.dropout
    assert ours.variant == variant


def _compare_eval(variant: str, pixel_values: torch.Tensor, resolution: int | None = None, seed: int = 0) -> None:
    """Logits, boxes, masks and the two-stage proposals' masks of ours against the original, eval mode."""
    reference, ours = reference_seg_model(variant, resolution, seed), converted_seg_model(variant, resolution, seed)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    with torch.no_grad():
        expected, actual = reference(pixel_values), ours(pixel_values)
        base = ours.model(pixel_values)
        enc_masks = ours.segmentation_head(
            base.mask_features, base.enc_hidden_states[None], tuple(pixel_values.shape[-2:]), skip_blocks=True
        )[0].dense()
    _assert_close(actual.logits, expected["pred_logits"], 1e-4, "logits")
    _assert_close(actual.pred_boxes, expected["pred_boxes"], 1e-4, "pred_boxes")
    _assert_close(actual.pred_masks, expected["pred_masks"], 1e-4, "pred_masks")
    _assert_close(actual.enc_logits, expected["enc_outputs"]["pred_logits"], 1e-4, "enc logits")
    _assert_close(enc_masks, expected["enc_outputs"]["pred_masks"], 1e-4, "enc pred_masks")
    # The comparison is meaningful: spread-out logits and masks of both signs.
    assert actual.pred_masks.std() > 1.0 and (actual.pred_masks > 0).any() and (actual.pred_masks < 0).any()


@pytest.mark.reference
@pytest.mark.parametrize("variant", SEG_VARIANTS)
def test_every_seg_variant_matches_the_original(variant: str) -> None:
    """Every variant with its native weights, at a small input (192 px: a multiple of every block size, 12 and 24;
    the position embeddings are interpolated as at any other input size)."""
    _compare_eval(variant, _pixels(2, 192, seed=1))


@pytest.mark.reference
@pytest.mark.parametrize(
    "variant", ["seg-nano", "seg-small", *[pytest.param(v, marks=pytest.mark.slow) for v in SEG_VARIANTS[3:]]]
)
def test_native_resolution_matches_the_original(variant: str) -> None:
    resolution = RFDetrConfig.from_variant(variant).resolution
    _compare_eval(variant, _pixels(1, resolution, seed=2))


@pytest.mark.reference
def test_batch_of_three_other_weights_and_non_square_input_match_the_original() -> None:
    _compare_eval("seg-nano", _pixels(3, 156, seed=3, width=240), seed=1)


@pytest.mark.reference
def test_other_resolution_matches_the_original() -> None:
    """A model configured at another resolution (position grid rescaled like the original's)."""
    _compare_eval("seg-small", _pixels(1, 336, seed=4), resolution=336)


@pytest.mark.reference
def test_padded_batch_matches_the_original_nested_tensor() -> None:
    """A padded image with its pixel mask equals the original run on a NestedTensor with the same padding (the mask
    head itself ignores the padding, as the original's)."""
    from rfdetr.utilities.tensors import NestedTensor

    reference, ours = reference_seg_model("seg-nano"), converted_seg_model("seg-nano")
    padding = torch.zeros(2, 192, 192, dtype=torch.bool)
    padding[0, :, 144:] = True
    padding[1, 156:, :] = True
    pixel_values = _pixels(2, 192, seed=11).masked_fill(padding[:, None], 0.0)
    with torch.no_grad():
        expected = reference(NestedTensor(pixel_values, padding))
        actual = ours(pixel_values, pixel_mask=(~padding).long())
        unmasked = ours(pixel_values)
    _assert_close(actual.logits, expected["pred_logits"], 1e-4, "logits")
    _assert_close(actual.pred_masks, expected["pred_masks"], 1e-4, "pred_masks")
    assert (unmasked.pred_masks - actual.pred_masks).abs().max() > 1e-2, "the mask must change the result"


@pytest.mark.reference
def test_training_mode_factors_match_the_original() -> None:
    """All 13 Group DETR groups: the factors of every decoder layer and of the two-stage proposals equal the
    original's sparse dicts, and so do the dense logits built from them."""
    reference, ours = reference_seg_model("seg-nano"), converted_seg_model("seg-nano")
    reference.train(), ours.train()
    pixel_values = _pixels(2, 192, seed=5)
    try:
        with torch.no_grad():
            expected, actual = reference(pixel_values), ours(pixel_values)
    finally:
        reference.eval(), ours.eval()
    assert actual.logits.shape == (2, 100 * 13, 91)
    _assert_close(actual.logits, expected["pred_logits"], 1e-4, "logits")
    _assert_close(actual.pred_boxes, expected["pred_boxes"], 1e-4, "pred_boxes")
    layers = [
        (actual.pred_masks, expected["pred_masks"], "last layer"),
        (actual.enc_pred_masks, expected["enc_outputs"]["pred_masks"], "enc"),
    ]
    assert len(actual.auxiliary_outputs) == len(expected["aux_outputs"]) == 3
    for index, (ours_layer, reference_layer) in enumerate(zip(actual.auxiliary_outputs, expected["aux_outputs"])):
        _assert_close(ours_layer["logits"], reference_layer["pred_logits"], 1e-4, f"aux {index} logits")
        layers.append((ours_layer["pred_masks"], reference_layer["pred_masks"], f"aux {index}"))
    for factors, reference_factors, what in layers:
        assert isinstance(factors, RFDetrMaskFactors), what
        for field in ("spatial_features", "query_features", "bias"):
            _assert_close(getattr(factors, field), reference_factors[field], 1e-4, f"{what} {field}")
        dense = torch.einsum(
            "bchw,bnc->bnhw", reference_factors["spatial_features"], reference_factors["query_features"]
        )
        _assert_close(factors.dense(), dense + reference_factors["bias"], 1e-4, f"{what} dense masks")


# ----------------------------------------------------------------------------------------------------------------------
# Conversion of original Seg checkpoints (`hf_rfdetr.conversion`, `hf-rfdetr convert`)
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.reference
def test_convert_seg_checkpoint_with_verify(tmp_path: Path) -> None:
    """A training checkpoint of the original Seg Nano (Namespace args) converts, `--verify` compares the masks too,
    and the folder loads as RFDetrForInstanceSegmentation with the original's outputs."""
    import argparse

    from hf_rfdetr.cli import main

    reference = reference_seg_model("seg-nano")
    args = argparse.Namespace(
        segmentation_head=True, mask_downsample_ratio=4, patch_size=12, num_windows=1, resolution=312, dec_layers=4
    )
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": reference.state_dict(), "args": args}, path)
    assert main(["convert", str(path), str(tmp_path / "out"), "--verify"]) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (config["variant"], config["segmentation_head"], config["num_queries"]) == ("seg-nano", True, 100)
    assert config["architectures"] == ["RFDetrForInstanceSegmentation"]
    model = AutoModelForInstanceSegmentation.from_pretrained(tmp_path / "out").eval()
    pixel_values = _pixels(1, 312, seed=9)
    with torch.no_grad():
        expected, actual = reference(pixel_values), model(pixel_values)
    _assert_close(actual.pred_masks, expected["pred_masks"], 1e-4, "pred_masks")
    _assert_close(actual.logits, expected["pred_logits"], 1e-4, "logits")


@pytest.mark.reference
@pytest.mark.parametrize("variant", ["seg-preview", "seg-medium"])
def test_bare_seg_state_dict_infers_the_variant(variant: str, tmp_path: Path) -> None:
    """Without args the weights decide: a mask head selects the Seg variants, decoder depth and position grid the
    variant (Preview and Medium share resolution 432 and differ in depth)."""
    from hf_rfdetr.conversion import config_from_checkpoint

    reference = reference_seg_model(variant)
    config = config_from_checkpoint({"model": reference.state_dict()})
    assert (config.variant, config.segmentation_head) == (variant, True)


@pytest.mark.reference
def test_verify_reports_wrong_masks(tmp_path: Path, monkeypatch) -> None:
    import hf_rfdetr.conversion as conversion

    reference = reference_seg_model("seg-nano")
    checkpoint = {"model": reference.state_dict()}
    config = conversion.config_from_checkpoint(checkpoint)
    model = RFDetrForInstanceSegmentation(config).eval()
    conversion.load_original_state_dict(model, checkpoint["model"])
    with torch.no_grad():
        model.segmentation_head.bias.add_(1.0)  # only the masks change
    with pytest.raises(conversion.CheckpointError, match=r"disagrees.*pred_masks"):
        conversion.verify_against_original(model, checkpoint, config)


# ----------------------------------------------------------------------------------------------------------------------
# transformers' own RfDetrForInstanceSegmentation (transformers 5.x) -> ours
# ----------------------------------------------------------------------------------------------------------------------


def transformers_seg_model_from_original(variant: str, seed: int = 0):
    """transformers' RfDetrForInstanceSegmentation with the weights of `reference_seg_model(variant)` (its own
    conversion mapping), configured like the original (dropout 0, layer_norm_eps 1e-6, decoder_n_points 2)."""
    import transformers

    config = RFDetrConfig.from_variant(variant)
    backbone = {
        "model_type": "rf_detr_dinov2",
        "hidden_size": config.backbone_hidden_size,
        "num_hidden_layers": config.backbone_num_hidden_layers,
        "num_attention_heads": config.backbone_num_attention_heads,
        "layer_norm_eps": config.backbone_layer_norm_eps,
        "patch_size": config.patch_size,
        "num_windows": config.num_windows,
        "image_size": config.positional_encoding_size * config.patch_size,
        "out_indices": list(config.out_feature_indexes),
    }
    rf_config = transformers.RfDetrConfig(
        backbone_config=backbone,
        d_model=config.d_model,
        decoder_layers=config.decoder_layers,
        decoder_self_attention_heads=config.decoder_self_attention_heads,
        decoder_cross_attention_heads=config.decoder_cross_attention_heads,
        decoder_n_points=config.decoder_n_points,
        decoder_ffn_dim=config.decoder_ffn_dim,
        num_queries=config.num_queries,
        group_detr=config.group_detr,
        dropout=0.0,
        layer_norm_eps=1e-6,
        num_labels=config.num_labels,
    )
    state_dict = {k: v.clone() for k, v in reference_seg_model(variant, seed=seed).state_dict().items()}
    state_dict.pop("_kp_active_mask", None)
    return transformers.RfDetrForInstanceSegmentation.from_pretrained(None, config=rf_config, state_dict=state_dict)


@pytest.mark.reference
def test_converted_transformers_seg_model_matches_transformers_and_the_original() -> None:
    """transformers expresses Seg Nano (1 window): converting its model gives ours with its logits, boxes and masks,
    which are the original's. Its two-stage proposals' masks differ: transformers skips the mask head's
    `spatial_features_proj` there (the original applies it; ours follows the original, see the eval parity tests)."""
    from hf_rfdetr.conversion_transformers import load_transformers_model

    theirs = transformers_seg_model_from_original("seg-nano").eval()
    ours = load_transformers_model(theirs)
    assert isinstance(ours, RFDetrForInstanceSegmentation) and ours.config.variant == "seg-nano"
    assert ours.config.segmentation_head and ours.config.mask_dice_cost == theirs.config.mask_dice_loss_coefficient
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    pixel_values = _pixels(2, 192, seed=10)
    with torch.no_grad():
        actual, expected = ours(pixel_values), theirs(pixel_values=pixel_values)
        original = reference_seg_model("seg-nano")(pixel_values)
        base = ours.model(pixel_values)
        enc_masks = ours.segmentation_head(
            base.mask_features, base.enc_hidden_states[None], (192, 192), skip_blocks=True
        )
    for name, atol in (("logits", 1e-4), ("pred_boxes", 1e-4), ("pred_masks", 1e-4)):
        _assert_close(actual[name], expected[name], atol, f"{name} vs transformers")
    _assert_close(actual.pred_masks, original["pred_masks"], 1e-4, "pred_masks vs the original")
    enc_ours = enc_masks[0].dense()
    assert enc_ours.shape == expected.enc_outputs_mask_logits.shape
    assert (enc_ours - expected.enc_outputs_mask_logits).abs().max() > 1.0  # transformers' missing projection
    _assert_close(enc_ours, original["enc_outputs"]["pred_masks"], 1e-4, "enc masks vs the original")


@pytest.mark.reference
def test_convert_transformers_seg_checkpoint_round_trip(tmp_path: Path) -> None:
    """A tiny transformers segmentation folder -> ours with verification (masks compared), loadable by the Auto
    classes; a corrupted mask head fails the verification."""
    import transformers

    from hf_rfdetr.conversion import CheckpointError
    from hf_rfdetr.conversion_transformers import convert_transformers_checkpoint, verify_against_transformers

    from .test_parity_transformers import tiny_transformers_config

    torch.manual_seed(0)
    theirs = perturb_(
        transformers.RfDetrForInstanceSegmentation(tiny_transformers_config(intermediate_size=128)), seed=0, scale=0.1
    )
    theirs.eval()
    folder = tmp_path / "transformers-seg"
    theirs.save_pretrained(folder)
    transformers.RfDetrImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    output = convert_transformers_checkpoint(folder, tmp_path / "ours", verify=True)
    loaded = AutoModelForInstanceSegmentation.from_pretrained(output).eval()
    assert isinstance(loaded, RFDetrForInstanceSegmentation) and loaded.config.resolution == 64
    deltas = verify_against_transformers(loaded, theirs)
    assert deltas["pred_masks"] <= 1e-6 and deltas["pred_masks_fp32"] <= 1e-4, deltas
    with torch.no_grad():
        loaded.segmentation_head.query_features_proj.bias.add_(0.5)
    with pytest.raises(CheckpointError, match="pred_masks"):
        verify_against_transformers(loaded, theirs)


def test_training_loss_reaches_every_mask_weight_and_checks_masks() -> None:
    """With labels the model hands its mask factors to the criterion: the mask terms of every layer and the encoder
    are in the loss, the mask head gets a gradient, an image without objects is fine, and a label without masks (or
    with masks of the wrong size) is refused naming the field."""
    torch.manual_seed(0)
    config = RFDetrConfig.from_variant(
        "seg-nano",
        resolution=96,
        backbone_num_hidden_layers=4,
        out_feature_indexes=[1, 2, 3, 4],
        decoder_layers=2,
        num_queries=10,
        group_detr=3,
        id2label={0: "a", 1: "b"},
    )
    model = RFDetrForInstanceSegmentation(config).train()
    masks = torch.zeros(2, 96, 96, dtype=torch.bool)
    masks[0, 10:40, 10:50] = True
    masks[1, 50:90, 20:60] = True
    labels = [
        {
            "class_labels": torch.tensor([0, 1]),
            "boxes": torch.tensor([[0.31, 0.26, 0.42, 0.31], [0.42, 0.73, 0.42, 0.42]]),
            "masks": masks,
        },
        {
            "class_labels": torch.zeros(0, dtype=torch.long),
            "boxes": torch.zeros(0, 4),
            "masks": torch.zeros(0, 96, 96, dtype=torch.bool),
        },
    ]
    output = model(torch.randn(2, 3, 96, 96), labels=labels)
    mask_terms = {name for name in output.loss_dict if "mask" in name}
    assert mask_terms == {f"loss_mask_{kind}{suffix}" for kind in ("ce", "dice") for suffix in ("", "_0", "_enc")}
    assert all(torch.isfinite(output.loss_dict[name]) and output.loss_dict[name] > 0 for name in mask_terms)
    output.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.segmentation_head.parameters())
    with pytest.raises(
        ValueError, match=r"labels\[0\]\['masks'\] must be a \(N, H, W\) tensor .* \(2, 96, 96\); got \(2, 48, 96\)"
    ):
        model(torch.randn(2, 3, 96, 96), labels=[{**labels[0], "masks": masks[:, ::2]}, labels[1]])
