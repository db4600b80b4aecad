"""RFDetrTrainer: the original optimizer groups, EMA and regular weights evaluated with COCO metrics, early stopping."""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path

import pytest
import torch
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

from hf_rfdetr import RFDetrForObjectDetection
from hf_rfdetr.training import CocoEvaluator, LearningRates, RFDetrEMACallback, RFDetrTrainer, parameter_groups
from hf_rfdetr.training.trainer import IGNORED_OUTPUTS

from .conftest import tiny_config
from .page_faults import FRESH_PAGES, glibc_only, page_faults
from .test_training_ema import _Boxes, _collate


class _BoxesWithSizes(_Boxes):
    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        item["labels"]["orig_size"] = torch.tensor([64, 64])
        return item


def _trainer(tmp_path: Path, **arguments) -> RFDetrTrainer:
    torch.manual_seed(0)
    model = RFDetrForObjectDetection(tiny_config())
    arguments = {"per_device_eval_batch_size": 4} | arguments
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=8,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        weight_decay=1e-4,
        eval_strategy="steps",
        eval_steps=4,
        save_steps=4,
        logging_steps=4,
        report_to=[],
        use_cpu=True,
        seed=0,
        remove_unused_columns=False,
        **arguments,
    )
    return RFDetrTrainer(
        model=model,
        args=args,
        train_dataset=_BoxesWithSizes(),
        eval_dataset=_BoxesWithSizes(),
        data_collator=_collate,
        compute_metrics=CocoEvaluator(id2label=model.config.id2label),
        learning_rates=LearningRates(lr_encoder=5e-4),
        ema=RFDetrEMACallback(decay=0.9, tau=2),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=5)],
    )


def test_optimizer_uses_the_original_groups(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, metric_for_best_model="eval_map")
    optimizer = trainer.create_optimizer()
    expected = parameter_groups(trainer.model, LearningRates(lr=1e-3, lr_encoder=5e-4, weight_decay=1e-4))
    assert sorted((g["lr"], g["weight_decay"], len(g["params"])) for g in optimizer.param_groups) == sorted(
        (g["lr"], g["weight_decay"], len(g["params"])) for g in expected
    )


def test_evaluation_reports_regular_and_ema_coco_metrics(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, metric_for_best_model="eval_ema_map", load_best_model_at_end=True)
    trainer.train()
    metrics = trainer.evaluate()
    for prefix in ("eval", "eval_ema"):
        for name in ("loss", "map", "map_50", "map_75", "map_small", "mar_100", "map_cat", "map_dog", "map_bird"):
            assert f"{prefix}_{name}" in metrics, f"{prefix}_{name}"
        assert -1.0 <= metrics[f"{prefix}_map"] <= 1.0
    assert metrics["eval_loss"] != metrics["eval_ema_loss"]  # two different sets of weights were evaluated
    assert trainer.state.best_metric is not None  # early stopping and best-model tracking saw the EMA metric
    logged = [entry for entry in trainer.state.log_history if "eval_map" in entry]
    assert logged and all("eval_ema_map" in entry for entry in logged)  # one log line holds both


@pytest.mark.parametrize("missing", ["orig_size"])
def test_evaluator_needs_original_sizes(missing: str) -> None:
    from transformers import EvalPrediction

    logits, boxes = torch.zeros(1, 5, 3).numpy(), torch.full((1, 5, 4), 0.5).numpy()
    label = {"class_labels": torch.tensor([0]).numpy(), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]]).numpy()}
    with pytest.raises(KeyError, match=missing):
        CocoEvaluator()(EvalPrediction(predictions=[[(logits[0], boxes[0])]], label_ids=[[label]]))


class _RecordingEvaluator(CocoEvaluator):
    """Keeps what the evaluation loop handed over."""

    def __call__(self, evaluation) -> dict[str, float]:
        self.batches = [
            (len(batch), len(labels)) for batch, labels in zip(evaluation.predictions, evaluation.label_ids)
        ]
        return super().__call__(evaluation)


