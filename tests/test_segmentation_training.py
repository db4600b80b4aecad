"""Training and evaluating RF-DETR Seg models: mask (`segm`) COCO metrics on hand-built cases, the Trainer's evaluation
of segmentation outputs, `fine_tune` / `hf-rfdetr train` / `hf-rfdetr eval` with a Seg model, and resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from hf_rfdetr import RFDetrForInstanceSegmentation, RFDetrImageProcessor, fine_tune
from hf_rfdetr.cli import main
from hf_rfdetr.commands.eval import segm_predictions_path
from hf_rfdetr.training.fine_tune import _best_model_metric, is_segmentation_model
from hf_rfdetr.training.metrics import (
    GT_CROWD_KEY,
    GT_LABELS_KEY,
    GT_RLE_KEY,
    RLE_KEY,
    coco_metrics,
    encode_masks,
    pack_rles,
    pack_target_masks,
    post_process_segmentation,
    unpack_rles,
    with_evaluation_ground_truth,
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
    with pytest.raises(ValueError, match="target 0 has no masks, but the predictions do") as info:
        coco_metrics([_prediction([rectangle], [0], [0.9], _masks(rectangle))], [without])
    # CLI users have no masks=True option: the message says what to do there too
    assert "hf-rfdetr train / eval with a Seg --model (seg-nano, ...) read every annotation's" in str(info.value)
    assert "in Python, load_coco_folder(path, masks=True) reads them" in str(info.value)


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
        assert torch.equal(image["labels"], reference["labels"]) and torch.allclose(
            image["scores"], reference["scores"]
        )
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


def test_crowd_regions_of_the_annotations_are_ignored_not_false_positives() -> None:
    """A confident detection on a crowd region costs nothing when the ground truth has the region as iscrowd (mask AP
    1.0), and is a false positive ranked first without it (AP50 = 0.5: precision 1/2 at the only true positive)."""
    rectangle, crowd_region = (20, 20, 80, 80), (120, 10, 190, 90)
    masks = _masks(rectangle, crowd_region)
    target = _target([rectangle], [0], masks[:1])
    target |= {
        GT_RLE_KEY: pack_rles(encode_masks(masks)),
        GT_LABELS_KEY: torch.tensor([0, 0]),
        GT_CROWD_KEY: torch.tensor([0, 1]),
    }
    prediction = _prediction([crowd_region, rectangle], [0, 0], [0.95, 0.9], masks.flip(0))
    assert coco_metrics([prediction], [target])["segm_map"] == pytest.approx(1.0)
    without_crowd = {key: value for key, value in target.items() if not key.startswith("annotated_")}  # its own masks
    assert coco_metrics([prediction], [without_crowd])["segm_map_50"] == pytest.approx(0.5, abs=0.01)


def test_evaluation_targets_carry_the_annotated_masks(tmp_path: Path) -> None:
    """`with_evaluation_ground_truth`: each evaluation target gets its image's masks as annotated (here the exact drawn
    pixels, RLE) at the original size, crowd regions included; the training split is left alone."""
    from pycocotools.coco import COCO

    from hf_rfdetr.training import apply_transforms, load_coco_folder

    root = write_synthetic_coco(tmp_path / "shapes", num_train=2, num_valid=3, image_size=(40, 56), masks=True)
    document = json.loads((root / "valid" / "_annotations.coco.json").read_text())
    document["annotations"][0]["iscrowd"] = 1
    (root / "valid" / "_annotations.coco.json").write_text(json.dumps(document))
    splits = apply_transforms(load_coco_folder(root, masks=True), seg_config(resolution=32))
    assert with_evaluation_ground_truth(splits["train"]) is splits["train"]
    dataset = with_evaluation_ground_truth(splits["validation"])
    coco = COCO(str(root / "valid" / "_annotations.coco.json"))
    for row, image in zip(dataset, sorted(coco.imgs)):
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image]))
        labels = row["labels"]
        expected = [coco.annToMask(annotation).astype(bool) for annotation in annotations]
        decoded = [mask_utils_decode(text, 40, 56) for text in unpack_rles(labels[GT_RLE_KEY])]
        assert len(decoded) == len(expected) and all((a == b).all() for a, b in zip(decoded, expected))
        assert labels[GT_CROWD_KEY].tolist() == [annotation["iscrowd"] for annotation in annotations]
        assert labels[GT_LABELS_KEY].tolist() == [annotation["category_id"] - 1 for annotation in annotations]
        assert labels["masks"].shape[-2:] == (32, 32)  # the training targets' masks stay for the loss
    assert document["annotations"][0]["image_id"] == sorted(coco.imgs)[0]


def mask_utils_decode(counts: str, height: int, width: int):
    from hf_rfdetr.training.masks import decode_masks

    return decode_masks([counts], height, width)[0]


class SegOracle(torch.nn.Module):
    """A stand-in Seg model with a measurable mask mAP: it recognises each evaluation image by its pixels and answers
    the ground truth (exact boxes, some wrong classes) with the masks of the evaluation targets, some shifted by
    one mask-head pixel, plus low-scored distractors."""

    def __init__(self, dataset_dir: Path, split: str) -> None:
        from hf_rfdetr.training import apply_transforms, load_coco_folder

        super().__init__()
        self.config = seg_config(id2label=dict(enumerate(class_names(3))), num_queries=12)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device
        splits = load_coco_folder(dataset_dir, splits=[split], masks=True)
        dataset = apply_transforms(splits, self.config)[split]
        self.answers = {self._key(row["pixel_values"]): (index, row["labels"]) for index, row in enumerate(dataset)}

    @staticmethod
    def _key(pixels: torch.Tensor) -> bytes:
        return pixels.to(torch.float16).numpy().tobytes()

    def forward(self, pixel_values: torch.Tensor, labels=None, **kwargs):
        from hf_rfdetr.models.rfdetr.outputs_rfdetr import RFDetrInstanceSegmentationOutput

        queries, classes, side = self.config.num_queries, self.config.num_labels, pixel_values.shape[-1] // 4
        logits = torch.full((len(pixel_values), queries, classes), -6.0)
        boxes = torch.full((len(pixel_values), queries, 4), 0.3)
        masks = torch.full((len(pixel_values), queries, side, side), -10.0)
        for image, pixels in enumerate(pixel_values):
            index, target = self.answers[self._key(pixels)]
            generator = torch.Generator().manual_seed(index)
            for query, (label, box, mask) in enumerate(zip(target["class_labels"], target["boxes"], target["masks"])):
                boxes[image, query] = box
                small = torch.nn.functional.avg_pool2d(mask[None].float(), 4)[0] > 0.5
                if torch.rand(1, generator=generator).item() < 0.5:
                    small = torch.roll(small, shifts=1, dims=1)
                masks[image, query] = torch.where(small, 10.0, -10.0)
                wrong = torch.rand(1, generator=generator).item() < 0.2
                logits[image, query, (int(label) + 1) % classes if wrong else int(label)] = 2.0 + query * 0.1
        return RFDetrInstanceSegmentationOutput(loss=torch.zeros(()), logits=logits, pred_boxes=boxes, pred_masks=masks)


def _printed_row(out: str, name: str) -> tuple[float, float]:
    match = re.search(rf"^{re.escape(name)}\s+(\d\.\d{{4}})\s+(\d\.\d{{4}})$", out, flags=re.MULTILINE)
    assert match, f"no {name!r} row with box and mask values in:\n{out}"
    return float(match.group(1)), float(match.group(2))


def _pycocotools_segm(annotation_file: Path, detections: Path) -> list[float]:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    results = json.loads(detections.read_text())
    for result in results:
        assert "bbox" not in result  # else loadRes would score the masks with the boxes' areas
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(annotation_file))
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return list(evaluation.stats)


@pytest.fixture(scope="module")
def eval_dataset_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco") / "shapes"
    return write_synthetic_coco(root, num_train=2, num_valid=4, num_test=8, image_size=(64, 80), seed=1, masks=True)


@pytest.fixture(scope="module")
def seg_model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = seg_config(id2label=dict(enumerate(class_names(3))))
    folder = tmp_path_factory.mktemp("model") / "tiny-seg"
    RFDetrForInstanceSegmentation(config).save_pretrained(folder)
    RFDetrImageProcessor.from_config(config).save_pretrained(folder)
    return folder


def test_eval_prints_mask_metrics_equal_to_pycocotools(
    eval_dataset_dir: Path, seg_model_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    oracle = SegOracle(eval_dataset_dir, "test")
    monkeypatch.setattr("hf_rfdetr.commands.eval._load", lambda model, device: oracle)
    output, detections = tmp_path / "metrics.json", tmp_path / "detections.json"
    arguments = ["eval", "--model", str(seg_model_dir), "--dataset-dir", str(eval_dataset_dir), "--split", "test"]
    arguments += ["--batch-size", "3", "--device", "cpu", "--output-json", str(output)]
    assert main([*arguments, "--predictions-json", str(detections)]) == 0
    out = capsys.readouterr().out
    metrics = json.loads(output.read_text())["metrics"]
    stats = _pycocotools_segm(eval_dataset_dir / "test" / "_annotations.coco.json", segm_predictions_path(detections))
    assert 0.1 < stats[0] < 0.9, "the test needs a model with a measurable mask mAP"
    assert metrics["segm_map"] == pytest.approx(stats[0], abs=1e-6)
    assert metrics["segm_map_50"] == pytest.approx(stats[1], abs=1e-6)
    assert metrics["segm_mar_100"] == pytest.approx(stats[8], abs=1e-6)
    assert metrics["segm_map"] < metrics["map"]  # exact boxes, some shifted masks
    box, mask = _printed_row(out, "mAP@[.50:.95]")
    assert box == pytest.approx(metrics["map"], abs=5.1e-5) and mask == pytest.approx(stats[0], abs=5.1e-5)
    box, mask = _printed_row(out, "red-rectangle")
    assert mask == pytest.approx(metrics["segm_map_red-rectangle"], abs=5.1e-5)
    assert re.search(r"^metric\s+box\s+mask$", out, flags=re.MULTILINE) and "mask AP" in out
    written = json.loads(segm_predictions_path(detections).read_text())
    assert written and all(set(result["segmentation"]) == {"size", "counts"} for result in written)


def _pycocotools_all(annotation_file: Path, boxes: Path, masks: Path) -> dict[str, float]:
    """Every summary metric of pycocotools alone: `bbox` on the box results, `segm` on the mask results."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large"]
    names += ["mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]
    stats = {}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(annotation_file))
        for iou_type, prefix, results in (("bbox", "", boxes), ("segm", "segm_", masks)):
            evaluation = COCOeval(ground_truth, ground_truth.loadRes(str(results)), iouType=iou_type)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            stats |= {prefix + name: float(value) for name, value in zip(names, evaluation.stats)}
    return stats


