"""RFDetrTrainer: the original optimizer groups, EMA and regular weights evaluated with COCO metrics, early stopping."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import EarlyStoppingCallback, TrainingArguments

from hf_rfdetr import RFDetrForObjectDetection
from hf_rfdetr.training import CocoEvaluator, LearningRates, RFDetrEMACallback, RFDetrTrainer, parameter_groups

from .conftest import tiny_config
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
