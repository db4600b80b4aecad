"""A thin `transformers.Trainer` subclass with the original recipe: its optimizer groups, EMA weights evaluated next
to the regular ones, and COCO metrics."""

from __future__ import annotations

import functools
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import torch
from transformers import EvalPrediction, Trainer

from .ema import RFDetrEMACallback
from .metrics import coco_metrics
from .optim import LearningRates, parameter_groups

#: Output fields that are not predictions (kept out of the evaluation loop's gathering).
IGNORED_OUTPUTS = [
    "loss_dict",
    "auxiliary_outputs",
    "enc_logits",
    "enc_pred_boxes",
    "last_hidden_state",
    "intermediate_hidden_states",
]


class CocoEvaluator:
    """`compute_metrics` for the Trainer: post-processes (logits, pred_boxes) batches like the image processor and
    scores them with pycocotools. Needs `eval_do_concat_batches=False` (detection targets differ in length)."""

    def __init__(self, id2label: dict[int, str] | None = None, top_k: int = 100) -> None:
        self.id2label, self.top_k = id2label, top_k

    def __call__(self, evaluation: EvalPrediction) -> dict[str, float]:
        """Predictions: per batch a list of per-image `(logits, pred_boxes)`; label_ids: per batch a list of target
        dicts with `class_labels`, normalised cxcywh `boxes` and `orig_size` (see `RFDetrTrainer.gather_function`)."""
        from ..image_processing_rfdetr import RFDetrImageProcessor

        processor = RFDetrImageProcessor()
        predictions, targets = [], []
        for batch, labels in zip(evaluation.predictions, evaluation.label_ids):
            logits = torch.stack([torch.as_tensor(image_logits) for image_logits, _ in batch])
            boxes = torch.stack([torch.as_tensor(image_boxes) for _, image_boxes in batch])
            labels = [{key: torch.as_tensor(value) for key, value in label.items()} for label in labels]
            outputs = SimpleNamespace(logits=logits, pred_boxes=boxes)
            sizes = [tuple(int(v) for v in label["orig_size"]) for label in labels]
            predictions += processor.post_process_object_detection(outputs, 0.0, sizes, top_k=self.top_k)
            targets += labels
        return coco_metrics(predictions, targets, self.id2label)


def _gather_per_image(accelerator: Any, data: Any) -> Any:
    """Gather one evaluation batch as objects. Predictions `(logits (B, Q, C), pred_boxes (B, Q, 4))` become a list
    of B per-image tuples first; targets already are a list of B dicts; the loss is a (B,) tensor."""
    if isinstance(data, (tuple, list)) and data and all(isinstance(part, torch.Tensor) for part in data):
        data = list(zip(*data))
    return accelerator.gather_for_metrics(data, use_gather_object=True)


class RFDetrTrainer(Trainer):
    """`Trainer` for RF-DETR.

    Args:
        learning_rates: the original's lr knobs; `lr` and `weight_decay` come from `TrainingArguments`
            (`learning_rate`, `weight_decay`), `lr_encoder`, `lr_vit_layer_decay`, `lr_component_decay` from here.
        ema: an `RFDetrEMACallback`; its weights are evaluated too, as `eval_ema_*` metrics.
    """

    def __init__(
        self, *args, learning_rates: LearningRates | None = None, ema: RFDetrEMACallback | None = None, **kwargs
    ) -> None:
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if ema is not None:
            callbacks.append(ema)
        super().__init__(*args, callbacks=callbacks, **kwargs)
        self.learning_rates = learning_rates or LearningRates()
        self.ema = ema
        self.args.eval_do_concat_batches = False  # detection targets differ in length: keep batches apart

    @property
    def gather_function(self):
        """Evaluation outputs and targets are gathered across processes as lists of per-image objects: targets differ
        in length between images, which tensor gathering (padding along dim 1) cannot align, and a per-image list is
        what `gather_for_metrics` truncates correctly at the end of the dataset (it drops the samples that were
        repeated to even out the last batch)."""
        return functools.partial(_gather_per_image, self.accelerator)

    @gather_function.setter
    def gather_function(self, value) -> None:
        """Ignored: transformers assigns the tensor gather at start-up and again after every evaluation loop."""

    def create_optimizer(self, *args, **kwargs):
        if self.optimizer is None:
            rates = replace(self.learning_rates, lr=self.args.learning_rate, weight_decay=self.args.weight_decay)
            optimizer_class, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, self.model)
            optimizer_kwargs.pop("lr", None)
            self.optimizer = optimizer_class(parameter_groups(self.model, rates), **optimizer_kwargs)
        return self.optimizer

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Evaluate the weights and, with EMA, the averaged weights; one log line and one `on_evaluate` for both."""
        ignore_keys = IGNORED_OUTPUTS if ignore_keys is None else ignore_keys
        dataloader = self.get_eval_dataloader(eval_dataset)
        metrics = self.evaluation_loop(
            dataloader, "Evaluation", ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix
        ).metrics
        if self.ema is not None and self.ema.shadow is not None:
            with self.ema.swapped_in(self.model):
                ema_output = self.evaluation_loop(
                    dataloader,
                    "Evaluation (EMA)",
                    ignore_keys=ignore_keys,
                    metric_key_prefix=f"{metric_key_prefix}_ema",
                )
            metrics.update(ema_output.metrics)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
