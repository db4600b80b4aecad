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
"""Datasets already in the Hub's detection layout (`objects` with `bbox` and `category`) -> the layout
`load_coco_folder` produces, with the same checks and reports."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import datasets
import torch
from torchvision.ops import box_convert

from .data import (
    DatasetError,
    _is_finite,
    _is_int,
    _list_feature,
    logger,
    object_columns,
    object_fields,
)
from .masks import MaskError, is_missing, segmentation_to_rle


def prepare_dataset(
    dataset_or_dict: datasets.Dataset | datasets.DatasetDict,
    *,
    id2label: Mapping[int, str] | None = None,
    bbox_format: Literal["xywh", "xyxy"] = "xywh",
) -> datasets.Dataset | datasets.DatasetDict:
    """Check a dataset in the Hub detection layout (e.g. `cppe-5`) and bring it to this module's layout.

    Required: an `image` column (`datasets.Image`, or file paths as strings, which are cast to it) and an `objects`
    column with `bbox` and `category` per object, stored as a dict of lists or a list of dicts. Optional: `image_id`
    (added as the row index when absent), `width`/`height`, `objects.iscrowd`, `objects.segmentation` (instance
    segmentation: per object COCO polygons `[[x1, y1, ...], ...]`, an RLE dict `{"size": [h, w], "counts": ...}` or a
    compressed RLE `counts` string; checked here against `width`/`height` when present, decoded by the transforms).
    `category` is either a `ClassLabel`
    or integers `0..K-1`; integers are cast to a `ClassLabel` named by `id2label` (or `"0"`, `"1"`, ... with a
    warning when not given). Every row is checked before anything is cast: each object needs one `bbox` of 4 finite
    numbers, one `category` in `0..K-1` (a `ClassLabel`'s -1, "no label", is refused) and, where present, one
    `iscrowd`, `area` and `segmentation`.

    Boxes are not modified here, but boxes with zero or negative width/height, and (where `width`/`height` are
    present) boxes partly or entirely outside the image are counted and reported with one warning per split: the
    transforms clip boxes to the image and leave out those without area.

    Args:
        dataset_or_dict: a `Dataset` or a `DatasetDict` (every split is checked, with one class list).
        id2label: class names for integer categories, keys `0..K-1`.
        bbox_format: `"xywh"` (COCO, default) or `"xyxy"` (as `detection-datasets/*`); `xyxy` boxes are converted.

    Returns:
        The dataset (dict) with `objects.category` a `ClassLabel`, `image` a `datasets.Image`, `image_id` present
        and `objects.bbox` in COCO `xywh`.

    Raises:
        DatasetError: naming the split and the missing or malformed column, or the split, row (and object) and field
            of a malformed value.
    """
    if bbox_format not in ("xywh", "xyxy"):
        raise ValueError(f"bbox_format must be 'xywh' or 'xyxy', got {bbox_format!r}")
    if isinstance(dataset_or_dict, datasets.DatasetDict):
        splits = dict(dataset_or_dict)
    elif isinstance(dataset_or_dict, datasets.Dataset):
        splits = {"dataset": dataset_or_dict}
    else:
        raise DatasetError(f"Expected a datasets.Dataset or DatasetDict, got {type(dataset_or_dict).__name__}.")
    for name, split in splits.items():
        _check_columns(split, name)
    names = _class_names(splits, id2label)
    largest = max((_check_objects(split, name, names, bbox_format) for name, split in splits.items()), default=-1)
    if names is None:
        names = [str(label) for label in range(largest + 1)]
        logger.warning("objects.category has no class names; using %s. Pass id2label= to name them.", names)
    prepared = {name: _prepare_split(split, name, names, bbox_format) for name, split in splits.items()}
    if isinstance(dataset_or_dict, datasets.DatasetDict):
        return datasets.DatasetDict(prepared)
    return prepared["dataset"]


_CROWD_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}


def _check_columns(dataset: datasets.Dataset, split: str) -> None:
    """Raise `DatasetError` naming the first missing column or object field."""
    columns = list(dataset.column_names)
    layout = "expected the Hub detection layout: image, objects = {bbox, category} (optional: image_id, width, height)"
    for column in ("image", "objects"):
        if column not in columns:
            raise DatasetError(f"Dataset split '{split}' has no column '{column}' (columns: {columns}); {layout}.")
    fields = object_fields(dataset.features)
    for name in ("bbox", "category"):
        if name not in fields:
            raise DatasetError(
                f"Dataset split '{split}': column 'objects' has no field '{name}' (fields: {sorted(fields)}); {layout}."
            )
    crowd = fields.get("iscrowd")
    if crowd is not None and getattr(crowd, "dtype", None) not in _CROWD_DTYPES:
        raise DatasetError(
            f"Dataset split '{split}': objects.iscrowd must hold the integers 0 and 1; its feature is {crowd} (a "
            "string '0' would read as a crowd box and be left out of training). Cast it to an integer type."
        )
    image = dataset.features["image"]
    if not isinstance(image, datasets.Image) and getattr(image, "dtype", None) != "string":
        raise DatasetError(
            f"Dataset split '{split}': column 'image' must be a datasets.Image or file paths; got {image}."
        )


def _class_names(splits: dict[str, datasets.Dataset], id2label: Mapping[int, str] | None) -> list[str] | None:
    """One class list for all splits: `id2label`, else the first `ClassLabel`, else `None` (`prepare_dataset` then
    names the classes `"0".."K-1"` after the largest category)."""
    labels = [object_fields(split.features)["category"] for split in splits.values()]
    class_labels = [label.names for label in labels if isinstance(label, datasets.ClassLabel)]
    if id2label is not None:
        keys = sorted(int(key) for key in id2label)
        if keys != list(range(len(keys))):
            raise DatasetError(f"id2label keys must be 0..K-1, got {keys}.")
        names = [str(id2label[key]) for key in range(len(keys))]
    elif class_labels:
        names = list(class_labels[0])
    else:
        return None
    for found in class_labels:
        if list(found) != names:
            raise DatasetError(f"Splits disagree on the class names: {list(found)} vs {names}.")
    return names


def _prepare_split(dataset: datasets.Dataset, split: str, names: list[str], bbox_format: str) -> datasets.Dataset:
    """Cast image/category, add `image_id`, convert `xyxy` boxes, and report boxes the transforms will fix."""
    features = copy.deepcopy(dataset.features)
    features["image"] = features["image"] if isinstance(features["image"], datasets.Image) else datasets.Image()
    _set_category_feature(features, datasets.ClassLabel(names=names))
    if features != dataset.features:
        dataset = dataset.cast(features)
    if "image_id" not in dataset.column_names:
        dataset = dataset.add_column("image_id", list(range(len(dataset))))
    if bbox_format == "xyxy":
        dataset = dataset.map(_xyxy_to_xywh_batch, input_columns=["objects"], batched=True, features=dataset.features)
    _report_hub_boxes(dataset, split)
    return dataset


def _set_category_feature(features: datasets.Features, class_label: datasets.ClassLabel) -> None:
    """Replace the feature of `objects.category` in place, keeping the objects layout."""
    objects = features["objects"]
    if isinstance(objects, dict):
        category = objects["category"]
        objects["category"] = _list_feature(class_label) if hasattr(category, "feature") else class_label
    else:
        objects.feature["category"] = class_label


def _check_categories(categories: list[Any], names: list[str] | None, where: str) -> None:
    """Raise `DatasetError` naming `where` when one of a row's categories is not an integer `0..K-1` (`K` is
    `len(names)`, unknown while `names` is `None`)."""
    upper = "K-1" if names is None else len(names) - 1
    not_ids = [value for value in categories if not _is_int(value)]
    if not_ids:
        strings = any(isinstance(value, str) for value in not_ids)
        hint = " (class names: map them to their ids, or cast the column to a datasets.ClassLabel)" if strings else ""
        raise DatasetError(
            f"{where}: objects.category {not_ids} are not class ids: expected integers 0..{upper}{hint}."
        )
    outside = [value for value in categories if not 0 <= value < (len(names) if names is not None else math.inf)]
    if outside:
        hint = " (-1 is a datasets.ClassLabel's 'no label': give those objects a class or leave them out)"
        raise DatasetError(
            f"{where}: objects.category {outside} are outside 0..{upper}{hint if -1 in outside else ''}."
        )


#: The per-object fields read by the transforms and the evaluation: one value per object each.
_PER_OBJECT_FIELDS = ("category", "iscrowd", "area", "segmentation")


def _check_objects(dataset: datasets.Dataset, split: str, names: list[str] | None, bbox_format: str) -> int:
    """The largest category of a split (-1 when it has no objects), checked before the cast and the `xyxy`
    conversion; raises `DatasetError` naming the split, row (and object) and field when a row's boxes are not 4 finite
    numbers each, its per-object fields do not hold one value per box, or a category is not a class id (also a
    `ClassLabel`'s -1, "no label", which no cast would catch before the loss)."""
    order = "x, y, width, height" if bbox_format == "xywh" else "x0, y0, x1, y1"
    largest = -1
    for row, objects in enumerate(_objects_column(dataset)):
        where = f"Dataset split '{split}', row {row}"
        columns = object_columns(objects)
        boxes = columns.get("bbox") or []
        for field in _PER_OBJECT_FIELDS:
            values = columns.get(field)
            if values is not None and len(values) != len(boxes):
                raise DatasetError(
                    f"{where}: objects.{field} has {len(values)} value(s) but objects.bbox has {len(boxes)}; every "
                    "object needs one of each."
                )
        for index, bbox in enumerate(boxes):
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_finite(value) for value in bbox):
                raise DatasetError(
                    f"{where}, object {index}: objects.bbox must be 4 finite numbers [{order}]; got {bbox!r}."
                )
        categories = columns.get("category") or []
        _check_categories(categories, names, where)
        largest = max([largest, *(int(category) for category in categories)])
    return largest


