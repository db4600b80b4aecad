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
"""The options of `fine_tune` (and the facade's `train()`, `hf-rfdetr train`), checked before any data or model is
loaded: the original `TrainConfig`'s options without an equivalent are refused naming what to use instead, its
renamed ones are translated, and out-of-range numbers are refused naming the value and its range."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from transformers import TrainingArguments

#: Options of the original `TrainConfig` (rfdetr 1.11) that `fine_tune` has no equivalent for, with what to do.
ORIGINAL_OPTIONS = {
    "class_names": "the class names come from the dataset's categories",
    "num_classes": "the class count comes from the dataset's categories",
    "dataset_file": "the dataset is a COCO folder (dataset_dir=) or a datasets.DatasetDict (dataset=)",
    "ema_decay": "the EMA uses the original's defaults (decay 0.993, tau 100); use_ema=False turns it off",
    "ema_tau": "the EMA uses the original's defaults (decay 0.993, tau 100); use_ema=False turns it off",
    "lr_scheduler": "the schedule is the original's 'step' one (warmup_epochs=, lr_drop=); for another, pass "
    "TrainingArguments' lr_scheduler_type= instead",
    "lr_min_factor": "the schedule is the original's 'step' one (warmup_epochs=, lr_drop=)",
    "lr_vit_layer_decay": "the layer decay is the original's default 0.8 (hf_rfdetr.training.LearningRates for "
    "RFDetrTrainer)",
    "lr_component_decay": "the decoder decay is the original's default 0.7 (hf_rfdetr.training.LearningRates for "
    "RFDetrTrainer)",
    "drop_path": "not supported",
    "group_detr": "a model setting: RFDetrConfig(group_detr=...)",
    "ia_bce_loss": "a model setting of the config",
    "cls_loss_coef": "a model setting of the config",
    "num_select": "a model setting of the config",
    "segmentation_head": "start from a segmentation model (a Seg variant or folder) instead",
    "multi_scale": "multi-scale training is always on (hf_rfdetr.training.apply_transforms for other settings)",
    "expanded_scales": "hf_rfdetr.training.apply_transforms(..., expanded_scales=) with RFDetrTrainer",
    "scale_jitter": "hf_rfdetr.training.apply_transforms(..., scale_jitter=) with RFDetrTrainer",
    "aug_config": "hf_rfdetr.training.apply_transforms(..., hflip_prob=, scale_jitter=) with RFDetrTrainer",
    "square_resize_div_64": "images are always resized to a square",
    "do_random_resize_via_padding": "not supported",
    "run_test": "evaluate the test split afterwards with hf-rfdetr eval (hf_rfdetr.commands.eval)",
    "eval_max_dets": "evaluation keeps the top 100 detections per image, as COCO's mAP",
    "eval_interval": "evaluation runs every epoch (eval_strategy= / eval_steps= of TrainingArguments otherwise)",
    "mlflow": "pass report_to=['mlflow'] (a TrainingArguments field)",
    "clearml": "pass report_to=['clearml'] (a TrainingArguments field)",
    "progress_bar": "pass disable_tqdm= (a TrainingArguments field)",
    "sync_bn": "not supported",
    "fp16_eval": "pass fp16_full_eval= / bf16_full_eval= (TrainingArguments fields)",
    "devices": "launch with accelerate / torchrun for several devices",
    "accelerator": "device= ('cpu', 'cuda', ...)",
    "strategy": "launch with accelerate / torchrun for distributed training",
    "ema_update_interval": "the EMA is updated every step, as the original's default",
    "eval_batch_size": "pass per_device_eval_batch_size= (a TrainingArguments field)",
}


#: Options of the original `TrainConfig` that `fine_tune` takes under their `TrainingArguments` name: original -> field.
RENAMED_OPTIONS = {"clip_max_norm": "max_grad_norm"}


def rename_original_options(options: dict[str, Any]) -> dict[str, Any]:
    """`options` with the original's names of `RENAMED_OPTIONS` replaced by their `TrainingArguments` names (the
    original's value wins when both are given)."""
    options = dict(options)
    for original, name in RENAMED_OPTIONS.items():
        if original in options:
            options[name] = options.pop(original)
    return options


#: `TrainingArguments` fields that `fine_tune` sets from its own parameters (named here): passing them too is refused.
SET_FROM_PARAMETERS = {
    "output_dir": "output_dir",
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum_steps",
    "learning_rate": "lr",
    "report_to": "tensorboard= / wandb=",
    "run_name": "run",
    "use_cpu": "device",
    "dataloader_num_workers": "num_workers",
    "load_best_model_at_end": "early_stopping",
    "metric_for_best_model": "early_stopping / early_stopping_use_ema",
    "activation_checkpointing": "gradient_checkpointing",
}


