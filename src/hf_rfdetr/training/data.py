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
"""Detection datasets for fine-tuning: Roboflow/COCO folders and Hub detection datasets in one `datasets` layout.

Every loader here returns the standard Hub object-detection layout (as `cppe-5`), one row per image:

- `image_id` (`int64`), `image` (`datasets.Image`, decoded lazily from its file), `width`, `height` (`int32`),
- `objects`: per image, lists `id` (`int64`), `area` (`float32`: the annotation's `area`, which evaluation scores
  small / medium / large objects by, as pycocotools does; where it has none or 0, its mask's area with `masks=True`,
  else its box's; a NaN, infinite, negative or non-numeric `area` is refused), `bbox` (`float32` COCO `[x, y, w, h]` in absolute pixels), `category` (`datasets.ClassLabel`, contiguous `0..K-1`) and `iscrowd` (`int8`); for segmentation
  (`load_coco_folder(..., masks=True)`) also `segmentation` (`string`): each object's mask as a COCO compressed RLE
  `counts` string at the image's `height x width` (`""` for a crowd object without one), decoded by the transforms.

`hf_rfdetr.training.transforms` turns such a dataset into model inputs on the fly.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
from PIL import Image

from ..models.rfdetr.image_io import ImageReadError, check_pixel_limit, displayed_size, load_image, size_mismatch
from .masks import MaskError, is_missing, rle_runs, segmentation_to_rle

logger = logging.getLogger(__name__)

#: Name of the COCO annotation file inside every split folder of a Roboflow export.
ANNOTATION_FILE = "_annotations.coco.json"
#: Canonical split name -> folder names tried, in order.
SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {"train": ("train",), "validation": ("valid", "val"), "test": ("test",)}
#: Split names accepted in any API or folder (lower case) -> canonical split name (`load_coco_folder`'s `splits=`,
#: the splits of a `datasets.DatasetDict` given to `fine_tune`, `hf-rfdetr eval --split`).
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "valid": "validation",
    "val": "validation",
    "validation": "validation",
    "test": "test",
}
_EXIF_ORIENTATION = 0x0112
_MAX_LISTED_IDS = 5
#: The smallest positive float32: boxes are stored as float32, so a width or height below it would become 0.
_FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)

ImageCheck = Literal["none", "header", "full"]


class DatasetError(ValueError):
    """A dataset on disk or in memory that cannot be used for training; the message names the file and the entry."""


@dataclass
class SplitSummary:
    """What `load_coco_folder` read from one split and what it had to fix.

    Box counts are in annotations; ids list (up to 5) example annotation ids per kind of fix.
    """

    split: str
    annotation_file: str
    images: int = 0
    annotations: int = 0
    boxes: int = 0
    crowd: int = 0
    images_without_boxes: int = 0
    clipped: list[int] = field(default_factory=list)
    dropped_degenerate: list[int] = field(default_factory=list)
    dropped_outside: list[int] = field(default_factory=list)
    exif_rotated: list[str] = field(default_factory=list)
    masks: int = 0
    empty_masks: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Counts only: `{"images": ..., "clipped": 3, ...}`."""
        values = {key: value for key, value in vars(self).items() if key not in ("split", "annotation_file")}
        return {key: len(value) if isinstance(value, list) else value for key, value in values.items()}

    def fix_message(self) -> str | None:
        """One warning line with the clip/drop counts, or `None` when nothing was fixed."""
        parts = []
        for ids, what in (
            (self.clipped, "box(es) extending outside their image were clipped to the image"),
            (self.dropped_degenerate, "box(es) with zero or negative width/height were dropped"),
            (self.dropped_outside, "box(es) lying entirely outside their image were dropped"),
            (self.empty_masks, "segmentation(s) cover no pixel of their image (kept, with an all-zero mask)"),
        ):
            if ids:
                parts.append(f"{len(ids)} {what} (annotation ids {_id_list(ids)})")
        if not parts:
            return None
        return f"{self.annotation_file} [{self.split}]: " + "; ".join(parts) + f" (of {self.annotations} annotations)"


def _id_list(ids: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in ids[:_MAX_LISTED_IDS])
    return shown + (", ..." if len(ids) > _MAX_LISTED_IDS else "")


