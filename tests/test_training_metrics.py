"""COCO metrics computed with pycocotools on hand-checkable cases."""

from __future__ import annotations

import pytest
import torch

from hf_rfdetr.training.metrics import coco_metrics

SIZE = torch.tensor([100, 200])  # height, width


def _target(boxes_xyxy: list[list[float]], labels: list[int]) -> dict:
    boxes = torch.tensor(boxes_xyxy, dtype=torch.float32).reshape(-1, 4)
    cxcywh = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], dim=1)
    return {
        "class_labels": torch.tensor(labels),
        "boxes": cxcywh / torch.tensor([200, 100, 200, 100]),
        "orig_size": SIZE,
    }


def _prediction(boxes_xyxy: list[list[float]], labels: list[int], scores: list[float]) -> dict:
    return {
        "boxes": torch.tensor(boxes_xyxy, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels),
        "scores": torch.tensor(scores),
    }


def test_perfect_detections_score_one() -> None:
    target = _target([[10, 10, 60, 50], [100, 20, 180, 90]], [0, 1])
    prediction = _prediction([[10, 10, 60, 50], [100, 20, 180, 90]], [0, 1], [0.9, 0.8])
    metrics = coco_metrics([prediction], [target], id2label={0: "cat", 1: "dog"})
    assert metrics["map"] == pytest.approx(1.0) and metrics["map_50"] == pytest.approx(1.0)
    assert metrics["map_cat"] == pytest.approx(1.0) and metrics["map_dog"] == pytest.approx(1.0)
    assert metrics["mar_100"] == pytest.approx(1.0)


def test_partial_overlap_counts_the_iou_thresholds_it_passes() -> None:
    """IoU 0.62 passes the thresholds 0.50, 0.55 and 0.60 of the ten: AP = 0.3, AP50 = 1, AP75 = 0."""
    target = _target([[0, 0, 100, 60]], [0])
    prediction = _prediction([[0, 0, 62, 60]], [0], [0.9])  # intersection 3720 / union 6000 = 0.62
    metrics = coco_metrics([prediction], [target])
    assert metrics["map"] == pytest.approx(0.3, abs=1e-6)
    assert (metrics["map_50"], metrics["map_75"]) == (pytest.approx(1.0), pytest.approx(0.0))


def test_wrong_class_and_missing_detections_score_zero() -> None:
    target = _target([[10, 10, 60, 50]], [0])
    assert coco_metrics([_prediction([[10, 10, 60, 50]], [1], [0.9])], [target])["map"] == pytest.approx(0.0)
    assert coco_metrics([_prediction([], [], [])], [target])["map"] == 0.0


def test_false_positives_ranked_above_lower_precision() -> None:
    target = _target([[10, 10, 60, 50]], [0])
    clean = coco_metrics([_prediction([[10, 10, 60, 50]], [0], [0.9])], [target])["map_50"]
    noisy = coco_metrics([_prediction([[120, 10, 190, 90], [10, 10, 60, 50]], [0, 0], [0.95, 0.9])], [target])
    assert clean == pytest.approx(1.0) and noisy["map_50"] == pytest.approx(0.5, abs=0.01)


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError, match="2 predictions for 1 targets"):
        coco_metrics([_prediction([], [], [])] * 2, [_target([], [])])