def check_training_options(options: dict) -> None:
    """Refuse, before any data or model is loaded, the keyword arguments of `fine_tune` that are neither
    `TrainingArguments` fields nor its own: an option of the original `TrainConfig` without an equivalent names what
    to use instead, a field `fine_tune` sets from a parameter of its own names that parameter; any other name is a
    `TypeError`, as Python gives for an unexpected keyword. The original's names of `RENAMED_OPTIONS`
    (`clip_max_norm`) are taken (`rename_original_options`).
    """
    import dataclasses

    fields = {field.name for field in dataclasses.fields(TrainingArguments) if field.init} | set(RENAMED_OPTIONS)
    for name in options:
        if name in SET_FROM_PARAMETERS:
            raise TypeError(
                f"{name}= is set by fine_tune / train() from {SET_FROM_PARAMETERS[name]}=; pass that instead"
            )
        if name in ORIGINAL_OPTIONS:
            raise ValueError(
                f"{name}= is an option of the original rfdetr train() that hf_rfdetr does not take: "
                f"{ORIGINAL_OPTIONS[name]}"
            )
        if name not in fields:
            raise TypeError(
                f"unexpected keyword argument {name!r}: fine_tune / train() take the original's training options "
                "(epochs, batch_size, grad_accum_steps, lr, lr_encoder, warmup_epochs, lr_drop, ...) and "
                "transformers.TrainingArguments fields"
            )


def check_epochs(epochs: Any) -> None:
    """Refuse, before any data or model is loaded, an `epochs` that trains nothing (0, negative, NaN) or is not a
    number: the run would save its starting weights as the fine-tuned model."""
    if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or not epochs > 0:
        raise ValueError(
            f"epochs={epochs!r}: the number of passes over the training set must be positive (1 or more passes; "
            "the original's default is 100)"
        )


class NumberRange(NamedTuple):
    """The values a numeric option of `fine_tune` takes (see `TRAINING_NUMBERS`)."""

    whole: bool  # integers only
    low: float  # the lowest value
    low_allowed: bool  # whether `low` itself is allowed
    high: float | None  # the highest value allowed, or None
    what: str  # what the value is, for the message
    note: str = ""  # a note on the limit


#: `fine_tune`'s numeric options besides `epochs`, as `check_training_numbers` checks them. The original's `TrainConfig` refuses `batch_size`, `grad_accum_steps` and `checkpoint_interval` below 1; the other
#: limits are where torch, `TrainingArguments` or the Trainer would fail late (or, for `lr` 0, train nothing but the
#: encoder). Its valid values stay valid: weight decay, warmup, `lr_drop` and the encoder's rate may be 0.
TRAINING_NUMBERS: dict[str, NumberRange] = {
    "batch_size": NumberRange(True, 1, True, None, "the number of images per device and step"),
    "grad_accum_steps": NumberRange(
        True, 1, True, None, "the number of steps accumulated per optimizer update", "1: none"
    ),
    "lr": NumberRange(False, 0, False, None, "the learning rate"),
    "lr_encoder": NumberRange(False, 0, True, None, "the encoder's learning rate", "0 freezes the encoder"),
    "weight_decay": NumberRange(False, 0, True, None, "AdamW's weight decay", "0 turns it off"),
    "warmup_epochs": NumberRange(False, 0, True, None, "the epochs of linear learning-rate warmup"),
    "lr_drop": NumberRange(False, 0, True, None, "the epoch from which the learning rates are x0.1"),
    "checkpoint_interval": NumberRange(True, 1, True, None, "the number of epochs between kept checkpoints"),
    "early_stopping_patience": NumberRange(True, 0, True, None, "the evaluations without improvement before stopping"),
    "num_workers": NumberRange(True, 0, True, None, "the number of data loading processes", "0: the main process"),
    "resolution": NumberRange(
        True, 1, True, None, "the input size", "a multiple of the model's patch_size x num_windows"
    ),
    "seed": NumberRange(True, 0, True, 2**32 - 1, "the random seed"),
}
#: The options of `TRAINING_NUMBERS` that may be None: what None means.
_NONE_MEANS = {"lr_drop": "None never drops", "resolution": "None for the model's own"}


def check_training_numbers(values: dict[str, Any], spelling: Callable[[str, Any], str] | None = None) -> None:
    """Refuse, before any data or model is loaded, a value of `TRAINING_NUMBERS` out of its range or not a number
    (a `ValueError` naming it as `spelling(name, value)` spells it, `name=value` by default; `hf-rfdetr train` spells
    its flags). Names that are not in `TRAINING_NUMBERS` are ignored."""
    import inspect
    import numbers

    from .fine_tune import fine_tune

    spelling = spelling or (lambda name, value: f"{name}={value!r}")
    defaults = inspect.signature(fine_tune).parameters
    for name, value in values.items():
        if name not in TRAINING_NUMBERS or (value is None and name in _NONE_MEANS):
            continue
        whole, low, low_allowed, high, what, note = TRAINING_NUMBERS[name]
        kind = numbers.Integral if whole else numbers.Real
        if (
            not isinstance(value, bool)
            and isinstance(value, kind)
            and (value >= low if low_allowed else value > low)
            and (high is None or value <= high)
        ):
            continue
        if high is not None:
            rule = f"{low} to {'2**32 - 1' if high == 2**32 - 1 else high}"
        else:
            rule = f"{low} or more" if low_allowed else "positive"
        rule = f"an integer, {rule}" if whole else rule
        if name in _NONE_MEANS:
            rule += f", or {_NONE_MEANS[name]}"
        notes = "; ".join(part for part in (note, f"default: {defaults[name].default}") if part)
        raise ValueError(f"{spelling(name, value)}: {what} must be {rule} ({notes})")