# ----------------------------------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------------------------------


def _list_feature(feature: Any, length: int = -1) -> Any:
    """`datasets.List` (datasets >= 4) or `datasets.Sequence` (3.x) of `feature`."""
    list_class = getattr(datasets, "List", None)
    if list_class is None:  # pragma: no cover - datasets 3.x
        return datasets.Sequence(feature, length=length)
    return list_class(feature, length=length)


def detection_features(names: Sequence[str], masks: bool = False) -> datasets.Features:
    """The features of the Hub detection layout with `category` a `ClassLabel` over `names`; `masks=True` adds
    `objects.segmentation` (compressed RLE `counts` strings)."""
    objects = {
        "id": _list_feature(datasets.Value("int64")),
        "area": _list_feature(datasets.Value("float32")),
        "bbox": _list_feature(_list_feature(datasets.Value("float32"), length=4)),
        "category": _list_feature(datasets.ClassLabel(names=list(names))),
        "iscrowd": _list_feature(datasets.Value("int8")),
    }
    if masks:
        objects["segmentation"] = _list_feature(datasets.Value("string"))
    return datasets.Features(
        {
            "image_id": datasets.Value("int64"),
            "image": datasets.Image(),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "objects": objects,
        }
    )


def object_fields(features: datasets.Features) -> dict[str, Any]:
    """The per-object sub-features of the `objects` column (dict-of-lists or list-of-structs layout)."""
    objects = features["objects"]
    if isinstance(objects, dict):
        return {key: getattr(value, "feature", value) for key, value in objects.items()}
    inner = getattr(objects, "feature", None)
    if isinstance(inner, dict):
        return dict(inner)
    raise DatasetError(f"Column 'objects' must be a list of objects or a dict of per-object lists; got {objects}.")


def object_columns(objects: Any) -> dict[str, list[Any]]:
    """One row's `objects` as a dict of per-object lists, whether it is stored as dict-of-lists or list-of-dicts; a
    field stored as null is an empty list (the per-row checks then compare its length with the others')."""
    if isinstance(objects, Mapping):
        return {key: [] if value is None else list(value) for key, value in objects.items()}
    rows = list(objects or [])
    keys = {key for row in rows for key in row}
    return {key: [row.get(key) for row in rows] for key in keys}


def id2label_from_dataset(dataset: datasets.Dataset | datasets.DatasetDict) -> dict[int, str]:
    """`{label: name}` from the `ClassLabel` of `objects.category` (the first split of a `DatasetDict`).

    Raises:
        DatasetError: when the category is not a `ClassLabel` (pass the dataset through `prepare_dataset` first).
    """
    split = next(iter(dataset.values())) if isinstance(dataset, datasets.DatasetDict) else dataset
    category = object_fields(split.features).get("category")
    if not isinstance(category, datasets.ClassLabel):
        raise DatasetError(
            f"objects.category is {category!r}, not a datasets.ClassLabel; call prepare_dataset(dataset, "
            "id2label=...) to attach class names."
        )
    return dict(enumerate(category.names))


# ----------------------------------------------------------------------------------------------------------------------
# Roboflow / COCO folders
# ----------------------------------------------------------------------------------------------------------------------


