"""Model cards: the packaged template, what a card shows (and leaves out), where metrics are read from, the
fine-tuning card and `model_cards/generate.py`."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from hf_rfdetr import RFDetrConfig, RFDetrForObjectDetection, RFDetrImageProcessor
from hf_rfdetr.model_card import (
    TEMPLATE_PATH,
    Evaluation,
    card_fields,
    count_parameters,
    evaluation_from_log_history,
    load_evaluation_file,
    model_card_for_folder,
    read_evaluations,
    render_model_card,
    write_model_card,
)

from .conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]
LOG_HISTORY = [
    {"loss": 9.0, "epoch": 1.0, "step": 2},
    {"eval_map": 0.11, "eval_map_50": 0.21, "eval_ema_map": 0.12, "eval_map_cat": 0.3, "epoch": 1.0, "step": 2},
    {"eval_map": 0.31, "eval_map_50": 0.41, "eval_ema_map": 0.33, "eval_map_cat": 0.5, "epoch": 2.0, "step": 4},
    {"train_runtime": 3.0, "epoch": 2.0, "step": 4},
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    config = tiny_config()
    RFDetrForObjectDetection(config).save_pretrained(tmp_path / "model")
    RFDetrImageProcessor.from_config(config).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_the_template_ships_in_the_package_and_model_cards_links_to_it() -> None:
    assert TEMPLATE_PATH.is_file() and "${repo_id}" in TEMPLATE_PATH.read_text()
    link = ROOT / "model_cards" / "template.md"
    assert link.is_symlink() and link.resolve() == TEMPLATE_PATH.resolve()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^hf_rfdetr = \[.*"templates/\*".*\]$', pyproject, flags=re.MULTILINE)  # package data


def test_variant_card_has_the_facts_and_valid_metadata() -> None:
    config = RFDetrConfig.from_variant("nano")
    parameters = count_parameters(config)
    assert parameters == 30_467_298  # the original's count (README table), from a meta-device build
    card = render_model_card(config, parameters, repo_id="org/rf-detr-nano", source="converted from `nano.pth`")
    assert "RF-DETR nano" in card and "| parameters | 30,467,298 |" in card
    assert "| input resolution | 384 x 384 (height and width multiples of 32) |" in card
    assert "indexed by COCO category id" in card and "\n## Labels\n" not in card
    assert 'pipeline("object-detection", model="org/rf-detr-nano", trust_remote_code=True)' in card
    assert 'AutoModelForObjectDetection.from_pretrained("org/rf-detr-nano", trust_remote_code=True)' in card
    assert 'hf_rfdetr.RFDetrOnnxModel.from_pretrained("onnx-out")' in card
    for absent in ("\n## Evaluation\n", "\n## Training\n", "${"):
        assert absent not in card
    data = ModelCard(card).data
    assert data.license == "apache-2.0" and data.pipeline_tag == "object-detection"
    assert data.library_name == "transformers" and "rf-detr" in data.tags and data.eval_results is None


def test_metrics_table_per_class_and_model_index() -> None:
    config = tiny_config()
    evaluations = [
        Evaluation("validation", {"map": 0.5, "map_50": 0.75, "map_small": -1.0, "map_cat": 0.25}, 3.0, "a.json"),
        Evaluation("test", {"map": 0.4, "map_50": 0.7, "map_small": 0.1, "map_dog": 0.2}, None, "b.json"),
    ]
    card = render_model_card(
        config, 1234, repo_id="org/tiny", dataset="org/pets", evaluations=evaluations, remote_code=False
    )
    assert "| metric | validation (epoch 3) | test |" in card
    assert "| mAP@[.50:.95] | 0.5000 | 0.4000 |" in card and "| mAP (small) | n/a | 0.1000 |" in card
    assert "| cat | 0.2500 | n/a |" in card and "| dog | n/a | 0.2000 |" in card and "| bird |" not in card
    assert "mAP (large)" not in card  # measured nowhere: no row
    assert "[org/pets](https://huggingface.co/datasets/org/pets)" in card
    assert 'pipeline("object-detection", model="org/tiny")' in card and "import hf_rfdetr  # noqa" in card
    results = ModelCard(card).data.eval_results
    assert {(r.dataset_split, r.metric_type, r.metric_value) for r in results} >= {
        ("validation", "map", 0.5),
        ("test", "map_50", 0.7),
    }
    assert {r.dataset_type for r in results} == {"org/pets"}


def test_a_local_dataset_is_described_not_linked() -> None:
    card = render_model_card(tiny_config(), 1, dataset="my shapes folder", metrics={"eval_map": 0.5})
    assert "- dataset: `my shapes folder`" in card and "datasets:" not in card.split("---")[1]
    assert "| metric | evaluation |" in card and "| mAP@[.50:.95] | 0.5000 |" in card
    for name in ("org/a--b", "data/coco.git", "org/pets/train", "-pets"):  # not Hub ids by huggingface_hub's rules
        card = render_model_card(tiny_config(), 1, dataset=name)
        assert f"- dataset: `{name}`" in card and "datasets:" not in card.split("---")[1], name


def test_log_history_evaluations() -> None:
    last = evaluation_from_log_history(LOG_HISTORY)
    assert last.metrics == {"map": 0.31, "map_50": 0.41, "map_cat": 0.5} and last.epoch == 2.0
    assert evaluation_from_log_history(LOG_HISTORY, step=2).metrics["map"] == 0.11
    assert evaluation_from_log_history(LOG_HISTORY, "eval_ema_").metrics == {"map": 0.33}
    assert evaluation_from_log_history(LOG_HISTORY, step=3) is None
    assert evaluation_from_log_history([{"loss": 1.0}]) is None


def test_folder_metrics_prefer_saved_results_over_the_log(folder: Path) -> None:
    assert read_evaluations(folder) == []
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": LOG_HISTORY}))
    (evaluation,) = read_evaluations(folder)
    assert evaluation.metrics["map"] == 0.31 and evaluation.source == "trainer_state.json"
    (folder / "eval_results.json").write_text(json.dumps({"epoch": 1.0, "eval_map": 0.11, "eval_runtime": 2.0}))
    (folder / "test_results.json").write_text(json.dumps({"test_map": 0.09, "test_map_50": 0.2}))
    validation, test = read_evaluations(folder)
    assert (validation.split, validation.metrics, validation.epoch) == ("validation", {"map": 0.11}, 1.0)
    assert (test.split, test.metrics) == ("test", {"map": 0.09, "map_50": 0.2})
    card = model_card_for_folder(folder, "org/x")
    assert "| metric | validation (epoch 1) | test |" in card and "| mAP@[.50:.95] | 0.1100 | 0.0900 |" in card
    assert "| source | fine-tuned with the Hugging Face Trainer (hf_rfdetr) |" in card


def test_metric_files(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"split": "test", "metrics": {"map": 0.2, "map_cat": 0.1}, "images": 3}))
    assert load_evaluation_file(path) == Evaluation("test", {"map": 0.2, "map_cat": 0.1}, None, "m.json")
    path.write_text(json.dumps({"eval_map": 0.3, "eval_ema_map": 0.4, "epoch": 5}))
    assert load_evaluation_file(path) == Evaluation("validation", {"map": 0.3}, 5, "m.json")
    path.write_text(json.dumps({"loss": 1.0}))
    with pytest.raises(ValueError, match="has no COCO metrics"):
        load_evaluation_file(path)
    with pytest.raises(ValueError, match="cannot read metrics"):
        load_evaluation_file(tmp_path / "missing.json")


def test_refreshing_a_card_keeps_source_dataset_and_training(folder: Path) -> None:
    write_model_card(folder, "local", dataset="org/pets", source="converted from `x.pth`", training="5 epochs on pets")
    assert card_fields(folder / "README.md") == {
        "source": "converted from `x.pth`",
        "dataset": "org/pets",
        "training": "5 epochs on pets",
    }
    card = model_card_for_folder(folder, "org/new-name")
    assert "| source | converted from `x.pth` |" in card and "- 5 epochs on pets" in card and "- org/pets" in card
    assert 'model="org/new-name"' in card
    (folder / "README.md").write_text("# mine\n")
    assert card_fields(folder / "README.md") == {}


def test_snippets_follow_whether_the_folder_carries_code(folder: Path) -> None:
    assert "trust_remote_code=True" in model_card_for_folder(folder)
    (folder / "modeling_rfdetr.py").unlink()  # an auto_map pointing at a missing module cannot load remotely
    card = model_card_for_folder(folder)
    assert 'pipeline("object-detection", model="model")' in card and "does not carry the model code" in card


def test_the_card_states_the_pairs_the_saved_processor_keeps(folder: Path) -> None:
    """The detection card said "top 300 (query, class) pairs" whatever the processor kept (a template constant)."""
    pairs = re.compile(r"top (\d+) \(query, class\) pairs")
    config = RFDetrConfig.from_pretrained(folder)
    expected = min(RFDetrImageProcessor.from_config(config).num_top_queries, config.num_queries * config.num_labels)
    assert pairs.findall(model_card_for_folder(folder)) == [str(expected)]
    RFDetrImageProcessor.from_config(config, num_top_queries=7).save_pretrained(folder)
    assert pairs.findall(model_card_for_folder(folder)) == ["7"]
    assert pairs.findall(render_model_card(config, 1, num_top_queries=5)) == ["5"]


def test_generate_script(folder: Path, capsys) -> None:
    generate = runpy.run_path(str(ROOT / "model_cards" / "generate.py"), run_name="generate")["main"]
    (folder / "eval_results.json").write_text(json.dumps({"epoch": 2.0, "eval_map": 0.123}))
    assert generate([str(folder), "--repo-id", "org/gen", "--dataset", "org/pets"]) == 0
    card = (folder / "README.md").read_text()
    assert "# gen" in card and "| mAP@[.50:.95] | 0.1230 |" in card and "- org/pets" in card
    metrics = folder.parent / "eval.json"
    metrics.write_text(json.dumps({"split": "test", "metrics": {"map": 0.5}}))
    assert generate([str(folder), "--metrics", str(metrics), "--stdout"]) == 0
    printed = capsys.readouterr().out
    assert "| metric | test |" in printed and "| mAP@[.50:.95] | 0.5000 |" in printed
    assert "0.1230" in (folder / "README.md").read_text()  # --stdout wrote nothing
    (folder / "README.md").write_text("# hand-written\n")
    assert generate([str(folder)]) == 1
    assert "was not written by this generator" in capsys.readouterr().err
    assert generate([str(folder), "--force"]) == 0 and "# model" in (folder / "README.md").read_text()
    assert generate([str(folder.parent / "nowhere")]) == 1
    assert "no config.json" in capsys.readouterr().err


def test_fine_tune_writes_results_and_cards(tmp_path: Path) -> None:
    from hf_rfdetr import fine_tune

    from .synthetic_coco import class_names, write_synthetic_coco

    dataset_dir = write_synthetic_coco(tmp_path / "shapes", num_train=2, num_valid=2, image_size=(64, 64))
    torch.manual_seed(0)
    model = RFDetrForObjectDetection(tiny_config(id2label=dict(enumerate(class_names(3)))))
    output = tmp_path / "run"
    trainer = fine_tune(
        model, dataset_dir, epochs=1, batch_size=2, grad_accum_steps=1, device="cpu", tensorboard=False,
        num_workers=0, output_dir=output,
    )  # fmt: skip
    logged = [entry for entry in trainer.state.log_history if "eval_map" in entry][-1]
    results = json.loads((output / "eval_results.json").read_text())
    assert (
        results["eval_map"] == logged["eval_map"]
        and results["eval_map_red-rectangle"] == logged["eval_map_red-rectangle"]
    )
    assert "eval_ema_map" not in results
    ema_results = json.loads((output / "ema" / "eval_results.json").read_text())
    assert ema_results["eval_map"] == logged["eval_ema_map"]
    assert json.loads((output / "trainer_state.json").read_text())["global_step"] == trainer.state.global_step
    card = (output / "README.md").read_text()
    shown = "n/a" if logged["eval_map"] < 0 else f"{logged['eval_map']:.4f}"
    assert f"| mAP@[.50:.95] | {shown} |" in card and "| metric | validation (epoch 1) |" in card
    assert "on the COCO folder `shapes` (2 training images) for 1 epochs" in card
    assert "EMA of the weights" in (output / "ema" / "README.md").read_text()


def test_create_model_card_after_fine_tune_still_names_the_training_data(tmp_path: Path) -> None:
    """fine_tune's card names its training data (the COCO folder); `trainer.create_model_card()` (what
    `trainer.push_to_hub()` runs first) kept fine_tune's source line but replaced its training line with the
    trainer's own, which lost the folder's name. The two cards now agree while the trainer has not trained further."""
    from hf_rfdetr import fine_tune

    from .synthetic_coco import class_names, write_synthetic_coco

    dataset_dir = write_synthetic_coco(tmp_path / "shapes", num_train=2, num_valid=2, image_size=(64, 64))
    torch.manual_seed(0)
    model = RFDetrForObjectDetection(tiny_config(id2label=dict(enumerate(class_names(3)))))
    output = tmp_path / "run"
    trainer = fine_tune(
        model, dataset_dir, epochs=1, batch_size=2, grad_accum_steps=1, device="cpu", tensorboard=False,
        num_workers=0, output_dir=output, use_ema=False,
    )  # fmt: skip
    readme = output / "README.md"
    written = card_fields(readme)
    assert written["source"] == "fine-tuned with `hf_rfdetr.fine_tune`"
    assert "on the COCO folder `shapes` (2 training images) for 1 epochs" in written["training"]
    trainer.create_model_card(model_name="my-rfdetr")
    card = readme.read_text()
    assert card_fields(readme) == written
    assert f"- {written['training']}\n" in card and "on the COCO folder `shapes`" in card

    trainer.state.global_step += 1  # trained further: fine_tune's line no longer describes the weights
    trainer.create_model_card(model_name="my-rfdetr")
    assert card_fields(readme)["training"].startswith("trained with `hf_rfdetr.training.RFDetrTrainer`")
