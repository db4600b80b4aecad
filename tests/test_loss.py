"""The training loss equals the original rfdetr criterion (matcher + IA-BCE + L1 + GIoU, aux and two-stage terms)."""

from __future__ import annotations

import pytest
import torch

from hf_rfdetr import RFDetrForObjectDetection
from hf_rfdetr.models.rfdetr.loss_rfdetr import RFDetrLoss

from .conftest import converted_model, perturb_, reference_model, tiny_config


def _targets(seed: int, counts: list[int]) -> list[dict[str, torch.Tensor]]:
    """Random normalised cxcywh boxes inside the image and labels among the COCO slots; a count may be 0."""
    generator = torch.Generator().manual_seed(seed)
    targets = []
    for count in counts:
        centers = torch.rand(count, 2, generator=generator) * 0.6 + 0.2
        sizes = torch.rand(count, 2, generator=generator) * 0.3 + 0.05
        labels = torch.randint(0, 91, (count,), generator=generator)
        targets.append({"class_labels": labels, "boxes": torch.cat([centers, sizes], dim=-1)})
    return targets


def _reference_criterion(training: bool):
    from rfdetr.config import RFDETRNanoConfig, TrainConfig
    from rfdetr.models.lwdetr import build_criterion_from_config

    criterion, _ = build_criterion_from_config(
        RFDETRNanoConfig(device="cpu"), TrainConfig(dataset_dir=".", output_dir=".")
    )
    return criterion.train(training)


def _layers(outputs: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    layers = {"": (outputs["pred_logits"], outputs["pred_boxes"])}
    layers.update({f"_{i}": (a["pred_logits"], a["pred_boxes"]) for i, a in enumerate(outputs["aux_outputs"])})
    layers["_enc"] = (outputs["enc_outputs"]["pred_logits"], outputs["enc_outputs"]["pred_boxes"])
    return layers


@pytest.mark.reference
@pytest.mark.parametrize(("training", "counts"), [(True, [3, 0, 7]), (False, [5, 1, 0]), (True, [0, 0, 0])])
def test_loss_terms_equal_the_original_criterion(training: bool, counts: list[int]) -> None:
    """Same model outputs and targets into both criteria: every term equal to 1e-5 (images without objects too)."""
    reference = reference_model("nano")
    reference.train(training)
    try:
        with torch.no_grad():
            outputs = reference(torch.randn(3, 3, 384, 384, generator=torch.Generator().manual_seed(5)))
    finally:
        reference.eval()
    targets = _targets(seed=sum(counts), counts=counts)
    original_targets = [{"labels": t["class_labels"], "boxes": t["boxes"]} for t in targets]
    criterion = _reference_criterion(training)
    expected = criterion(outputs, original_targets)
    ours = RFDetrLoss(converted_model("nano").config)
    total, actual = ours(_layers(outputs), targets, num_groups=13 if training else 1)
    weighted = {name: value for name, value in expected.items() if name in criterion.weight_dict}
    assert set(actual) == set(weighted) and len(actual) == 3 * 3  # last layer, 1 earlier layer, two-stage
    for name, value in weighted.items():
        assert abs(actual[name].item() - value.item()) <= 1e-5, (name, actual[name].item(), value.item())
    expected_total = sum(value * criterion.weight_dict[name] for name, value in weighted.items())
    assert abs(total.item() - expected_total.item()) <= 1e-4
    if sum(counts):
        assert actual["loss_bbox"] > 0 and actual["loss_giou"] > 0
    else:
        assert actual["loss_bbox"] == 0 and actual["loss_ce"] > 0  # every logit is pushed down


@pytest.mark.reference
def test_model_forward_with_labels_matches_the_original_loss() -> None:
    """End to end: our model in training mode with `labels` equals original model + original criterion."""
    reference, ours = reference_model("nano"), converted_model("nano")
    pixel_values = torch.randn(2, 3, 384, 384, generator=torch.Generator().manual_seed(6))
    targets = _targets(seed=6, counts=[4, 2])
    reference.train(), ours.train()
    try:
        with torch.no_grad():
            expected = _reference_criterion(True)(
                reference(pixel_values), [{"labels": t["class_labels"], "boxes": t["boxes"]} for t in targets]
            )
            actual = ours(pixel_values, labels=targets)
    finally:
        reference.eval(), ours.eval()
    for name, value in actual.loss_dict.items():
        assert abs(value.item() - expected[name].item()) <= 1e-4, name


def test_loss_trains_the_tiny_model() -> None:
    """A few optimiser steps on one image lower the loss; every trainable parameter gets a finite gradient."""
    torch.manual_seed(0)
    model = RFDetrForObjectDetection(tiny_config()).train()
    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    labels = [
        {"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.3]])},
        {"class_labels": torch.tensor([], dtype=torch.long), "boxes": torch.zeros(0, 4)},
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        output = model(pixel_values, labels=labels)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert set(output.loss_dict) == {
        f"{n}{s}" for n in ("loss_ce", "loss_bbox", "loss_giou") for s in ("", "_0", "_enc")
    }
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_eval_mode_loss_uses_one_group_and_returns_auxiliary_outputs() -> None:
    model = perturb_(RFDetrForObjectDetection(tiny_config()), seed=2).eval()
    labels = [
        {"class_labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]])}
    ]
    with torch.no_grad():
        output = model(torch.randn(1, 3, 64, 64), labels=labels)
    assert output.logits.shape == (1, 20, 3) and len(output.auxiliary_outputs) == 1
    assert output.loss > 0 and torch.isfinite(output.loss)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([{"boxes": torch.zeros(1, 4)}], r"labels\[0\] needs 'class_labels' and 'boxes'"),
        ([{"class_labels": torch.tensor([0]), "boxes": torch.zeros(1, 5)}], r"boxes must be \(N, 4\)"),
        ([{"class_labels": torch.tensor([3]), "boxes": torch.rand(1, 4)}], r"class_labels must be in \[0, 3\)"),
        ([], r"labels must be a list of 1 dicts"),
        # pixel boxes trained silently (loss 1477 instead of 13); float class ids and lists failed deep in the loss
        (
            [{"class_labels": torch.tensor([0]), "boxes": torch.tensor([[10.0, 10, 40, 40]])}],
            r"normalised cxcywh in \[0, 1\] \(divide pixel",
        ),
        ([{"class_labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, float("nan"), 0.2, 0.2]])}], r"in \[0, 1\]"),
        (
            [{"class_labels": torch.tensor([0.0]), "boxes": torch.rand(1, 4)}],
            r"class_labels integer class ids; got torch.float32",
        ),
        ([{"class_labels": [0], "boxes": [[0.5, 0.5, 0.2, 0.2]]}], r"must be torch tensors; got list and list"),
    ],
)
def test_bad_labels_are_named(labels, message) -> None:
    model = RFDetrForObjectDetection(tiny_config()).train()
    with pytest.raises(ValueError, match=message):
        model(torch.randn(1, 3, 64, 64), labels=labels)
