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
"""Checks before the first training step: can the `train` split be learnt from, can `validation` be measured on?

`check_training_data` counts each split's boxes (`BoxCounts`: usable, crowd, degenerate, outside the image; with masks,
the usable objects that have a segmentation) from the Hub detection layout of `hf_rfdetr.training.data`, reading no
image, and raises a `DatasetError` that names the split, where it came from and what is missing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets

from .data import _MAX_LISTED_IDS, DatasetError, SplitSummary, _id_list, object_columns, object_fields
from .masks import MASKS_HOW_TO, is_missing

#: Splits that training reads (and must be able to learn from or measure on).
TRAINING_SPLITS = ("train", "validation")


@dataclass
class BoxCounts:
    """What the boxes of one split amount to for training: `usable` boxes become targets, the others do not.

    With masks counted (`split_box_counts(..., masks=True)`), `masked` usable objects have a segmentation and
    `rows_without_mask` lists (up to 5) rows with a usable object that has none."""

    images: int = 0
    objects: int = 0
    usable: int = 0
    crowd: int = 0
    degenerate: int = 0
    outside: int = 0
    masked: int = 0
    rows_without_mask: list[int] = field(default_factory=list)

    def add(self, objects: Any, size: tuple[int, int] | None, masks: bool = False) -> None:
        """Count one row's `objects`; `size` is its `(width, height)` when known (boxes outside it are not usable);
        `masks` also counts the usable objects that have a `segmentation`."""
        columns = object_columns(objects)
        boxes = columns.get("bbox") or []
        crowd = columns.get("iscrowd") or [0] * len(boxes)
        segmentations = columns.get("segmentation") or [None] * len(boxes)
        self.images += 1
        self.objects += len(boxes)
        for bbox, is_crowd, segmentation in zip(boxes, crowd, segmentations):
            kind = "crowd" if is_crowd else _box_kind(bbox, size)
            setattr(self, kind, getattr(self, kind) + 1)
            if masks and kind == "usable":
                if not is_missing(segmentation):
                    self.masked += 1
                elif len(self.rows_without_mask) < _MAX_LISTED_IDS and self.images - 1 not in self.rows_without_mask:
                    self.rows_without_mask.append(self.images - 1)


def _box_kind(bbox: Sequence[float], size: tuple[int, int] | None) -> str:
    """`"usable"`, `"degenerate"` (no positive finite width/height) or `"outside"` (no overlap with the image)."""
    x, y, w, h = (float(value) for value in bbox)
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0):
        return "degenerate"
    if size is not None and (x >= size[0] or y >= size[1] or x + w <= 0 or y + h <= 0):
        return "outside"
    return "usable"


def split_box_counts(dataset: datasets.Dataset, masks: bool = False) -> BoxCounts:
    """`BoxCounts` of a dataset in the Hub detection layout (reads only `objects`, `width`, `height`: no images);
    `masks` also counts the usable objects with a `segmentation`."""
    sized = {"width", "height"} <= set(dataset.column_names)
    counts = BoxCounts()
    for row in dataset.select_columns(["objects", "width", "height"] if sized else ["objects"]):
        counts.add(row["objects"], (row["width"], row["height"]) if sized else None, masks)
    return counts


def check_training_data(
    dataset: datasets.DatasetDict,
    *,
    sources: Mapping[str, str] | None = None,
    summaries: Mapping[str, SplitSummary] | None = None,
    masks: bool = False,
) -> dict[str, BoxCounts]:
    """Check, before the first training step, that the `train` split can be learnt from and that a `validation`
    split (when present) can be measured on.

    `train` must exist and hold at least one image and at least one usable box (not crowd, positive width and height,
    overlapping its image); `validation`, when present, the same. Without this check an empty `valid/` folder crashes
    after a whole epoch (`KeyError: 'eval_map'`) and saves nothing, and a split whose boxes are all degenerate trains
    on empty targets. For a segmentation model (`masks=True`, i.e. `config.segmentation_head`) each checked split
    must also have an `objects.segmentation` field and a segmentation for every usable object (the transforms would
    otherwise fail on it in the middle of training).

    Args:
        dataset: splits in the Hub detection layout (`load_coco_folder` or `prepare_dataset` output).
        sources: `{split: where it came from}` for the messages (e.g. its annotation file); default: the split name.
        summaries: `load_coco_folder`'s summaries, to count the boxes it dropped while loading.
        masks: check the segmentation too (see above).

    Returns:
        `{split: BoxCounts}` of the checked splits.

    Raises:
        DatasetError (a `ValueError`): naming the split, where it came from and what is missing.
    """
    if not isinstance(dataset, datasets.DatasetDict):
        raise DatasetError(f"Expected a datasets.DatasetDict with a 'train' split, got {type(dataset).__name__}.")
    if "train" not in dataset:
        raise DatasetError(f"The dataset needs a 'train' split to train on; it has {sorted(dataset)}.")
    counts = {}
    for split in TRAINING_SPLITS:
        if split in dataset:
            counts[split] = split_box_counts(dataset[split], masks=masks)
            summary = (summaries or {}).get(split)
            where = (sources or {}).get(split) or (summary.annotation_file if summary else None)
            _check_split_counts(split, where, counts[split], summary)
            if masks:
                _check_split_masks(split, where, dataset[split], counts[split])
    return counts


def _check_split_masks(split: str, where: str | None, dataset: datasets.Dataset, counts: BoxCounts) -> None:
    """Raise `DatasetError` when a split for a segmentation model has no `segmentation` field or usable objects
    without one."""
    name = f"The {split} split" + (f" ({where})" if where else "")
    if "segmentation" not in object_fields(dataset.features):
        raise DatasetError(
            f"{name} has no objects.segmentation, but the model segments (config.segmentation_head): there are no "
            f"masks to learn from: {MASKS_HOW_TO}."
        )
    missing = counts.usable - counts.masked
    if missing:
        raise DatasetError(
            f"{name}: {missing} of {counts.usable} usable object(s) have no segmentation (rows "
            f"{_id_list(counts.rows_without_mask)}), but a segmentation model needs a mask for every object: add "
            "their masks, or mark them iscrowd=1."
        )


def _check_split_counts(split: str, where: str | None, counts: BoxCounts, summary: SplitSummary | None) -> None:
    """Raise `DatasetError` when a split has no images or no usable box."""
    name = f"The {split} split" + (f" ({where})" if where else "")
    purpose = "to train on" if split == "train" else "to compute the validation mAP on"
    fix = "add images to it" if split == "train" else "add images to it, or remove it to train without evaluation"
    if counts.images == 0:
        raise DatasetError(f"{name} has no images: there is nothing {purpose}; {fix}.")
    if counts.usable:
        return
    dropped_degenerate = len(summary.dropped_degenerate) if summary else 0
    dropped_outside = len(summary.dropped_outside) if summary else 0
    annotations = counts.objects + dropped_degenerate + dropped_outside
    if annotations == 0:
        raise DatasetError(
            f"{name} has {counts.images} image(s) but no annotations at all: there are no boxes {purpose}."
        )
    raise DatasetError(
        f"{name} has {annotations} annotation(s) but not one usable box {purpose}: "
        f"{counts.degenerate + dropped_degenerate} with zero, negative or non-finite width/height, "
        f"{counts.outside + dropped_outside} entirely outside their image, {counts.crowd} crowd (iscrowd=1)."
    )


__all__ = ["TRAINING_SPLITS", "BoxCounts", "check_training_data", "split_box_counts"]