@pytest.mark.parametrize("eval_batch_size", [3, 5])
def test_evaluation_sees_every_image_when_the_last_batch_is_short(tmp_path: Path, eval_batch_size: int) -> None:
    """8 images in batches of 3 (or 5): the short last batch keeps its predictions and targets, nothing repeated."""
    trainer = _trainer(tmp_path, per_device_eval_batch_size=eval_batch_size, metric_for_best_model="eval_map")
    trainer.compute_metrics = evaluator = _RecordingEvaluator(id2label=trainer.model.config.id2label)
    metrics = trainer.evaluate()
    assert sum(images for images, _ in evaluator.batches) == 8
    assert all(images == targets for images, targets in evaluator.batches)
    assert evaluator.batches[-1][0] == 8 % eval_batch_size
    assert "eval_map" in metrics and "eval_ema_map" not in metrics  # no EMA weights before training


@functools.cache
def _schedule_model() -> RFDetrForObjectDetection:
    return RFDetrForObjectDetection(tiny_config())


def _schedule(
    tmp_path: Path, size: int, batch: int, accum: int, epochs: int = 1, max_steps: int = -1, **options
) -> tuple[int, int, list[float]]:
    """(optimizer steps in all, per epoch, the schedule's lr factor at every step) of an RFDetrTrainer on `size`
    items, as `Trainer.train` sizes them (`set_initial_training_values`), without training."""
    scheduler_type = options.pop("lr_scheduler_type", "constant")
    args = TrainingArguments(
        output_dir=str(tmp_path),
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accum,
        lr_scheduler_type=scheduler_type,
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
    )
    trainer = RFDetrTrainer(
        model=_schedule_model(), args=args, train_dataset=[{}] * size, data_collator=lambda batch: batch, **options
    )
    sizing = inspect.signature(trainer.set_initial_training_values).parameters
    extra = [batch * accum] if "total_train_batch_size" in sizing else []  # transformers 4.57
    values = trainer.set_initial_training_values(args, trainer.get_train_dataloader(), *extra)
    total, per_epoch = values[-1], values[1]
    trainer.create_optimizer()
    scheduler = trainer.create_scheduler(total)
    return total, per_epoch, [scheduler.lr_lambdas[0](step) for step in range(total)]


def test_the_step_schedule_drops_at_epoch_100_by_default(tmp_path: Path) -> None:
    """The original's step schedule has lr_drop=100: a run of more than 100 epochs trains at x0.1 from epoch 100 on
    (it never dropped: lr_drop defaulted to None). lr_scheduler_type= other than the recipe's 'constant' is
    transformers' schedule; lr_drop=None never drops."""
    from hf_rfdetr.cli import build_parser
    from hf_rfdetr.training import fine_tune

    total, per_epoch, factors = _schedule(tmp_path, 20, 2, 1, epochs=101)
    assert (total, per_epoch) == (1010, 10)
    assert factors[999] == 1.0 and factors[1000:] == [0.1] * 10
    assert set(_schedule(tmp_path, 20, 2, 1, epochs=101, lr_drop=None)[2]) == {1.0}
    _, _, linear = _schedule(tmp_path, 20, 2, 1, epochs=101, lr_scheduler_type="linear")
    assert linear[0] == 1.0 and linear[505] == pytest.approx(0.5) and linear[1000] == pytest.approx(10 / 1010)
    with pytest.raises(ValueError, match="warmup_ratio"):
        _schedule(tmp_path, 20, 2, 1, lr_scheduler_type="linear", warmup_epochs=1)
    assert inspect.signature(fine_tune).parameters["lr_drop"].default == 100
    arguments = build_parser().parse_args(["train", "--dataset-dir", "data"])
    assert (arguments.lr_drop, arguments.warmup_epochs) == (100, 0)
    arguments = build_parser().parse_args(["train", "--dataset-dir", "d", "--lr-drop", "5", "--warmup-epochs", "1"])
    assert (arguments.lr_drop, arguments.warmup_epochs) == (5, 1)


