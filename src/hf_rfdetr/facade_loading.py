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
"""What the `RFDETR` facade loads: the model and processor behind `pretrain_weights` (a checkpoint name, a folder or
Hub repository, an original `.pth`), with the labels asked for by `num_classes` / `class_names`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForInstanceSegmentation, AutoModelForObjectDetection

from .class_heads import relabel
from .models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor
from .models.rfdetr.modeling_rfdetr import RFDetrForInstanceSegmentation, RFDetrForObjectDetection, model_class_for
from .pretrained_weights import CHECKPOINTS, as_rfdetr_checkpoint, pretrained, resolve_name

__all__ = ["ORIGINAL_WEIGHTS", "RFDetrModelClass", "default_device", "load_pretrained", "requested_labels"]

#: The model classes behind the facade: a detector, or a detector with a mask head (`config.segmentation_head`).
RFDetrModelClass = RFDetrForObjectDetection | RFDetrForInstanceSegmentation
#: The file each variant of the original package downloads when `pretrain_weights` is not given.
ORIGINAL_WEIGHTS = {name: checkpoint.filename for name, checkpoint in CHECKPOINTS.items()}
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def requested_labels(num_classes: int | None, class_names: Sequence[str] | None) -> dict[int, str] | None:
    """Labels asked for by `num_classes` / `class_names` (`None`: keep the checkpoint's)."""
    if class_names is not None:
        names = [str(name) for name in class_names]
        if num_classes is not None and num_classes != len(names):
            raise ValueError(f"num_classes={num_classes} but {len(names)} class_names were given")
        if not names or len(set(names)) != len(names):
            raise ValueError(f"class_names must be non-empty and unique, got {names}")
        return dict(enumerate(names))
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return {i: f"class_{i}" for i in range(num_classes)}


def load_pretrained(
    weights: str | os.PathLike, id2label: dict[int, str] | None
) -> tuple[RFDetrModelClass, RFDetrImageProcessor]:
    """Model and processor from a checkpoint name, a folder, an original checkpoint file or a Hub id (see `RFDETR`)."""
    path = Path(weights)
    if path.is_dir():
        return _from_folder_or_hub(str(path), id2label)
    if path.is_file():
        return _from_original_checkpoint(path, id2label)
    text = str(weights)
    if text.startswith((".", "/", "~")) or text.count("/") > 1:  # a path, not a Hub id "org/name"
        raise FileNotFoundError(f"pretrain_weights {text!r} does not exist")
    if path.suffix in _CHECKPOINT_SUFFIXES and resolve_name(text) is None:
        raise FileNotFoundError(
            f"pretrain_weights {text!r} does not exist (the original's checkpoints by name: {', '.join(ORIGINAL_WEIGHTS.values())})"
        )
    resolved = pretrained(text)  # a name: the cached COCO folder; an unknown name: ValueError listing the names
    if resolved != text:
        return _from_folder_or_hub(resolved, id2label)
    try:
        return _from_folder_or_hub(text, id2label)
    except OSError as error:
        if isinstance(error.__cause__, SafetensorError):  # downloaded, but the cached file is damaged: says so itself
            raise
        raise OSError(
            f"pretrain_weights {text!r} is not a local folder or file, and loading it from the Hugging Face Hub "
            f"failed (offline, private or misspelled?): {str(error).splitlines()[0]}"
        ) from error


def _from_folder_or_hub(name: str, id2label: dict[int, str] | None) -> tuple[RFDetrModelClass, RFDetrImageProcessor]:
    """Model and processor of a folder or Hub repository: a segmentation model (`segmentation_head` in its config)
    through `AutoModelForInstanceSegmentation`, a detector through `AutoModelForObjectDetection`."""
    name = as_rfdetr_checkpoint(name)  # transformers' own rf_detr: converted into a cached folder of ours
    segmentation = bool(getattr(AutoConfig.from_pretrained(name), "segmentation_head", False))
    auto = AutoModelForInstanceSegmentation if segmentation else AutoModelForObjectDetection
    model = auto.from_pretrained(name)
    if not isinstance(model, (RFDetrForObjectDetection, RFDetrForInstanceSegmentation)):
        raise ValueError(
            f"{name!r} holds a {type(model).__name__}, not an RF-DETR model of this package or of transformers; "
            "convert it first (hf-rfdetr convert)"
        )
    if id2label:
        relabel(model, id2label)
    try:
        processor = RFDetrImageProcessor.from_pretrained(name)
    except OSError:  # weights and config only: the processor follows from the config
        processor = RFDetrImageProcessor.from_config(model.config)
    return model, processor


def _from_original_checkpoint(
    path: Path, id2label: dict[int, str] | None
) -> tuple[RFDetrModelClass, RFDetrImageProcessor]:
    """Convert an original `rfdetr` checkpoint in memory (its regular `model` weights), with new labels as a folder
    takes them (`hf_rfdetr.class_heads.relabel`)."""
    from .conversion import CheckpointError, config_from_checkpoint, load_checkpoint, load_original_state_dict

    checkpoint = load_checkpoint(path)
    try:
        config = config_from_checkpoint(checkpoint)
        model = model_class_for(config)(config)
        load_original_state_dict(model, checkpoint["model"])  # raises, naming the keys that do not fit
    except CheckpointError as error:
        raise CheckpointError(f"pretrain_weights {str(path)!r}: {error}") from error
    if id2label:
        relabel(model, id2label)
    return model, RFDetrImageProcessor.from_config(model.config)
