"""`hf-rfdetr eval`: the printed COCO metrics equal pycocotools run independently on the written detections, and the
Trainer's evaluation of the same model and split; errors a shell user can act on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from hf_rfdetr import RFDetrForObjectDetection, RFDetrImageProcessor
from hf_rfdetr.cli import main

from .conftest import perturb_, tiny_config
from .synthetic_coco import class_names, write_synthetic_coco


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco") / "shapes"
    return write_synthetic_coco(root, num_train=2, num_valid=4, num_test=12, image_size=(64, 80), seed=1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny model folder (random weights: its mAP is about 0, fine for errors and the Trainer comparison)."""
    torch.manual_seed(0)
    config = tiny_config(id2label=dict(enumerate(class_names(3))))
    model = perturb_(RFDetrForObjectDetection(config), seed=7).eval()
    folder = tmp_path_factory.mktemp("model") / "tiny"
    model.save_pretrained(folder)
    RFDetrImageProcessor.from_config(config).save_pretrained(folder)
    return folder


class NoisyOracle(torch.nn.Module):
    """A stand-in detector with a measurable mAP: it recognises each evaluation image (by its pixels) and answers
    the ground truth with jittered boxes, some wrong classes and low-scored distractors, so that the metrics are far
    from 0 and 1 and every IoU threshold matters."""

    def __init__(self, dataset_dir: Path, split: str) -> None:
        from hf_rfdetr.training import apply_transforms, load_coco_folder

        super().__init__()
        self.config = tiny_config(id2label=dict(enumerate(class_names(3))), num_queries=12)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device
        dataset = apply_transforms(load_coco_folder(dataset_dir, splits=[split]), self.config)[split]
        self.answers = {self._key(row["pixel_values"]): (index, row["labels"]) for index, row in enumerate(dataset)}

    @staticmethod
    def _key(pixels: torch.Tensor) -> bytes:
        return pixels.to(torch.float16).numpy().tobytes()

    def forward(self, pixel_values: torch.Tensor, labels=None, **kwargs):
        from hf_rfdetr.models.rfdetr.outputs_rfdetr import RFDetrObjectDetectionOutput

        queries, classes = self.config.num_queries, self.config.num_labels
        logits = torch.full((len(pixel_values), queries, classes), -6.0)
        boxes = torch.zeros(len(pixel_values), queries, 4)
        for image, pixels in enumerate(pixel_values):
            index, target = self.answers[self._key(pixels)]
            generator = torch.Generator().manual_seed(index)  # the same answer for an image, whatever the batching
            boxes[image] = torch.rand(queries, 4, generator=generator) * 0.3 + 0.2
            for query, (label, box) in enumerate(zip(target["class_labels"].tolist(), target["boxes"])):
                jitter = 1 + (torch.rand(4, generator=generator) - 0.5) * 0.25
                boxes[image, query] = (box * jitter).clamp(0.01, 0.99)
                wrong = torch.rand(1, generator=generator).item() < 0.25
                logits[image, query, (label + 1) % classes if wrong else label] = 2.0 + query * 0.1
        return RFDetrObjectDetectionOutput(loss=torch.zeros(()), logits=logits, pred_boxes=boxes)


def _printed(out: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)}\s+(\d\.\d{{4}})$", out, flags=re.MULTILINE)
    assert match, f"no {name!r} row in:\n{out}"
    return float(match.group(1))