def _objects_column(dataset: datasets.Dataset) -> list[Any]:
    """The `objects` column as plain Python values (whatever format the dataset is set to)."""
    return dataset.select_columns(["objects"]).with_format(None)["objects"]


def _xyxy_to_xywh_batch(objects_batch: list[Any]) -> dict[str, list[Any]]:
    """`datasets.map` function converting `objects.bbox` from `[x0, y0, x1, y1]` to `[x, y, w, h]`."""
    converted = []
    for objects in objects_batch:
        columns = object_columns(objects)
        xyxy = torch.tensor(columns["bbox"], dtype=torch.float64).reshape(-1, 4)  # float64: as Python's arithmetic
        columns["bbox"] = box_convert(xyxy, "xyxy", "xywh").tolist()
        converted.append(columns if isinstance(objects, Mapping) else _rows(columns))
    return {"objects": converted}


def _rows(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(columns)
    return [dict(zip(keys, values)) for values in zip(*(columns[key] for key in keys))]


def _report_hub_boxes(dataset: datasets.Dataset, split: str) -> None:
    """Warn once per split with the number of boxes the transforms will clip or leave out."""
    sized = {"width", "height"} <= set(dataset.column_names)
    columns = ["objects", "width", "height"] if sized else ["objects"]
    counts = {"degenerate": 0, "outside": 0, "clipped": 0}
    for index, row in enumerate(dataset.select_columns(columns)):
        size = (row["width"], row["height"]) if sized else None
        objects = object_columns(row["objects"])
        bad_crowd = [value for value in objects.get("iscrowd") or [] if value not in (0, 1)]
        if bad_crowd:
            raise DatasetError(f"Dataset split '{split}', row {index}: objects.iscrowd {bad_crowd} are not 0 or 1.")
        for bbox in objects.get("bbox", []):
            _count_hub_box(bbox, size, counts)
        if "segmentation" in objects and size is not None:
            _check_hub_segmentations(objects, size, f"Dataset split '{split}', row {index}")
    if any(counts.values()):
        logger.warning(
            "Dataset split '%s': %d box(es) with zero or negative width/height and %d box(es) entirely outside their "
            "image will be left out of the targets, %d box(es) partly outside their image will be clipped to it.",
            split,
            counts["degenerate"],
            counts["outside"],
            counts["clipped"],
        )


def _check_hub_segmentations(objects: dict[str, list[Any]], size: tuple[int, int], where: str) -> None:
    """Raise `DatasetError` naming the row and object of a malformed segmentation (missing ones are reported by
    `check_training_data(..., masks=True)`: a detection model does not need them)."""
    width, height = size
    for index, segmentation in enumerate(objects["segmentation"]):
        if is_missing(segmentation):
            continue
        try:
            segmentation_to_rle(segmentation, int(height), int(width))
        except MaskError as error:
            raise DatasetError(f"{where}, object {index}: invalid objects.segmentation: {error}.") from error


def _count_hub_box(bbox: Iterable[float], size: tuple[int, int] | None, counts: dict[str, int]) -> None:
    x, y, w, h = (float(value) for value in bbox)
    if not w > 0 or not h > 0:
        counts["degenerate"] += 1
    elif size is not None:
        width, height = size
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            counts["outside"] += 1
        elif x < 0 or y < 0 or x + w > width or y + h > height:
            counts["clipped"] += 1


__all__ = ["prepare_dataset"]
