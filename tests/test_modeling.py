"""RFDetrForObjectDetection on a tiny config: outputs, Group DETR, masks, errors, gradients, save/load, compile."""

from __future__ import annotations

import math

import pytest
import torch

from hf_rfdetr import RFDetrForObjectDetection
from hf_rfdetr.models.rfdetr.backbone_rfdetr import window_partition, window_unpartition

from .conftest import perturb_, tiny_config


def _pixels(batch: int = 2, height: int = 64, width: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_eval_outputs(tiny_model: RFDetrForObjectDetection) -> None:
    with torch.no_grad():
        out = tiny_model(_pixels())
    assert out.logits.shape == (2, 20, 3) and out.pred_boxes.shape == (2, 20, 4)
    assert out.enc_logits.shape == (2, 20, 3) and out.enc_pred_boxes.shape == (2, 20, 4)
    assert out.intermediate_hidden_states.shape == (2, 2, 20, 32)  # (B, L, Q, d_model): batch first
    torch.testing.assert_close(out.intermediate_hidden_states[:, -1], out.last_hidden_state, rtol=0, atol=0)
    assert out.auxiliary_outputs is None and out.loss is None
    assert torch.isfinite(out.logits).all() and (out.pred_boxes[..., 2:] > 0).all()
    # The two images give different predictions (the batch is not mixed up).
    assert (out.logits[0] - out.logits[1]).abs().max() > 1e-3


def test_training_runs_every_group_and_eval_equals_group_zero(tiny_model: RFDetrForObjectDetection) -> None:
    pixel_values = _pixels()
    with torch.no_grad():
        evaluated = tiny_model(pixel_values)
        tiny_model.train()
        trained = tiny_model(pixel_values)
    assert trained.logits.shape == (2, 20 * 3, 3) and trained.enc_logits.shape == (2, 20 * 3, 3)
    assert len(trained.auxiliary_outputs) == 1 and trained.auxiliary_outputs[0]["pred_boxes"].shape == (2, 60, 4)
    # With dropout 0 the first group in training mode is exactly the single group used at inference.
    torch.testing.assert_close(trained.logits[:, :20], evaluated.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(trained.pred_boxes[:, :20], evaluated.pred_boxes, atol=1e-5, rtol=0)


def test_groups_do_not_attend_to_each_other(tiny_model: RFDetrForObjectDetection) -> None:
    tiny_model.train()
    pixel_values = _pixels()
    with torch.no_grad():
        before = tiny_model(pixel_values)
        tiny_model.model.query_feat.weight[20:40].add_(1.0)  # group 1's content queries only
        after = tiny_model(pixel_values)
    torch.testing.assert_close(after.logits[:, :20], before.logits[:, :20], atol=1e-6, rtol=0)
    torch.testing.assert_close(after.logits[:, 40:], before.logits[:, 40:], atol=1e-6, rtol=0)
    assert (after.logits[:, 20:40] - before.logits[:, 20:40]).abs().max() > 1e-3


def test_full_pixel_mask_equals_no_mask(tiny_model: RFDetrForObjectDetection) -> None:
    pixel_values = _pixels(height=64, width=128)
    with torch.no_grad():
        plain = tiny_model(pixel_values)
        masked = tiny_model(pixel_values, pixel_mask=torch.ones(2, 64, 128, dtype=torch.long))
    torch.testing.assert_close(masked.logits, plain.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(masked.pred_boxes, plain.pred_boxes, atol=1e-6, rtol=0)


def test_padding_changes_the_reference_frame(tiny_model: RFDetrForObjectDetection) -> None:
    """With half the width padded, two-stage proposals are normalised to the valid half: centres stay inside it."""
    pixel_mask = torch.ones(1, 64, 128, dtype=torch.long)
    pixel_mask[..., 64:] = 0
    with torch.no_grad():
        out = tiny_model(_pixels(1, 64, 128), pixel_mask=pixel_mask)
    assert torch.isfinite(out.pred_boxes).all()
    assert out.enc_pred_boxes[..., 0].max() < 1.5  # would reach ~2 if normalised to the padded width


@pytest.mark.parametrize(
    ("pixel_values", "pixel_mask", "message"),
    [
        (torch.randn(3, 64, 64), None, r"4-D tensor \(batch, channels, height, width\); got \(3, 64, 64\)"),
        (torch.randn(1, 1, 64, 64), None, r"1 channels at dim 1 but config.num_channels is 3"),
        (torch.randn(1, 64, 64, 3), None, r"64 channels at dim 1"),
        (torch.randn(1, 3, 64, 72), None, r"multiples of the block size patch_size \* num_windows = 16; got 64x72"),
        (torch.randn(1, 3, 8, 64), None, r"got 8x64"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), None, r"float tensor .* got dtype torch.uint8"),
        (
            torch.randn(2, 3, 64, 64),
            torch.ones(2, 32, 32),
            r"pixel_mask must have shape .* \(2, 64, 64\); got \(2, 32, 32\)",
        ),
    ],
)
def test_bad_input_is_named(tiny_model, pixel_values, pixel_mask, message) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_model(pixel_values, pixel_mask=pixel_mask)


def _gradients(model: RFDetrForObjectDetection, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad()
    out = model(pixel_values)
    total = out.logits.sum() + out.pred_boxes.sum() + out.enc_logits.sum() + out.enc_pred_boxes.sum()
    total = total + sum(layer["logits"].sum() + layer["pred_boxes"].sum() for layer in out.auxiliary_outputs)
    total.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_every_trainable_parameter_gets_a_gradient(tiny_model: RFDetrForObjectDetection) -> None:
    """No unused trainable parameters: DistributedDataParallel works without find_unused_parameters."""
    gradients = _gradients(tiny_model, _pixels())
    trainable = {name for name, p in tiny_model.named_parameters() if p.requires_grad}
    assert trainable - set(gradients) == set()
    assert not tiny_model.model.backbone.embeddings.mask_token.requires_grad


def test_blocks_after_the_last_tap_are_frozen() -> None:
    from hf_rfdetr import RFDetrConfig

    model = RFDetrForObjectDetection(RFDetrConfig.from_variant("base"))  # taps 2, 5, 8, 11: block 11 never runs
    frozen = {name.split(".")[3] for name, p in model.named_parameters() if not p.requires_grad and ".layers." in name}
    assert frozen == {"11"}
    assert all(p.requires_grad for p in model.model.backbone.layers[10].parameters())


def test_parameters_frozen_by_design_stay_frozen_after_loading(tmp_path) -> None:
    """transformers 5 loads parameters back as trainable ones: the mask token and the blocks after the last tap then
    had no gradient while trainable, and DistributedDataParallel failed on its second step."""
    from .conftest import tiny_config

    model = RFDetrForObjectDetection(tiny_config(out_feature_indexes=[1, 2]))  # blocks 2 and 3 never run
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert "model.backbone.embeddings.mask_token" in frozen and any(".layers.3." in name for name in frozen)
    model.save_pretrained(tmp_path)
    for loaded in (
        RFDetrForObjectDetection.from_pretrained(tmp_path),
        RFDetrForObjectDetection.from_pretrained(tmp_path, output_loading_info=True)[0],
    ):
        assert {name for name, p in loaded.named_parameters() if not p.requires_grad} == frozen
        assert set(_gradients(loaded.train(), _pixels())) == {
            n for n, p in loaded.named_parameters() if p.requires_grad
        }


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model: RFDetrForObjectDetection) -> None:
    pixel_values = _pixels()
    expected = _gradients(tiny_model, pixel_values)
    tiny_model.gradient_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in tiny_model.model.backbone.layers)
    actual = _gradients(tiny_model, pixel_values)
    assert set(actual) == set(expected)
    for name, gradient in expected.items():
        torch.testing.assert_close(actual[name], gradient, atol=1e-5, rtol=1e-4, msg=name)


def test_save_and_load_restores_identical_outputs(tiny_model: RFDetrForObjectDetection, tmp_path) -> None:
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not (tmp_path / "pytorch_model.bin").exists()
    loaded = RFDetrForObjectDetection.from_pretrained(tmp_path).eval()
    pixel_values = _pixels()
    with torch.no_grad():
        expected, actual = tiny_model(pixel_values), loaded(pixel_values)
    assert (actual.logits - expected.logits).abs().max() <= 1e-6
    assert (actual.pred_boxes - expected.pred_boxes).abs().max() <= 1e-6


def test_new_label_set_reinitialises_only_the_class_heads(tiny_model: RFDetrForObjectDetection, tmp_path) -> None:
    tiny_model.save_pretrained(tmp_path)
    labels = {0: "car", 1: "truck", 2: "bus", 3: "van", 4: "bike"}
    model = RFDetrForObjectDetection.from_pretrained(
        tmp_path, id2label=labels, label2id={v: k for k, v in labels.items()}, ignore_mismatched_sizes=True
    )
    assert model.config.id2label == labels and model.config.label2id["van"] == 3
    assert model.class_embed.weight.shape == (5, 32)
    assert model.model.enc_out_class_embed.weight.shape == (3, 5, 32)
    prior = -math.log((1 - 0.01) / 0.01)
    torch.testing.assert_close(model.class_embed.bias, torch.full((5,), prior))
    torch.testing.assert_close(model.model.enc_out_class_embed.bias, torch.full((3, 5), prior))
    original = tiny_model.state_dict()
    for name, tensor in model.state_dict().items():
        if "class_embed" not in name:
            assert torch.equal(tensor, original[name]), name
    with torch.no_grad():
        assert model.eval()(_pixels()).logits.shape == (2, 20, 5)


def test_fresh_model_starts_from_the_reference_boxes() -> None:
    """DETR heads start with zeroed box deltas and a low prior on every class."""
    model = RFDetrForObjectDetection(tiny_config()).eval()
    assert torch.count_nonzero(model.bbox_embed.layers[-1].weight) == 0
    assert torch.count_nonzero(model.model.enc_out_bbox_embed.layers[-1].weight) == 0
    assert torch.count_nonzero(model.model.refpoint_embed.weight) == 0
    with torch.no_grad():
        out = model(_pixels())
    torch.testing.assert_close(out.pred_boxes[:, :20], out.enc_pred_boxes, atol=1e-6, rtol=0)
    assert out.logits.sigmoid().mean() < 0.05


def test_compiles_without_graph_breaks(tiny_model: RFDetrForObjectDetection) -> None:
    """No host syncs or data-dependent Python control flow in the forward (fullgraph fails on any graph break)."""
    torch._dynamo.reset()
    compiled = torch.compile(tiny_model, backend="eager", fullgraph=True)
    pixel_values = _pixels()
    with torch.no_grad():
        expected, actual = tiny_model(pixel_values), compiled(pixel_values)
    torch.testing.assert_close(actual.logits, expected.logits)


def test_batch_entries_are_independent(tiny_model: RFDetrForObjectDetection) -> None:
    pixel_values = _pixels(batch=3)
    with torch.no_grad():
        batched = tiny_model(pixel_values)
        single = tiny_model(pixel_values[1:2])
    torch.testing.assert_close(batched.logits[1:2], single.logits, atol=1e-5, rtol=0)


def test_perturbed_weights_reach_the_output() -> None:
    """The parity helper perturbs every tensor: each one must influence the logits or boxes."""
    model = perturb_(RFDetrForObjectDetection(tiny_config()), seed=3).eval()
    with torch.no_grad():
        reference = model(_pixels())
    for name, parameter in model.named_parameters():
        if name.endswith("mask_token"):
            continue
        with torch.no_grad():
            saved = parameter.clone()
            parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(7)) * 0.5)
            out = model(_pixels())
            parameter.copy_(saved)
        moved = sum(
            (getattr(out, key) - getattr(reference, key)).abs().max() for key in ("logits", "pred_boxes", "enc_logits")
        )
        assert moved > 1e-6, f"{name} does not influence the output"


