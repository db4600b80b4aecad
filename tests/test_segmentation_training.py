"""Training and evaluating RF-DETR Seg models: mask (`segm`) COCO metrics on hand-built cases, the Trainer's evaluation
of segmentation outputs, `fine_tune` / `hf-rfdetr train` / `hf-rfdetr eval` with a Seg model, and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hf_rfdetr import RFDetrForInstanceSegmentation, RFDetrImageProcessor, fine_tune
from hf_rfdetr.cli import main
from hf_rfdetr.training.fine_tune import _best_model_metric, is_segmentation_model
from hf_rfdetr.training.metrics import (
    RLE_KEY,
    coco_metrics,
    encode_masks,
    pack_rles,
    pack_target_masks,
    post_process_segmentation,
    unpack_rles,
)

from .conftest import tiny_config
from .synthetic_coco import class_names, write_synthetic_coco

HEIGHT, WIDTH = 100, 200
COMMON = dict(batch_size=4, grad_accum_steps=1, device="cpu", tensorboard=False, num_workers=0, lr=1e-3)


def _masks(*rectangles: tuple[int, int, int, int]) -> torch.Tensor:
    """(N, HEIGHT, WIDTH) bool masks, one filled xyxy rectangle each."""
    masks = torch.zeros(len(rectangles), HEIGHT, WIDTH, dtype=torch.bool)
    for index, (x0, y0, x1, y1) in enumerate(rectangles):
        masks[index, y0:y1, x0:x1] = True
    return masks


def _target(rectangles: list[tuple[int, int, int, int]], labels: list[int], masks: torch.Tensor) -> dict:
    boxes = torch.tensor(rectangles, dtype=torch.float32).reshape(-1, 4)
    cxcywh = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], dim=1)
    return {
        "class_labels": torch.tensor(labels, dtype=torch.int64),
        "boxes": cxcywh / torch.tensor([WIDTH, HEIGHT, WIDTH, HEIGHT]),
        "orig_size": torch.tensor([HEIGHT, WIDTH]),
        "masks": masks,
    }


def _prediction(rectangles: list[tuple[int, int, int, int]], labels: list[int], scores: list[float], masks) -> dict:
    return {
        "boxes": torch.tensor(rectangles, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": torch.tensor(scores),
        RLE_KEY: pack_rles(encode_masks(masks)),
    }


def seg_config(**overrides):
    return tiny_config(segmentation_head=True, **overrides)


# ----------------------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------------------


def test_rle_packing_round_trips() -> None:
    masks = _masks((10, 10, 60, 50), (0, 0, 200, 100), (0, 0, 0, 0))
    counts = encode_masks(masks)
    assert unpack_rles(pack_rles(counts)) == counts and unpack_rles(pack_rles([])) == []
    assert unpack_rles(pack_rles(counts).numpy()) == counts  # as the Trainer hands it over
    target = pack_target_masks({"orig_size": torch.tensor([HEIGHT, WIDTH]), "masks": masks})
    assert "masks" not in target and unpack_rles(target[RLE_KEY]) == counts


def test_perfect_masks_score_one_per_class_too() -> None:
    rectangles = [(10, 10, 60, 50), (100, 20, 180, 90)]
    masks = _masks(*rectangles)
    metrics = coco_metrics(
        [_prediction(rectangles, [0, 1], [0.9, 0.8], masks)],
        [_target(rectangles, [0, 1], masks)],
        id2label={0: "cat", 1: "dog"},
    )
    for name in ("map", "map_50", "segm_map", "segm_map_50", "segm_map_75", "segm_map_cat", "segm_map_dog"):
        assert metrics[name] == pytest.approx(1.0), name
    assert metrics["segm_mar_100"] == pytest.approx(1.0)


def test_shifted_mask_scores_the_iou_thresholds_it_passes() -> None:
    """A 100x60 mask shifted right by 20 px: IoU 80 * 60 / (120 * 60) = 0.667 passes 0.50, 0.55, 0.60 and 0.65 of the ten
    thresholds: mask AP 0.4, AP50 1, AP75 0; the boxes are exact, so box AP stays 1."""
    rectangle = (20, 20, 120, 80)
    metrics = coco_metrics(
        [_prediction([rectangle], [0], [0.9], _masks((40, 20, 140, 80)))],
        [_target([rectangle], [0], _masks(rectangle))],
    )
    assert metrics["map"] == pytest.approx(1.0)
    assert metrics["segm_map"] == pytest.approx(0.4, abs=1e-6)
    assert (metrics["segm_map_50"], metrics["segm_map_75"]) == (pytest.approx(1.0), pytest.approx(0.0))


def test_target_masks_at_the_network_input_are_resized_back() -> None:
    """Targets with masks at the model's square input (what the evaluation transform gives) are compared at the
    original size after a nearest-neighbour resize: a mask on the grid of both sizes stays exact."""
    rectangle = (20, 20, 120, 80)
    square = torch.zeros(1, 50, 50, dtype=torch.bool)
    square[0, 10:40, 5:30] = True  # (20, 20, 120, 80) in the 200 x 100 image, scaled by 1/4 and 1/2
    metrics = coco_metrics(
        [_prediction([rectangle], [0], [0.9], _masks(rectangle))], [_target([rectangle], [0], square)]
    )
    assert metrics["segm_map"] == pytest.approx(1.0)


def test_wrong_class_mask_and_missing_target_masks() -> None:
    rectangle = (20, 20, 120, 80)
    target = _target([rectangle], [0], _masks(rectangle))
    wrong = coco_metrics([_prediction([rectangle], [1], [0.9], _masks(rectangle))], [target])
    assert wrong["segm_map"] == pytest.approx(0.0)
    empty = coco_metrics([_prediction([], [], [], _masks())], [target])
    assert empty["segm_map"] == 0.0 and empty["map"] == 0.0
    without = {key: value for key, value in target.items() if key != "masks"}
    with pytest.raises(ValueError, match="target 0 has no masks, but the predictions do"):
        coco_metrics([_prediction([rectangle], [0], [0.9], _masks(rectangle))], [without])


def test_detection_predictions_report_no_mask_metrics() -> None:
    rectangle = (20, 20, 120, 80)
    prediction = {key: value for key, value in _prediction([rectangle], [0], [0.9], _masks(rectangle)).items()}
    del prediction[RLE_KEY]
    metrics = coco_metrics([prediction], [_target([rectangle], [0], _masks(rectangle))])
    assert metrics["map"] == pytest.approx(1.0) and not any(key.startswith("segm_") for key in metrics)


def test_post_process_segmentation_matches_the_processor() -> None:
    torch.manual_seed(0)
    logits, boxes = torch.randn(2, 20, 3), torch.rand(2, 20, 4) * 0.5 + 0.25
    masks = torch.randn(2, 20, 16, 16)
    sizes = [(40, 60), (64, 32)]
    packed = post_process_segmentation(logits, boxes, masks, sizes, top_k=10)
    expected = RFDetrImageProcessor().post_process_instance_segmentation(
        {"logits": logits, "pred_boxes": boxes, "pred_masks": masks}, 0.0, sizes, top_k=10
    )
    for image, reference, size in zip(packed, expected, sizes):
        assert torch.equal(image["labels"], reference["labels"]) and torch.allclose(image["scores"], reference["scores"])
        assert unpack_rles(image[RLE_KEY]) == encode_masks(reference["masks"]) and len(reference["masks"]) == 10
        assert tuple(reference["masks"].shape[-2:]) == size


# ----------------------------------------------------------------------------------------------------------------------
# Model choice
# ----------------------------------------------------------------------------------------------------------------------


def test_segmentation_models_are_recognised(tmp_path: Path) -> None:
    assert is_segmentation_model("seg-nano") and is_segmentation_model("RFDETRSegNano")
    assert not is_segmentation_model("nano") and not is_segmentation_model("RFDETRBase")
    RFDetrForInstanceSegmentation(seg_config()).save_pretrained(tmp_path / "seg")
    assert is_segmentation_model(tmp_path / "seg") and is_segmentation_model(str(tmp_path / "seg"))
    assert is_segmentation_model(RFDetrForInstanceSegmentation(seg_config()))
    assert _best_model_metric(True, False) == "eval_segm_map" and _best_model_metric(True, True) == "eval_ema_segm_map"
    assert _best_model_metric(False, False) == "eval_map"


# ----------------------------------------------------------------------------------------------------------------------
# fine_tune, train, eval
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seg_dataset_dir(tmp_path_factory) -> Path:
    return write_synthetic_coco(
        tmp_path_factory.mktemp("coco") / "shapes", num_train=8, num_valid=4, image_size=(64, 80), masks=True
    )


def test_fine_tune_trains_and_evaluates_a_seg_model(seg_dataset_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = RFDetrForInstanceSegmentation(seg_config(id2label=dict(enumerate(class_names(3)))))
    output = tmp_path / "run"
    trainer = fine_tune(model, seg_dataset_dir, epochs=2, checkpoint_interval=1, output_dir=output, **COMMON)
    assert isinstance(trainer.model, RFDetrForInstanceSegmentation)
    evaluations = [entry for entry in trainer.state.log_history if "eval_map" in entry]
    assert len(evaluations) == 2
    for entry in evaluations:
        for name in ("eval_segm_map", "eval_segm_map_50", "eval_ema_segm_map", "eval_segm_map_red-rectangle"):
            assert 0.0 <= entry[name] <= 1.0, (name, entry)
    losses = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(torch.isfinite(torch.tensor(entry["loss"])) for entry in losses)
    saved = RFDetrForInstanceSegmentation.from_pretrained(output)
    assert saved.config.segmentation_head and saved.config.id2label == trainer.model.config.id2label
    results = json.loads((output / "eval_results.json").read_text())
    assert "eval_segm_map" in results and "eval_map" in results
