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
"""`fine_tune(...)`: the original `model.train(dataset_dir=...)` in one call, on the Hugging Face Trainer."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import (
    AutoConfig,
    AutoModelForInstanceSegmentation,
    AutoModelForObjectDetection,
    EarlyStoppingCallback,
    TrainerCallback,
    TrainingArguments,
)

from ..class_heads import relabel
from ..models.rfdetr.configuration_rfdetr import VARIANT_ALIASES, VARIANTS, RFDetrConfig
from ..models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor
from ..models.rfdetr.modeling_rfdetr import RFDetrForInstanceSegmentation, RFDetrForObjectDetection
from .data import SPLIT_ALIASES, id2label_from_dataset, load_coco_folder
from .data_checks import check_training_data
from .ema import RFDetrEMACallback
from .evaluator import CocoEvaluator
from .hub_data import prepare_dataset
from .metrics import SEGM_PREFIX
from .optim import LearningRates
from .options import check_epochs, check_training_numbers, check_training_options, rename_original_options
from .trainer import RFDetrTrainer
from .transforms import RFDetrDataCollator, apply_transforms


class CheckpointIntervalCallback(TrainerCallback):
    """Keep an epoch-end checkpoint only every `interval` epochs (and at the end)."""

    def __init__(self, interval: int) -> None:
        self.interval = max(1, int(interval))

    def on_epoch_end(self, args, state, control, **kwargs):
        epoch = round(state.epoch or 0)
        if epoch % self.interval and epoch < args.num_train_epochs:
            control.should_save = False
        return control


#: The model classes `fine_tune` trains.
RFDetrModel = RFDetrForObjectDetection | RFDetrForInstanceSegmentation


def _variant_name(model: str | os.PathLike) -> str | None:
    """`model` as a key of `VARIANTS` when it names a variant (`nano`, `seg-nano`, `RFDETRSegNano`, ...)."""
    key = str(model).lower().replace("_", "-")
    key = VARIANT_ALIASES.get(key, VARIANT_ALIASES.get(key.replace("-", ""), key))
    return key if key in VARIANTS else None


def is_segmentation_model(model: str | os.PathLike | RFDetrModel) -> bool:
    """Whether `model` (a variant name, a Hub id / folder, or a model object) segments (`config.segmentation_head`):
    its data is then loaded with masks and it is trained as an `RFDetrForInstanceSegmentation`."""
    if isinstance(model, (RFDetrForObjectDetection, RFDetrForInstanceSegmentation)):
        return isinstance(model, RFDetrForInstanceSegmentation)
    name = _variant_name(model)
    config = RFDetrConfig.from_variant(name) if name else AutoConfig.from_pretrained(str(model))
    return bool(getattr(config, "segmentation_head", False))


def _load_model(
    model: str | os.PathLike | RFDetrModel,
    id2label: dict[int, str],
    resolution: int | None,
    segmentation: bool | None = None,
) -> RFDetrModel:
    """A variant name (random initialisation), a Hub id / local folder (its weights) or a model object, with the
    dataset's labels: a trained model keeps its class-head rows (`hf_rfdetr.class_heads.relabel`: the rows of the
    same label names, else tiled / truncated by position, as the original); `RFDetrForInstanceSegmentation` when
    `segmentation` (default: `is_segmentation_model(model)`), else `RFDetrForObjectDetection`."""
    if segmentation is None:
        segmentation = is_segmentation_model(model)
    label2id = {name: index for index, name in id2label.items()}
    overrides = {"resolution": resolution} if resolution else {}
    model_class = RFDetrForInstanceSegmentation if segmentation else RFDetrForObjectDetection
    if _variant_name(model):
        model = model_class(
            RFDetrConfig.from_variant(_variant_name(model), id2label=id2label, label2id=label2id, **overrides)
        )
        overrides = {}
    else:
        if not isinstance(model, (RFDetrForObjectDetection, RFDetrForInstanceSegmentation)):
            auto_class = AutoModelForInstanceSegmentation if segmentation else AutoModelForObjectDetection
            model = auto_class.from_pretrained(model)
        relabel(model, id2label)
    if overrides:  # a new resolution: the position embeddings interpolate to it
        model.config.resolution = overrides["resolution"]
        model.config.validate()
    return model


def _recipe_arguments(evaluation: bool, batch_size: int) -> dict[str, Any]:
    """The `TrainingArguments` of the original recipe that `fine_tune`'s extra keyword arguments may override
    (its `clip_max_norm`, 0.1, is `max_grad_norm`)."""
    return {
        "max_grad_norm": 0.1,
        "lr_scheduler_type": "constant",
        "per_device_eval_batch_size": batch_size,
        "eval_strategy": "epoch" if evaluation else "no",
        "save_strategy": "epoch",
        "logging_strategy": "epoch",
        "greater_is_better": True,
    }


def _named_splits(dataset: datasets.DatasetDict) -> datasets.DatasetDict:
    """`dataset` with its splits named as `fine_tune` uses them: `train`, `validation` (also accepted as `val` or
    `valid`, in any case, as `load_coco_folder` accepts the folders) and `test`; anything else than a `DatasetDict`
    is returned as it is (`prepare_dataset` and the data checks explain it).

    Without a validation split, `test` is evaluated in its place (what `Dataset.train_test_split` names the held-out
    part), with a warning; with neither, a warning says that nothing will be evaluated.

    Raises:
        ValueError: splits of other names (they would be silently unused, a held-out split never evaluated), or
            two names for one split.
    """
    if not isinstance(dataset, datasets.DatasetDict):
        return dataset
    unknown = [name for name in dataset if str(name).lower() not in SPLIT_ALIASES]
    if unknown:
        raise ValueError(
            f"dataset has split(s) {unknown} that fine_tune does not know: it trains on 'train', evaluates on "
            f"'validation' (or 'val' / 'valid') and leaves 'test' alone; rename or drop the others "
            f"(datasets.DatasetDict(train=..., validation=...))"
        )
    renamed: dict[str, datasets.Dataset] = {}
    for name, split in dataset.items():
        target = SPLIT_ALIASES[str(name).lower()]
        if target in renamed:
            names = [other for other in dataset if SPLIT_ALIASES[str(other).lower()] == target]
            raise ValueError(f"dataset has {len(names)} '{target}' splits {names}: keep one")
        renamed[target] = split
    if "validation" not in renamed and "train" in renamed:
        if "test" in renamed:
            renamed["validation"] = renamed.pop("test")
            warnings.warn(
                "dataset has no 'validation' split: fine_tune evaluates on its 'test' split instead (the held-out "
                "part of Dataset.train_test_split); name it 'validation' to say so",
                UserWarning,
                stacklevel=3,
            )
        else:
            warnings.warn(
                "dataset has no 'validation' (or 'test') split: nothing will be evaluated, so there are no mAP "
                "metrics, no best checkpoint and no early stopping; hold some images out, e.g. "
                "dataset['train'].train_test_split(test_size=0.1)",
                UserWarning,
                stacklevel=3,
            )
    return datasets.DatasetDict(renamed)


def _best_model_metric(segmentation: bool, ema: bool) -> str:
    """The metric of early stopping and of the best checkpoint: mask mAP for a segmentation model, box mAP otherwise,
    as the original (`rfdetr/training/trainer.py`, `_BEST_MODEL_MONITOR_KEYS`: `segm_mAP_50_95` for
    `segmentation_head`), of the EMA weights with `ema`."""
    return "eval_" + ("ema_" if ema else "") + ("segm_map" if segmentation else "map")


def mixed_precision(amp: bool | str, device: str | None) -> dict[str, bool]:
    """`TrainingArguments` precision flags (`{"bf16": True}`, `{"fp16": True}` or `{}` for float32) for `amp` on
    `device` (None: CUDA when available, else the CPU).

    "auto" follows the original: on CUDA, bfloat16 autocast where the GPU supports it, else float16 (with loss
    scaling); on the CPU float32 (so that results do not depend on the CPU's bf16 kernels). True uses mixed precision
    on the CPU too, in bfloat16 (fast only with native bf16: AVX512-BF16, AMX; a warning says so elsewhere); False is
    float32 everywhere.

    Raises:
        ValueError: `amp` other than "auto", True or False.
    """
    if amp not in ("auto", True, False):
        raise ValueError(f'amp must be "auto", True or False, got {amp!r}')
    on_cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    if amp is False or (amp == "auto" and not on_cuda):
        return {}
    if on_cuda:
        return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}
    from ..optimization import has_native_bf16

    if not has_native_bf16():
        warnings.warn(
            "amp=True on a CPU without native bfloat16 instructions: bf16 is emulated there and trains slower than "
            "float32 (amp=False)",
            UserWarning,
            stacklevel=3,
        )
    return {"bf16": True}


def _checkpointing(enabled: bool) -> dict[str, bool]:
    """The `TrainingArguments` flag for gradient checkpointing, only when on, under the name of the installed
    transformers (`activation_checkpointing` from v5, where `gradient_checkpointing` warns that it is deprecated)."""
    if not enabled:
        return {}
    import dataclasses

    names = {field.name for field in dataclasses.fields(TrainingArguments)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": True}


def _report_to(tensorboard: bool, wandb: bool, project: str | None) -> list[str]:
    targets = []
    if tensorboard:
        targets.append("tensorboard")
    if wandb:
        if project:
            os.environ["WANDB_PROJECT"] = project
        targets.append("wandb")
    return targets


def fine_tune(
    model: str | os.PathLike | RFDetrModel = "base",
    dataset_dir: str | os.PathLike | None = None,
    *,
    dataset: datasets.DatasetDict | None = None,
    epochs: int = 100,
    batch_size: int = 4,
    grad_accum_steps: int = 4,
    lr: float = 1e-4,
    lr_encoder: float = 1.5e-4,
    resolution: int | None = None,
    weight_decay: float = 1e-4,
    device: str | None = None,
    use_ema: bool = True,
    gradient_checkpointing: bool = False,
    checkpoint_interval: int = 10,
    resume: str | os.PathLike | bool | None = None,
    tensorboard: bool = True,
    wandb: bool = False,
    project: str | None = None,
    run: str | None = None,
    early_stopping: bool = False,
    early_stopping_patience: int = 10,
    early_stopping_min_delta: float = 0.001,
    early_stopping_use_ema: bool = False,
    output_dir: str | os.PathLike = "output",
    num_workers: int = 2,
    seed: int = 42,
    callbacks: list[TrainerCallback] | None = None,
    amp: bool | str = "auto",
    model_name: str | None = None,
    warmup_epochs: float = 0.0,
    lr_drop: float | None = 100,
    compact_train_metrics: bool = True,
    tune_allocator: bool = True,
    **training_arguments,
) -> RFDetrTrainer:
    """Fine-tune RF-DETR on a COCO folder (`dataset_dir` with `train/ valid/ [test/]`, each holding
    `_annotations.coco.json`) or a `datasets.DatasetDict` in the Hub detection layout, with the original recipe.

    Parameters follow the original `model.train(...)`: `epochs`, `batch_size` x `grad_accum_steps` (the original
    recommends a total of 16), `lr`, `lr_encoder` (DINOv2 encoder, with layer-wise decay), `resolution` (a multiple of
    patch_size x num_windows), `weight_decay`, `device` ("cpu", "cuda", ...; default: what is available), `use_ema`,
    `gradient_checkpointing`, `checkpoint_interval` (epochs between kept checkpoints), `resume` (a checkpoint folder,
    or True for the newest complete checkpoint of the run recorded in `output_dir`: a checkpoint whose save was
    interrupted, and checkpoints of other runs left in `output_dir`, are skipped with a warning naming them; a
    checkpoint of other labels or another architecture is refused; a run resumed from an epoch-end checkpoint continues
    exactly as an uninterrupted one with the same `seed`, one saved inside an epoch with other random augmentations), `tensorboard`, `wandb` with `project` / `run`, `early_stopping`
    (on validation mAP, mask mAP for a segmentation model as in the original, of the EMA weights with
    `early_stopping_use_ema`; checkpoints are then kept every epoch so the
    best can be restored), `output_dir`, `callbacks` (more `TrainerCallback`s for the trainer), `amp` (mixed precision,
    see `mixed_precision`: "auto" as the original, bfloat16 / float16 on CUDA and float32 on the CPU; True also on
    the CPU, in bfloat16, about 1.6x the float32 images/s on CPUs with native bf16; False: float32), `model_name`
    (what the model cards name as the starting model; default: `model` when it is a name or folder),
    `warmup_epochs` and `lr_drop` (the original's step schedule: a linear warmup over `warmup_epochs` epochs, the
    learning rates x0.1 from epoch `lr_drop` on; the defaults are the original's, no warmup and `lr_drop=100`, so a
    run of more than 100 epochs drops the rates from epoch 100; `lr_drop=None` never drops; a
    `lr_scheduler_type=` other than the recipe's "constant" replaces this schedule by transformers' one),
    `compact_train_metrics` (as the original: the loss terms logged beside `loss` are the last decoder layer's and
    their `_aux` sums over the other layers, or with False every layer's term; `RFDetrTrainer(loss_components=)`),
    `tune_allocator` (on the CPU, keep freed memory in the process between steps: `RFDetrTrainer(tune_allocator=)`).
    Extra keyword arguments go to `TrainingArguments` (its `bf16=` / `fp16=`
    override `amp`); other options of the original `TrainConfig` are refused up front, naming what to use instead
    (`check_training_options`), as are out-of-range numbers (`batch_size=0`, a negative `lr`, ...:
    `check_training_numbers`).

    `model` is a variant name (random initialisation), a Hub id or folder (its weights) or an
    `RFDetrForObjectDetection`; a trained model's class heads start from its rows for the dataset's labels (the rows
    of the same names, else tiled / truncated by position as the original does: `hf_rfdetr.class_heads.relabel`). A segmentation model (a Seg variant such as `seg-nano`
    or `RFDETRSegNano`, a folder / Hub id whose config has `segmentation_head`, or an `RFDetrForInstanceSegmentation`)
    is trained as an `RFDetrForInstanceSegmentation` on the masks of the data (COCO `segmentation` fields, or
    `objects.segmentation` of a `datasets` dataset), and evaluated with mask (`segm_*`) metrics beside the box ones.
    The final model and its image processor are saved in
    `output_dir` (and the EMA weights in `output_dir/ema`). Returns the trainer (`trainer.model`, `trainer.state`).
    """
    check_epochs(epochs)
    check_training_numbers(
        dict(
            batch_size=batch_size,
            grad_accum_steps=grad_accum_steps,
            lr=lr,
            lr_encoder=lr_encoder,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            lr_drop=lr_drop,
            checkpoint_interval=checkpoint_interval,
            early_stopping_patience=early_stopping_patience,
            num_workers=num_workers,
            resolution=resolution,
            seed=seed,
        )
    )
    check_training_options(training_arguments)
    training_arguments = rename_original_options(training_arguments)  # clip_max_norm= -> max_grad_norm=
    if (dataset_dir is None) == (dataset is None):
        raise ValueError("pass exactly one of dataset_dir (a COCO folder) or dataset (a datasets.DatasetDict)")
    source_name = model_name or (str(model) if isinstance(model, (str, os.PathLike)) else None)
    # The config decides whether the masks are read. A model that cannot be resolved (a wrong name, offline) is
    # reported after the data checks, so that data problems still come first, before anything is loaded.
    try:
        segmentation, model_error = is_segmentation_model(model), None
    except (OSError, ValueError) as error:
        segmentation, model_error = False, error
    if dataset_dir is not None:
        splits, summaries = load_coco_folder(dataset_dir, return_summary=True, masks=segmentation)
    else:
        splits, summaries = prepare_dataset(_named_splits(dataset)), None
    # before the model is built and the first step is taken
    check_training_data(splits, summaries=summaries, masks=segmentation)
    if model_error is not None:
        problem = (
            f"fine_tune could not read the configuration of model {str(model)!r} (a variant name such as 'nano' or "
            f"'seg-nano', a local folder or a Hub id): {model_error}"
        )
        raise (OSError if isinstance(model_error, OSError) else ValueError)(problem) from model_error
    id2label = id2label_from_dataset(splits)
    model = _load_model(model, id2label, resolution, segmentation)
    transformed = apply_transforms(splits, model.config)
    evaluation = "validation" in transformed
    metric = _best_model_metric(segmentation, early_stopping_use_ema and use_ema)
    precision = {} if {"bf16", "fp16"} & set(training_arguments) else mixed_precision(amp, device)
    args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum_steps,
        learning_rate=lr,
        weight_decay=weight_decay,
        load_best_model_at_end=early_stopping and evaluation,
        metric_for_best_model=metric if evaluation else None,
        **_checkpointing(gradient_checkpointing),
        report_to=_report_to(tensorboard, wandb, project),
        run_name=run,
        use_cpu=device == "cpu",
        dataloader_num_workers=num_workers,
        remove_unused_columns=False,
        seed=seed,
        **precision,
        **(_recipe_arguments(evaluation, batch_size) | training_arguments),
    )
    if device not in (None, "cpu"):
        model.to(device)
    trainer_callbacks = [] if early_stopping else [CheckpointIntervalCallback(checkpoint_interval)]
    if early_stopping:
        if not evaluation:
            raise ValueError("early_stopping needs a validation split (valid/ folder) to measure mAP on")
        # The original (Lightning's EarlyStopping) compares the count with the patience only after an evaluation
        # without improvement, transformers' callback after every one: patience 0 would stop after the first
        # evaluation here but at the first one without improvement there. From 1 on they agree.
        patience = max(early_stopping_patience, 1)
        trainer_callbacks.append(EarlyStoppingCallback(patience, early_stopping_min_delta))
    trainer_callbacks.extend(callbacks or [])
    ema = RFDetrEMACallback(decay=0.993, tau=100) if use_ema else None
    processor = RFDetrImageProcessor.from_config(model.config)
    trainer = RFDetrTrainer(
        model=model,
        args=args,
        train_dataset=transformed["train"],
        eval_dataset=transformed.get("validation"),
        data_collator=RFDetrDataCollator.from_config(model.config, seed=seed),
        processing_class=processor,  # saved in every checkpoint: each loads with AutoImageProcessor / pipeline
        compute_metrics=CocoEvaluator(id2label),
        learning_rates=LearningRates(lr=lr, lr_encoder=lr_encoder, weight_decay=weight_decay),
        ema=ema,
        callbacks=trainer_callbacks,
        warmup_epochs=warmup_epochs,
        lr_drop=lr_drop,
        loss_components="compact" if compact_train_metrics else "all",
        tune_allocator=tune_allocator,
    )
    trainer.train(resume_from_checkpoint=str(resume) if isinstance(resume, (str, Path)) else resume)
    trainer.save_model(str(output_dir))  # with the processor
    if ema is not None and trainer.is_world_process_zero():  # the best checkpoint's average with early stopping
        ema.save(Path(output_dir) / "ema", trainer.model)  # (restored by RFDetrEMACallback.on_train_end)
        processor.save_pretrained(str(Path(output_dir) / "ema"))
    trainer.save_state()
    if trainer.is_world_process_zero():
        summary = _training_summary(
            source_name, dataset_dir, splits, trainer, batch_size, grad_accum_steps, lr, lr_encoder
        )
        trainer.card_training = (trainer.state.global_step, summary)  # trainer.create_model_card writes it too
        _write_results_and_card(trainer, Path(output_dir), "eval_", summary)
        if ema is not None:
            _write_results_and_card(trainer, Path(output_dir) / "ema", "eval_ema_", summary + "; EMA of the weights")
    return trainer


def _training_summary(
    model_name: str | None,
    dataset_dir: str | os.PathLike | None,
    splits: datasets.DatasetDict,
    trainer: RFDetrTrainer,
    batch_size: int,
    grad_accum_steps: int,
    lr: float,
    lr_encoder: float,
) -> str:
    """One line for the model card: what was trained on what, how long and with which settings."""
    data = f"the COCO folder `{Path(dataset_dir).name}`" if dataset_dir is not None else "a `datasets` dataset"
    start = f" from `{model_name}`" if model_name else ""
    return (
        f"fine-tuned with `hf_rfdetr.fine_tune`{start} on {data} ({len(splits['train'])} training images) for "
        f"{trainer.state.epoch or 0:g} epochs, batch {batch_size} x {grad_accum_steps} accumulation steps per device, "
        f"lr {lr:g} (encoder {lr_encoder:g}), resolution {trainer.model.config.resolution}"
    )


def _best_checkpoint(trainer: RFDetrTrainer) -> Path | None:
    """The checkpoint whose weights `load_best_model_at_end` restored (early stopping), or None: the final model and
    its EMA average, and their `eval_results.json`, all come from it."""
    best = trainer.state.best_model_checkpoint
    return Path(best) if trainer.args.load_best_model_at_end and best else None


def _mask_metrics(log_history: list[dict], prefix: str, step: int) -> dict[str, float]:
    """The mask (`segm_*`) metrics logged with `prefix` at `step`, named `eval_segm_*` (none for detection)."""
    entries = [entry for entry in log_history if f"{prefix}map" in entry and entry.get("step") == step]
    if not entries:
        return {}
    marker = f"{prefix}{SEGM_PREFIX}"
    return {f"eval_{key[len(prefix) :]}": value for key, value in entries[-1].items() if key.startswith(marker)}


def _write_results_and_card(trainer: RFDetrTrainer, folder: Path, prefix: str, training: str) -> None:
    """`eval_results.json` with the metrics of the weights saved in `folder` (when they were evaluated), and the
    model card `README.md` (the metrics of `load_best_model_at_end` runs, regular and EMA, are those of the best
    checkpoint)."""
    from ..model_card import evaluation_from_log_history, write_model_card

    best = _best_checkpoint(trainer)
    step = int(best.name.rsplit("-", 1)[-1]) if best is not None else trainer.state.global_step
    evaluation = evaluation_from_log_history(trainer.state.log_history, prefix, step=step, source="eval_results.json")
    if evaluation is not None:
        results = {"epoch": evaluation.epoch, **{f"eval_{key}": value for key, value in evaluation.metrics.items()}}
        results |= _mask_metrics(trainer.state.log_history, prefix, step)
        (folder / "eval_results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    write_model_card(folder, str(folder), training=training, source="fine-tuned with `hf_rfdetr.fine_tune`")