def test_drop_path_ramps_over_the_blocks_and_is_off_in_eval() -> None:
    """drop_path_rate ramps linearly from 0 (first block) to the rate (last block) as torchvision `StochasticDepth`
    ("row": per image window); eval outputs equal those without it, training outputs differ."""
    from torchvision.ops import StochasticDepth

    with_drop = perturb_(RFDetrForObjectDetection(tiny_config(drop_path_rate=0.6)), seed=0)
    without = RFDetrForObjectDetection(tiny_config())
    without.load_state_dict(with_drop.state_dict())
    modules = [layer.drop_path for layer in with_drop.model.backbone.layers]
    assert all(isinstance(module, StochasticDepth) and module.mode == "row" for module in modules)
    assert [module.p for module in modules] == pytest.approx([0.0, 0.2, 0.4, 0.6])
    pixel_values = _pixels()
    with torch.no_grad():
        torch.testing.assert_close(with_drop.eval()(pixel_values).logits, without.eval()(pixel_values).logits)
        torch.manual_seed(0)
        dropped = with_drop.train()(pixel_values).logits
        torch.manual_seed(0)
        kept = without.train()(pixel_values).logits
    assert (dropped - kept).abs().max() > 1e-4, "drop path must change the training outputs"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("segmentation", [False, True], ids=["detection", "segmentation"])
