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
import io
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import datasets
import torch
from PIL import Image
from torchvision.ops import box_convert

from ..models.rfdetr.image_io import check_pixel_limit, displayed_size, size_mismatch
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

    Required: an `image` column (`datasets.Image`, or file paths as strings, encoded image bytes or `{"bytes",
    "path"}` structs, which are cast to it: an Image column saved without its feature reads back so) and an `objects`
    column with `bbox` and `category` per object, stored as a dict of lists or a list of dicts. Optional: `image_id`
    (added as the row index when absent), `width`/`height`, `objects.iscrowd`, `objects.segmentation` (instance
    segmentation: per object COCO polygons `[[x1, y1, ...], ...]`, an RLE dict `{"size": [h, w], "counts": ...}` or a
    compressed RLE `counts` string; checked here against `width`/`height` when present, decoded by the transforms).
    A whole dataset is needed: a streaming `IterableDataset(Dict)` (`load_dataset(..., streaming=True)`) is refused,
    saying how to load it.

    `image_id` must hold integers (an integral float such as `2.0`, or a string of digits such as `"000123"`, a file
    stem, is taken as that integer and the column cast to `int64`); anything else (`"img_a"`, `1.5`, None) is refused,
    naming the row: drop the column to have the row indices used, or cast it to integers.

    `width`/`height`, when the dataset has both columns, must be positive integers and the size of the image as it is
    displayed (EXIF orientation applied, as the transforms read it), as `load_coco_folder` checks: the boxes are
    clipped to, and reported against, that size. This reads each image's header (PIL's `Image.open`: the format
    header and the EXIF block, no pixel decoding), from its file or its bytes in the Arrow table, batch by batch:
    well under a millisecond per image from a local disk, so seconds for tens of thousands of images. Image URLs are
    not fetched for it. Without the columns nothing is read: the transforms use the decoded size.

    `category` is a `ClassLabel`, integers `0..K-1` or class names (strings, as many Hub datasets store them). The
    class list is `id2label` when given, else the `ClassLabel`'s names; integers are ids into it and class names are
    mapped to their ids through it (a name it does not hold is refused, naming it and the known names). A
    `ClassLabel` whose names differ from `id2label`'s (another order, a subset) is mapped by name as well: each
    object takes the id `id2label` gives its class name (a `ClassLabel` name that `id2label` lacks is refused). Without
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
            of a malformed value, or the split and row of an image whose size is not its `width`/`height`; a
            streaming dataset.
    """
    if bbox_format not in ("xywh", "xyxy"):
        raise ValueError(f"bbox_format must be 'xywh' or 'xyxy', got {bbox_format!r}")
    refuse_streaming(dataset_or_dict)
    if isinstance(dataset_or_dict, datasets.DatasetDict):
        splits = dict(dataset_or_dict)
    elif isinstance(dataset_or_dict, datasets.Dataset):
        splits = {"dataset": dataset_or_dict}
    else:
        raise DatasetError(f"Expected a datasets.Dataset or DatasetDict, got {type(dataset_or_dict).__name__}.")
    for name, split in splits.items():
        _check_columns(split, name)
        _check_image_ids(split, name)
    names = _class_names(splits, id2label)
    if names is None:
        names = _names_in_data(splits)
    largest = max(
        (_check_objects(split, name, _split_names(split, names), bbox_format) for name, split in splits.items()),
        default=-1,
    )
    for name, split in splits.items():
        _check_image_sizes(split, name)
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
    if not _is_image_feature(dataset.features["image"]):
        raise DatasetError(
            f"Dataset split '{split}': column 'image' must be a datasets.Image, file paths (strings), encoded image "
            f"bytes or structs of them ({{'bytes', 'path'}}); got {dataset.features['image']}."
        )


def _is_image_feature(feature: Any) -> bool:
    """Whether an `image` column of this feature can be cast to `datasets.Image` (which `_prepare_split` does): an
    Image, file paths, encoded bytes (`binary`), or a struct of `bytes` and / or `path` (an Image column stored
    without its feature, as Parquet files written outside `datasets` and `Dataset.from_pandas` leave it)."""
    if isinstance(feature, datasets.Image):
        return True
    if isinstance(feature, Mapping):
        return bool(feature) and all(
            key in _IMAGE_STRUCT and getattr(value, "dtype", None) in _IMAGE_STRUCT[key]
            for key, value in feature.items()
        )
    return getattr(feature, "dtype", None) in _IMAGE_STRUCT["bytes"] + _IMAGE_STRUCT["path"]


#: The fields of an image struct and their Arrow types (a bare column of either type is an image too).
_IMAGE_STRUCT = {"bytes": ("binary", "large_binary"), "path": ("string", "large_string")}


_INTEGER_DTYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
_INT64_MAX = 2**63 - 1
#: How many rows `_check_image_sizes` reads at once (their encoded images are in memory together).
_SIZE_CHECK_BATCH = 64


def refuse_streaming(dataset: Any) -> None:
    """Raise `DatasetError` when `dataset` (or one of its splits) is a streaming `datasets.IterableDataset`, saying
    how to get a `Dataset`: the checks read every row, and the Trainer reads rows by index and length."""
    splits = dataset.values() if isinstance(dataset, Mapping) else [dataset]
    streaming = [split for split in splits if isinstance(split, datasets.IterableDataset)]
    if not streaming:
        return
    kind = type(dataset).__name__
    got = kind if kind.startswith("Iterable") else f"a {kind} of {type(streaming[0]).__name__}"
    raise DatasetError(
        f"Streaming datasets are not supported by prepare_dataset, fine_tune and apply_transforms; got {got} "
        "(load_dataset(..., streaming=True) or Dataset.to_iterable_dataset()): every row is checked before training "
        "and the Trainer reads rows by index. Load it without streaming=True (datasets caches it on disk and reads "
        "it from there, not from memory), or materialise each split: datasets.Dataset.from_generator(lambda: "
        "iter(split), features=split.features)."
    )


def _check_image_ids(dataset: datasets.Dataset, split: str) -> None:
    """Raise `DatasetError` naming the split, row and value of an `image_id` that is not an integer: an integral
    float and a string of ASCII digits (`"000123"`) are taken as their integer (`_prepare_split` casts them); a
    missing one (None, also in an integer column) is refused."""
    if "image_id" not in dataset.column_names:
        return
    for row, value in enumerate(dataset.select_columns(["image_id"]).with_format(None)["image_id"]):
        if isinstance(value, str) and value.isascii() and value.isdigit():
            number = int(value)
        elif _is_int(value):
            number = int(value)
        else:
            number = None
        if number is None or not -_INT64_MAX - 1 <= number <= _INT64_MAX:
            raise DatasetError(
                f"Dataset split '{split}', row {row}: column 'image_id' must hold integers (or strings of digits "
                f"such as '000123'); got {value!r}. Drop the column (dataset.remove_columns('image_id')) to have the "
                "row indices used as image ids, or cast it to integers (e.g. dataset.map(...) numbering the images)."
            )


def _check_image_sizes(dataset: datasets.Dataset, split: str) -> None:
    """Raise `DatasetError` naming the split and row when `width`/`height` are not positive integers or not the size
    of the image as displayed (EXIF orientation applied, as the transforms read it), as `load_coco_folder` checks.

    Cost: one header read per row (`PIL.Image.open` parses the format header and the EXIF block; no pixels are
    decoded), from the file or from the encoded bytes in the Arrow table, `_SIZE_CHECK_BATCH` rows at a time. Image
    URLs are left to the transforms (not fetched here). Nothing is read without both columns."""
    if not {"width", "height"} <= set(dataset.column_names):
        return
    columns = dataset.select_columns(["image", "width", "height"])
    if isinstance(columns.features["image"], datasets.Image) and columns.features["image"].decode:
        columns = columns.cast_column("image", datasets.Image(decode=False))
    row = 0
    for batch in columns.with_format(None).iter(batch_size=_SIZE_CHECK_BATCH):
        for image, width, height in zip(batch["image"], batch["width"], batch["height"]):
            where = f"Dataset split '{split}', row {row}"
            if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
                raise DatasetError(
                    f"{where}: width and height must be positive integers (the image's size in pixels); got "
                    f"{width!r} x {height!r}."
                )
            _check_image_size(image, (int(width), int(height)), where)
            row += 1


def _check_image_size(image: Any, size: tuple[int, int], where: str) -> None:
    """Compare the displayed size of one `image` value (`{"path", "bytes"}`, a path or encoded bytes) with `size`
    (width, height)."""
    if isinstance(image, bytes):
        image = {"bytes": image}
    path, data = (image.get("path"), image.get("bytes")) if isinstance(image, Mapping) else (image, None)
    if not data and isinstance(path, str) and path.startswith(("http://", "https://")):
        return
    if not data and not path:
        raise DatasetError(f"{where}: the image has neither a path nor bytes.")
    named = f"{where} ({path})" if path else where
    if not data and not Path(path).is_file():
        raise DatasetError(f"{named}: image file not found.")
    try:
        with Image.open(io.BytesIO(data) if data else os.fspath(path)) as opened:
            stored, actual = opened.size, displayed_size(opened)
            check_pixel_limit(stored, name=str(path or "image"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"{named}: cannot read the image: {error}") from error
    mismatch = size_mismatch(
        stored, actual, size, "the image", "the width/height columns say", "width/height (and the boxes)"
    )
    if mismatch:
        raise DatasetError(f"{named}: {mismatch}")


def _class_names(splits: dict[str, datasets.Dataset], id2label: Mapping[int, str] | None) -> list[str] | None:
    """One class list for all splits: `id2label`, else the first `ClassLabel`, else `None` (`prepare_dataset` then
    names the classes `"0".."K-1"` after the largest category). With `id2label`, a `ClassLabel` may hold its classes
    in another order or a subset of them (its ids are mapped by name); one with a name `id2label` lacks is refused."""
    labels = {name: object_fields(split.features)["category"] for name, split in splits.items()}
    class_labels = {name: list(label.names) for name, label in labels.items() if isinstance(label, datasets.ClassLabel)}
    if id2label is not None:
        keys = sorted(int(key) for key in id2label)
        if keys != list(range(len(keys))):
            raise DatasetError(f"id2label keys must be 0..K-1, got {keys}.")
        names = [str(id2label[key]) for key in range(len(keys))]
        for split, found in class_labels.items():
            unknown = [name for name in found if name not in names]
            if unknown:
                raise DatasetError(
                    f"Dataset split '{split}': its objects.category ClassLabel has class name(s) {unknown} that "
                    f"id2label {_shown(names)} does not have (ClassLabel names: {_shown(found)}); its ids are mapped "
                    "to id2label's by name, so id2label needs every class of the ClassLabel (or leave id2label out "
                    "to use the ClassLabel's names)."
                )
        return names
    if not class_labels:
        return None
    names = next(iter(class_labels.values()))
    for found in class_labels.values():
        if found != names:
            raise DatasetError(f"Splits disagree on the class names: {found} vs {names}.")
    return names


def _shown(names: list[str]) -> str:
    """A class list for a message: its first `_LISTED_NAMES` names and how many there are in all."""
    more = f", ... ({len(names)} in all)" if len(names) > _LISTED_NAMES else ""
    return "[" + ", ".join(repr(name) for name in names[:_LISTED_NAMES]) + more + "]"


def _split_names(dataset: datasets.Dataset, names: list[str] | None) -> list[str] | None:
    """The class list a split's integer categories index: its `ClassLabel`'s names (mapped to `names` by name when
    they differ), else `names`."""
    category = object_fields(dataset.features)["category"]
    return list(category.names) if isinstance(category, datasets.ClassLabel) else names


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
    """Map class names (and the ids of a `ClassLabel` ordered otherwise than `names`) to ids, convert `xyxy` boxes,
    cast image/category/image_id, add `image_id`, and report boxes the transforms will fix."""
    category = object_fields(dataset.features)["category"]
    text = _is_text(category)
    ids: dict[Any, int] | None = {name: index for index, name in enumerate(names)}
    if isinstance(category, datasets.ClassLabel) and list(category.names) != names:
        ids = {index: ids[name] for index, name in enumerate(category.names)}
    elif not text:
        ids = None
    if ids is not None or bbox_format == "xyxy":
        features = copy.deepcopy(dataset.features)
        if ids is not None:
            _set_category_feature(features, datasets.Value("int64"))
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
    elif getattr(dataset.features["image_id"], "dtype", None) not in _INTEGER_DTYPES:  # "000123", 2.0: checked
        dataset = dataset.map(
            _integer_ids_batch,
            input_columns=["image_id"],
            batched=True,
            features=datasets.Features({**dataset.features, "image_id": datasets.Value("int64")}),
        )
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
            raise DatasetError(
                f"{where}: objects.category {unknown} are not known class names (known: {_shown(names)[1:-1]}); fix "
                "the names, or pass id2label= with every class."
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


def _convert_objects_batch(objects_batch: list[Any], ids: Mapping[Any, int] | None, xyxy: bool) -> dict[str, list[Any]]:
    """`datasets.map` function mapping `objects.category` names (or another `ClassLabel`'s ids) to class ids through
    `ids` (when given) and converting `objects.bbox` from `[x0, y0, x1, y1]` to `[x, y, w, h]` (with `xyxy`)."""
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


def _integer_ids_batch(image_ids: list[Any]) -> dict[str, list[int]]:
    """`datasets.map` function turning checked image ids (`2.0`, `"000123"`) into integers."""
    return {"image_id": [int(value) for value in image_ids]}


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


__all__ = ["prepare_dataset", "refuse_streaming"]
