"""RFDetrTrainer logs the loss terms beside `loss` (and `eval_loss`), averaged as transformers averages the loss."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from transformers import TrainingArguments

from hf_rfdetr import RFDetrForInstanceSegmentation, RFDetrForObjectDetection, fine_tune
from hf_rfdetr.training import LearningRates, RFDetrTrainer
from hf_rfdetr.training.loss_logging import loss_terms, term_weight

from .conftest import tiny_config
from .synthetic_coco import class_names, write_synthetic_coco
from .test_training_ema import _collate
from .test_training_trainer import _BoxesWithSizes, _trainer

#: The terms logged by default (tiny_config: auxiliary loss and two-stage on): last layer, then the aux sums.
COMPACT = ["loss_ce", "loss_bbox", "loss_giou", "loss_ce_aux", "loss_bbox_aux", "loss_giou_aux"]


def _coefficients(model: RFDetrForObjectDetection) -> dict[str, float]:
    config = model.config
    return {
        "loss_ce": config.class_loss_coefficient,
        "loss_bbox": config.bbox_loss_coefficient,
        "loss_giou": config.giou_loss_coefficient,
    }


def _weighted_sum(entry: dict[str, float], coefficients: dict[str, float], prefix: str = "") -> float:
    return sum(coefficients[name.removesuffix("_aux")] * entry[prefix + name] for name in COMPACT)


def _compact(loss_dict: dict[str, torch.Tensor]) -> dict[str, float]:
    """The compact terms of a forward, summed here by name (independently of `loss_terms`)."""
    terms = dict.fromkeys(COMPACT, 0.0)
    for name, value in loss_dict.items():
        key = name if name in terms else name.rsplit("_", 1)[0] + "_aux"
        terms[key] += float(value)
    return terms


def _train(tmp_path: Path, learning_rate: float, logging_steps: int, max_steps: int, hook=None, **arguments):
    """Train the tiny model; `hook` (a forward pre-hook with kwargs) runs before each forward, and `arguments`
    override the `TrainingArguments`."""
    torch.manual_seed(0)
    model = RFDetrForObjectDetection(tiny_config())
    initial = copy.deepcopy(model)
    if hook is not None:
        model.register_forward_pre_hook(hook, with_kwargs=True)
    batches: list[dict] = []  # what the model is given, in order (a collator could be called ahead or again)
    model.register_forward_pre_hook(
        lambda module, args, kwargs: batches.append(copy.deepcopy(kwargs)), with_kwargs=True
    )
    args = TrainingArguments(
        **{
            "output_dir": str(tmp_path),
            "max_steps": max_steps,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 2,
            "learning_rate": learning_rate,
            "weight_decay": 0.0,
            "logging_steps": logging_steps,
            "save_strategy": "no",
            "report_to": [],
            "use_cpu": True,
            "seed": 0,
            "remove_unused_columns": False,
        }
        | arguments
    )
    trainer = RFDetrTrainer(
        model=model,
        args=args,
        train_dataset=_BoxesWithSizes(),
        data_collator=_collate,
        learning_rates=LearningRates(lr_encoder=learning_rate),
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    return trainer, initial, batches, logged


def _forward(model: RFDetrForObjectDetection, batch: dict) -> tuple[float, dict[str, float]]:
    model.train()  # as in training: every Group DETR group
    with torch.no_grad():
        outputs = model(**batch)
    return float(outputs.loss), _compact(outputs.loss_dict)


def test_training_logs_the_loss_terms_averaged_over_the_logging_interval(tmp_path: Path) -> None:
    """lr 0 (the weights stay the initial ones): each log line (2 steps x 2 accumulated micro-batches) holds the mean
    over its 4 micro-batches of what a forward of the initial model gives on them, for `loss` and each term."""
    trainer, initial, batches, logged = _train(tmp_path, learning_rate=0.0, logging_steps=2, max_steps=4)
    assert [entry["step"] for entry in logged] == [2, 4]
    coefficients = _coefficients(initial)
    for index, entry in enumerate(logged):
        assert list(entry)[: 1 + len(COMPACT)] == ["loss", *COMPACT]  # the terms right after `loss`
        assert all(math.isfinite(entry[name]) and entry[name] > 0 for name in COMPACT)
        forwards = [_forward(initial, batch) for batch in batches[4 * index : 4 * index + 4]]
        expected_loss = sum(loss for loss, _ in forwards) / 4
        assert entry["loss"] == pytest.approx(expected_loss, rel=1e-4, abs=1e-4)  # transformers 4.57 rounds it
        for name in COMPACT:
            assert entry[name] == pytest.approx(sum(terms[name] for _, terms in forwards) / 4, rel=1e-5), name
        assert _weighted_sum(entry, coefficients) == pytest.approx(expected_loss, rel=1e-5)
    assert logged[0]["loss_ce"] != logged[1]["loss_ce"]  # different batches: the sums were cleared after logging


def test_training_logs_the_loss_terms_at_every_step_and_they_add_up_to_the_loss(tmp_path: Path) -> None:
    """A real run (lr 1e-3), logging every step: finite terms whose weighted sum is the logged loss; the first step's
    (before any update) are the mean of the initial model's terms on its two accumulated micro-batches."""
    trainer, initial, batches, logged = _train(tmp_path, learning_rate=1e-3, logging_steps=1, max_steps=3)
    assert [entry["step"] for entry in logged] == [1, 2, 3]
    coefficients = _coefficients(initial)
    for entry in logged:
        assert all(math.isfinite(entry[name]) for name in COMPACT)
        assert _weighted_sum(entry, coefficients) == pytest.approx(entry["loss"], rel=1e-4, abs=1e-4)
    first = [_forward(initial, batch)[1] for batch in batches[:2]]
    for name in COMPACT:
        assert logged[0][name] == pytest.approx((first[0][name] + first[1][name]) / 2, rel=1e-5), name
    summary = trainer.state.log_history[-1]
    assert "train_loss" in summary and "loss_ce" not in summary  # the end-of-training summary is left as it is


