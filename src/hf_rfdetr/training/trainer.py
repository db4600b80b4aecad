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
"""A thin `transformers.Trainer` subclass with the original recipe: its optimizer groups, EMA weights evaluated next
to the regular ones, COCO metrics (`evaluator.CocoEvaluator`), and checkpoints that survive a kill (marked complete
last, resumed exactly)."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, has_length
from transformers.utils import logging

from ..launch_env import LAUNCH_MIXED_PRECISION
from ..model_card import is_hub_id
from ..optimization import keep_freed_memory
from .checkpoints import (
    check_checkpoint_fits,
    checkpoint_run_id,
    mark_complete,
    record_run,
    recorded_run_id,
    remove_checkpoint,
    resolve_checkpoint,
    rotate_checkpoints,
    start_run,
)
from .ema import EMA_FOLDER, RFDetrEMACallback
from .loss_logging import LossTermsLogging
from .metrics import (
    pack_target_masks,
    post_process_segmentation,
    with_evaluation_ground_truth,
)
from .optim import LearningRates, parameter_groups

#: File of a checkpoint holding the data collator's random state (`state_dict()`), one per process when distributed.
COLLATOR_STATE = "collator_state.pt"

#: Optimizer steps an epoch has at least on one process, as the original's (rfdetr `_MIN_TRAIN_BATCHES`): a smaller
#: training set is sampled with replacement (see `RFDetrTrainer._get_train_sampler`).
MIN_TRAIN_STEPS = 5

logger = logging.get_logger(__name__)

#: A line of transformers' generic Trainer card (`Trainer.create_model_card`), which ours replaces.
_TRAINER_CARD_MARKER = "This model card has been generated automatically according to the information the Trainer"

#: Output fields that are not predictions, which `RFDetrTrainer` keeps out of the evaluation loop's gathering unless
#: given `ignore_keys`. Not the config's `keys_to_ignore_at_inference`: with transformers' plain Trainer the
#: predictions keep `loss_dict` first, as for DETR, which transformers' object-detection guide reads
#: (`batch[1], batch[2]`; tests/test_object_detection_guide.py).
IGNORED_OUTPUTS = [
    "loss_dict",
    "auxiliary_outputs",
    "enc_logits",
    "enc_pred_boxes",
    "enc_pred_masks",
    "last_hidden_state",
    "intermediate_hidden_states",
    "pixel_mask",  # a segmentation output carries the mask it was given, for post-processing padded inputs
]


def _as_list(value: str | list[str] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _with_metadata(
    card: str,
    readme: Path,
    language: str | None,
    license: str | None,
    tags: str | list[str] | None,
    datasets: list[str],
) -> str:
    """`card` with transformers' `create_model_card` metadata: `license` and `language` set, `tags` (and those of
    the existing `readme`, but transformers' `generated_from_trainer`) added to the card's, the Hub ids among
    `datasets` added to its `datasets`."""
    from huggingface_hub import ModelCard

    extra_tags = _as_list(tags)
    if readme.is_file():
        try:
            extra_tags += [tag for tag in ModelCard.load(readme).data.tags or [] if tag != "generated_from_trainer"]
        except Exception:  # an unreadable README.md: replaced without its tags
            pass
    hub_datasets = [name for name in datasets if is_hub_id(name)]
    if not (language or license or extra_tags or hub_datasets):
        return card
    document = ModelCard(card)
    data = document.data
    if license:
        data.license = license
    if language:
        data.language = language
    data.tags = list(dict.fromkeys([*(data.tags or []), *extra_tags]))
    if hub_datasets:
        data.datasets = list(dict.fromkeys([*(data.datasets or []), *hub_datasets]))
    return str(document)


def _gather_per_image(accelerator: Any, data: Any) -> Any:
    """Gather one evaluation batch as objects. Predictions `(logits (B, Q, C), pred_boxes (B, Q, 4))` become a list
    of B per-image tuples first; targets, and the post-processed predictions of a segmentation model, already are a
    list of B dicts; the loss is a (B,) tensor."""
    if isinstance(data, (tuple, list)) and data and all(isinstance(part, torch.Tensor) for part in data):
        data = list(zip(*data))
    return accelerator.gather_for_metrics(data, use_gather_object=True)


def _warn_if_mid_epoch(checkpoint: str) -> None:
    """Say that a checkpoint saved inside an epoch (`save_strategy="steps"`) does not resume exactly. When it was
    saved, the data loader had already prepared the next batch (accelerate fetches one batch ahead; DataLoader
    workers several), so the random states saved with it (the Trainer's RNG, which draws the augmentations in the
    main process, and the collator's multi-scale draws) are those after that batch, and a resumed run's workers start
    new random streams. The images and their order are right; the augmentations from there on are not the
    uninterrupted run's. At an epoch end nothing is prefetched: those checkpoints resume exactly."""
    path = Path(checkpoint) / "trainer_state.json"
    try:
        epoch = float(json.loads(path.read_text()).get("epoch") or 0)
    except (OSError, ValueError, TypeError):
        return
    if abs(epoch - round(epoch)) > 1e-6:
        logger.warning(
            f"Resuming from {checkpoint}, saved inside epoch {math.floor(epoch) + 1} (at epoch {epoch:.4g}): the run "
            "continues with the same images in the same order, but the random augmentations and multi-scale draws "
            "from there on differ from those of an uninterrupted run, so it will not end with exactly the same "
            'weights. Checkpoints saved at epoch ends (save_strategy="epoch", fine_tune\'s default) resume exactly.'
        )


@contextlib.contextmanager
def _accelerator_precision(args: Any) -> Any:
    """Within: `ACCELERATE_MIXED_PRECISION` says the precision of `args` (`TrainingArguments` or None for the
    Trainer's default): "fp16" / "bf16" for its flags, else the launch value (`accelerate launch --mixed_precision`,
    see `launch_env`) or "no". transformers 4.x's `Accelerator` reads it there, and an earlier `TrainingArguments(
    bf16=True)` of the process left "bf16" behind (transformers #29510). The variable is restored afterwards."""
    fp16, bf16 = (bool(getattr(args, flag, False)) for flag in ("fp16", "bf16"))
    wanted = "fp16" if fp16 else "bf16" if bf16 else LAUNCH_MIXED_PRECISION or "no"
    before = os.environ.get("ACCELERATE_MIXED_PRECISION")
    os.environ["ACCELERATE_MIXED_PRECISION"] = wanted
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("ACCELERATE_MIXED_PRECISION", None)
        else:
            os.environ["ACCELERATE_MIXED_PRECISION"] = before


class RFDetrTrainer(LossTermsLogging, Trainer):
    """`Trainer` for RF-DETR.

    Args:
        learning_rates: the original's lr knobs; `lr` and `weight_decay` come from `TrainingArguments`
            (`learning_rate`, `weight_decay`), `lr_encoder`, `lr_vit_layer_decay`, `lr_component_decay` from here.
        ema: an `RFDetrEMACallback`; its weights are evaluated too, as `eval_ema_*` metrics.
        warmup_epochs, lr_drop: the original's step schedule (see `create_scheduler`), used while the
            `TrainingArguments`' `lr_scheduler_type` is the recipe's "constant"; `lr_drop` defaults to the original's
            100 (epochs), None never drops. Another `lr_scheduler_type` (linear, cosine, ...) is transformers' own
            schedule, with its `warmup_steps` / `warmup_ratio` (`warmup_epochs` is then refused).
        loss_components: which terms of the model's loss are logged beside `loss` (and `eval_loss`, `test_loss`):
            "compact" (default, as the original `rfdetr` package logs them) the last decoder layer's unweighted
            `loss_ce`, `loss_bbox`, `loss_giou` (with masks `loss_mask_ce`, `loss_mask_dice`) and per term the sum
            over the earlier decoder layers and the two-stage proposals, `loss_ce_aux`, ..., so that `loss` is
            `class_loss_coefficient * (loss_ce + loss_ce_aux) + bbox_loss_coefficient * (loss_bbox + loss_bbox_aux)
            + giou_loss_coefficient * (loss_giou + loss_giou_aux)` (+ the mask terms); "all" every term of the
            model's `loss_dict` (`loss_ce_0`, ..., `loss_ce_enc`); None none. See `training.loss_logging`.
        tune_allocator: when training on the CPU, keep freed memory in the process
            (`hf_rfdetr.optimization.keep_freed_memory`, glibc on Linux; a process-wide setting), so that each step
            reuses the last one's buffers instead of page-faulting them in again (`benchmarks/training_throughput.py`).

    Logging: at each logging step the loss terms come beside `loss`, averaged over the interval's steps (micro-batches
    scaled as the Trainer scales their loss for gradient accumulation) and over processes, as `loss` is; they are
    summed on the device and read once per logging step. Evaluation reports them as `eval_loss_ce`, ... (EMA:
    `eval_ema_loss_ce`, ...), averaged per image as `eval_loss`. Not logged when the Trainer trains another loss
    than the model's (`compute_loss_func`, label smoothing).

    Small training sets: on one process, a training set of fewer than `batch size x gradient_accumulation_steps x 5`
    items is sampled with replacement, `batch x accumulation x 5` items per epoch, so that an epoch has 5 optimizer
    steps, as the original's. With several processes (world_size > 1) the Trainer's sampling is kept: an epoch has
    ceil(items / (batch x processes)) batches per process (the original repeats the dataset up to the same minimum
    per process instead).

    Checkpoints: each `checkpoint-N/` also holds the EMA weights (`ema/`, with the `processing_class`, as the
    checkpoint itself) and the random state of the data collator
    (`collator_state.pt`, when the collator has `state_dict` / `load_state_dict`, as `RFDetrDataCollator`), next to
    the Trainer's own `rng_state.pth` (python, numpy, torch), so that a run resumed from a checkpoint saved at an epoch
    end continues exactly as an uninterrupted one (one saved inside an epoch continues with other augmentations, which
    resuming says: see `_warn_if_mid_epoch`); the trainer turns on `TrainingArguments.restore_callback_states_from_checkpoint`, so that the
    state of `ExportableState` callbacks (`EarlyStoppingCallback`'s patience counter) is resumed too (such callbacks
    are rebuilt with the arguments saved in the checkpoint, as transformers does). `checkpoint_complete.json` is
    written last; `train(resume_from_checkpoint=True)` resumes from the newest complete checkpoint of this training
    run (naming the incomplete ones it skipped), and `save_total_limit` only ever deletes complete checkpoints of this
    run older than the one just completed. A run that does not resume records a new run id in
    `output_dir/_training_run.json` (warning about checkpoints of earlier runs already there, which it leaves alone)
    and each checkpoint carries its run's id, so `resume_from_checkpoint=True` never continues another run's checkpoint
    left in the same folder; a checkpoint of other labels or another architecture is refused, naming the checkpoint and
    the differing fields (`checkpoints.check_checkpoint_fits`).
    """

    def __init__(
        self,
        *args,
        learning_rates: LearningRates | None = None,
        ema: RFDetrEMACallback | None = None,
        warmup_epochs: float = 0.0,
        lr_drop: float | None = 100,
        loss_components: str | None = "compact",
        tune_allocator: bool = True,
        **kwargs,
    ) -> None:
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if ema is not None:
            callbacks.append(ema)
        training_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        with _accelerator_precision(training_args):
            super().__init__(*args, callbacks=callbacks, loss_components=loss_components, **kwargs)
        self.learning_rates = learning_rates or LearningRates()
        if warmup_epochs < 0 or (lr_drop is not None and lr_drop < 0):
            raise ValueError(f"warmup_epochs and lr_drop must be >= 0, got {warmup_epochs} and {lr_drop}")
        self.warmup_epochs, self.lr_drop = float(warmup_epochs), lr_drop
        if self.warmup_epochs and not self._recipe_schedule():
            raise ValueError(
                f"warmup_epochs={warmup_epochs} sets the warmup of the recipe's schedule (lr_scheduler_type='constant'); "
                f"with lr_scheduler_type={self._scheduler_type()!r} use TrainingArguments' warmup_steps= or "
                "warmup_ratio= instead"
            )
        self.ema = ema
        if ema is not None:
            ema.save_on_checkpoint = False  # written by `_save_checkpoint`, before the checkpoint is marked complete
        self.args.eval_do_concat_batches = False  # detection targets differ in length: keep batches apart
        # A resumed run continues exactly: the state of `ExportableState` callbacks (EarlyStoppingCallback's patience
        # counter) and of the TrainerControl comes back from trainer_state.json (transformers' default is False)
        self.args.restore_callback_states_from_checkpoint = True
        #: The training run this trainer continues or started (see `checkpoints.py`), recorded in its checkpoints.
        self.run_id: str | None = None
        self.tune_allocator = tune_allocator

    def train(self, resume_from_checkpoint: str | os.PathLike | bool | None = None, *args, **kwargs):
        """`Trainer.train`, resuming (`True`: from the newest complete checkpoint of the run recorded in `output_dir`;
        a folder: after checking it is complete and of this model, labels included) with the EMA weights and the data
        collator's random state of the checkpoint. A run that does not resume records a new run id in `output_dir`."""
        checkpoint = resolve_checkpoint(resume_from_checkpoint, self.args.output_dir)
        if checkpoint:
            check_checkpoint_fits(checkpoint, self.model)
        self.run_id = self._begin_run(checkpoint)
        if self.tune_allocator and self.args.device.type == "cpu":
            keep_freed_memory()  # each step reuses the last one's buffers instead of page-faulting them in again
        if checkpoint and not self.args.ignore_data_skip:
            _warn_if_mid_epoch(checkpoint)
        if self.ema is not None:
            self.ema.resume_from = Path(checkpoint) / EMA_FOLDER if checkpoint else None
        if checkpoint:
            self._load_collator_state(checkpoint)
        with _accelerator_precision(self.args):  # a hyperparameter search's trial builds a new Accelerator
            return super().train(checkpoint, *args, **kwargs)

    def _begin_run(self, checkpoint: str | None) -> str | None:
        """The id of the run this `train` call continues (its checkpoint's) or starts (recorded in `output_dir` at
        once, so that `resume=True` never continues an earlier run's checkpoints). A checkpoint saved before run ids
        gets a new one, recorded with the first checkpoint saved, so that such an `output_dir` resumes as before
        until then."""
        if checkpoint is not None:
            return checkpoint_run_id(checkpoint) or uuid.uuid4().hex
        return start_run(self.args.output_dir) if self.args.should_save else None

    def _get_train_sampler(self, train_dataset=None):
        """`Trainer._get_train_sampler`; on one process, a training set of fewer than `MIN_TRAIN_STEPS` effective
        batches is drawn with replacement, `MIN_TRAIN_STEPS` effective batches per epoch, as the original's
        `RandomSampler(replacement=True, num_samples=...)` (accelerate seeds it per epoch, so resuming stays exact)."""
        dataset = self.train_dataset if train_dataset is None else train_dataset
        minimum = self.args.train_batch_size * self.args.gradient_accumulation_steps * MIN_TRAIN_STEPS
        if self.args.world_size == 1 and dataset is not None and has_length(dataset) and len(dataset) < minimum:
            return torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=minimum)
        return super()._get_train_sampler(train_dataset)

    def _collator_state_file(self, folder: str | os.PathLike) -> Path:
        suffix = f"_{self.args.process_index}" if self.args.world_size > 1 else ""
        return Path(folder) / COLLATOR_STATE.replace(".pt", f"{suffix}.pt")

    def _load_collator_state(self, checkpoint: str | os.PathLike) -> None:
        if not hasattr(self.data_collator, "load_state_dict"):
            return
        path = self._collator_state_file(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume exactly: {path} (the data collator's random state) is missing")
        self.data_collator.load_state_dict(torch.load(path, weights_only=True))

    def _save_checkpoint(self, model, trial) -> None:
        """`Trainer._save_checkpoint` (private; its use is pinned by tests/test_training_resume.py), made crash-safe:
        remove what a previous save left in the folder (un-marking it first), save as the Trainer does (without its rotation), add the EMA weights and the collator's
        random state, then mark the folder complete and only then rotate."""
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save and folder.exists():  # left by an interrupted save, or by an abandoned run
            remove_checkpoint(folder)
        self.accelerator.wait_for_everyone()
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        if hasattr(self.data_collator, "state_dict"):
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(self.data_collator.state_dict(), self._collator_state_file(folder))
        if self.ema is not None and self.ema.shadow is not None and self.is_world_process_zero():
            self.ema.save(folder / EMA_FOLDER, self.model)
            if hasattr(self.processing_class, "save_pretrained"):  # the EMA folder loads on its own too
                self.processing_class.save_pretrained(folder / EMA_FOLDER)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            mark_complete(folder, self.state.global_step, run_id=self.run_id)
            if self.run_id is not None and recorded_run_id(folder.parent) != self.run_id:
                record_run(folder.parent, self.run_id)  # a resumed run's first save (from another folder, or old)
            rotate_checkpoints(folder.parent, limit, folder, self.state.best_model_checkpoint, run_id=self.run_id)

    def prediction_step(self, model, inputs, prediction_loss_only: bool, ignore_keys: list[str] | None = None):
        """`Trainer.prediction_step`; for a segmentation model the batch is post-processed at once: per image the top
        detections with their masks RLE-encoded at the original size, and the targets' masks RLE-encoded too (see
        `training.metrics.post_process_segmentation`), so that the evaluation loop never holds dense masks. The batch's loss
        terms go to the evaluation loop's sums (`LossTermsLogging.prediction_step`)."""
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        segmentation = getattr(self.model.config, "segmentation_head", False)
        if logits is None or labels is None or not segmentation or not isinstance(logits, (tuple, list)):
            return loss, logits, labels
        if len(logits) < 3:
            raise ValueError(
                f"a segmentation model's evaluation outputs must start with logits, pred_boxes, pred_masks; got "
                f"{len(logits)} output(s): check ignore_keys (expected at least {IGNORED_OUTPUTS})"
            )
        sizes = [tuple(int(v) for v in target["orig_size"]) for target in labels]
        top_k = getattr(self.compute_metrics, "top_k", 100)
        predictions = post_process_segmentation(logits[0], logits[1], logits[2], sizes, top_k=top_k)
        return loss, predictions, [pack_target_masks(target) for target in labels]

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

    def _get_learning_rate(self) -> float:
        """The logged `learning_rate`: the rate of the base `lr` group (heads, projector), not of group 0 (the
        encoder's embeddings, with layer decay: 1.9e-5 for lr=1e-3); the groups keep their order (checkpoints)."""
        learning_rate = super()._get_learning_rate()
        base_rates = getattr(self.lr_scheduler, "base_lrs", None)
        if not base_rates or self.is_deepspeed_enabled:
            return learning_rate
        for index, base in enumerate(base_rates):
            if math.isclose(base, self.args.learning_rate, rel_tol=1e-9):
                last = self.lr_scheduler.get_last_lr()[index]
                return last.item() if torch.is_tensor(last) else last
        return learning_rate

    def _scheduler_type(self) -> str:
        kind = self.args.lr_scheduler_type
        return str(getattr(kind, "value", kind))

    def _recipe_schedule(self) -> bool:
        """Whether the original's step schedule applies: `lr_scheduler_type` is the recipe's "constant"."""
        return self._scheduler_type() == "constant"

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """`Trainer.create_scheduler`; while `lr_scheduler_type` is the recipe's "constant", the original's step
        schedule instead (its `lr_scheduler="step"`, `lr_drop=100` by default): a linear ramp from 0 over the first
        `warmup_epochs` epochs, then the base rates, x0.1 from epoch `lr_drop` on (per optimizer step, epochs
        counted in this run's steps per epoch). Rounded as the original: `int(steps_per_epoch * warmup_epochs)`
        warmup steps, the drop at step `int(lr_drop) * steps_per_epoch`, `steps_per_epoch = total // epochs`
        (with `max_steps`: the Trainer's `ceil(batches / gradient_accumulation_steps)`). Any other `lr_scheduler_type` is transformers' schedule."""
        recipe = self._recipe_schedule() and (self.warmup_epochs or self.lr_drop is not None)
        if self.lr_scheduler is not None or not recipe:
            return super().create_scheduler(num_training_steps, optimizer)
        epochs = float(self.args.num_train_epochs)
        if self.args.max_steps <= 0 and epochs.is_integer() and epochs >= 1:  # the original's sizing
            steps_per_epoch = max(1, num_training_steps // int(epochs))
        else:  # max_steps given (or fractional epochs): an epoch is the Trainer's, ceil(batches / accumulation)
            batches = len(self.get_train_dataloader())
            steps_per_epoch = max(1, math.ceil(batches / self.args.gradient_accumulation_steps))
        warmup = int(steps_per_epoch * self.warmup_epochs)  # as the original rounds: down, in whole steps
        drop = None if self.lr_drop is None else int(self.lr_drop) * steps_per_epoch

        def factor(step: int) -> float:
            if step < warmup:
                return step / max(1, warmup)
            return 0.1 if drop is not None and step >= drop else 1.0

        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer if optimizer is None else optimizer, factor
        )
        self._created_lr_scheduler = True
        return self.lr_scheduler

    def get_eval_dataloader(self, eval_dataset=None):
        """`Trainer.get_eval_dataloader`; a split of `apply_transforms` also gives each target the annotations' `area`
        and, for a segmentation model, its annotated masks at the original size
        (`training.metrics.with_evaluation_ground_truth`): the metrics' ground truth, crowd regions included."""
        if eval_dataset is None and not isinstance(self.eval_dataset, dict):
            eval_dataset = self.eval_dataset
        return super().get_eval_dataloader(with_evaluation_ground_truth(eval_dataset))

    #: The training line of the card `hf_rfdetr.fine_tune` wrote and the optimizer step it describes (fine_tune sets
    #: it): `create_model_card` writes that line, which names the training data (a COCO folder, a `datasets` dataset)
    #: the trainer does not know, while the trainer has not trained further.
    card_training: tuple[int, str] | None = None

    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
        **kwargs,
    ) -> None:
        """Write the RF-DETR model card (`hf_rfdetr.model_card`) as `output_dir/README.md`, instead of transformers'
        generic Trainer card: `Trainer.push_to_hub` calls this before uploading `output_dir`.

        The card holds what the trainer knows: the model's configuration and size, the training (start weights,
        training images, epochs and steps, batch, learning rates, EMA), the validation COCO metrics of its log (those
        of the best checkpoint with `load_best_model_at_end`; else `eval_results.json`) and the test ones of
        `test_results.json` (`trainer.save_metrics("test", ...)`). The `source` and `dataset` of an earlier card of
        this package in `output_dir` (`fine_tune`'s) are kept unless given here. A README.md of your own (neither
        transformers' generic card nor one with this package's marker line) is kept as it is.

        Args (transformers' own): `license`, `language` and `tags` go to the card's metadata (tags beside the card's
        own and those of an existing README.md); `finetuned_from` is the start model (its Hub id becomes
        `base_model`; default: the model's `name_or_path` when it is a Hub id); `dataset` (or else the first of
        `dataset_tags`) is the training dataset (a Hub id is linked and added to the metadata, as the other
        `dataset_tags`); `model_name` names the repository when the trainer has no `hub_model_id`. `tasks` and
        `dataset_args` are accepted and not used: the task is the model's (object detection or instance
        segmentation). After `hf_rfdetr.fine_tune`, the training line is fine_tune's (`card_training`: it names the
        training data) until the trainer trains further.
        """
        if not self.is_world_process_zero():
            return
        from ..model_card import (
            card_fields,
            carries_code,
            is_generated_card,
            render_model_card,
            saved_num_top_queries,
        )

        folder = Path(self.args.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        readme = folder / "README.md"
        existing = readme.read_text(encoding="utf-8") if readme.is_file() else ""
        if not is_generated_card(existing) and _TRAINER_CARD_MARKER not in existing:
            logger.info(f"{readme} is a card of your own (without the hf_rfdetr marker line): kept as it is")
            return
        previous = card_fields(readme)
        model = self.accelerator.unwrap_model(self.model)
        config = model.config
        start = str(getattr(config, "_name_or_path", "") or "")
        from_hub = is_hub_id(start) and not os.path.isdir(start)
        base_model = finetuned_from or (start if from_hub else None)
        datasets_named = [name for name in (_as_list(dataset) + _as_list(dataset_tags)) if name]
        if base_model:
            source = f"fine-tuned from `{base_model}` with `RFDetrTrainer`"
        else:
            source = previous.get("source") or "trained with `hf_rfdetr.training.RFDetrTrainer`"
        if self.card_training is not None and self.card_training[0] == self.state.global_step:
            training = self.card_training[1]
        else:
            training = self._training_summary(start if from_hub else Path(start).name) or previous.get("training")
        card = render_model_card(
            config,
            sum(parameter.numel() for parameter in model.parameters()),
            repo_id=getattr(self, "hub_model_id", None)
            or self.args.hub_model_id
            or model_name
            or folder.resolve().name,
            source=source,
            dataset=datasets_named[0] if datasets_named else previous.get("dataset"),
            evaluations=self._card_evaluations(folder),
            training=training,
            remote_code=carries_code(folder),
            base_model=base_model,
            num_top_queries=saved_num_top_queries(folder),
        )
        readme.write_text(_with_metadata(card, readme, language, license, tags, datasets_named), encoding="utf-8")

    def _training_summary(self, start: str) -> str | None:
        """One line for the model card: what this trainer trained, how long, with which settings (None before
        training)."""
        if not self.state.global_step:
            return None
        args = self.args
        origin = f" from `{start}`" if start else ""
        dataset = self.train_dataset
        images = f" ({len(dataset)} training images)" if dataset is not None and has_length(dataset) else ""
        processes = f" on {args.world_size} processes" if args.world_size > 1 else ""
        ema = (
            f"; EMA of the weights (decay {self.ema.decay:g}, tau {self.ema.tau:g}) evaluated too"
            if self.ema is not None
            else ""
        )
        return (
            f"trained with `hf_rfdetr.training.RFDetrTrainer`{origin}{images} for {self.state.epoch or 0:g} epochs "
            f"({self.state.global_step} optimizer steps), batch {args.per_device_train_batch_size} x "
            f"{args.gradient_accumulation_steps} accumulation steps per device{processes}, lr {args.learning_rate:g} "
            f"(encoder {self.learning_rates.lr_encoder:g}), weight decay {args.weight_decay:g}, resolution "
            f"{self.model.config.resolution}{ema}"
        )

    def _card_evaluations(self, folder: Path) -> list:
        """The model card's COCO metrics: validation from the log (at the best checkpoint with
        `load_best_model_at_end`, else the last evaluation), or `eval_results.json`; test from `test_results.json`."""
        from ..model_card import evaluation_from_log_history, read_evaluations

        best = self.state.best_model_checkpoint
        step = None
        if self.args.load_best_model_at_end and best:
            step = int(Path(best).name.rsplit("-", 1)[-1])
        logged = evaluation_from_log_history(self.state.log_history, "eval_", step=step, source="trainer_state.json")
        files = [evaluation for evaluation in read_evaluations(folder) if evaluation.source != "trainer_state.json"]
        if logged is not None:
            files = [evaluation for evaluation in files if evaluation.split != "validation"]
            return [logged, *files]
        return files

    def get_test_dataloader(self, test_dataset):
        """`Trainer.get_test_dataloader`; a segmentation split of `apply_transforms` gives its targets the annotated
        masks at the original size, as in `get_eval_dataloader`."""
        return super().get_test_dataloader(with_evaluation_ground_truth(test_dataset))

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test"):
        """`Trainer.predict` of the weights (not the EMA average), the non-prediction outputs (`IGNORED_OUTPUTS`)
        left out by default as in `evaluate`: `predictions` and `label_ids` per batch a list of per-image objects
        (see `gather_function`), `metrics` the `compute_metrics` ones (`test_map`, ...) and `test_loss`."""
        ignore_keys = IGNORED_OUTPUTS if ignore_keys is None else ignore_keys
        return super().predict(test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

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