def test_eval_predictions_files_give_every_printed_metric_and_json_areas_rank_objects(
    eval_dataset_dir: Path, seg_model_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """`--predictions-json` on a Seg model: box results in FILE, mask results without `bbox` in FILE_segm.json (with a
    `bbox`, loadRes takes a result's area from it even for `segm`), and pycocotools on them against the split's json
    gives every printed metric, box and mask; the json's `area` (here not the mask area, as exporters writing the box
    area do) decides small / medium / large, for `hf-rfdetr eval` and the Trainer's evaluation alike."""
    import shutil

    from transformers import TrainingArguments

    from hf_rfdetr.training import CocoEvaluator, RFDetrDataCollator, RFDetrTrainer, apply_transforms, load_coco_folder

    root = tmp_path / "areas"
    shutil.copytree(eval_dataset_dir, root)
    for split in ("valid", "test"):
        file = root / split / "_annotations.coco.json"
        document = json.loads(file.read_text())
        for index, annotation in enumerate(document["annotations"]):
            annotation["area"] = [300.0, 2000.0, 12000.0][index % 3]  # the masks are all small (< 32 * 32)
        file.write_text(json.dumps(document))
    oracle = SegOracle(root, "test")
    monkeypatch.setattr("hf_rfdetr.commands.eval._load", lambda model, device: oracle)
    output, detections = tmp_path / "metrics.json", tmp_path / "detections.json"
    arguments = ["eval", "--model", str(seg_model_dir), "--dataset-dir", str(root), "--split", "test"]
    assert (
        main([*arguments, "--device", "cpu", "--output-json", str(output), "--predictions-json", str(detections)]) == 0
    )
    out = capsys.readouterr().out
    masks = tmp_path / "detections_segm.json"
    assert segm_predictions_path(detections) == masks
    assert f"wrote {masks} (mask detections in COCO results format, RLE, pycocotools iouType 'segm')" in out
    boxes_written, masks_written = json.loads(detections.read_text()), json.loads(masks.read_text())
    assert boxes_written and all("segmentation" not in result for result in boxes_written)
    assert masks_written and all("bbox" not in result for result in masks_written)
    metrics = json.loads(output.read_text())["metrics"]
    expected = _pycocotools_all(root / "test" / "_annotations.coco.json", detections, masks)
    assert expected["segm_map_medium"] > 0 and expected["segm_map_large"] > 0 and expected["map_large"] > 0
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key
    # the Trainer's evaluation (fine_tune's) scores by the json's area too: the same metrics as hf-rfdetr eval
    model = SegOracle(root, "validation")
    monkeypatch.setattr("hf_rfdetr.commands.eval._load", lambda name, device: model)
    arguments = ["eval", "--model", str(seg_model_dir), "--dataset-dir", str(root), "--batch-size", "3"]
    assert main([*arguments, "--output-json", str(output)]) == 0
    written = json.loads(output.read_text())["metrics"]
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=2, use_cpu=True, report_to=[], remove_unused_columns=False
    )
    trainer = RFDetrTrainer(
        model=model,
        args=args,
        eval_dataset=apply_transforms(load_coco_folder(root, splits=["validation"], masks=True), model.config)[
            "validation"
        ],
        data_collator=RFDetrDataCollator(),
        compute_metrics=CocoEvaluator(model.config.id2label),
    )
    trained = trainer.evaluate()
    assert written["segm_map_medium"] > 0 or written["segm_map_large"] > 0
    for key in expected:
        assert written[key] == pytest.approx(trained[f"eval_{key}"], abs=1e-9), key


