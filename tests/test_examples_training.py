"""The fine-tuning examples, run tiny (1 epoch, a few synthetic images, a tiny model folder, CPU) through runpy."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import datasets
import pytest
import torch

from hf_rfdetr import RFDetrForObjectDetection, RFDetrImageProcessor

from .conftest import tiny_config
from .synthetic_coco import class_names, write_synthetic_coco

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    # Evaluation sets of 2 images for batches of 2 (RFDetrTrainer cannot evaluate an uneven last batch for now).
    root = tmp_path_factory.mktemp("coco") / "shapes"
    return write_synthetic_coco(root, num_train=4, num_valid=2, num_test=2, image_size=(64, 64), seed=2)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = tiny_config(id2label=dict(enumerate(class_names(3))))
    folder = tmp_path_factory.mktemp("model") / "tiny"
    RFDetrForObjectDetection(config).save_pretrained(folder)
    RFDetrImageProcessor.from_config(config).save_pretrained(folder)
    return folder


def _cell(value: float) -> str:
    """A metric as the card prints it."""
    return "n/a" if value < 0 else f"{value:.4f}"


def _example(name: str) -> dict:
    return runpy.run_path(str(EXAMPLES / name), run_name="example")


def test_finetune_coco_folder(dataset_dir: Path, tiny_folder: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "run"
    arguments = ["--dataset-dir", str(dataset_dir), "--model", str(tiny_folder), "--output-dir", str(output)]
    arguments += ["--epochs", "1", "--batch-size", "2", "--grad-accum-steps", "1", "--device", "cpu"]
    result = _example("finetune_coco_folder.py")["main"]([*arguments, "--num-workers", "0", "--lr", "1e-3"])
    assert result["split"] == "test" and result["images"] == 2
    assert f"on {dataset_dir} [test]: 2 images" in capsys.readouterr().out
    model = RFDetrForObjectDetection.from_pretrained(output)
    assert list(model.config.id2label.values()) == class_names(3)
    saved = json.loads((output / "test_metrics.json").read_text())
    assert saved["metrics"] == result["metrics"]
    validation = json.loads((output / "eval_results.json").read_text())
    card = (output / "README.md").read_text()
    assert "| metric | validation (epoch 1) | test |" in card
    test_map = result["metrics"]["map"]
    assert f"| mAP@[.50:.95] | {_cell(validation['eval_map'])} | {_cell(test_map)} |" in card
    assert "fine-tuned with `hf_rfdetr.fine_tune`" in card and "(4 training images) for 1 epochs" in card


def _hub_layout(dataset_dir: Path, split: str) -> datasets.Dataset:
    """A split of the synthetic COCO folder as a Hub dataset would come: image files, objects as lists of dicts."""
    document = json.loads((dataset_dir / split / "_annotations.coco.json").read_text())
    rows = {
        image["id"]: {"image": str(dataset_dir / split / image["file_name"]), "objects": []}
        for image in document["images"]
    }
    for annotation in document["annotations"]:
        category = annotation["category_id"] - 1  # the synthetic folder's class k has category id k + 1
        rows[annotation["image_id"]]["objects"].append({"bbox": annotation["bbox"], "category": category})
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "objects": [
                {
                    "bbox": datasets.Sequence(datasets.Value("float32"), length=4),
                    "category": datasets.ClassLabel(names=class_names(3)),
                }
            ],
        }
    )
    return datasets.Dataset.from_list(list(rows.values()), features=features)


def test_finetune_datasets_trainer(dataset_dir: Path, tiny_folder: Path, tmp_path: Path) -> None:
    saved = tmp_path / "hub-dataset"
    datasets.DatasetDict(train=_hub_layout(dataset_dir, "train"), test=_hub_layout(dataset_dir, "test")).save_to_disk(
        str(saved)
    )
    output = tmp_path / "run"
    arguments = ["--dataset", str(saved), "--model", str(tiny_folder), "--output-dir", str(output), "--epochs", "1"]
    arguments += ["--batch-size", "2", "--grad-accum-steps", "1", "--cpu", "--num-workers", "0", "--lr", "1e-3"]
    metrics = _example("finetune_datasets_trainer.py")["main"](arguments)
    assert {"eval_map", "eval_map_50", "eval_ema_map", "eval_map_red-rectangle"} <= set(metrics)
    assert json.loads((output / "eval_results.json").read_text())["eval_map"] == metrics["eval_map"]
    assert (output / "trainer_state.json").is_file()
    model = RFDetrForObjectDetection.from_pretrained(output)
    assert list(model.config.id2label.values()) == class_names(3)
    card = (output / "README.md").read_text()
    assert f"| mAP@.50 | {_cell(metrics['eval_map_50'])} |" in card
    assert "`red-rectangle`, `green-circle`, `blue-triangle`" in card
    assert "fine-tuned with RFDetrTrainer for 1 epochs" in card