def load_coco_folder(
    path: str | os.PathLike[str],
    splits: Sequence[str] | None = None,
    *,
    check_images: ImageCheck = "header",
    return_summary: bool = False,
    masks: bool = False,
) -> datasets.DatasetDict | tuple[datasets.DatasetDict, dict[str, SplitSummary]]:
    """Load a Roboflow-style COCO export (`path/{train,valid,test}/_annotations.coco.json` + images) as a DatasetDict.

    Splits come out as `train`, `validation` (folder `valid`, or `val`) and `test`, in the layout of this module's
    docstring. Image files are checked at load time according to `check_images`: `"header"` (default) opens each file
    with PIL, compares its size with the JSON's `width`/`height` and runs `Image.verify()` (cheap; catches missing,
    non-image and corrupt-header files, but not a truncated JPEG body); `"full"` decodes every image (slower, catches
    truncation at load time); `"none"` only checks that the files exist. Whatever is not caught here fails when the
    transforms of `hf_rfdetr.training.transforms` decode the image, with the file named in the error.

    Categories: labels `0..K-1` are assigned to the categories listed in the train split's `categories`, sorted by id,
    and `objects.category` is a `ClassLabel` of their names. Roboflow exports list a "superclass" first (e.g. id 0
    `"objects"`, supercategory `"none"`, the `supercategory` of every real class) that no annotation uses; like the
    original (`datasets/coco.py`, `filter_parent_categories`) we leave such an unannotated grouping category out, so a
    dataset of K classes gives exactly K labels. Other splits must list the same id -> name pairs as train (a subset
    is fine); an annotation whose `category_id` is not in its file's `categories` is an error.

    Bad data raises `DatasetError` naming the file and entry: missing split folder or annotation file, malformed JSON,
    missing keys, an image file that is missing, unreadable or over `hf_rfdetr.models.rfdetr.image_io.MAX_IMAGE_PIXELS` (or whose
    displayed size disagrees with the JSON), an annotation
    pointing to an unknown image or category, a malformed `bbox`. Fixable boxes are fixed, counted and reported with
    one `logging` warning per split: boxes partly outside the image are clipped to it, boxes with zero/negative
    width or height and boxes entirely outside the image are dropped. Crowd annotations (`iscrowd=1`) are kept in
    `objects` (the transforms leave them out of the training targets, as the original does). Images are read as
    viewers show them (`hf_rfdetr.models.rfdetr.image_io`: EXIF orientation applied, 16-bit data scaled to 8 bits), and the JSON's
    `width`/`height` and boxes are taken in that displayed frame, as annotation tools draw them (the original's
    decoder ignores the orientation); images carrying one are reported.

    Segmentation (`masks=True`, for a model with `config.segmentation_head`): every annotation's `segmentation` (COCO
    polygons, or RLE with compressed or uncompressed `counts`) is checked and stored as compressed RLE in
    `objects.segmentation` (see `hf_rfdetr.training.masks`; decoding to pixels waits for the transforms). Errors name
    the annotation as for boxes: a non-crowd annotation without a segmentation (the original would train it with an
    all-zero mask, teaching the model that the object has no pixels), a polygon of fewer than 3 points, an RLE whose
    `size` is not the image's or whose runs do not cover it. A segmentation that covers no pixel of its image is
    kept (all-zero mask, as the original) and reported. Crowd annotations keep their region when they have one
    (training leaves them out, as the original does). Without `masks` the `segmentation` fields are not read.

    Args:
        path: the dataset root.
        splits: which splits to load (`"train"`, `"valid"`/`"val"`/`"validation"`, `"test"`); `None` loads those
            present, and requires `train`.
        check_images: `"header"`, `"full"` or `"none"` (see above).
        return_summary: also return `{split: SplitSummary}` with the counts (they are logged at INFO level anyway).
        masks: also read the `segmentation` of every annotation (instance segmentation).

    Returns:
        The `DatasetDict` (and the summaries when `return_summary=True`).
    """
    if check_images not in ("none", "header", "full"):
        raise ValueError(f"check_images must be 'none', 'header' or 'full', got {check_images!r}")
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"Dataset folder {root} does not exist (expected {root}/train/{ANNOTATION_FILE}).")
    folders = _split_folders(root, splits)
    files = {split: folder / ANNOTATION_FILE for split, folder in folders.items()}
    documents = {split: _read_annotation_file(file) for split, file in files.items()}
    categories = {split: _categories(documents[split], files[split]) for split in documents}
    reference, reference_document = _reference_split(root, documents, categories, files)
    dropped = _unannotated_parents([*documents.values(), reference_document])
    cat2label, names = _label_mapping(categories, files, reference, dropped)
    result, summaries = {}, {}
    for split, document in documents.items():
        summary = SplitSummary(split=split, annotation_file=str(files[split]))
        columns = _split_columns(document, files[split], categories[split], cat2label, check_images, summary, masks)
        result[split] = datasets.Dataset.from_dict(columns, features=detection_features(names, masks))
        _report(summary)
        summaries[split] = summary
    dataset_dict = datasets.DatasetDict(result)
    return (dataset_dict, summaries) if return_summary else dataset_dict


