"""Segmentation loss: the mask matching costs and mask losses equal rfdetr 1.11.2's matcher and SetCriterion."""

from __future__ import annotations

import pytest
import torch

from hf_rfdetr import RFDetrConfig
from hf_rfdetr.models.rfdetr.heads_rfdetr import RFDetrMaskFactors
from hf_rfdetr.models.rfdetr.loss_rfdetr import (
    RFDetrLoss,
    _matched_mask_logits,
    _sample_matched_targets,
    check_labels,
    point_sample,
)

NUM_CLASSES = 91


def _outputs(seed: int, batch_size: int, num_queries: int, channels: int = 16, size: int = 20, layers: int = 3):
    """The original's training outputs (mask logits as factor dicts) for `layers` layers: last, aux..., enc."""
    generator = torch.Generator().manual_seed(seed)

    def layer() -> dict:
        return {
            "pred_logits": torch.randn(batch_size, num_queries, NUM_CLASSES, generator=generator),
            "pred_boxes": torch.rand(batch_size, num_queries, 4, generator=generator) * 0.5 + 0.2,
            "pred_masks": {
                "spatial_features": torch.randn(batch_size, channels, size, size, generator=generator),
                "query_features": torch.randn(batch_size, num_queries, channels, generator=generator) * 0.5,
                "bias": torch.randn(1, generator=generator),
            },
        }

    per_layer = [layer() for _ in range(layers)]
    outputs = dict(per_layer[0])
    outputs["aux_outputs"] = per_layer[1:-1]
    outputs["enc_outputs"] = per_layer[-1]
    return outputs


def _targets(seed: int, counts: list[int], size: int) -> list[dict[str, torch.Tensor]]:
    """Random boxes with ragged masks inside them at the padded input size (size, size); a count may be 0."""
    generator = torch.Generator().manual_seed(seed)
    coordinates = torch.arange(size) / size
    targets = []
    for count in counts:
        centers = torch.rand(count, 2, generator=generator) * 0.6 + 0.2
        sizes = torch.rand(count, 2, generator=generator) * 0.3 + 0.05
        inside_x = (coordinates[None, None, :] - centers[:, :1, None]).abs() < sizes[:, :1, None] / 2
        inside_y = (coordinates[None, :, None] - centers[:, 1:, None]).abs() < sizes[:, 1:, None] / 2
        masks = inside_x & inside_y & (torch.rand(count, size, size, generator=generator) > 0.2)
        labels = torch.randint(0, NUM_CLASSES, (count,), generator=generator)
        targets.append({"class_labels": labels, "boxes": torch.cat([centers, sizes], dim=-1), "masks": masks})
    return targets


def _factors(layer: dict) -> RFDetrMaskFactors:
    masks = layer["pred_masks"]
    return RFDetrMaskFactors(masks["spatial_features"], masks["query_features"], masks["bias"])


def _layers(outputs: dict) -> dict:
    """Our criterion's input built from the same tensors as the original's output dicts."""
    layers = {"": (outputs["pred_logits"], outputs["pred_boxes"], _factors(outputs))}
    for index, aux in enumerate(outputs["aux_outputs"]):
        layers[f"_{index}"] = (aux["pred_logits"], aux["pred_boxes"], _factors(aux))
    enc = outputs["enc_outputs"]
    layers["_enc"] = (enc["pred_logits"], enc["pred_boxes"], _factors(enc))
    return layers