def test_eval_equals_the_trainer_evaluation_for_masks(
    eval_dataset_dir: Path, seg_model_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    from transformers import TrainingArguments

    from hf_rfdetr.training import CocoEvaluator, RFDetrDataCollator, RFDetrTrainer, apply_transforms, load_coco_folder

    model = SegOracle(eval_dataset_dir, "validation")
    monkeypatch.setattr("hf_rfdetr.commands.eval._load", lambda name, device: model)
    arguments = ["eval", "--model", str(seg_model_dir), "--dataset-dir", str(eval_dataset_dir), "--batch-size", "3"]
    assert main([*arguments, "--output-json", str(tmp_path / "metrics.json")]) == 0
    written = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert 0.1 < written["segm_map"] < 0.9
    splits = load_coco_folder(eval_dataset_dir, splits=["validation"], masks=True)
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=2, use_cpu=True, report_to=[], remove_unused_columns=False
    )
    trainer = RFDetrTrainer(
        model=model,
        args=args,
        eval_dataset=apply_transforms(splits, model.config)["validation"],
        data_collator=RFDetrDataCollator(),
        compute_metrics=CocoEvaluator(model.config.id2label),
    )
    metrics = trainer.evaluate()
    for key in ("map", "map_50", "segm_map", "segm_map_50", "segm_map_75", "segm_mar_100", "segm_map_red-rectangle"):
        assert written[key] == pytest.approx(metrics[f"eval_{key}"], abs=1e-9), key


