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


def test_detections_on_crowd_regions_are_ignored_as_pycocotools_does_on_the_json(tmp_path) -> None:
    """Crowd regions (`iscrowd=1`) were left out of the evaluation targets, so a detection on one counted as a false
    positive (mAP 0.5 where pycocotools on the COCO json gives 1.0). They now reach `coco_metrics` as `iscrowd`
    ground truth from the evaluation transform, never the loss's targets, and the metrics equal COCOeval's."""
    import contextlib
    import io
    import json

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from hf_rfdetr.training import apply_transforms, id2label_from_dataset, load_coco_folder
    from hf_rfdetr.training.metrics import _RECALLS, _STATS

    from .conftest import tiny_config
    from .synthetic_coco import write_synthetic_coco

    root = write_synthetic_coco(tmp_path / "coco", num_train=1, num_valid=3, image_size=(64, 96))
    annotation_file = root / "valid" / "_annotations.coco.json"
    document = json.loads(annotation_file.read_text())
    real = list(document["annotations"])
    for index, image in enumerate(document["images"]):  # one crowd region per image, of the first object's class
        first = next(annotation for annotation in real if annotation["image_id"] == image["id"])
        box = [2.0 + index, 40.0, 30.0, 20.0]
        document["annotations"].append(
            {**first, "id": 1000 + index, "bbox": box, "area": box[2] * box[3], "iscrowd": 1, "segmentation": []}
        )
    annotation_file.write_text(json.dumps(document))

    splits = load_coco_folder(root)
    names = id2label_from_dataset(splits)
    category_ids = {category["name"]: category["id"] for category in document["categories"]}
    transformed = apply_transforms(splits, tiny_config(id2label=names))
    position = {image["id"]: index for index, image in enumerate(document["images"])}
    detections = []  # every real object found (slightly off), one detection inside each crowd region, one miss
    for annotation in document["annotations"]:
        x, y, w, h = annotation["bbox"]
        box = [x + 1, y, w - 2, h] if annotation["iscrowd"] else [x + 0.5, y + 0.5, w, h]
        detections.append({**annotation, "bbox": box, "score": 0.95 if annotation["iscrowd"] else 0.6})
    detections.append({**detections[0], "bbox": [80.0, 2.0, 10.0, 10.0], "score": 0.3})

    predictions, targets = [], []
    for row, labels in zip(splits["validation"], (item["labels"] for item in transformed["validation"])):
        assert labels["class_labels"].tolist() == [  # the loss's targets: the non-crowd objects only
            label for label, crowd in zip(row["objects"]["category"], row["objects"]["iscrowd"]) if not crowd
        ]
        mine = [d for d in detections if position[d["image_id"]] == position[row["image_id"]]]
        by_name = {category_ids[name]: label for label, name in names.items()}
        predictions.append(
            {
                "scores": torch.tensor([d["score"] for d in mine]),
                "labels": torch.tensor([by_name[d["category_id"]] for d in mine]),
                "boxes": torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in mine)]),
            }
        )
        targets.append(labels)
    ours = coco_metrics(predictions, targets)

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(annotation_file))
        results = [{key: d[key] for key in ("image_id", "category_id", "bbox", "score")} for d in detections]
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    expected = dict(zip(_STATS + _RECALLS, evaluation.stats))
    assert expected["map"] > 0.5  # the crowd detections outscore every real one: counted, they would halve it
    for name in _STATS + _RECALLS:
        assert ours[name] == pytest.approx(expected[name], abs=1e-6), name
    assert "crowd_boxes" not in transformed["train"][0]["labels"]  # training targets carry no crowd regions