def test_evaluation_reports_the_loss_terms_per_image_as_eval_loss(tmp_path: Path) -> None:
    """8 images in batches of 3, 3, 2: `eval_loss_*` weigh each batch by its images, as `eval_loss`; with EMA weights
    `eval_ema_loss_*` too, in the same log line."""
    trainer = _trainer(tmp_path, per_device_eval_batch_size=3, metric_for_best_model="eval_map")
    model = trainer.model
    metrics = trainer.evaluate()
    coefficients = _coefficients(model)
    assert _weighted_sum(metrics, coefficients, "eval_") == pytest.approx(metrics["eval_loss"], rel=1e-5)
    dataset = _BoxesWithSizes()
    model.eval()
    expected = dict.fromkeys(COMPACT, 0.0)
    for start in (0, 3, 6):
        batch = _collate([dataset[index] for index in range(start, min(start + 3, 8))])
        with torch.no_grad():
            terms = _compact(model(**batch).loss_dict)
        for name in COMPACT:
            expected[name] += terms[name] * len(batch["labels"]) / 8
    for name in COMPACT:
        assert metrics[f"eval_{name}"] == pytest.approx(expected[name], rel=1e-5), name
    keys = list(metrics)
    assert keys[keys.index("eval_loss") + 1 : keys.index("eval_loss") + 1 + len(COMPACT)] == [
        f"eval_{name}" for name in COMPACT
    ]

    trainer.train()  # 8 steps, evaluated at 4 and 8 with the EMA weights too
    evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert len(evaluations) == 2
    for entry in evaluations:
        for prefix in ("eval_", "eval_ema_"):
            assert all(math.isfinite(entry[prefix + name]) for name in COMPACT)
            assert _weighted_sum(entry, coefficients, prefix) == pytest.approx(entry[f"{prefix}loss"], rel=1e-5)
        assert entry["eval_loss_ce"] != entry["eval_ema_loss_ce"]  # two different sets of weights


def test_a_segmentation_run_logs_the_mask_terms_too(tmp_path: Path) -> None:
    """fine_tune of a segmentation model: `loss_mask_ce`, `loss_mask_dice` and their `_aux` sums come beside the box
    terms, in the training and the evaluation lines, and with their coefficients the terms add up to the loss."""
    dataset = write_synthetic_coco(tmp_path / "shapes", num_train=8, num_valid=4, image_size=(64, 80), masks=True)
    torch.manual_seed(0)
    model = RFDetrForInstanceSegmentation(tiny_config(segmentation_head=True, id2label=dict(enumerate(class_names(3)))))
    trainer = fine_tune(
        model,
        dataset,
        epochs=1,
        batch_size=4,
        grad_accum_steps=1,
        lr=1e-3,
        device="cpu",
        tensorboard=False,
        num_workers=0,
        output_dir=tmp_path / "run",
    )
    config = trainer.model.config
    coefficients = _coefficients(trainer.model) | {
        "loss_mask_ce": config.mask_ce_loss_coefficient,
        "loss_mask_dice": config.mask_dice_loss_coefficient,
    }
    names = [f"{name}{suffix}" for suffix in ("", "_aux") for name in coefficients]
    training = [entry for entry in trainer.state.log_history if "loss" in entry]
    evaluation = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert training and evaluation
    lines = [(line, "") for line in training] + [(line, p) for line in evaluation for p in ("eval_", "eval_ema_")]
    for entry, prefix in lines:
        assert all(math.isfinite(entry[prefix + name]) for name in names), entry
        total = sum(coefficients[name.removesuffix("_aux")] * entry[prefix + name] for name in names)
        assert total == pytest.approx(entry[f"{prefix}loss"], rel=1e-4, abs=1e-4), (prefix, entry)
        assert entry[f"{prefix}loss_mask_dice"] > 0