@pytest.mark.slow
def test_cli_train_seg_nano(seg_dataset_dir: Path, tmp_path: Path, capsys) -> None:
    """`hf-rfdetr train --model seg-nano --from-scratch` trains an RFDetrForInstanceSegmentation (random weights, at a
    small resolution here: offline, without the COCO checkpoint) and reports mask mAP; the saved folder evaluates with
    `hf-rfdetr eval` (box and mask columns)."""
    arguments = ["train", "--dataset-dir", str(seg_dataset_dir), "--model", "seg-nano", "--from-scratch"]
    arguments += ["--output-dir", str(tmp_path)]
    arguments += ["--epochs", "1", "--batch-size", "4", "--grad-accum-steps", "1", "--device", "cpu", "--no-ema"]
    assert main([*arguments, "--resolution", "48", "--num-workers", "0", "--no-tensorboard", "--lr", "1e-3"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"validation mAP \d\.\d{4}, mAP50 \d\.\d{4}, mask mAP \d\.\d{4}, mask mAP50 \d\.\d{4}", out), out
    saved = RFDetrForInstanceSegmentation.from_pretrained(tmp_path)
    assert saved.config.segmentation_head and saved.config.resolution == 48 and saved.config.num_labels == 3
    assert main(["eval", "--model", str(tmp_path), "--dataset-dir", str(seg_dataset_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^metric\s+box\s+mask$", out, flags=re.MULTILINE) and "4 images" in out


@pytest.fixture
def tiny_seg_folder(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    config = seg_config()
    RFDetrForInstanceSegmentation(config).save_pretrained(tmp_path / "tiny-seg")
    RFDetrImageProcessor.from_config(config).save_pretrained(tmp_path / "tiny-seg")
    return tmp_path / "tiny-seg"


def test_fine_tune_a_seg_folder_on_a_datasets_dataset(seg_dataset_dir: Path, tiny_seg_folder: Path, tmp_path: Path):
    """The `datasets` route: a DatasetDict with `objects.segmentation`; the folder's class heads are relabelled
    for the dataset's labels and the model stays an RFDetrForInstanceSegmentation."""
    from hf_rfdetr.training import load_coco_folder

    splits = load_coco_folder(seg_dataset_dir, masks=True)
    trainer = fine_tune(tiny_seg_folder, dataset=splits, epochs=1, use_ema=False, output_dir=tmp_path / "run", **COMMON)
    assert isinstance(trainer.model, RFDetrForInstanceSegmentation)
    assert list(trainer.model.config.id2label.values()) == class_names(3)
    assert any("eval_segm_map" in entry for entry in trainer.state.log_history)


def test_fine_tune_a_seg_model_without_masks_is_explained(seg_dataset_dir: Path, tiny_seg_folder: Path, tmp_path):
    from hf_rfdetr.training import load_coco_folder

    splits = load_coco_folder(seg_dataset_dir)  # no masks=True: no objects.segmentation
    with pytest.raises(ValueError, match="has no objects.segmentation, but the model segments"):
        fine_tune(tiny_seg_folder, dataset=splits, epochs=1, output_dir=tmp_path / "run", **COMMON)


def test_resume_a_seg_run(seg_dataset_dir: Path, tiny_seg_folder: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    fine_tune(tiny_seg_folder, seg_dataset_dir, epochs=1, checkpoint_interval=1, output_dir=output, **COMMON)
    resumed = fine_tune(
        tiny_seg_folder, seg_dataset_dir, epochs=2, checkpoint_interval=1, output_dir=output, resume=True, **COMMON
    )
    assert resumed.state.global_step == 10 and round(resumed.state.epoch) == 2  # 5 steps per epoch (8 images)
    assert [entry["step"] for entry in resumed.state.log_history if "loss" in entry] == [5, 10]
    assert [round(entry["epoch"]) for entry in resumed.state.log_history if "eval_ema_segm_map" in entry] == [1, 2]