def _split_folders(root: Path, splits: Sequence[str] | None) -> dict[str, Path]:
    """Canonical split name -> existing folder; raises naming the expected path of a missing one."""
    if splits is None:
        wanted = ["train"] + [name for name in ("validation", "test") if _find_folder(root, name) is not None]
    else:
        unknown = [name for name in splits if name not in SPLIT_ALIASES]
        if unknown:
            raise ValueError(f"Unknown split name(s) {unknown}; expected some of {sorted(SPLIT_ALIASES)}")
        wanted = list(dict.fromkeys(SPLIT_ALIASES[name] for name in splits))
    folders = {}
    for name in wanted:
        folder = _find_folder(root, name)
        if folder is None:
            expected = " or ".join(str(root / candidate / ANNOTATION_FILE) for candidate in SPLIT_FOLDERS[name])
            raise DatasetError(f"Missing split '{name}': expected {expected}.")
        folders[name] = folder
    return folders


def _find_folder(root: Path, split: str) -> Path | None:
    """The first existing folder for a canonical split name, or `None`."""
    present = [root / candidate for candidate in SPLIT_FOLDERS[split] if (root / candidate).is_dir()]
    if len(present) > 1:
        logger.warning("Both %s exist; using %s for the %s split.", " and ".join(map(str, present)), present[0], split)
    return present[0] if present else None


def _read_annotation_file(file: Path) -> dict[str, Any]:
    """Parse a COCO JSON file and check its top-level structure."""
    if not file.is_file():
        raise DatasetError(f"Missing annotation file {file}.")
    try:
        with open(file, encoding="utf-8") as handle:
            document = json.load(handle)
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"{file} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}."
        ) from error
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"Cannot read annotation file {file}: {error}") from error
    if not isinstance(document, dict):
        raise DatasetError(f"{file}: expected a JSON object with 'images', 'annotations', 'categories'.")
    for key in ("images", "annotations", "categories"):
        if not isinstance(document.get(key), list):
            found = "missing" if key not in document else f"a {type(document[key]).__name__}"
            raise DatasetError(f"{file}: '{key}' must be a list, but it is {found}.")
    return document


def _categories(document: dict[str, Any], file: Path) -> dict[int, str]:
    """`{category id: name}` of one annotation file, sorted by id."""
    categories: dict[int, str] = {}
    for index, category in enumerate(document["categories"]):
        if not isinstance(category, dict) or not _is_int(category.get("id")) or "name" not in category:
            raise DatasetError(f"{file}: categories[{index}] needs an integer 'id' and a 'name'; got {category!r}.")
        category_id = int(category["id"])
        if category_id in categories:
            raise DatasetError(f"{file}: category id {category_id} is listed twice in 'categories'.")
        categories[category_id] = str(category["name"])
    return dict(sorted(categories.items()))


def _reference_split(
    root: Path, documents: dict[str, dict[str, Any]], categories: dict[str, dict[int, str]], files: dict[str, Path]
) -> tuple[str, dict[str, Any]]:
    """The split whose categories define the labels and its document: train, read from disk when it exists but was
    not requested."""
    if "train" in documents:
        return "train", documents["train"]
    if (root / "train" / ANNOTATION_FILE).is_file():
        files["train"] = root / "train" / ANNOTATION_FILE
        document = _read_annotation_file(files["train"])
        categories["train"] = _categories(document, files["train"])
        return "train", document
    reference = next(iter(categories))
    logger.warning("No train split in %s: class labels follow the categories of %s.", root, files[reference])
    return reference, documents[reference]


def _unannotated_parents(documents: Iterable[dict[str, Any]]) -> set[int]:
    """Ids of grouping categories to leave out: named as another category's `supercategory` and without any
    annotation in the loaded splits (Roboflow's synthetic root class), as the original's `filter_parent_categories`.
    A flat category list (no category groups others) gives none."""
    documents = list(documents)
    annotated = {a.get("category_id") for d in documents for a in d["annotations"] if isinstance(a, dict)}
    dropped = set()
    for document in documents:
        categories = [c for c in document["categories"] if isinstance(c, dict)]
        parents = {c.get("supercategory") for c in categories if c.get("supercategory") != c.get("name")}
        dropped |= {int(c["id"]) for c in categories if c.get("name") in parents and c["id"] not in annotated}
    return dropped


