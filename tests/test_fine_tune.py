"""`fine_tune(...)` end to end on a synthetic COCO folder: outputs, EMA, metrics, resume, early stopping, errors."""

from __future__ import annotations

import contextlib
import importlib
import json
import warnings
from pathlib import Path

import datasets
import pytest
import torch
from transformers import AutoImageProcessor, TrainerCallback, TrainingArguments, pipeline

from hf_rfdetr import RFDetrForObjectDetection, RFDetrImageProcessor, fine_tune
from hf_rfdetr.optimization import has_native_bf16
from hf_rfdetr.training import load_coco_folder
from hf_rfdetr.training.data import DatasetError
from hf_rfdetr.training.fine_tune import _checkpointing

from .conftest import tiny_config
from .synthetic_coco import class_names, write_synthetic_coco

COMMON = dict(batch_size=4, grad_accum_steps=1, device="cpu", tensorboard=False, num_workers=0, lr=1e-3)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return write_synthetic_coco(
        tmp_path_factory.mktemp("coco") / "shapes", num_train=8, num_valid=4, image_size=(64, 64)
    )


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    config = tiny_config()
    RFDetrForObjectDetection(config).save_pretrained(tmp_path / "tiny")
    RFDetrImageProcessor.from_config(config).save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"


def test_fine_tune_writes_model_ema_and_metrics(dataset_dir: Path, tiny_folder: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    epochs_seen = []

    class EpochCounter(TrainerCallback):  # the caller's callbacks reach the trainer
        def on_epoch_end(self, args, state, control, **kwargs) -> None:
            epochs_seen.append(state.epoch)

    trainer = fine_tune(
        tiny_folder,
        dataset_dir,
        epochs=2,
        checkpoint_interval=2,
        output_dir=output,
        callbacks=[EpochCounter()],
        **COMMON,
    )
    assert epochs_seen == [1.0, 2.0]
    config = json.loads((output / "config.json").read_text())
    assert list(config["id2label"].values()) == class_names(3)  # the dataset's classes, no superclass
    for name in ("model.safetensors", "preprocessor_config.json", "ema/model.safetensors", "ema/config.json"):
        assert (output / name).exists(), name
    # 8 images, under 5 batches of 4: 5 steps per epoch, as the original (drawn with replacement)
    assert sorted(p.name for p in output.glob("checkpoint-*")) == ["checkpoint-10"]  # only every 2nd epoch kept
    evaluations = [entry for entry in trainer.state.log_history if "eval_map" in entry]
    assert len(evaluations) == 2 and all(
        "eval_ema_map" in entry and "eval_map_red-rectangle" in entry for entry in evaluations
    )
    assert trainer.state.global_step == 10
    assert RFDetrForObjectDetection.from_pretrained(output / "ema").config.id2label == trainer.model.config.id2label
    # checkpoints carry the image processor (they lacked it: AutoImageProcessor and pipeline failed on them)
    checkpoint = output / "checkpoint-10"
    detector = pipeline("object-detection", model=str(checkpoint))
    assert isinstance(detector.image_processor, RFDetrImageProcessor)
    assert AutoImageProcessor.from_pretrained(checkpoint / "ema").size == detector.image_processor.size


def test_resume_continues_from_the_last_checkpoint(dataset_dir: Path, tiny_folder: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    fine_tune(tiny_folder, dataset_dir, epochs=1, checkpoint_interval=1, output_dir=output, **COMMON)
    resumed = fine_tune(
        tiny_folder, dataset_dir, epochs=2, checkpoint_interval=1, output_dir=output, resume=True, **COMMON
    )
    assert resumed.state.global_step == 10 and round(resumed.state.epoch) == 2
    steps = [entry["step"] for entry in resumed.state.log_history if "loss" in entry]
    assert steps == [5, 10]  # the first epoch's log comes from the checkpoint, the second was trained now


@pytest.mark.parametrize("patience", [0, 1])
def test_early_stopping_on_ema_map(dataset_dir: Path, tiny_folder: Path, tmp_path: Path, patience: int) -> None:
    """As in the original, patience 0 stops at the first evaluation without improvement (the second here), not after
    the first evaluation (transformers' EarlyStoppingCallback with 0)."""
    trainer = fine_tune(
        tiny_folder,
        dataset_dir,
        epochs=6,
        early_stopping=True,
        early_stopping_patience=patience,
        early_stopping_min_delta=2.0,  # no mAP can improve by 2: stop after the second evaluation
        early_stopping_use_ema=True,
        output_dir=tmp_path / "run",
        **COMMON,
    )
    assert trainer.args.metric_for_best_model == "eval_ema_map"
    assert round(trainer.state.epoch) == 2 < 6


def test_early_stopping_saves_the_best_checkpoints_weights_and_ema(
    dataset_dir: Path, tiny_folder: Path, tmp_path: Path
) -> None:
    """With early stopping, output_dir held the best checkpoint's weights but output_dir/ema the last step's average
    (and its eval_results.json another epoch's metrics); both now come from the best checkpoint."""
    from safetensors.torch import load_file

    class FirstEpochIsBest(TrainerCallback):  # the metric the best checkpoint is chosen on, made deterministic
        def on_evaluate(self, args, state, control, metrics=None, **kwargs) -> None:
            metrics["eval_ema_map"] = 1.0 if round(state.epoch) == 1 else 0.0

    output = tmp_path / "run"
    trainer = fine_tune(
        tiny_folder,
        dataset_dir,
        epochs=2,
        early_stopping=True,
        early_stopping_use_ema=True,
        output_dir=output,
        callbacks=[FirstEpochIsBest()],
        **COMMON,
    )
    best = Path(trainer.state.best_model_checkpoint)
    assert best.name == "checkpoint-5" and trainer.state.global_step == 10

    def same(first: Path, second: Path) -> bool:
        one, other = load_file(first), load_file(second)
        return one.keys() == other.keys() and all(torch.equal(one[key], other[key]) for key in one)

    assert same(output / "model.safetensors", best / "model.safetensors")
    assert same(output / "ema" / "model.safetensors", best / "ema" / "model.safetensors")
    assert not same(output / "ema" / "model.safetensors", output / "checkpoint-10" / "ema" / "model.safetensors")
    epochs = [json.loads((folder / "eval_results.json").read_text())["epoch"] for folder in (output, output / "ema")]
    assert epochs == [1.0, 1.0]


def test_datasets_dataset_without_ema(dataset_dir: Path, tiny_folder: Path, tmp_path: Path) -> None:
    splits = load_coco_folder(dataset_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = fine_tune(
            tiny_folder,
            dataset=splits,
            epochs=1,
            resolution=96,
            use_ema=False,
            output_dir=tmp_path / "run",
            clip_max_norm=0.5,  # the original's name for max_grad_norm
            lr_scheduler_type="linear",  # recipe arguments can be overridden (they collided: "multiple values")
            per_device_eval_batch_size=2,
            **COMMON,
        )
    assert (trainer.args.max_grad_norm, trainer.args.per_device_eval_batch_size) == (0.5, 2)
    assert trainer.args.lr_scheduler_type == "linear"
    # every run warned "`gradient_checkpointing` is deprecated" on transformers 5 (the flag was always passed)
    assert not [str(w.message) for w in caught if "checkpointing" in str(w.message)]
    on = TrainingArguments(output_dir=str(tmp_path / "args"), **_checkpointing(True))
    assert getattr(on, "activation_checkpointing", None) or on.gradient_checkpointing
    assert trainer.model.config.resolution == 96 and trainer.model.config.num_labels == 3
    assert not (tmp_path / "run" / "ema").exists()
    assert not any("eval_ema_map" in entry for entry in trainer.state.log_history)


def test_split_aliases_and_the_originals_option_names_each_have_one_home() -> None:
    """fine_tune imported data.py's private split table, and knew `clip_max_norm` in its option check and in its
    translation; both now read one public table each (`SPLIT_ALIASES`, `RENAMED_OPTIONS`)."""
    from hf_rfdetr.commands import eval as eval_command
    from hf_rfdetr.training import data

    fine_tune_module = importlib.import_module("hf_rfdetr.training.fine_tune")  # the package exports the function
    assert fine_tune_module.SPLIT_ALIASES is data.SPLIT_ALIASES and "SPLIT_ALIASES" in data.__all__
    assert not hasattr(data, "_SPLIT_ALIASES") and not hasattr(eval_command, "SPLITS")
    assert data.SPLIT_ALIASES == {
        "train": "train",
        "valid": "validation",
        "val": "validation",
        "validation": "validation",
        "test": "test",
    }
    from hf_rfdetr.training import options

    assert options.RENAMED_OPTIONS == {"clip_max_norm": "max_grad_norm"}
    options.check_training_options({"clip_max_norm": 0.5, "max_grad_norm": 1.0})  # both are taken
    renamed = options.rename_original_options({"clip_max_norm": 0.5, "max_grad_norm": 1.0, "seed": 1})
    assert renamed == {"max_grad_norm": 0.5, "seed": 1}  # the original's name wins, as before


def test_datasets_dict_with_val_or_valid_split_is_evaluated(
    dataset_dir: Path, tiny_folder: Path, tmp_path: Path
) -> None:
    """A DatasetDict whose held-out split was named 'val' or 'valid' (as load_coco_folder accepts for folders) was
    never evaluated, silently; it is now the validation split, and unknown split names are refused up front."""
    splits = load_coco_folder(dataset_dir)
    for name in ("val", "Valid"):
        renamed = datasets.DatasetDict(train=splits["train"], **{name: splits["validation"]})
        trainer = fine_tune(
            tiny_folder,
            dataset=renamed,
            epochs=1,
            use_ema=False,
            output_dir=tmp_path / name,
            early_stopping=True,
            **COMMON,
        )
        assert sum("eval_map" in entry for entry in trainer.state.log_history) == 1, name
    with pytest.raises(ValueError, match=r"split\(s\) \['holdout'\] that fine_tune does not know"):
        fine_tune(tiny_folder, dataset=datasets.DatasetDict(train=splits["train"], holdout=splits["validation"]))
    with pytest.raises(ValueError, match=r"2 'validation' splits \['val', 'validation'\]"):
        fine_tune(tiny_folder, dataset=datasets.DatasetDict(val=splits["validation"], validation=splits["validation"]))


def test_a_train_test_split_is_evaluated_on_its_test_part(dataset_dir: Path, tiny_folder: Path, tmp_path: Path) -> None:
    """`fine_tune(dataset=ds.train_test_split(...))` (splits 'train' and 'test') trained without ever evaluating, and
    said nothing; 'test' is now evaluated in place of the missing 'validation', with a warning. A dataset without any
    held-out split warns that nothing will be evaluated."""
    splits = load_coco_folder(dataset_dir)
    held_out = datasets.DatasetDict(train=splits["train"], test=splits["validation"])
    with pytest.warns(UserWarning, match="no 'validation' split: fine_tune evaluates on its 'test' split"):
        trainer = fine_tune(tiny_folder, dataset=held_out, epochs=1, use_ema=False, output_dir=tmp_path / "a", **COMMON)
    evaluations = [entry for entry in trainer.state.log_history if "eval_map" in entry]
    assert len(evaluations) == 1 and -1.0 <= evaluations[0]["eval_map"] <= 1.0
    with pytest.warns(UserWarning, match="no 'validation' \\(or 'test'\\) split: nothing will be evaluated"):
        trainer = fine_tune(
            tiny_folder,
            dataset=datasets.DatasetDict(train=splits["train"]),
            epochs=1,
            use_ema=False,
            output_dir=tmp_path / "b",
            **COMMON,
        )
    assert not any("eval_map" in entry for entry in trainer.state.log_history)


def test_variant_names_start_from_the_variant_with_the_dataset_labels() -> None:
    from hf_rfdetr.training.fine_tune import _load_model

    model = _load_model("nano", {0: "apple", 1: "pear"}, resolution=448)
    assert model.config.variant == "nano" and model.config.resolution == 448
    assert model.config.positional_encoding_size == 28 and model.class_embed.out_features == 2


@pytest.fixture
def trained_heads(tmp_path: Path) -> Path:
    """A tiny model whose class-head rows (decoder and every two-stage group) all differ, saved with names."""
    torch.manual_seed(1)
    model = RFDetrForObjectDetection(tiny_config())  # labels cat, dog, bird
    with torch.no_grad():
        for parameter in (*model.class_embed.parameters(), *model.model.enc_out_class_embed.parameters()):
            parameter.copy_(torch.randn_like(parameter))
    model.save_pretrained(tmp_path / "trained")
    return tmp_path / "trained"


@pytest.mark.parametrize(
    ("labels", "rows"),
    [
        ({0: "x", 1: "y"}, [0, 1]),  # fewer: truncated, as the original's reinitialize_detection_head
        ({index: f"c{index}" for index in range(5)}, [0, 1, 2, 0, 1]),  # more: tiled
        ({0: "bird", 1: "cat", 2: "dog"}, [2, 0, 1]),  # the same names in another order: each keeps its row
        ({0: "dog"}, [1]),  # a subset of the names
    ],
)
def test_new_labels_start_from_the_trained_class_rows(trained_heads: Path, labels, rows) -> None:
    """fine_tune's start model (and the facade's `num_classes` / `class_names`): never random class heads; a dataset
    whose names the checkpoint knows gets their rows, so its labels are not swapped."""
    from hf_rfdetr.training.fine_tune import _load_model

    trained = RFDetrForObjectDetection.from_pretrained(trained_heads).eval()
    model = _load_model(str(trained_heads), labels, None).eval()
    index = torch.tensor(rows)
    assert model.config.id2label == labels and model.config.label2id == {v: k for k, v in labels.items()}
    assert model.config.num_labels == model.class_embed.out_features == len(labels)
    assert torch.equal(model.class_embed.weight, trained.class_embed.weight[index])
    assert torch.equal(model.class_embed.bias, trained.class_embed.bias[index])
    assert torch.equal(model.model.enc_out_class_embed.weight, trained.model.enc_out_class_embed.weight[:, index])
    assert torch.equal(model.model.enc_out_class_embed.bias, trained.model.enc_out_class_embed.bias[:, index])
    untouched = trained.state_dict()
    for name, tensor in model.state_dict().items():
        if "class_embed" not in name:
            assert torch.equal(tensor, untouched[name]), name
    if sorted(rows) == [0, 1, 2]:  # a reordering: the same detections, their logits' columns reordered
        pixel_values = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(model(pixel_values).logits, trained(pixel_values).logits[..., index])


def test_a_model_object_takes_the_dataset_labels_of_another_count(trained_heads: Path) -> None:
    from hf_rfdetr.training.fine_tune import _load_model

    model = RFDetrForObjectDetection.from_pretrained(trained_heads)
    expected = model.class_embed.weight[[0, 1, 2, 0]].detach().clone()
    labels = {0: "a", 1: "b", 2: "c", 3: "d"}
    assert _load_model(model, labels, None) is model
    assert model.config.id2label == labels and torch.equal(model.class_embed.weight, expected)


def test_bad_arguments_are_explained(dataset_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one of dataset_dir"):
        fine_tune("nano", output_dir=tmp_path)
    with pytest.raises(ValueError, match="resolution=70 must be divisible"):
        fine_tune("nano", dataset_dir, resolution=70, output_dir=tmp_path, **COMMON)
    with pytest.raises(TypeError, match=r"num_train_epochs= is set by fine_tune / train\(\) from epochs="):
        fine_tune("nano", dataset_dir, num_train_epochs=3, output_dir=tmp_path)


def test_non_positive_epochs_are_refused_before_anything_is_loaded(tmp_path: Path, monkeypatch, capsys) -> None:
    """`epochs=0` trained nothing and saved the untrained model as the fine-tuned one; it is refused first, before
    the data (a missing folder here) or the model (an unknown name; a checkpoint download for the CLI) is read."""
    from hf_rfdetr import pretrained_weights
    from hf_rfdetr.cli import main

    missing = tmp_path / "no-such-dataset"
    for epochs in (0, -2, 0.0):
        with pytest.raises(ValueError, match=rf"^epochs={epochs!r}: .* must be positive \(1 or more passes"):
            fine_tune("no-such-model", missing, epochs=epochs, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()

    def no_download(name, **_):
        raise AssertionError("the checkpoint was downloaded before --epochs was checked")

    monkeypatch.setattr(pretrained_weights, "pretrained", no_download)
    (tmp_path / "data").mkdir()
    arguments = ["train", "--dataset-dir", str(tmp_path / "data"), "--model", "nano", "--output-dir", str(tmp_path)]
    assert main([*arguments, "--epochs", "0"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("hf-rfdetr train: error: --epochs 0: the number of passes over the training set must be")
    assert len(error.splitlines()) == 1 and "Traceback" not in error


def test_out_of_range_training_numbers_are_refused_before_anything_is_loaded(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A non-positive batch size, accumulation, learning rate, ... failed late (in torch's DataLoader / AdamW, the
    Trainer, a ZeroDivisionError at the first epoch end) or not at all (resolution=0 was taken as None); they are
    refused first, as epochs, naming the value. The original's valid values stay valid: weight decay, the encoder's
    learning rate, warmup, lr_drop, num_workers, patience and seed 0 (the missing data folder is reported then)."""
    from hf_rfdetr import pretrained_weights
    from hf_rfdetr.cli import main

    missing = tmp_path / "no-such-dataset"
    for name, value, message in [
        ("batch_size", 0, r"the number of images per device and step must be an integer, 1 or more \(default: 4\)"),
        ("batch_size", 2.5, r"the number of images per device and step must be an integer, 1 or more"),
        ("batch_size", True, r"the number of images per device and step must be an integer, 1 or more"),
        ("grad_accum_steps", 0, r"the number of steps accumulated per optimizer update must be an integer, 1 or more"),
        ("lr", 0, r"the learning rate must be positive \(default: 0.0001\)"),
        ("lr", -1e-4, r"the learning rate must be positive"),
        ("lr", float("nan"), r"the learning rate must be positive"),
        ("lr", "1e-4", r"the learning rate must be positive"),
        ("lr_encoder", -1e-4, r"the encoder's learning rate must be 0 or more \(0 freezes the encoder"),
        ("weight_decay", -0.1, r"AdamW's weight decay must be 0 or more \(0 turns it off; default: 0.0001\)"),
        ("warmup_epochs", -1, r"the epochs of linear learning-rate warmup must be 0 or more"),
        ("lr_drop", -1, r"the epoch from which the learning rates are x0.1 must be 0 or more, or None"),
        ("checkpoint_interval", 0, r"the number of epochs between kept checkpoints must be an integer, 1 or more"),
        (
            "early_stopping_patience",
            -1,
            r"the evaluations without improvement before stopping must be an integer, 0 or more",
        ),
        ("num_workers", -1, r"the number of data loading processes must be an integer, 0 or more"),
        ("resolution", 0, r"the input size must be an integer, 1 or more, or None for the model's own \(a multiple"),
        ("seed", -1, r"the random seed must be an integer, 0 to 2\*\*32 - 1 \(default: 42\)"),
        ("seed", 2**32, r"the random seed must be an integer, 0 to 2\*\*32 - 1"),
    ]:
        with pytest.raises(ValueError, match=rf"^{name}={value!r}: {message}"):
            fine_tune("no-such-model", missing, **{name: value}, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    valid = dict(weight_decay=0, lr_encoder=0.0, warmup_epochs=0, lr_drop=0, num_workers=0, seed=0, resolution=None)
    for name, value in [*valid.items(), ("lr_drop", None), ("early_stopping_patience", 0), ("batch_size", 1)]:
        with pytest.raises(DatasetError, match="no-such-dataset does not exist"):  # past the checks: data is read
            fine_tune("nano", missing, **{name: value}, output_dir=tmp_path / "out")

    def no_download(name, **_):
        raise AssertionError("the checkpoint was downloaded before the numbers were checked")

    monkeypatch.setattr(pretrained_weights, "pretrained", no_download)
    (tmp_path / "data").mkdir()
    arguments = ["train", "--dataset-dir", str(tmp_path / "data"), "--model", "nano", "--output-dir", str(tmp_path)]
    for flag, value, message in [
        ("--batch-size", "0", "the number of images per device and step must be an integer, 1 or more (default: 4)"),
        ("--grad-accum-steps", "-1", "the number of steps accumulated per optimizer update must be an integer, 1"),
        ("--lr", "0", "the learning rate must be positive (default: 0.0001)"),
        ("--weight-decay", "-0.0001", "AdamW's weight decay must be 0 or more"),
        ("--num-workers", "-2", "the number of data loading processes must be an integer, 0 or more"),
    ]:
        assert main([*arguments, flag, value]) == 1
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"hf-rfdetr train: error: {flag} {value}: {message}"), error
        assert len(error.splitlines()) == 1 and "Traceback" not in error


def test_cli_train(dataset_dir: Path, tiny_folder: Path, tmp_path: Path, capsys) -> None:
    from hf_rfdetr.cli import main

    arguments = ["train", "--dataset-dir", str(dataset_dir), "--model", str(tiny_folder), "--output-dir", str(tmp_path)]
    arguments += ["--epochs", "1", "--batch-size", "4", "--grad-accum-steps", "1", "--device", "cpu"]
    assert main([*arguments, "--num-workers", "0", "--no-tensorboard", "--no-ema", "--lr", "1e-3"]) == 0
    out = capsys.readouterr().out
    assert "validation mAP" in out and f"saved the fine-tuned model to {tmp_path}" in out
    assert (tmp_path / "model.safetensors").exists()
    assert main(["train", "--dataset-dir", str(tmp_path / "missing")]) == 1
    assert "missing" in capsys.readouterr().err


def test_cli_train_starts_checkpoint_names_from_their_coco_weights(tmp_path: Path, monkeypatch) -> None:
    """`hf-rfdetr train --model nano` trained from random weights, silently; it now starts from the COCO checkpoint
    (`hf_rfdetr.pretrained`), as the original's `RFDETRNano().train()`, and `--from-scratch` asks for random weights."""
    from types import SimpleNamespace

    import hf_rfdetr.training
    from hf_rfdetr import pretrained_weights
    from hf_rfdetr.cli import main

    started: list[tuple[str, str | None]] = []

    def fake_fine_tune(model, dataset_dir, **kwargs):
        started.append((str(model), kwargs.get("model_name")))
        return SimpleNamespace(state=SimpleNamespace(log_history=[]))

    monkeypatch.setattr(hf_rfdetr.training, "fine_tune", fake_fine_tune)
    monkeypatch.setattr(pretrained_weights, "pretrained", lambda name, **_: f"/cache/coco-{name}")
    (tmp_path / "data").mkdir()
    arguments = ["train", "--dataset-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out")]
    assert main([*arguments, "--model", "nano"]) == 0
    assert main([*arguments, "--model", "nano", "--from-scratch"]) == 0
    assert main([*arguments, "--model", str(tmp_path / "data")]) == 0  # a folder is used as it is
    assert started == [("/cache/coco-nano", "nano"), ("nano", "nano"), (str(tmp_path / "data"), str(tmp_path / "data"))]


def test_tensorboard_and_wandb_reporting(dataset_dir: Path, tiny_folder: Path, tmp_path: Path, monkeypatch) -> None:
    from hf_rfdetr.training.fine_tune import _report_to

    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    assert _report_to(True, True, "shapes") == ["tensorboard", "wandb"]
    assert __import__("os").environ["WANDB_PROJECT"] == "shapes"
    options = {**COMMON, "tensorboard": True}
    fine_tune(tiny_folder, dataset_dir, epochs=1, use_ema=False, output_dir=tmp_path / "run", **options)
    events = list(tmp_path.rglob("events.out.tfevents.*"))
    assert events, "TensorBoard wrote no event file"


def test_amp_follows_the_original_and_asks_for_bf16_on_the_cpu(monkeypatch) -> None:
    """ "auto": the original's choice (mixed precision on CUDA: bf16 where supported, else fp16; float32 on the CPU);
    True: bf16 on the CPU too (with a warning where bf16 is emulated); False: float32."""
    module = importlib.import_module("hf_rfdetr.training.fine_tune")  # the module, not the function of that name

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert module.mixed_precision("auto", None) == {} == module.mixed_precision("auto", "cpu")
    assert module.mixed_precision(False, "cuda") == {}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert module.mixed_precision("auto", "cuda:1") == {"bf16": True}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert module.mixed_precision("auto", "cuda") == {"fp16": True} == module.mixed_precision(True, "cuda")
    monkeypatch.setattr("hf_rfdetr.optimization.has_native_bf16", lambda: True)
    assert module.mixed_precision(True, "cpu") == {"bf16": True}
    monkeypatch.setattr("hf_rfdetr.optimization.has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="emulated"):
        assert module.mixed_precision(True, None) == {"bf16": True}
    with pytest.raises(ValueError, match="amp must be"):
        module.mixed_precision("bf16", "cpu")


def test_amp_trains_in_bfloat16_on_the_cpu(dataset_dir: Path, tiny_folder: Path, tmp_path: Path) -> None:
    seen = set()

    class Dtypes(TrainerCallback):  # the backbone's matrix products run in bf16 during the training steps
        def on_train_begin(self, args, state, control, model=None, **kwargs) -> None:
            fc1 = model.model.backbone.layers[0].mlp.fc1
            fc1.register_forward_hook(lambda module, inputs, output: seen.add((module.training, output.dtype)))

    with contextlib.nullcontext() if has_native_bf16() else pytest.warns(UserWarning, match="emulated"):
        trainer = fine_tune(
            tiny_folder, dataset_dir, epochs=1, output_dir=tmp_path / "run", amp=True, callbacks=[Dtypes()], **COMMON
        )
    assert trainer.args.bf16 and (True, torch.bfloat16) in seen
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert next(trainer.model.parameters()).dtype == torch.float32  # the weights stay float32
    explicit = fine_tune(
        tiny_folder, dataset_dir, epochs=1, output_dir=tmp_path / "run2", amp=True, bf16=False, **COMMON
    )
    assert not explicit.args.bf16  # TrainingArguments' own flags win
    assert explicit.accelerator.mixed_precision == "no"  # not the first run's bf16 (transformers #29510)