def test_the_step_schedule_rounds_as_the_original(tmp_path: Path) -> None:
    """warmup int(steps_per_epoch * warmup_epochs) steps and the drop at int(lr_drop) * steps_per_epoch, as
    rfdetr's _build_managed_scheduler (were ceil and round: one warmup step more, a drop at 2.5 epochs 8 steps
    early); with max_steps an epoch is the Trainer's ceil(batches / accumulation) optimizer steps (was floor: the
    schedule ran ahead by a sixth with 11 batches in windows of 2)."""
    total, per_epoch, factors = _schedule(tmp_path, 100, 4, 1, epochs=10, warmup_epochs=0.5, lr_drop=5)
    assert (total, per_epoch) == (250, 25)
    assert factors[:13] == [step / 12 for step in range(12)] + [1.0]  # 12 warmup steps, not 13
    assert factors[124] == 1.0 and factors[125] == 0.1
    _, per_epoch, factors = _schedule(tmp_path, 256, 4, 4, epochs=12, lr_drop=2.5)
    assert per_epoch == 16 and factors.index(0.1) == 32  # epoch int(2.5) = 2, not step round(2.5 * 16) = 40
    _, per_epoch, factors = _schedule(tmp_path, 22, 2, 2, max_steps=14, warmup_epochs=1, lr_drop=2)
    assert per_epoch == 6  # 11 batches: 5 windows of 2 and 1 of 1
    assert factors == pytest.approx([step / 6 for step in range(6)] + [1.0] * 6 + [0.1, 0.1])


def test_a_small_training_set_is_drawn_with_replacement_to_5_steps_per_epoch(tmp_path: Path) -> None:
    """Under batch x accumulation x 5 items, the original draws that many with replacement per epoch (5 optimizer
    steps); it had ceil(items / (batch x accumulation)) steps: 3 instead of 5 for 37 items in 4 x 4, 2 for 4 in 2."""
    total, per_epoch, factors = _schedule(tmp_path, 37, 4, 4, epochs=10, warmup_epochs=1, lr_drop=5)
    assert (total, per_epoch) == (50, 5)
    assert factors[:6] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0] and factors.index(0.1) == 25
    assert _schedule(tmp_path, 4, 2, 1, epochs=2)[:2] == (10, 5)
    assert _schedule(tmp_path, 64, 4, 4, epochs=150)[:2] == (750, 5)  # the drop at epoch 100: step 500, not 400
    assert _schedule(tmp_path, 80, 4, 4, epochs=1)[:2] == (5, 5)  # enough items: sampled as before
    trainer = _trainer(tmp_path)  # 8 items in batches of 2
    sampler = trainer._get_train_sampler()
    assert sampler.replacement and sampler.num_samples == 10
    assert len(trainer.get_train_dataloader()) == 5


def test_predict_scores_a_test_set_as_evaluate_does(tmp_path: Path) -> None:
    """`predict` leaves the non-prediction outputs (loss_dict, ...) out as `evaluate` does: per-image predictions and
    targets, and the same COCO metrics under `test_`."""
    trainer = _trainer(tmp_path, metric_for_best_model="eval_map")
    evaluated = trainer.evaluate(_BoxesWithSizes(), metric_key_prefix="test")
    output = trainer.predict(_BoxesWithSizes())
    assert output.metrics["test_map"] == evaluated["test_map"]
    assert output.metrics["test_map_50"] == evaluated["test_map_50"]
    assert output.metrics["test_loss"] == pytest.approx(evaluated["test_loss"])
    images = [image for batch in output.predictions for image in batch]
    targets = [target for batch in output.label_ids for target in batch]
    assert len(images) == len(targets) == 8
    logits, boxes = images[0]  # per image (logits, pred_boxes), nothing else
    assert logits.shape == (trainer.model.config.num_queries, trainer.model.config.num_labels)
    assert boxes.shape == (trainer.model.config.num_queries, 4)
    assert sorted(targets[0]) == ["boxes", "class_labels", "orig_size"]


