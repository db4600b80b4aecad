"""Numerical parity with the original `rfdetr` package (1.11.2) on the same, perturbed random weights."""

from __future__ import annotations

import pytest
import torch

from hf_rfdetr import RFDetrConfig, RFDetrForObjectDetection

from .conftest import REFERENCE_CONFIG_CLASSES, converted_model, reference_model, tiny_config

pytestmark = pytest.mark.reference

FAST = ["nano", "base"]
SLOW = [pytest.param(v, marks=pytest.mark.slow) for v in ("small", "medium", "large", "large-legacy")]


def _inputs(batch: int, resolution: int, seed: int, width: int | None = None) -> torch.Tensor:
    return torch.randn(batch, 3, resolution, width or resolution, generator=torch.Generator().manual_seed(seed))


def _assert_close(ours: torch.Tensor, reference: torch.Tensor, atol: float, what: str) -> None:
    assert ours.shape == reference.shape, f"{what}: shape {tuple(ours.shape)} vs {tuple(reference.shape)}"
    delta = (ours - reference).abs().max().item()
    assert delta <= atol, f"{what}: max |delta| {delta:.2e} > {atol:.0e}"


@pytest.mark.parametrize("variant", list(REFERENCE_CONFIG_CLASSES))
def test_parameter_count_equals_reference(variant: str) -> None:
    ours = RFDetrForObjectDetection(RFDetrConfig.from_variant(variant))
    reference = reference_model(variant)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("variant", FAST + SLOW)
def test_eval_outputs_match_reference(variant: str) -> None:
    reference, ours = reference_model(variant), converted_model(variant)
    pixel_values = _inputs(2, ours.config.resolution, seed=1)
    with torch.no_grad():
        expected, actual = reference(pixel_values), ours(pixel_values)
    _assert_close(actual.logits, expected["pred_logits"], 1e-4, "logits")
    _assert_close(actual.pred_boxes, expected["pred_boxes"], 1e-4, "pred_boxes")
    _assert_close(actual.enc_logits, expected["enc_outputs"]["pred_logits"], 1e-4, "enc logits")
    _assert_close(actual.enc_pred_boxes, expected["enc_outputs"]["pred_boxes"], 1e-4, "enc boxes")
    # The comparison is meaningful: the perturbed heads produce spread-out scores and boxes.
    assert actual.logits.std() > 0.1 and actual.pred_boxes.std() > 0.01


@pytest.mark.parametrize(("variant", "resolution"), [("nano", 448), ("base", 448), ("nano", 320)])
def test_non_default_resolution_matches_reference(variant: str, resolution: int) -> None:
    reference, ours = reference_model(variant, resolution), converted_model(variant, resolution)
    assert ours.config.resolution == resolution
    with torch.no_grad():
        pixel_values = _inputs(1, resolution, seed=2)
        expected, actual = reference(pixel_values), ours(pixel_values)
    _assert_close(actual.logits, expected["pred_logits"], 1e-4, "logits")
    _assert_close(actual.pred_boxes, expected["pred_boxes"], 1e-4, "pred_boxes")


@pytest.mark.parametrize(("seed", "batch"), [(0, 1), (1, 3)])
def test_other_weights_and_batch_sizes_match_reference(seed: int, batch: int) -> None:
    reference, ours = reference_model("nano", seed=seed), converted_model("nano", seed=seed)
    with torch.no_grad():
        pixel_values = _inputs(batch, 384, seed=seed + 10)
        expected, actual = reference(pixel_values), ours(pixel_values)
    _assert_close(actual.logits, expected["pred_logits"], 1e-4, "logits")
    _assert_close(actual.pred_boxes, expected["pred_boxes"], 1e-4, "pred_boxes")


def test_non_square_input_matches_reference() -> None:
    """H != W (both multiples of 32) goes through position-embedding interpolation and non-square windows."""
    reference, ours = reference_model("nano"), converted_model("nano")
    with torch.no_grad():
        pixel_values = _inputs(2, 256, seed=3, width=448)
        expected, actual = reference(pixel_values), ours(pixel_values)
    _assert_close(actual.logits, expected["pred_logits"], 1e-4, "logits")
    _assert_close(actual.pred_boxes, expected["pred_boxes"], 1e-4, "pred_boxes")