def test_half_precision_weights_with_padding_and_labels(dtype: torch.dtype, segmentation: bool) -> None:
    """A model stored in bfloat16 / float16 (`from_pretrained(dtype=...)`, `model.half()`, the Trainer's
    `bf16_full_eval`) runs on a padded batch, as the pipeline sends one, and computes its loss: the padding's valid
    ratios (float32) used to turn the sampling boxes float32 in front of bfloat16 layers, and the matcher's `cdist`
    has no bfloat16 kernel on the CPU. Its scores stay those of float32 on the same (rounded) weights."""
    from hf_rfdetr import RFDetrForInstanceSegmentation

    torch.manual_seed(0)
    model_class = RFDetrForInstanceSegmentation if segmentation else RFDetrForObjectDetection
    model = perturb_(model_class(tiny_config(segmentation_head=segmentation)), seed=3).eval()
    model.to(dtype).float()  # float32 on the weights the half model holds
    pixel_values = _pixels()
    pixel_mask = torch.ones(2, 64, 64, dtype=torch.long)
    pixel_mask[1, :, 40:] = 0  # the second image is 40 px wide, padded to 64
    labels = [
        {"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.3]])},
        {"class_labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.4, 0.2, 0.2], [0.7, 0.6, 0.3, 0.5]])},
    ]
    if segmentation:
        for target in labels:
            target["masks"] = torch.zeros(len(target["boxes"]), 64, 64, dtype=torch.bool)
            target["masks"][:, 16:48, 8:32] = True
    with torch.no_grad():
        expected = model(pixel_values, pixel_mask=pixel_mask, labels=labels)
        actual = model.to(dtype)(pixel_values.to(dtype), pixel_mask=pixel_mask, labels=labels)
    assert actual.logits.dtype == actual.pred_boxes.dtype == dtype
    top = [outputs.logits.float().sigmoid().flatten(1).topk(20).values for outputs in (expected, actual)]
    torch.testing.assert_close(top[1], top[0], atol=0.01, rtol=0)  # measured: 1e-3
    assert (
        torch.isfinite(actual.loss) and abs(actual.loss.float() - expected.loss) < 0.06 * expected.loss
    )  # measured: 3%


@pytest.mark.parametrize(("num_windows", "height", "width"), [(1, 4, 6), (2, 4, 6), (3, 6, 9)])
def test_window_unpartition_restores_the_patch_grid_with_channels_last_strides(num_windows, height, width) -> None:
    grid = torch.randn(2, height * width, 5)  # (B, H * W, C), row-major
    tokens = torch.cat((torch.randn(2, 1, 5), grid), dim=1)
    windows = window_partition(tokens, height, width, num_windows)[:, 1:]  # without their CLS copies
    feature_map = window_unpartition(windows, height, width, num_windows)
    assert torch.equal(feature_map, grid.transpose(1, 2).reshape(2, 5, height, width))
    assert feature_map.stride()[1:] == (1, width * 5, 5)  # channels-last: (B, H, W, C) in memory