class _Scenes(torch.utils.data.Dataset):
    """Eight random images with 1 to 3 boxes each (image i has 3 - i % 3) and different original sizes."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(1)
        self.images = torch.randn(8, 3, 64, 64, generator=generator)
        self.boxes = torch.rand(8, 3, 4, generator=generator) * torch.tensor([0.5, 0.5, 0.2, 0.2]) + 0.25

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        count = 3 - index % 3
        label = {
            "class_labels": torch.arange(index, index + count) % 3,
            "boxes": self.boxes[index, :count],
            "orig_size": torch.tensor([48 + 8 * index, 96]),
        }
        return {"pixel_values": self.images[index], "labels": label}


class _NearTheTargets(RFDetrForObjectDetection):
    """The real outputs (loss_dict, auxiliary_outputs, ... included), the first queries moved onto the targets with
    a per-image offset: a mAP between 0 and 1 that depends on every image, object and original size."""

    def forward(self, pixel_values, labels=None, **kwargs):
        outputs = super().forward(pixel_values, labels=labels, **kwargs)
        if labels is not None:
            logits, boxes = outputs.logits.clone(), outputs.pred_boxes.clone()
            for index, target in enumerate(labels):
                count, image = len(target["class_labels"]), int(target["orig_size"][0] - 48) // 8  # _Scenes' index
                boxes[index, :count] = target["boxes"] + 0.01 * (image % 4)
                logits[index, torch.arange(count), target["class_labels"]] = 5.0 - image
            outputs.logits, outputs.pred_boxes = logits, boxes
        return outputs


def _coco_map(trainer_class, tmp_path: Path, eval_batch_size: int, ignore_keys) -> dict[str, float]:
    torch.manual_seed(0)
    model = _NearTheTargets(tiny_config())
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=eval_batch_size,
        eval_do_concat_batches=False,
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
    )
    evaluator = CocoEvaluator(id2label=model.config.id2label)
    trainer = trainer_class(model=model, args=args, data_collator=_collate, compute_metrics=evaluator)
    return trainer.evaluate(_Scenes(), ignore_keys=ignore_keys)


@pytest.mark.parametrize("ignore_keys", [IGNORED_OUTPUTS, None], ids=["ignore_keys", "all_outputs"])
def test_coco_evaluator_scores_a_plain_trainer_as_rfdetr_trainer(tmp_path: Path, ignore_keys) -> None:
    """A plain transformers.Trainer hands CocoEvaluator the batch's output arrays (B, ...), loss_dict and the other
    outputs too without ignore_keys (as transformers' object-detection guide expects them); the metrics equal
    RFDetrTrainer's (per-image gathering) on the same model and data."""
    expected = _coco_map(RFDetrTrainer, tmp_path, 4, None)
    assert 0.2 < expected["eval_map"] < 0.99  # neither trivial nor perfect
    for batch_size in (4, 2, 1):
        metrics = _coco_map(Trainer, tmp_path, batch_size, ignore_keys)
        for name in ("map", "map_50", "map_75", "mar_1", "mar_100", "map_cat", "map_dog", "map_bird"):
            assert metrics[f"eval_{name}"] == expected[f"eval_{name}"], (batch_size, name)


def test_coco_evaluator_refuses_a_plain_trainers_cut_last_batch(tmp_path: Path) -> None:
    """8 images in batches of 3, 5 or 7: under a plain Trainer accelerate cuts the tensors of the last batch's targets
    to as many rows as it has images (2, 3, 1): image 6 loses a box (3), image 6 may have lost some (5: it has 3),
    image 7 loses its orig_size (7). Refused with a clear error rather than scored wrongly; RFDetrTrainer is exact."""
    expected = _coco_map(RFDetrTrainer, tmp_path, 4, None)
    for batch_size in (3, 5, 7):
        assert _coco_map(RFDetrTrainer, tmp_path, batch_size, None)["eval_map"] == expected["eval_map"]
        with pytest.raises(ValueError, match="Use RFDetrTrainer") as error:
            _coco_map(Trainer, tmp_path, batch_size, IGNORED_OUTPUTS)
        assert f"last evaluation batch has {8 % batch_size} image(s)" in str(error.value)


class _FirstEvaluationIsBest:
    """`compute_metrics` whose `rank` falls with every call: the first evaluation is the best."""

    calls = 0

    def __call__(self, evaluation) -> dict[str, float]:
        self.calls += 1
        return {"rank": -float(self.calls)}


def test_load_best_model_at_end_restores_the_best_checkpoints_ema(tmp_path: Path) -> None:
    """Checkpoints at steps 4 and 8, the one of step 4 best: after training the EMA weights are that checkpoint's
    average (as the weights are its weights), not the last step's, and evaluating them gives its logged EMA loss."""
    from safetensors.torch import load_file

    trainer = _trainer(tmp_path, metric_for_best_model="eval_rank", greater_is_better=True, load_best_model_at_end=True)
    trainer.compute_metrics = _FirstEvaluationIsBest()
    trainer.train()
    assert Path(trainer.state.best_model_checkpoint).name == "checkpoint-4"
    best = load_file(tmp_path / "checkpoint-4" / "ema" / "model.safetensors")
    last = load_file(tmp_path / "checkpoint-8" / "ema" / "model.safetensors")
    shadow = trainer.ema.shadow
    assert any(not torch.equal(best[name], last[name]) for name in shadow)
    assert all(torch.equal(shadow[name], best[name]) for name in shadow)
    assert (
        trainer.ema.updates == json.loads((tmp_path / "checkpoint-4" / "ema" / "ema_state.json").read_text())["updates"]
    )
    logged = next(entry for entry in trainer.state.log_history if entry.get("step") == 4 and "eval_ema_loss" in entry)
    assert trainer.evaluate()["eval_ema_loss"] == pytest.approx(logged["eval_ema_loss"], rel=1e-5)


def _generic_trainer_card(trainer: RFDetrTrainer) -> str:
    """transformers' own `Trainer.create_model_card` (what `push_to_hub` uploaded before)."""
    Trainer.create_model_card(trainer, model_name="my-rfdetr")
    return (Path(trainer.args.output_dir) / "README.md").read_text()


def test_create_model_card_writes_the_rfdetr_card_with_the_training_facts(tmp_path: Path, monkeypatch) -> None:
    """`Trainer.push_to_hub` writes the card with `create_model_card` then uploads `output_dir`: RFDetrTrainer's is
    the RF-DETR card (transformers' arguments in its metadata, the run's training facts and validation metrics), on
    transformers 4.57 and 5.x; a card of the user's own is kept. Nothing is uploaded (the upload is replaced)."""
    from types import SimpleNamespace

    import transformers.trainer as trainer_module
    from huggingface_hub import ModelCard

    from hf_rfdetr.model_card import GENERATED_MARKER

    trainer = _trainer(tmp_path, metric_for_best_model="eval_map")
    trainer.train()
    trainer.save_model()
    readme = tmp_path / "README.md"
    assert "generated_from_trainer" in _generic_trainer_card(trainer)
    trainer.create_model_card(
        language="en",
        license="mit",
        tags=["custom"],
        model_name="my-rfdetr",
        finetuned_from="someone/rf-detr-base",
        tasks="object-detection",
        dataset_tags="someone/shapes",
        dataset="someone/shapes",
        dataset_args="default",
    )
    text = readme.read_text()
    assert GENERATED_MARKER in text and "# my-rfdetr" in text
    assert "generated_from_trainer" not in text and "trained from scratch" not in text
    data = ModelCard.load(readme).data
    assert data.license == "mit" and data.language == "en" and data.base_model == "someone/rf-detr-base"
    assert data.datasets == ["someone/shapes"] and data.pipeline_tag == "object-detection"
    assert {"custom", "rf-detr", "object-detection"} <= set(data.tags)
    assert "fine-tuned from `someone/rf-detr-base` with `RFDetrTrainer`" in text
    assert "(8 training images) for 1.6 epochs (8 optimizer steps), batch 2 x 1 accumulation steps" in text
    assert (
        "lr 0.001 (encoder 0.0005), weight decay 0.0001, resolution 64; EMA of the weights (decay 0.9, tau 2)" in text
    )
    logged = [entry for entry in trainer.state.log_history if "eval_map" in entry][-1]
    assert f"| mAP@.50 | {logged['eval_map_50']:.4f} |" in text
    assert {"README.md", "config.json", "model.safetensors"} <= {path.name for path in tmp_path.iterdir()}

    uploaded = {}

    def upload_folder(**kwargs):
        uploaded.update(kwargs, readme=(Path(kwargs["folder_path"]) / "README.md").read_text())

    if hasattr(trainer_module, "hf_api"):  # transformers 5.x
        monkeypatch.setattr(trainer_module, "hf_api", lambda: SimpleNamespace(upload_folder=upload_folder))
    else:  # 4.57
        monkeypatch.setattr(trainer_module, "upload_folder", upload_folder)
    _generic_trainer_card(trainer)
    trainer.hub_model_id = "someone/my-rfdetr"  # as init_hf_repo sets it (no repository is created)
    trainer.push_to_hub(license="mit")
    assert uploaded["repo_id"] == "someone/my-rfdetr" and uploaded["folder_path"] == str(tmp_path)
    assert GENERATED_MARKER in uploaded["readme"] and "generated_from_trainer" not in uploaded["readme"]
    assert 'model="someone/my-rfdetr"' in uploaded["readme"]  # the snippets load the repository
    assert ModelCard.load(readme).data.license == "mit"

    readme.write_text("# my own card\n")
    trainer.create_model_card(model_name="my-rfdetr")
    assert readme.read_text() == "# my own card\n"


@pytest.mark.parametrize("launched", [None, "bf16"])
def test_a_float32_trainer_after_a_bf16_one_trains_in_float32(tmp_path: Path, monkeypatch, launched) -> None:
    """transformers 4.x's TrainingArguments(bf16=True) leaves ACCELERATE_MIXED_PRECISION=bf16 in the environment, and
    a later float32 Trainer of the process read it (transformers #29510). Each RFDetrTrainer trains in its own
    arguments' precision, or in the one `accelerate launch --mixed_precision` set (recorded at import)."""
    if launched:  # as `accelerate launch --mixed_precision bf16` starts the process
        monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", launched)
    else:
        monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setattr("hf_rfdetr.training.trainer.LAUNCH_MIXED_PRECISION", launched)
    first = _trainer(tmp_path / "bf16", bf16=True)
    assert first.accelerator.mixed_precision == "bf16"
    second = _trainer(tmp_path / "fp32", metric_for_best_model="eval_map")
    assert second.accelerator.mixed_precision == (launched or "no")
    seen = set()
    fc1 = second.model.model.backbone.layers[0].mlp.fc1
    fc1.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
    second.args.max_steps = 1
    second.train()
    assert seen == {torch.bfloat16 if launched else torch.float32}


@glibc_only
def test_training_on_the_cpu_keeps_freed_memory_between_steps(tmp_path: Path) -> None:
    """RFDetrTrainer(tune_allocator=True), the default, keeps freed memory in the process when it trains on the CPU
    (`keep_freed_memory`): each step reuses the last one's buffers instead of page-faulting them in (a Nano step at
    batch 2 faulted 125,000 pages); with tune_allocator=False glibc's settings are left alone."""
    setup = """
from tests.test_training_trainer import _trainer

trainer = _trainer(Path(sys.argv[2]), metric_for_best_model="eval_map")
trainer.tune_allocator = sys.argv[1] == "tune"
trainer.args.max_steps = 1
trainer.train()
"""
    assert page_faults(setup, "default", str(tmp_path / "default")) > FRESH_PAGES / 2
    assert page_faults(setup, "tune", str(tmp_path / "tune")) < 100