def _label_mapping(
    categories: dict[str, dict[int, str]], files: dict[str, Path], reference: str, dropped: set[int]
) -> tuple[dict[int, int], list[str]]:
    """`cat2label` and class names from the reference (train) split without the `dropped` grouping categories; the
    other splits must agree with it."""
    base = categories[reference]
    if not base:
        raise DatasetError(f"{files[reference]}: 'categories' is empty.")
    for split, split_categories in categories.items():
        for category_id, name in split_categories.items():
            if base.get(category_id) != name:
                expected = "absent" if category_id not in base else f"named {base[category_id]!r}"
                raise DatasetError(
                    f"{files[split]}: category id {category_id} ({name!r}) disagrees with {files[reference]}, where "
                    f"it is {expected}; every split must use the same categories."
                )
    kept = {category_id: name for category_id, name in base.items() if category_id not in dropped} or base
    return {category_id: label for label, category_id in enumerate(kept)}, _unique_names(kept)


def _unique_names(categories: dict[int, str]) -> list[str]:
    """Category names in id order; a repeated name gets its id appended (a `ClassLabel` needs unique names)."""
    names = list(categories.values())
    repeated = {name for name in names if names.count(name) > 1}
    if repeated:
        logger.warning("Category names %s are repeated; appending the category id to make them unique.", repeated)
    return [f"{name}_{cid}" if name in repeated else name for cid, name in categories.items()]


def _split_columns(
    document: dict[str, Any],
    file: Path,
    categories: dict[int, str],
    cat2label: dict[int, int],
    check_images: ImageCheck,
    summary: SplitSummary,
    masks: bool = False,
) -> dict[str, list[Any]]:
    """The columns of one split (images in file order, each with its cleaned objects)."""
    images = _image_records(document["images"], file, check_images, summary)
    objects = {image_id: _empty_objects(masks) for image_id in images}
    for index, annotation in enumerate(document["annotations"]):
        _add_annotation(annotation, index, file, images, categories, cat2label, objects, summary, masks)
    summary.images = len(images)
    summary.annotations = len(document["annotations"])
    summary.images_without_boxes = sum(not row["bbox"] for row in objects.values())
    return {
        "image_id": list(images),
        "image": [record["path"] for record in images.values()],
        "width": [record["width"] for record in images.values()],
        "height": [record["height"] for record in images.values()],
        "objects": list(objects.values()),
    }


def _empty_objects(masks: bool = False) -> dict[str, list[Any]]:
    objects: dict[str, list[Any]] = {"id": [], "area": [], "bbox": [], "category": [], "iscrowd": []}
    if masks:
        objects["segmentation"] = []
    return objects


def _image_records(
    entries: list[Any], file: Path, check_images: ImageCheck, summary: SplitSummary
) -> dict[int, dict[str, Any]]:
    """`{image id: {"path", "width", "height"}}`, each image checked according to `check_images`."""
    records: dict[int, dict[str, Any]] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not _is_int(entry.get("id")) or not isinstance(entry.get("file_name"), str):
            raise DatasetError(f"{file}: images[{index}] needs an integer 'id' and a 'file_name'; got {entry!r}.")
        image_id = int(entry["id"])
        if image_id in records:
            raise DatasetError(f"{file}: image id {image_id} is listed twice in 'images'.")
        width, height = entry.get("width"), entry.get("height")
        if not (_is_int(width) and _is_int(height) and int(width) > 0 and int(height) > 0):
            raise DatasetError(f"{file}: image id {image_id} needs positive integer 'width' and 'height'.")
        image_path = file.parent / entry["file_name"]
        where = f"{file}: image id {image_id} ({image_path})"
        _check_image(image_path, (int(width), int(height)), where, check_images, summary)
        records[image_id] = {"path": str(image_path), "width": int(width), "height": int(height)}
    return records


