# Copyright 2026 The hf_rfdetr Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""The loss terms `RFDetrTrainer` logs beside `loss` (training) and `eval_loss` (evaluation).

The model's `loss_dict` holds every unweighted term of its criterion: `loss_ce`, `loss_bbox`, `loss_giou` (and
`loss_mask_ce`, `loss_mask_dice` for segmentation) of the last decoder layer, the same suffixed `_0`, `_1`, ... for
the earlier decoder layers and `_enc` for the two-stage proposals. The total is their weighted sum, each term weighted
by its config coefficient (`class_loss_coefficient`, `bbox_loss_coefficient`, `giou_loss_coefficient`,
`mask_ce_loss_coefficient`, `mask_dice_loss_coefficient`).

"compact" (the default) logs what the original `rfdetr` package logs by default (its `compact_train_metrics`): the
last layer's terms under their own names and, per term, the sum over the earlier layers and the proposals as
`<term>_aux` (`loss_ce_aux`, ...), all unweighted, so that
`loss == class_loss_coefficient * (loss_ce + loss_ce_aux) + bbox_loss_coefficient * (loss_bbox + loss_bbox_aux)
+ giou_loss_coefficient * (loss_giou + loss_giou_aux)` (+ the mask terms). "all" logs every term of `loss_dict` (the
original's `compact_train_metrics=False`).

Training terms are summed on the device as the Trainer sums `loss` (scaled as the Trainer scaled that micro-batch's
loss, gradient accumulation included; a non-finite step replaced as `logging_nan_inf_filter` replaces it) and read to
the host only at logging steps, gathered and averaged over processes as `loss` is. Evaluation terms are averaged per
image as `eval_loss` is (each image weighted by its batch's terms, the samples repeated to even out the last batch
across processes left out).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from transformers.trainer_pt_utils import find_batch_size

#: The ways of logging the terms (`RFDetrTrainer(loss_components=...)`); None logs none.
LOSS_COMPONENT_MODES = ("compact", "all")

#: Suffix of the logged sum of a term over the earlier decoder layers and the two-stage proposals ("compact").
AUXILIARY_SUFFIX = "_aux"


def loss_terms(loss_dict: Mapping[str, torch.Tensor], mode: str = "compact") -> dict[str, torch.Tensor]:
    """The terms to log from a model's `loss_dict`: every term ("all"), or ("compact") the last layer's terms and
    per term the sum of its layer-suffixed ones (`_0`, `_1`, ..., `_enc`) as `<term>_aux`, as the original's
    `_compact_train_loss_metrics`. In `loss_dict`'s order (the last layer's terms first)."""
    if mode not in LOSS_COMPONENT_MODES:
        raise ValueError(f"loss_components must be one of {LOSS_COMPONENT_MODES} or None, got {mode!r}")
    terms: dict[str, torch.Tensor] = {}
    for name, value in loss_dict.items():
        base, separator, suffix = name.rpartition("_")
        if mode == "compact" and separator and (suffix.isdigit() or suffix == "enc"):
            name = base + AUXILIARY_SUFFIX
        value = value.detach().float().mean()  # mean: one value per GPU under DataParallel
        terms[name] = terms[name] + value if name in terms else value
    return terms


def term_weight(name: str, weights: Mapping[str, float]) -> float:
    """The coefficient of a logged term (`loss_ce_aux`, `loss_giou_3`, `loss_bbox_enc`, ...) in the total loss,
    from the criterion's per-term `weights` (`RFDetrLoss.weights`)."""
    if name in weights:
        return weights[name]
    base, _, _ = name.rpartition("_")
    return weights[base]


class TrainingTerms:
    """Per-term sums over the micro-batches of a logging interval, on the device (no host sync per step)."""

    def __init__(self) -> None:
        self.names: list[str] | None = None
        self.sums: torch.Tensor | None = None

    def reset(self) -> None:
        self.names = self.sums = None

    def add(
        self,
        terms: Mapping[str, torch.Tensor],
        scale: torch.Tensor,
        finite: torch.Tensor | None,
        steps_since_logged: int,
    ) -> None:
        """Add one micro-batch's terms times `scale` (what the Trainer's step loss is to the model's loss). With
        `finite` (the step loss was finite, a 0-d bool; given when `logging_nan_inf_filter` is on), a non-finite step
        adds the interval's mean so far instead, as the Trainer does for `loss`."""
        if self.names is None:
            self.names = list(terms)
        values = _stack(terms, self.names) * scale
        if self.sums is None:
            self.sums = torch.zeros_like(values)
        if finite is not None:
            values = torch.where(finite, values, self.sums / (1 + steps_since_logged))
        self.sums += values

    def read(self, gather: Callable[[torch.Tensor], torch.Tensor], steps: int) -> dict[str, float]:
        """The interval's per-step means, averaged over processes (`gather` concatenates along dim 0, as the
        Trainer's gather of `loss`), then cleared. Every process must call it (the gather is collective)."""
        if self.sums is None or self.names is None or steps <= 0:
            return {}
        means = gather(self.sums[None]).reshape(-1, len(self.names)).mean(0) / steps
        self.sums.zero_()
        return dict(zip(self.names, means.tolist()))


class EvaluationTerms:
    """Per-term sums over the images of an evaluation loop, on the device, and the number of images."""

    def __init__(self) -> None:
        self.names: list[str] | None = None
        self.sums: torch.Tensor | None = None
        self.count: torch.Tensor | None = None
        self.batch_size: int | None = None

    def add(self, terms: Mapping[str, torch.Tensor], batch_size: int | None, gather_for_metrics: Callable) -> None:
        """One batch's terms, repeated `batch_size` times as the evaluation loop repeats the batch's loss (the first
        batch's size, as the loop does) and gathered with `gather_for_metrics`, which leaves out the samples repeated
        to even out the last batch, as it does for `eval_loss`."""
        if self.batch_size is None:
            self.batch_size = batch_size or 1
        if self.names is None:
            self.names = list(terms)
        values = _stack(terms, self.names)
        rows = gather_for_metrics(values[None].repeat(self.batch_size, 1).contiguous())
        rows = rows.reshape(-1, len(self.names))
        if self.sums is None:
            self.sums, self.count = torch.zeros_like(values), torch.zeros((), device=values.device)
        self.sums += rows.sum(0)
        self.count += rows.shape[0]

    def means(self) -> dict[str, float]:
        if self.sums is None or self.names is None or not self.count:
            return {}
        return dict(zip(self.names, (self.sums / self.count).tolist()))


def _stack(terms: Mapping[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    """The terms in the order of `names` (fixed by the first batch; a term missing from a later batch counts 0)."""
    reference = next(iter(terms.values()))
    return torch.stack([terms[name] if name in terms else torch.zeros_like(reference) for name in names])


class LossTermsLogging:
    """The loss-term logging of `RFDetrTrainer`, a mixin before `transformers.Trainer` in its bases: the terms of the
    model's `loss_dict` (see `loss_terms`) beside `loss` in the training logs, and beside `<prefix>_loss` in
    evaluation metrics. It hooks `_inner_training_loop` (to clear the interval's sums at each attempt of `train`),
    `compute_loss` (to keep the forward's terms), `training_step` (to add them to the interval's sums), `_maybe_log_save_evaluate` and `log` (to read and log them at logging steps),
    `evaluation_loop` and `prediction_step` (to average them per image)."""

    def __init__(self, *args: Any, loss_components: str | None = "compact", **kwargs: Any) -> None:
        if loss_components is not None and loss_components not in LOSS_COMPONENT_MODES:
            raise ValueError(f"loss_components must be one of {LOSS_COMPONENT_MODES} or None, got {loss_components!r}")
        super().__init__(*args, **kwargs)
        self.loss_components = loss_components
        self._training_terms = TrainingTerms()  # the logging interval's sums, on the device
        self._batch_terms: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None  # of the last compute_loss
        self._logged_terms: dict[str, float] | None = None  # read at this logging step, for `log`
        self._evaluation_terms: EvaluationTerms | None = None  # of the evaluation loop running

    def _inner_training_loop(self, *args: Any, **kwargs: Any):
        """`Trainer._inner_training_loop` (private; transformers 4.57 and 5 run it once per attempt of `train`), with
        the interval's sums cleared first: an attempt that `auto_find_batch_size` abandoned for a smaller batch leaves
        its micro-batches out of the retry's first log line, as the Trainer leaves them out of `loss`."""
        self._training_terms.reset()
        return super()._inner_training_loop(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        """`Trainer.compute_loss`; keeps the model's loss terms (`loss_dict`, detached) for the logs."""
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        self._batch_terms = self._terms_of(outputs)
        return (loss, outputs) if return_outputs else loss

    def _terms_of(self, outputs: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
        """(the model's loss, the terms to log) of a forward's outputs; None when they are not logged, or when the
        trained loss is not the model's (`compute_loss_func`, label smoothing)."""
        if self.loss_components is None or self.compute_loss_func is not None or self.label_smoother is not None:
            return None
        if not isinstance(outputs, dict) or outputs.get("loss_dict") is None or outputs.get("loss") is None:
            return None
        return outputs["loss"].detach().float().mean(), loss_terms(outputs["loss_dict"], self.loss_components)

    def training_step(self, model, inputs, num_items_in_batch=None, *args, **kwargs):
        """`Trainer.training_step`; adds the micro-batch's loss terms to the logging interval's sums, on the device,
        scaled as the Trainer scaled the loss it returns (gradient accumulation), so that they average as `loss`."""
        self._batch_terms = None
        step_loss = super().training_step(model, inputs, num_items_in_batch, *args, **kwargs)
        batch, self._batch_terms = self._batch_terms, None
        if batch is not None:
            model_loss, terms = batch
            step = step_loss.detach().float().to(model_loss.device)
            scale = torch.where(model_loss != 0, step / model_loss, torch.zeros_like(model_loss))
            finite = torch.isfinite(step) if self.args.logging_nan_inf_filter else None
            since = self.state.global_step - getattr(self, "_globalstep_last_logged", self.state.global_step)
            self._training_terms.add(terms, scale, finite, since)
        return step_loss

    def _maybe_log_save_evaluate(self, *args, **kwargs):
        """`Trainer._maybe_log_save_evaluate` (private; both transformers 4.57 and 5 call it after every optimizer
        step with the same condition for logging): at a logging step the interval's loss terms are gathered and
        averaged over processes, where the Trainer gathers `loss`, for `log` to add beside it."""
        last = getattr(self, "_globalstep_last_logged", self.state.global_step)
        if self.control.should_log and self.state.global_step > last:
            self._logged_terms = self._training_terms.read(self._gather_across_processes, self.state.global_step - last)
        try:
            return super()._maybe_log_save_evaluate(*args, **kwargs)
        finally:
            self._logged_terms = None

    def _gather_across_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        """The Trainer's gather of the training loss: transformers 4.x `_nested_gather`, 5.x `nested_gather`."""
        gather = getattr(self, "_nested_gather", None)
        if gather is not None:
            return gather(tensor)
        from transformers.trainer_pt_utils import nested_gather

        return nested_gather(tensor, self.args.parallel_mode)

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """`Trainer.log`; a training log line (`loss`) gets the loss terms of its interval right after `loss`."""
        if self._logged_terms and "loss" in logs:
            terms, self._logged_terms = self._logged_terms, None
            merged = {}
            for key, value in logs.items():
                merged[key] = value
                if key == "loss":
                    merged.update(terms)
            logs = merged
        return super().log(logs, *args, **kwargs)

    def evaluation_loop(
        self,
        dataloader,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ):
        """`Trainer.evaluation_loop`; with `<prefix>_loss`, also the loss terms (`eval_loss_ce`, ...), averaged per
        image as the loss (see `prediction_step`), right after it."""
        self._evaluation_terms = EvaluationTerms() if self.loss_components is not None else None
        try:
            output = super().evaluation_loop(
                dataloader,
                description,
                prediction_loss_only=prediction_loss_only,
                ignore_keys=ignore_keys,
                metric_key_prefix=metric_key_prefix,
            )
        finally:
            terms, self._evaluation_terms = self._evaluation_terms, None
        loss_key = f"{metric_key_prefix}_loss"
        if terms is not None and loss_key in output.metrics:
            means = {f"{metric_key_prefix}_{name}": value for name, value in terms.means().items()}
            merged = {}
            for key, value in output.metrics.items():
                merged[key] = value
                if key == loss_key:
                    merged.update(means)
            output.metrics.clear()
            output.metrics.update(merged)
        return output

    def prediction_step(self, model, inputs, prediction_loss_only: bool, ignore_keys: list[str] | None = None):
        """`Trainer.prediction_step`; the batch's loss terms go to the evaluation loop's sums: each image counts its
        batch's terms, as the loop repeats the loss (the first batch's size) and gathers it."""
        self._batch_terms = None
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        batch, self._batch_terms = self._batch_terms, None
        if batch is not None and loss is not None and self._evaluation_terms is not None:
            batch_size = self.args.eval_batch_size or find_batch_size(inputs)
            self._evaluation_terms.add(batch[1], batch_size, self.accelerator.gather_for_metrics)
        return loss, logits, labels