def _pycocotools(annotation_file: Path, detections: Path) -> tuple[list[float], dict[int, float]]:
    """COCO stats and per-category AP computed by pycocotools alone from the files."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(annotation_file))
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(str(detections)), iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    per_class = {}
    for index, category in enumerate(evaluation.params.catIds):
        values = evaluation.eval["precision"][:, :, index, 0, -1]
        if (values > -1).any():
            per_class[category] = float(values[values > -1].mean())
    return list(evaluation.stats), per_class


def test_eval_prints_the_pycocotools_metrics(
    dataset_dir: Path, model_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    oracle = NoisyOracle(dataset_dir, "test")
    monkeypatch.setattr("hf_rfdetr.commands.eval._load", lambda model, device: oracle)
    output, detections = tmp_path / "metrics.json", tmp_path / "detections.json"
    arguments = ["eval", "--model", str(model_dir), "--dataset-dir", str(dataset_dir), "--split", "test"]
    arguments += ["--batch-size", "5", "--device", "cpu", "--output-json", str(output)]
    assert main([*arguments, "--predictions-json", str(detections)]) == 0
    out = capsys.readouterr().out
    result = json.loads(output.read_text())
    assert result["split"] == "test" and result["images"] == 12 and result["weights"] == "model"
    stats, per_class = _pycocotools(dataset_dir / "test" / "_annotations.coco.json", detections)
    assert 0.1 < stats[0] < 0.9, "the test needs a model with a measurable mAP"
    assert result["metrics"]["map"] == pytest.approx(stats[0], abs=1e-6)
    assert result["metrics"]["map_50"] == pytest.approx(stats[1], abs=1e-6)
    assert result["metrics"]["mar_100"] == pytest.approx(stats[8], abs=1e-6)
    assert _printed(out, "mAP@[.50:.95]") == pytest.approx(stats[0], abs=5.1e-5)
    assert _printed(out, "mAP@.50") == pytest.approx(stats[1], abs=5.1e-5)
    for label, name in enumerate(class_names(3)):  # category id = label + 1 in the synthetic folder
        assert result["metrics"][f"map_{name}"] == pytest.approx(per_class[label + 1], abs=1e-6)
        assert _printed(out, name) == pytest.approx(per_class[label + 1], abs=5.1e-5)
    assert f"on {dataset_dir} [test]: 12 images" in out
    # both written files are named, as the other commands name what they wrote
    assert f"wrote {detections} (detections in COCO results format)" in out.splitlines()
    assert f"wrote {output}" in out.splitlines()


def test_eval_equals_the_trainer_evaluation(
    dataset_dir: Path, model_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    from transformers import TrainingArguments

    from hf_rfdetr.training import CocoEvaluator, RFDetrDataCollator, RFDetrTrainer, apply_transforms, load_coco_folder

    model = NoisyOracle(dataset_dir, "validation")
    monkeypatch.setattr("hf_rfdetr.commands.eval._load", lambda name, device: model)
    arguments = ["eval", "--model", str(model_dir), "--dataset-dir", str(dataset_dir), "--batch-size", "3"]
    assert main([*arguments, "--output-json", str(tmp_path / "metrics.json")]) == 0
    printed = _printed(capsys.readouterr().out, "mAP@[.50:.95]")
    assert 0.1 < printed < 0.9
    splits = load_coco_folder(dataset_dir, splits=["validation"])
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
    metrics = trainer.evaluate()  # 4 images in batches of 2: RFDetrTrainer fails on an uneven last batch for now
    written = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    for key in ("map", "map_50", "map_75", "mar_100", "map_red-rectangle"):
        assert written[key] == pytest.approx(metrics[f"eval_{key}"], abs=1e-9), key
    assert printed == pytest.approx(metrics["eval_map"], abs=5.1e-5)


def test_eval_errors_name_the_problem(dataset_dir: Path, model_dir: Path, tmp_path: Path, capsys) -> None:
    base = ["eval", "--model", str(model_dir), "--dataset-dir", str(dataset_dir)]
    assert main([*base, "--split", "holdout"]) == 1
    assert "--split 'holdout': expected one of valid, test, train" in capsys.readouterr().err
    assert main(["eval", "--model", str(model_dir), "--dataset-dir", str(tmp_path / "nowhere")]) == 1
    assert "dataset folder" in (error := capsys.readouterr().err) and "nowhere' does not exist" in error
    assert main([*base, "--use-ema"]) == 1
    assert "--use-ema" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "no-model"), "--dataset-dir", str(dataset_dir)]) == 1
    assert "no-model' does not exist" in capsys.readouterr().err
    no_test = write_synthetic_coco(tmp_path / "no-test", num_train=1, num_valid=1, image_size=(32, 32))
    assert main(["eval", "--model", str(model_dir), "--dataset-dir", str(no_test), "--split", "test"]) == 1
    assert "Missing split 'test'" in capsys.readouterr().err
    other = RFDetrForObjectDetection(tiny_config(id2label={0: "apple", 1: "pear"}))
    other.save_pretrained(tmp_path / "fruit")
    assert main(["eval", "--model", str(tmp_path / "fruit"), "--dataset-dir", str(dataset_dir)]) == 1
    assert "none of the dataset's classes" in capsys.readouterr().err


def test_eval_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--model", "--dataset-dir", "--split", "--batch-size", "--use-ema", "--output-json"):
        assert flag in out


def test_eval_scores_object_sizes_by_the_json_area_as_pycocotools(
    dataset_dir: Path, model_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A COCO folder whose `area` is not the box area (pycocotools ranks small / medium / large objects by the json's
    `area`): every printed metric equals pycocotools on the written detections against the json."""
    import shutil

    root = tmp_path / "areas"
    shutil.copytree(dataset_dir, root)
    file = root / "test" / "_annotations.coco.json"
    document = json.loads(file.read_text())
    for index, annotation in enumerate(document["annotations"]):
        annotation["area"] = [300.0, 2000.0, 12000.0][index % 3]  # the boxes are all small (< 32 * 32)
    file.write_text(json.dumps(document))
    oracle = NoisyOracle(root, "test")
    monkeypatch.setattr("hf_rfdetr.commands.eval._load", lambda model, device: oracle)
    output, detections = tmp_path / "metrics.json", tmp_path / "detections.json"
    arguments = ["eval", "--model", str(model_dir), "--dataset-dir", str(root), "--split", "test", "--device", "cpu"]
    assert main([*arguments, "--output-json", str(output), "--predictions-json", str(detections)]) == 0
    assert f"wrote {detections} (detections in COCO results format)" in capsys.readouterr().out.splitlines()
    assert not (tmp_path / "detections_segm.json").exists()  # a detection model writes its one file, as before
    metrics = json.loads(output.read_text())["metrics"]
    stats, _ = _pycocotools(file, detections)
    names = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large"]
    names += ["mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]
    assert stats[4] > 0 and stats[5] > 0, "the json's areas put objects in every range"
    for name, value in zip(names, stats):
        assert metrics[name] == pytest.approx(value, abs=1e-9), name


def test_predictions_keep_category_id_0_beside_names_made_unique() -> None:
    """A folder with categories {0: "cat", 1: "dog", 2: "dog"}: --predictions-json failed with "invalid literal for
    int() with base 10: 'cat'" (id 0 was taken for a missing one)."""
    from hf_rfdetr.commands.eval import coco_category_ids

    categories = [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}, {"id": 2, "name": "dog"}]
    assert coco_category_ids({0: "cat", 1: "dog_1", 2: "dog_2"}, categories) == {0: 0, 1: 1, 2: 2}
    assert coco_category_ids({0: "a", 1: "b"}, [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}]) == {0: 3, 1: 7}
