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

`check_training_data` counts each split's boxes (`BoxCounts`: usable, crowd, degenerate, outside the image, usable
ones within the image's first pixel; with masks, the usable objects that have a segmentation) from the Hub detection
layout of `hf_rfdetr.training.data`, reading no image, and raises a `DatasetError` that names the split, where it came
from and what is missing (or, for boxes normalised to [0, 1] instead of pixels, what is wrong).
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

#: A split whose usable boxes all end within the first pixel of images at least this many pixels wide and high looks
#: normalised to [0, 1] (see `check_training_data`); smaller images may legitimately hold boxes of a pixel or less.
NORMALISED_MIN_IMAGE_SIDE = 16

#: Slack on `x + w <= 1` / `y + h <= 1` for float32 storage and `xyxy` conversion (1.0 may come back as 1.0000001).
_UNIT_TOLERANCE = 1e-3


@dataclass
class BoxCounts:
    """What the boxes of one split amount to for training: `usable` boxes become targets, the others do not.

    `in_first_pixel` usable boxes end within `[0, 1] x [0, 1]` (`x + w <= 1` and `y + h <= 1`) of an image of known
    size at least `NORMALISED_MIN_IMAGE_SIDE` pixels on each side: when they are all of them, the boxes look
    normalised (see `check_training_data`).

    With masks counted (`split_box_counts(..., masks=True)`), `masked` usable objects have a segmentation and
    `rows_without_mask` lists (up to 5) rows with a usable object that has none."""

    images: int = 0
    objects: int = 0
    usable: int = 0
    crowd: int = 0
    degenerate: int = 0
    outside: int = 0
    masked: int = 0
    in_first_pixel: int = 0
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
            if kind == "usable" and _in_first_pixel(bbox, size):
                self.in_first_pixel += 1
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


def _in_first_pixel(bbox: Sequence[float], size: tuple[int, int] | None) -> bool:
    """True when a box ends within `[0, 1] x [0, 1]` of an image of known size at least `NORMALISED_MIN_IMAGE_SIDE`
    pixels on each side (where a box normalised to the image, as YOLO labels are, lands)."""
    if size is None or min(size) < NORMALISED_MIN_IMAGE_SIDE:
        return False
    x, y, w, h = (float(value) for value in bbox)
    return x + w <= 1 + _UNIT_TOLERANCE and y + h <= 1 + _UNIT_TOLERANCE


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
    on empty targets.

    A split whose usable boxes (at least one) all end within the first pixel of their image (`x + w <= 1` and
    `y + h <= 1`, to float32 rounding), in images at least `NORMALISED_MIN_IMAGE_SIDE` (16) pixels on each side as
    the rows' `width`/`height` say, is refused too: its boxes are normalised to [0, 1] (YOLO-style) instead of pixels
    and would train as sub-pixel boxes to an mAP of 0. A real dataset does not trip this: one box of normal size, or
    one box on a smaller image, lets the split pass (tiny boxes beside normal ones are fine), and a split without
    `width`/`height` columns (whose image sizes are not known without decoding the images) is not checked for it.

    For a segmentation model (`masks=True`, i.e. `config.segmentation_head`) each checked split
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
        DatasetError (a `ValueError`): naming the split, where it came from and what is missing (or that its boxes
            look normalised to [0, 1], and how to convert them to pixels).
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
            _check_split_not_normalised(split, where, counts[split])
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


def _check_split_not_normalised(split: str, where: str | None, counts: BoxCounts) -> None:
    """Raise `DatasetError` when every usable box of a split ends within the first pixel of its (large enough) image:
    the boxes are normalised to [0, 1] instead of pixels."""
    if not counts.usable or counts.in_first_pixel < counts.usable:
        return
    name = f"The {split} split" + (f" ({where})" if where else "")
    raise DatasetError(
        f"{name}: every usable box ({counts.usable}) ends within the first pixel of its image (x + width <= 1 and "
        f"y + height <= 1) although the images are at least {NORMALISED_MIN_IMAGE_SIDE} pixels wide and high: the "
        "boxes look normalised to [0, 1] (as YOLO labels are) and would train as sub-pixel boxes. 'bbox' must be in "
        'absolute pixels: COCO [x, y, width, height], or [x0, y0, x1, y1] with bbox_format="xyxy" '
        "(prepare_dataset); multiply the normalised values by the image's width (x, width, x0, x1) and height "
        "(y, height, y0, y1)."
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


__all__ = ["NORMALISED_MIN_IMAGE_SIDE", "TRAINING_SPLITS", "BoxCounts", "check_training_data", "split_box_counts"]