def test_training_mode_matches_reference() -> None:
    """All 13 Group DETR groups, the auxiliary (per-layer) outputs and the two-stage outputs, in training mode."""
    reference, ours = reference_model("nano"), converted_model("nano")
    reference.train(), ours.train()
    try:
        pixel_values = _inputs(2, 384, seed=4)
        with torch.no_grad():
            expected, actual = reference(pixel_values), ours(pixel_values)
    finally:
        reference.eval(), ours.eval()
    assert actual.logits.shape == (2, 300 * 13, 91)
    _assert_close(actual.logits, expected["pred_logits"], 1e-4, "logits")
    _assert_close(actual.pred_boxes, expected["pred_boxes"], 1e-4, "pred_boxes")
    assert len(actual.auxiliary_outputs) == len(expected["aux_outputs"]) == 1
    for ours_layer, reference_layer in zip(actual.auxiliary_outputs, expected["aux_outputs"]):
        _assert_close(ours_layer["logits"], reference_layer["pred_logits"], 1e-4, "aux logits")
        _assert_close(ours_layer["pred_boxes"], reference_layer["pred_boxes"], 1e-4, "aux boxes")
    _assert_close(actual.enc_logits, expected["enc_outputs"]["pred_logits"], 1e-4, "enc logits")
    _assert_close(actual.enc_pred_boxes, expected["enc_outputs"]["pred_boxes"], 1e-4, "enc boxes")


def test_padded_batch_matches_reference_mask() -> None:
    """A padded image with its pixel mask equals the original run on a NestedTensor with the same padding mask."""
    from rfdetr.utilities.tensors import NestedTensor

    reference, ours = reference_model("nano"), converted_model("nano")
    pixel_values = _inputs(2, 384, seed=5)
    padding = torch.zeros(2, 384, 384, dtype=torch.bool)
    padding[0, :, 288:] = True  # image 0 is 384 x 288, padded on the right
    padding[1, 320:, :] = True  # image 1 is 320 x 384, padded at the bottom
    pixel_values = pixel_values.masked_fill(padding[:, None], 0.0)
    with torch.no_grad():
        expected = reference(NestedTensor(pixel_values, padding))
        actual = ours(pixel_values, pixel_mask=(~padding).long())
        unmasked = ours(pixel_values)
    _assert_close(actual.logits, expected["pred_logits"], 1e-4, "logits")
    _assert_close(actual.pred_boxes, expected["pred_boxes"], 1e-4, "pred_boxes")
    assert (unmasked.pred_boxes - actual.pred_boxes).abs().max() > 1e-3, "the mask must change the result"


def test_drop_path_matches_reference_in_training() -> None:
    """The backbone's drop path (torchvision's `StochasticDepth`, mode "row") against the original's `drop_path`:
    in training each row (one image window) of the residual branch is zeroed or scaled by 1 / (1 - p); in eval it is
    the identity. The two draw their row masks differently (torch.rand + floor against bernoulli_), so a row-for-row
    equality on one RNG state cannot hold: each output is compared with the original's formula on its own mask."""
    from rfdetr.models.backbone.dinov2_with_windowed_attn import drop_path

    layer = RFDetrForObjectDetection(tiny_config(drop_path_rate=0.3)).model.backbone.layers[-1]
    rows = torch.randn(4000, 5, 8, generator=torch.Generator().manual_seed(0))
    layer.train()
    torch.manual_seed(0)
    ours, reference = layer.drop_path(rows), drop_path(rows, 0.3, training=True)
    for output, name in ((ours, "ours"), (reference, "reference")):
        kept = output.flatten(1).ne(0).any(1)
        assert output[~kept].eq(0).all(), f"{name}: a dropped row must be all zeros"
        torch.testing.assert_close(output[kept], rows[kept].div(0.7), rtol=2.5e-7, atol=0, msg=f"{name}: scale")
        assert abs(kept.float().mean().item() - 0.7) < 0.03, f"{name}: kept {kept.float().mean():.3f} of the rows"
    layer.eval()
    assert torch.equal(layer.drop_path(rows), rows) and torch.equal(drop_path(rows, 0.3, training=False), rows)