def _original_targets(targets: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    return [{"labels": t["class_labels"], "boxes": t["boxes"], "masks": t["masks"]} for t in targets]


def _reference_criterion(training: bool):
    from rfdetr.config import RFDETRSegNanoConfig, SegmentationTrainConfig
    from rfdetr.models.lwdetr import build_criterion_from_config

    criterion, _ = build_criterion_from_config(
        RFDETRSegNanoConfig(device="cpu"), SegmentationTrainConfig(dataset_dir=".", output_dir=".")
    )
    return criterion.train(training)


def _criterion(**overrides) -> RFDetrLoss:
    return RFDetrLoss(RFDetrConfig.from_variant("seg-nano", **overrides))


CASES = [
    (13, [3, 0, 5]),  # train mode (13 Group DETR groups), one image without objects
    (13, [4]),  # batch size 1
    (13, [0, 0, 0]),  # every image empty
    (1, [2, 6, 1]),  # eval numbers (one group)
    (1, [0, 3, 0]),
    (1, [0]),
]


@pytest.mark.reference
@pytest.mark.parametrize(("num_groups", "counts"), CASES)
def test_loss_terms_equal_the_original_criterion(num_groups: int, counts: list[int]) -> None:
    """Same tensors and the same seed into both criteria: every term (masks, boxes, classes; last, aux and enc
    layers) equal to 1e-5."""
    outputs = _outputs(seed=num_groups + sum(counts), batch_size=len(counts), num_queries=10 * num_groups)
    targets = _targets(seed=len(counts), counts=counts, size=80)
    criterion = _reference_criterion(training=num_groups > 1)
    torch.manual_seed(7)
    expected = criterion(outputs, _original_targets(targets))
    torch.manual_seed(7)
    total, actual = _criterion()(_layers(outputs), targets, num_groups)

    weighted = {name: value for name, value in expected.items() if name in criterion.weight_dict}
    assert set(actual) == set(weighted) and len(actual) == 5 * 3  # last layer, 1 earlier layer, two-stage
    for name, value in weighted.items():
        assert abs(actual[name].item() - value.item()) <= 1e-5, (name, actual[name].item(), value.item())
    expected_total = sum(value * criterion.weight_dict[name] for name, value in weighted.items())
    assert abs(total.item() - expected_total.item()) <= 1e-4
    for suffix in ("", "_0", "_enc"):
        mask_terms = actual[f"loss_mask_ce{suffix}"], actual[f"loss_mask_dice{suffix}"]
        assert all((term > 0.1) == (sum(counts) > 0) for term in mask_terms), mask_terms


@pytest.mark.reference
def test_different_points_give_different_numbers() -> None:
    """The parity above is not vacuous: another seed (other points) moves the mask terms well past 1e-5."""
    outputs = _outputs(seed=3, batch_size=2, num_queries=20)
    targets = _targets(seed=3, counts=[3, 2], size=80)
    criterion = _reference_criterion(training=False)
    torch.manual_seed(7)
    expected = criterion(outputs, _original_targets(targets))
    torch.manual_seed(8)
    _, actual = _criterion()(_layers(outputs), targets, 1)
    assert abs(actual["loss_mask_ce"].item() - expected["loss_mask_ce"].item()) > 1e-4


@pytest.mark.reference
@pytest.mark.parametrize(("num_groups", "counts"), [(13, [3, 0, 5]), (1, [5]), (1, [2, 0, 4])])
def test_matcher_assignment_equals_the_original(num_groups: int, counts: list[int]) -> None:
    """The matcher with mask costs gives the original's assignment on every layer (same seed per call)."""
    outputs = _outputs(seed=11 + sum(counts), batch_size=len(counts), num_queries=6 * num_groups)
    targets = _targets(seed=12, counts=counts, size=80)
    original = _reference_criterion(training=num_groups > 1).matcher
    ours = _criterion().matcher
    target_masks = RFDetrLoss.target_masks(targets)
    for layer in [outputs, *outputs["aux_outputs"], outputs["enc_outputs"]]:
        torch.manual_seed(3)
        expected = original(layer, _original_targets(targets), group_detr=num_groups)
        torch.manual_seed(3)
        actual = ours(
            layer["pred_logits"],
            layer["pred_boxes"],
            targets,
            num_groups,
            mask_factors=_factors(layer),
            target_masks=target_masks,
        )
        for (rows, columns), (expected_rows, expected_columns) in zip(actual, expected, strict=True):
            assert rows.tolist() == expected_rows.tolist() and columns.tolist() == expected_columns.tolist()


def _two_candidates() -> tuple[tuple, list[dict[str, torch.Tensor]]]:
    """Two queries with equal class logits and boxes; query 1's mask is the target's, query 0's its inverse."""
    target = torch.zeros(16, 16, dtype=torch.bool)
    target[4:12, 2:9] = True
    spatial = torch.where(target[::2, ::2], 1.0, -1.0)[None, None]  # (1, 1, 8, 8): mask logits at 1/2 size
    queries = torch.tensor([[[-8.0], [8.0]]])
    factors = RFDetrMaskFactors(spatial, queries, torch.zeros(1))
    logits = torch.zeros(1, 2, NUM_CLASSES)
    boxes = torch.tensor([[[0.35, 0.5, 0.45, 0.5], [0.35, 0.5, 0.45, 0.5]]])
    targets = [{"class_labels": torch.tensor([3]), "boxes": torch.tensor([[0.35, 0.5, 0.45, 0.5]]), "masks": target}]
    targets[0]["masks"] = target[None]
    return (logits, boxes, factors), targets


def test_the_mask_cost_decides_between_queries_with_equal_boxes() -> None:
    """Fails if the matcher ignores the mask cost: only the masks tell the two queries apart."""
    (logits, boxes, factors), targets = _two_candidates()
    target_masks = RFDetrLoss.target_masks(targets)
    with_masks = _criterion(mask_point_sample_ratio=1).matcher
    ((rows, columns),) = with_masks(logits, boxes, targets, 1, mask_factors=factors, target_masks=target_masks)
    assert rows.tolist() == [1] and columns.tolist() == [0]
    without_masks = _criterion(mask_point_sample_ratio=1, mask_ce_cost=0.0, mask_dice_cost=0.0).matcher
    ((rows, _),) = without_masks(logits, boxes, targets, 1, mask_factors=factors, target_masks=target_masks)
    assert rows.tolist() == [0]  # a tie: the first query wins, so the check above is a real one

    layers = {"": (logits, boxes, factors)}
    _, good = _criterion(mask_point_sample_ratio=1)(layers, targets, 1, generator=torch.Generator().manual_seed(0))
    bad_criterion = _criterion(mask_point_sample_ratio=1, mask_ce_cost=0.0, mask_dice_cost=0.0)
    _, bad = bad_criterion(layers, targets, 1, generator=torch.Generator().manual_seed(0))
    assert good["loss_mask_dice"] < 0.2 < 0.8 < bad["loss_mask_dice"]  # the matched mask is the target's / inverse
    assert good["loss_mask_ce"] < 0.3 < 4.0 < bad["loss_mask_ce"]


def test_gradients_reach_the_factors_of_matched_queries_only() -> None:
    outputs = _outputs(seed=1, batch_size=2, num_queries=12, layers=2)
    targets = _targets(seed=1, counts=[2, 1], size=80)
    layers = _layers(outputs)
    factors = [layer[2] for layer in layers.values()]
    for factor in factors:
        for tensor in factor:
            tensor.requires_grad_(True)
    criterion = _criterion()
    _, losses = criterion(layers, targets, num_groups=3)
    (losses["loss_mask_ce"] + losses["loss_mask_dice"]).backward()
    last = factors[0]
    assert last.spatial_features.grad.abs().sum() > 0 and last.bias.grad.abs().sum() > 0
    touched = (last.query_features.grad.abs().sum(-1) > 0).sum(-1)
    assert touched.tolist() == [2 * 3, 1 * 3]  # each target matched once per group; the rest untouched
    assert factors[1].query_features.grad is None  # the "_enc" layer's terms were not in this backward


@pytest.mark.parametrize("counts", [[0], [0, 0, 0], [0, 2, 0]])
def test_images_without_objects(counts: list[int]) -> None:
    """Empty images alone, all empty, and mixed: finite terms; all empty gives 0 connected to the graph (DDP)."""
    outputs = _outputs(seed=2, batch_size=len(counts), num_queries=12)
    targets = _targets(seed=2, counts=counts, size=80)
    layers = _layers(outputs)
    for layer in layers.values():
        for tensor in layer[2]:
            tensor.requires_grad_(True)
    total, losses = _criterion()(layers, targets, num_groups=3)
    assert len(losses) == 15 and all(torch.isfinite(value) for value in losses.values())
    total.backward()
    for suffix, layer in layers.items():
        mask_terms = losses[f"loss_mask_ce{suffix}"], losses[f"loss_mask_dice{suffix}"]
        if sum(counts):
            assert all(term > 0.1 for term in mask_terms)
        else:
            assert all(term.item() == 0.0 and term.requires_grad for term in mask_terms)
        assert all(tensor.grad is not None for tensor in layer[2])


def test_generator_gives_reproducible_points_without_touching_the_global_rng() -> None:
    outputs = _outputs(seed=4, batch_size=2, num_queries=12)
    targets = _targets(seed=4, counts=[3, 1], size=80)
    criterion = _criterion()
    state = torch.get_rng_state()
    _, first = criterion(_layers(outputs), targets, 3, generator=torch.Generator().manual_seed(1))
    _, again = criterion(_layers(outputs), targets, 3, generator=torch.Generator().manual_seed(1))
    _, other = criterion(_layers(outputs), targets, 3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert abs(first["loss_mask_ce"] - other["loss_mask_ce"]) > 1e-4


def test_detection_layers_keep_the_detection_terms() -> None:
    """Layers without mask factors give the three detection terms only, and the same numbers as with them."""
    outputs = _outputs(seed=5, batch_size=2, num_queries=12)
    targets = _targets(seed=5, counts=[2, 3], size=80)
    criterion = _criterion(mask_ce_cost=0.0, mask_dice_cost=0.0)  # same assignment with and without masks
    _, detection = criterion({s: layer[:2] for s, layer in _layers(outputs).items()}, targets, 3)
    _, segmentation = criterion(_layers(outputs), targets, 3)
    assert sorted(detection) == sorted(name for name in segmentation if "mask" not in name)
    assert all(torch.equal(detection[name], segmentation[name]) for name in detection)


def test_matched_mask_logits_equal_the_dense_logits() -> None:
    """The batched gather of matched maps equals `.dense()` at the matches (uneven counts, an unmatched image)."""
    factors = _factors(_outputs(seed=6, batch_size=3, num_queries=9)["enc_outputs"])
    image_index = torch.tensor([0, 0, 0, 2])
    query_index = torch.tensor([4, 0, 8, 3])
    expected = factors.dense()[image_index, query_index]
    torch.testing.assert_close(_matched_mask_logits(factors, image_index, query_index), expected)


def test_matched_targets_are_sampled_at_each_match_s_own_points() -> None:
    """Grouping the points by target gives what sampling one mask copy per match gives."""
    target_masks = (torch.rand(3, 1, 24, 24, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    target_index = torch.tensor([2, 0, 2, 2, 1, 0])
    coords = torch.rand(6, 50, 2, generator=torch.Generator().manual_seed(1))
    expected = point_sample(target_masks[target_index], coords, mode="nearest").squeeze(1)
    assert torch.equal(_sample_matched_targets(target_masks, target_index, coords), expected)


def test_point_sample_reads_pixel_centres_and_clamps_at_the_border() -> None:
    values = torch.arange(12.0).view(1, 1, 3, 4)
    coords = torch.tensor([[[(2 + 0.5) / 4, (1 + 0.5) / 3], [0.0, 0.0], [0.999, 0.999]]])
    assert point_sample(values, coords).flatten().tolist() == pytest.approx([6.0, 0.0, 11.0])


def test_malformed_masks_are_reported() -> None:
    targets = _targets(seed=0, counts=[2, 1], size=40)
    check_labels(targets, 2, NUM_CLASSES, mask_size=(40, 40))
    with pytest.raises(ValueError, match=r"labels\[1\]\['masks'\].*\(1, 40, 40\); got \(1, 32, 40\)"):
        check_labels(targets[:1] + [dict(targets[1], masks=targets[1]["masks"][:, :32])], 2, NUM_CLASSES, (40, 40))
    with pytest.raises(ValueError, match=r"labels\[0\]\['masks'\].*got NoneType"):
        check_labels([{k: v for k, v in targets[0].items() if k != "masks"}], 1, NUM_CLASSES, (40, 40))
    layers = {"": (torch.zeros(1, 3, NUM_CLASSES), torch.full((1, 3, 4), 0.5), _factors(_outputs(0, 1, 3)))}
    with pytest.raises(ValueError, match=r"labels\[0\]\['masks'\]"):
        _criterion()(layers, [{k: v for k, v in targets[0].items() if k != "masks"}], 1)


def test_half_precision_factors() -> None:
    """bfloat16 mask factors (a model cast to bfloat16) give finite terms close to float32's, same points."""
    outputs = _outputs(seed=9, batch_size=2, num_queries=12)
    targets = _targets(seed=9, counts=[2, 1], size=80)
    layers = _layers(outputs)
    half = {
        suffix: (logits, boxes, RFDetrMaskFactors(*(tensor.bfloat16() for tensor in factors)))
        for suffix, (logits, boxes, factors) in layers.items()
    }
    criterion = _criterion(mask_ce_cost=0.0, mask_dice_cost=0.0)  # the same assignment in both precisions
    _, full = criterion(layers, targets, 3, generator=torch.Generator().manual_seed(0))
    _, reduced = criterion(half, targets, 3, generator=torch.Generator().manual_seed(0))
    for name in ("loss_mask_ce", "loss_mask_dice", "loss_mask_ce_enc"):
        assert torch.isfinite(reduced[name]) and abs(reduced[name].float() - full[name]) < 0.05 * full[name]