def _check_image(path: Path, size: tuple[int, int], where: str, mode: ImageCheck, summary: SplitSummary) -> None:
    """Raise `DatasetError` (naming `where`) if the image file is missing, unreadable, too large or of another size.

    The size compared is the displayed one (EXIF orientation applied): the transforms read the image that way, and
    COCO boxes are drawn on the image as annotation tools show it."""
    if not path.is_file():
        raise DatasetError(f"{where}: image file not found.")
    if mode == "none":
        return
    try:
        with Image.open(path) as image:  # Pillow's verify() must come straight after open (PNG refuses otherwise)
            image.verify()
        with Image.open(path) as image:
            stored, actual = image.size, displayed_size(image)
            check_pixel_limit(stored, name=str(path))
            if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                summary.exif_rotated.append(path.name)
        if mode == "full":
            load_image(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        reason = error.__cause__ if isinstance(error, ImageReadError) and error.__cause__ else error  # named once
        raise DatasetError(f"{where}: cannot read the image file: {reason}") from error
    mismatch = size_mismatch(
        stored, actual, size, "the file", "the annotation file says", "the annotation's size (and boxes)"
    )
    if mismatch:
        raise DatasetError(f"{where}: {mismatch}")


def _add_annotation(
    annotation: Any,
    index: int,
    file: Path,
    images: dict[int, dict[str, Any]],
    categories: dict[int, str],
    cat2label: dict[int, int],
    objects: dict[int, dict[str, list[Any]]],
    summary: SplitSummary,
    masks: bool = False,
) -> None:
    """Validate one COCO annotation and append its (clipped) box (and with `masks` its RLE) to its image's objects,
    or count it as dropped."""
    if not isinstance(annotation, dict) or not _is_int(annotation.get("id")):
        raise DatasetError(f"{file}: annotations[{index}] needs an integer 'id'; got {annotation!r}.")
    annotation_id = annotation["id"]
    where = f"{file}: annotation id {annotation_id}"
    image_id = annotation.get("image_id")
    if not _is_int(image_id) or int(image_id) not in images:
        raise DatasetError(f"{where} refers to image_id {image_id!r}, which is not in 'images'.")
    image = images[int(image_id)]
    where += f" (image id {image_id}, {Path(image['path']).name})"
    category_id = annotation.get("category_id")
    if not _is_int(category_id) or int(category_id) not in categories:
        raise DatasetError(
            f"{where} has category_id {category_id!r}, which is not in 'categories' (ids {sorted(categories)})."
        )
    is_crowd = _crowd_flag(annotation, where)
    box = _clean_box(annotation.get("bbox"), image["width"], image["height"], where)
    status = _box_status(annotation.get("bbox"), box)
    if status is not None:
        getattr(summary, status).append(annotation_id)
    if box is None:
        return
    row = objects[int(image_id)]
    if masks:
        row["segmentation"].append(_annotation_rle(annotation, image, bool(is_crowd), where, summary))
    row["id"].append(int(annotation_id))
    area = annotation.get("area")
    if area is not None and not (_is_finite(area) and area >= 0):
        raise DatasetError(
            f"{where}: 'area' must be a finite number >= 0 (the object's area in pixels, by which COCO evaluation "
            f"ranks it small, medium or large), or 0 / null / absent to have it computed; got {area!r}."
        )
    if area:
        area = float(area)
    elif masks and row["segmentation"][-1]:  # no area: the mask's, what COCO's `area` is for a segmentation
        area = float(sum(rle_runs(row["segmentation"][-1])[1::2]))
    else:
        area = box[2] * box[3]
    row["area"].append(area)
    row["bbox"].append(list(box))
    row["category"].append(cat2label[int(category_id)])
    row["iscrowd"].append(is_crowd)
    summary.boxes += 1
    summary.crowd += row["iscrowd"][-1]


def _crowd_flag(annotation: dict[str, Any], where: str) -> int:
    """The annotation's `iscrowd` as 0 or 1 (0 when absent); anything but the integers 0 and 1 (or `false`/`true`) is
    an error, so that `"0"` (a string, truthy in Python) is not taken for a crowd box and silently left out."""
    if "iscrowd" not in annotation:
        return 0
    value = annotation["iscrowd"]
    if isinstance(value, bool) or (_is_int(value) and int(value) in (0, 1)):
        return int(value)
    raise DatasetError(f"{where}: 'iscrowd' must be the integer 0 or 1; got {value!r} ({type(value).__name__}).")


def _annotation_rle(
    annotation: dict[str, Any], image: dict[str, Any], is_crowd: bool, where: str, summary: SplitSummary
) -> str:
    """The annotation's mask as a compressed RLE `counts` string at its image's size (`""` for a crowd annotation
    without a segmentation); raises `DatasetError` naming `where` when it is missing or malformed."""
    segmentation = annotation.get("segmentation")
    height, width = image["height"], image["width"]
    if is_missing(segmentation):
        if is_crowd:
            return ""
        found = "no 'segmentation'" if "segmentation" not in annotation else f"'segmentation': {segmentation!r}"
        raise DatasetError(
            f"{where} has {found}, but a segmentation model needs a mask for every object: expected COCO polygons "
            "[[x1, y1, x2, y2, ...], ...] or an RLE {'size': [height, width], 'counts': ...}. Add its mask or mark "
            "it iscrowd=1; for boxes only, train or evaluate a detection model (hf-rfdetr: a --model that is not a Seg "
            "one; Python: load_coco_folder without masks=True)."
        )
    try:
        counts = segmentation_to_rle(segmentation, height, width)
    except MaskError as error:
        raise DatasetError(f"{where}: invalid 'segmentation': {error}.") from error
    if not is_crowd:
        summary.masks += 1
        if not any(rle_runs(counts)[1::2]):
            summary.empty_masks.append(annotation["id"])
    return counts


def _clean_box(bbox: Any, width: int, height: int, where: str) -> tuple[float, float, float, float] | None:
    """COCO `[x, y, w, h]` clipped to the image, or `None` when no area is left; raises on a malformed bbox."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_finite(value) for value in bbox):
        raise DatasetError(f"{where}: 'bbox' must be 4 finite numbers [x, y, width, height]; got {bbox!r}.")
    x, y, w, h = (float(value) for value in bbox)
    if w < _FLOAT32_TINY or h < _FLOAT32_TINY:  # also a positive size that float32 storage would turn into 0
        return None
    if x >= 0 and y >= 0 and x + w <= width and y + h <= height:  # inside: as it is (`(x + w) - x` may not be w)
        return x, y, w, h
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x1 - x0 < _FLOAT32_TINY or y1 - y0 < _FLOAT32_TINY:
        return None
    return x0, y0, x1 - x0, y1 - y0


def _box_status(bbox: list[float], cleaned: tuple[float, float, float, float] | None) -> str | None:
    """Which `SplitSummary` list a box goes to (`None` when it was kept unchanged: `_clean_box` returns a box inside
    its image as it is)."""
    if cleaned is None:
        return "dropped_degenerate" if min(bbox[2], bbox[3]) < _FLOAT32_TINY else "dropped_outside"
    return None if tuple(float(v) for v in bbox) == cleaned else "clipped"


def _report(summary: SplitSummary) -> None:
    """Log the per-split counts (INFO) and one warning for clipped/dropped boxes and EXIF-rotated images."""
    logger.info("Loaded the %s split from %s: %s", summary.split, summary.annotation_file, summary.as_dict())
    message = summary.fix_message()
    if message:
        logger.warning(message)
    if summary.exif_rotated:
        logger.warning(
            "%s: %d image(s) carry an EXIF orientation (e.g. %s); they are read as viewers show them (rotated "
            "upright), so their boxes and width/height are taken in that displayed frame (the original rfdetr "
            "ignores the orientation).",
            summary.annotation_file,
            len(summary.exif_rotated),
            _id_list(summary.exif_rotated),
        )


def _is_int(value: Any) -> bool:
    """True for an integer (or an integral float), False for bools and anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and float(value) == int(value)


def _is_finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


__all__ = [
    "ANNOTATION_FILE",
    "DatasetError",
    "SPLIT_ALIASES",
    "SPLIT_FOLDERS",
    "SplitSummary",
    "detection_features",
    "id2label_from_dataset",
    "load_coco_folder",
    "object_columns",
    "object_fields",
]
