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

    `category` is a `ClassLabel`, integers `0..K-1` or class names (strings, as many Hub datasets store them). The
    class list is `id2label` when given, else the `ClassLabel`'s names; integers are ids into it and class names are
    mapped to their ids through it (a name it does not hold is refused, naming it and the known names). Without
    either, integers are named `"0"`, `"1"`, ... (with a warning), and class names make the class list themselves:
    the distinct names of all splits, sorted (numerically when all are integers written as text, `"2"` before
    `"10"`), so that the ids do not depend on row order; pass every split in one `DatasetDict` so that they share
    it, or `id2label` for another order (e.g. a model's `config.id2label`). Every split's categories are then cast to
    one `ClassLabel` over that list. Splits that store integer ids beside splits that store names need `id2label` (or
    a `ClassLabel`) to say which name each id is.

    Every row is checked before anything is cast: each object needs one `bbox` of 4 finite numbers, one `category`
    that is a class id in `0..K-1` or a known class name (a `ClassLabel`'s -1, "no label", is refused) and, where
    present, one `iscrowd`, `area` and `segmentation`; an `area` (COCO's, in pixels: evaluation ranks objects small /
    medium / large by it) must be a finite number >= 0 or missing (None: the box's area is used).

    Boxes are not modified here, but boxes with zero or negative width/height, and (where `width`/`height` are
    present) boxes partly or entirely outside the image are counted and reported with one warning per split: the
    transforms clip boxes to the image and leave out those without area.

    Args:
        dataset_or_dict: a `Dataset` or a `DatasetDict` (every split is checked, with one class list).
        id2label: the class names, keys `0..K-1`: names integer categories, and maps class-name categories to ids.
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
    if names is None:
        names = _names_in_data(splits)
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


def _is_text(feature: Any) -> bool:
    """True when a per-object `category` feature stores strings (class names)."""
    return isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")


def _names_in_data(splits: dict[str, datasets.Dataset]) -> list[str] | None:
    """The class list of datasets whose categories are all class names: their distinct names, sorted (by value when
    all are integers written as text); `None` when a split stores integer ids (`prepare_dataset` then names them, and
    class names in other splits are refused, as nothing says which id each is)."""
    features = {name: object_fields(split.features)["category"] for name, split in splits.items()}
    text = [name for name, feature in features.items() if _is_text(feature)]
    # a split without a single object has a category of type null: it neither stores names nor ids
    if not text or any(not _is_text(f) and getattr(f, "dtype", None) != "null" for f in features.values()):
        return None
    found = {
        value
        for name in text
        for objects in _objects_column(splits[name])
        for value in object_columns(objects).get("category") or []
        if isinstance(value, str)
    }
    numeric = all(value.isascii() and value.isdigit() for value in found)
    names = sorted(found, key=(lambda value: (int(value), value)) if numeric else None)
    logger.info("objects.category holds class names; class ids follow their sorted order: %s", names)
    return names


def _prepare_split(dataset: datasets.Dataset, split: str, names: list[str], bbox_format: str) -> datasets.Dataset:
    """Map class names to ids, convert `xyxy` boxes, cast image/category, add `image_id`, and report boxes the
    transforms will fix."""
    text = _is_text(object_fields(dataset.features)["category"])
    if text or bbox_format == "xyxy":
        features = copy.deepcopy(dataset.features)
        if text:
            _set_category_feature(features, datasets.Value("int64"))
        ids = {name: index for index, name in enumerate(names)} if text else None
        dataset = dataset.map(
            _convert_objects_batch,
            fn_kwargs={"ids": ids, "xyxy": bbox_format == "xyxy"},
            input_columns=["objects"],
            batched=True,
            features=features,
        )
    features = copy.deepcopy(dataset.features)
    features["image"] = features["image"] if isinstance(features["image"], datasets.Image) else datasets.Image()
    _set_category_feature(features, datasets.ClassLabel(names=names))
    if features != dataset.features:
        dataset = dataset.cast(features)
    if "image_id" not in dataset.column_names:
        dataset = dataset.add_column("image_id", list(range(len(dataset))))
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


def _check_categories(categories: list[Any], names: list[str] | None, where: str) -> list[int]:
    """The class ids of a row's categories: integers `0..K-1` (`K` is `len(names)`, unknown while `names` is `None`)
    as they are, class names (strings) through `names`; raises `DatasetError` naming `where` for anything else."""
    upper = "K-1" if names is None else len(names) - 1
    strings = [value for value in categories if isinstance(value, str)]
    if strings and names is None:
        raise DatasetError(
            f"{where}: objects.category {strings[:_LISTED_NAMES]} are class names, but no class list is known to map "
            "them to ids (another split stores integer ids): pass id2label={0: name, 1: ...} to prepare_dataset "
            "(e.g. the model's config.id2label), or cast objects.category to a datasets.ClassLabel in every split."
        )
    ids = {name: index for index, name in enumerate(names or [])}
    if strings:
        unknown = list(dict.fromkeys(value for value in strings if value not in ids))
        if unknown:
            more = f", ... ({len(names)} in all)" if len(names) > _LISTED_NAMES else ""
            known = ", ".join(repr(name) for name in names[:_LISTED_NAMES])
            raise DatasetError(
                f"{where}: objects.category {unknown} are not known class names (known: {known}{more}); fix the "
                "names, or pass id2label= with every class."
            )
    not_ids = [value for value in categories if not isinstance(value, str) and not _is_int(value)]
    if not_ids:
        raise DatasetError(f"{where}: objects.category {not_ids} are not class ids: expected integers 0..{upper}.")
    outside = [
        value
        for value in categories
        if not isinstance(value, str) and not 0 <= value < (len(names) if names is not None else math.inf)
    ]
    if outside:
        hint = " (-1 is a datasets.ClassLabel's 'no label': give those objects a class or leave them out)"
        raise DatasetError(
            f"{where}: objects.category {outside} are outside 0..{upper}{hint if -1 in outside else ''}."
        )
    return [ids[value] if isinstance(value, str) else int(value) for value in categories]


def _check_areas(areas: list[Any], where: str) -> None:
    """Raise `DatasetError` naming `where` and the object when an `area` is not a finite number >= 0 (None, no area,
    is fine: evaluation then takes the box's)."""
    for index, area in enumerate(areas):
        if area is not None and not (_is_finite(area) and area >= 0):
            raise DatasetError(
                f"{where}, object {index}: objects.area must be a finite number >= 0 (the object's area in pixels, by "
                f"which COCO evaluation ranks it small, medium or large) or None; got {area!r}."
            )


#: The per-object fields read by the transforms and the evaluation: one value per object each.
_PER_OBJECT_FIELDS = ("category", "iscrowd", "area", "segmentation")
#: How many class names an error message lists.
_LISTED_NAMES = 10


def _check_objects(dataset: datasets.Dataset, split: str, names: list[str] | None, bbox_format: str) -> int:
    """The largest category of a split (-1 when it has no objects), checked before the cast and the `xyxy`
    conversion; raises `DatasetError` naming the split, row (and object) and field when a row's boxes are not 4 finite
    numbers each, its per-object fields do not hold one value per box, an `area` is not a finite number >= 0, or a
    category is not a class id (also a `ClassLabel`'s -1, "no label", which no cast would catch before the loss) nor
    a known class name."""
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
        _check_areas(columns.get("area") or [], where)
        largest = max([largest, *_check_categories(columns.get("category") or [], names, where)])
    return largest


def _objects_column(dataset: datasets.Dataset) -> list[Any]:
    """The `objects` column as plain Python values (whatever format the dataset is set to)."""
    return dataset.select_columns(["objects"]).with_format(None)["objects"]


def _convert_objects_batch(objects_batch: list[Any], ids: Mapping[str, int] | None, xyxy: bool) -> dict[str, list[Any]]:
    """`datasets.map` function mapping `objects.category` names to class ids through `ids` (when given) and converting
    `objects.bbox` from `[x0, y0, x1, y1]` to `[x, y, w, h]` (with `xyxy`)."""
    converted = []
    for objects in objects_batch:
        columns = object_columns(objects)
        if ids is not None:
            columns["category"] = [ids[name] for name in columns.get("category") or []]
        if xyxy:
            boxes = torch.tensor(columns.get("bbox") or [], dtype=torch.float64).reshape(-1, 4)  # as Python's floats
            columns["bbox"] = box_convert(boxes, "xyxy", "xywh").tolist()
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