def test_fine_tune_takes_the_originals_compact_train_metrics(tmp_path: Path) -> None:
    """`compact_train_metrics=False` (the original's `TrainConfig` option) logs every layer's term; its weighted sum
    is the loss too."""
    dataset = write_synthetic_coco(tmp_path / "shapes", num_train=4, num_valid=2, image_size=(64, 64))
    torch.manual_seed(0)
    model = RFDetrForObjectDetection(tiny_config(id2label=dict(enumerate(class_names(3)))))
    trainer = fine_tune(
        model,
        dataset,
        epochs=1,
        batch_size=2,
        grad_accum_steps=1,
        device="cpu",
        tensorboard=False,
        num_workers=0,
        output_dir=tmp_path / "run",
        compact_train_metrics=False,
        logging_steps=1,
    )
    assert trainer.loss_components == "all"
    first = next(entry for entry in trainer.state.log_history if "loss" in entry)
    layers = trainer.model.config.decoder_layers
    names = [
        f"{term}{suffix}" for term in COMPACT[:3] for suffix in ["", "_enc", *(f"_{i}" for i in range(layers - 1))]
    ]
    assert all(math.isfinite(first[name]) for name in names) and not any(name.endswith("_aux") for name in first)
    weights = _coefficients(trainer.model)
    total = sum(term_weight(name, weights) * first[name] for name in names)
    assert total == pytest.approx(first["loss"], rel=1e-4, abs=1e-4)


def test_loss_components_none_logs_only_the_loss(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, per_device_eval_batch_size=4, metric_for_best_model="eval_map")
    trainer.loss_components = None
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and not any(key.startswith("eval_loss_") for key in metrics)
    with pytest.raises(ValueError, match="loss_components"):
        RFDetrTrainer(model=trainer.model, args=trainer.args, loss_components="weighted")


def test_loss_terms_compact_and_all() -> None:
    """ "compact" sums each term over the earlier layers and the proposals into `<term>_aux`; "all" keeps every term;
    `term_weight` finds each logged name's coefficient."""
    loss_dict = {
        "loss_ce": torch.tensor(1.0),
        "loss_mask_dice": torch.tensor(2.0),
        "loss_ce_0": torch.tensor(3.0),
        "loss_mask_dice_0": torch.tensor(4.0),
        "loss_ce_1": torch.tensor(5.0),
        "loss_ce_enc": torch.tensor(6.0),
    }
    compact = {name: float(value) for name, value in loss_terms(loss_dict).items()}
    assert compact == {"loss_ce": 1.0, "loss_mask_dice": 2.0, "loss_ce_aux": 14.0, "loss_mask_dice_aux": 4.0}
    assert {name: float(value) for name, value in loss_terms(loss_dict, "all").items()} == {
        name: float(value) for name, value in loss_dict.items()
    }
    weights = {"loss_ce": 2.0, "loss_mask_dice": 5.0}
    assert [term_weight(name, weights) for name in ("loss_ce_aux", "loss_mask_dice_0", "loss_ce_enc")] == [2, 5, 2]
    with pytest.raises(ValueError, match="loss_components"):
        loss_terms(loss_dict, "weighted")


def test_a_batch_size_retry_logs_only_the_retrys_terms(tmp_path: Path) -> None:
    """`auto_find_batch_size`: an out-of-memory error in the second micro-batch of batch 4 makes the Trainer start
    again with a smaller batch (accelerate's 0.9x: 3). The first log line holds the mean of the retry's 4
    micro-batches only (lr 0: of the initial model's terms on them), not the failed attempt's first micro-batch too."""
    calls = [0]

    def out_of_memory_at_batch_4(module, args, kwargs) -> None:
        calls[0] += 1
        if kwargs["pixel_values"].shape[0] == 4 and calls[0] == 2:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB (simulated)")

    trainer, initial, batches, _ = _train(
        tmp_path,
        learning_rate=0.0,
        logging_steps=2,
        max_steps=2,
        hook=out_of_memory_at_batch_4,
        per_device_train_batch_size=4,
        auto_find_batch_size=True,
    )
    retried = [batch for batch in batches if batch["pixel_values"].shape[0] < 4]
    assert trainer._train_batch_size < 4 and len(retried) == 4
    (entry,) = [entry for entry in trainer.state.log_history if "loss" in entry]
    forwards = [_forward(initial, batch) for batch in retried]
    assert entry["loss"] == pytest.approx(sum(loss for loss, _ in forwards) / 4, rel=1e-4, abs=1e-4)
    for name in COMPACT:
        assert entry[name] == pytest.approx(sum(terms[name] for _, terms in forwards) / 4, rel=1e-5), name
