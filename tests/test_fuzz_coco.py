"""Fuzzing `load_coco_folder` and `check_training_data` with hypothesis (fixed budget: see `tests/fuzzing.py`).

A drawn COCO folder (images of 1 px to a few hundred, extreme aspect ratios; annotations with valid, clipped,
degenerate, outside, non-finite and malformed boxes, string/bool/float `iscrowd`, unknown images and categories,
malformed image sizes, NaN, negative or string areas of kept boxes) either loads into exactly what the JSON says, computed here independently (boxes clipped to
the image, zero-area and outside ones dropped and counted, crowd kept with `iscrowd=1`, labels in category-id order),
or raises a `DatasetError` naming the first bad image or annotation and the field.

EXIF orientations 1-8 are separate, parametrised cases: the JSON is in the displayed frame (what a person annotated)
and the loader must agree with it, in sizes, boxes and the decoded pixels.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image, ImageOps

from hf_rfdetr.training.data import ANNOTATION_FILE, DatasetError, load_coco_folder
from hf_rfdetr.training.data_checks import check_training_data
from hf_rfdetr.training.transforms import decode_image

from .fuzzing import fuzz_settings

SIDES = st.integers(1, 24) | st.sampled_from([1, 2, 300])
XY = st.floats(-5, 20, allow_nan=False) | st.sampled_from([0.0, -1e300, 1e300])
WH = st.floats(-2, 25, allow_nan=False) | st.sampled_from([0.0, -1.0, 1e300])
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
BAD_BOXES = st.sampled_from(["1 2 3 4", [1, 2, "3", 4], [1, 2, 3], [1, 2, 3, 4, 5], [True, 0, 5, 5], None, {}])
CROWD = st.sampled_from(["absent", 0, 1, 0.0, 1.0, True, False, "0", "1", 2, -1, None, 0.5])
AREA = st.sampled_from(["absent", 12.5, 0, -3.0, math.nan, "12", None])


def rare(draw: st.DrawFn, odds: int) -> bool:
    """True about once in `odds + 1` draws (hypothesis favours small integers, so the fault is the largest one)."""
    return draw(st.integers(0, odds)) == odds


@st.composite
def coco_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A COCO train document; `faults` in image/annotation entries are listed under the `_faults` key (popped)."""
    category_ids = draw(st.lists(st.integers(0, 100), min_size=1, max_size=3, unique=True))
    images = []
    for image_id in draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=3, unique=True)):
        width, height = draw(SIDES), draw(SIDES)
        entry = {"id": image_id, "file_name": f"{image_id}.jpg", "width": width, "height": height}
        entry["_size"] = (width, height)
        if rare(draw, 30):
            entry[draw(st.sampled_from(["width", "height"]))] = draw(st.sampled_from([0, -4, "10", None, 2.5]))
        images.append(entry)
    annotations = []
    for index in range(draw(st.integers(1, 6) | st.integers(0, 6))):
        annotation: dict[str, Any] = {
            "id": index if not rare(draw, 20) else "x",
            "image_id": draw(st.sampled_from([image["id"] for image in images])) if not rare(draw, 20) else -7,
            "category_id": draw(st.sampled_from(category_ids))
            if draw(st.integers(0, 20))
            else draw(st.sampled_from([999, "1"])),
            "bbox": [draw(XY), draw(XY), draw(WH), draw(WH)] if not rare(draw, 15) else draw(BAD_BOXES),
        }
        if isinstance(annotation["bbox"], list) and len(annotation["bbox"]) == 4 and rare(draw, 15):
            annotation["bbox"][draw(st.integers(0, 3))] = draw(NON_FINITE)
        for key, value in (
            ("iscrowd", draw(CROWD if rare(draw, 4) else st.just(0))),
            ("area", draw(AREA)),
        ):
            if value != "absent":
                annotation[key] = value
        annotations.append(annotation)
    categories = [{"id": cid, "name": f"c{cid}", "supercategory": "none"} for cid in category_ids]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_folder(document: dict[str, Any], root: Path) -> Path:
    folder = root / "train"
    folder.mkdir(parents=True)
    for image in document["images"]:
        Image.new("RGB", image["_size"], (90, 140, 200)).save(folder / image["file_name"])
    clean = {**document, "images": [{k: v for k, v in image.items() if k != "_size"} for image in document["images"]]}
    (folder / ANNOTATION_FILE).write_text(json.dumps(clean))  # NaN and Infinity are written as JSON extensions
    return root


def _is_int(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and value == int(value)


def image_fault(image: dict[str, Any]) -> bool:
    return not all(_is_int(image[key]) and image[key] > 0 for key in ("width", "height")) or (
        (image["width"], image["height"]) != image["_size"]
    )


def annotation_faults(annotation: dict[str, Any], images: dict[int, Any], categories: set[int]) -> list[str]:
    """Names of the fields of an annotation that make it invalid."""
    faults = []
    if not _is_int(annotation["id"]):
        faults.append("'id'")
    if not _is_int(annotation["image_id"]) or annotation["image_id"] not in images:
        faults.append("image_id")
    if not _is_int(annotation["category_id"]) or annotation["category_id"] not in categories:
        faults.append("category_id")
    crowd = annotation.get("iscrowd", 0)
    if not (type(crowd) is bool or (_is_int(crowd) and crowd in (0, 1))):
        faults.append("'iscrowd'")
    box = annotation["bbox"]
    if not (isinstance(box, list) and len(box) == 4 and all(type(v) in (int, float) and math.isfinite(v) for v in box)):
        faults.append("'bbox'")
    area = annotation.get("area")
    bad_area = area is not None and not (type(area) in (int, float) and math.isfinite(area) and area >= 0)
    if not faults and bad_area and kept_box(annotation, images)[0] is not None:  # a dropped box's area is not read
        faults.append("'area'")
    return faults


def kept_box(annotation: dict[str, Any], images: dict[int, Any]) -> tuple[list[float] | None, str | None]:
    """The annotation's box clipped to its image as the loader keeps it, or None and why it is dropped."""
    width, height = images[annotation["image_id"]]["_size"]
    x, y, w, h = (float(v) for v in annotation["bbox"])
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if float32_zero(w) or float32_zero(h):  # zero or negative, or so small that float32 storage makes it 0
        return None, "dropped_degenerate"
    if x >= 0 and y >= 0 and x + w <= width and y + h <= height:  # inside the image: kept as it is
        return [x, y, w, h], None
    if float32_zero(x1 - x0) or float32_zero(y1 - y0):
        return None, "dropped_outside"
    return [x0, y0, x1 - x0, y1 - y0], None


def float32_zero(value: float) -> bool:
    """True when a box side is not a positive float32 (the dtype the loader stores boxes in)."""
    return value <= 0 or np.float32(min(value, 1.0)) == 0


def expected_objects(document: dict[str, Any]) -> tuple[dict[int, list[dict[str, Any]]], dict[str, int]]:
    """Per image id the objects the loader must keep, and the counts of clipped and dropped boxes."""
    images = {image["id"]: image for image in document["images"]}
    labels = {cid: label for label, cid in enumerate(sorted(c["id"] for c in document["categories"]))}
    objects: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in images}
    counts = {"clipped": 0, "dropped_degenerate": 0, "dropped_outside": 0}
    for annotation in document["annotations"]:
        box, dropped = kept_box(annotation, images)
        if box is None:
            counts[dropped] += 1
            continue
        counts["clipped"] += box != [float(v) for v in annotation["bbox"]]
        area = annotation.get("area")
        good_area = type(area) in (int, float) and math.isfinite(area) and area > 0
        objects[annotation["image_id"]].append(
            {
                "id": annotation["id"],
                "bbox": box,
                "area": float(area) if good_area else box[2] * box[3],
                "category": labels[annotation["category_id"]],
                "iscrowd": int(annotation.get("iscrowd", 0)),
            }
        )
    return objects, counts


@fuzz_settings(150)
@given(document=coco_documents())
def test_coco_folder_loads_as_written_or_names_the_bad_entry(document: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = write_folder(document, Path(directory) / "data")
        file = root / "train" / ANNOTATION_FILE
        bad_images = [image for image in document["images"] if image_fault(image)]
        if bad_images:
            event("refused: bad image entry")
            with pytest.raises(DatasetError, match=rf"{file}: image id {bad_images[0]['id']} .*(width|pixels)"):
                load_coco_folder(root)
            return
        images = {image["id"]: image for image in document["images"]}
        categories = {category["id"] for category in document["categories"]}
        bad = [(i, a) for i, a in enumerate(document["annotations"]) if annotation_faults(a, images, categories)]
        if bad:
            index, annotation = bad[0]
            where = f"annotation id {annotation['id']}" if _is_int(annotation["id"]) else rf"annotations\[{index}\]"
            fields = "|".join(annotation_faults(annotation, images, categories))
            event(f"refused: annotation {fields}")
            with pytest.raises(DatasetError, match=rf"{file}: {where}.*({fields})"):
                load_coco_folder(root)
            return
        loaded, summaries = load_coco_folder(root, return_summary=True)
        check_loaded(loaded["train"], summaries["train"], document)
        usable = sum(not o["iscrowd"] for objects in expected_objects(document)[0].values() for o in objects)
        event("loaded, trainable" if usable else "loaded, refused by check_training_data")
        if usable:
            assert check_training_data(loaded, summaries=summaries)["train"].usable == usable
        else:
            with pytest.raises(DatasetError, match=rf"The train split \({file}\) has .* no"):
                check_training_data(loaded, summaries=summaries)


def check_loaded(split: Any, summary: Any, document: dict[str, Any]) -> None:
    objects, counts = expected_objects(document)
    assert split["image_id"] == [image["id"] for image in document["images"]]
    assert [(row["width"], row["height"]) for row in split.select_columns(["width", "height"])] == [
        image["_size"] for image in document["images"]
    ]
    for image_id, row in zip(split["image_id"], split["objects"]):
        expected = objects[image_id]
        assert row["id"] == [o["id"] for o in expected]
        assert row["category"] == [o["category"] for o in expected]
        assert row["iscrowd"] == [o["iscrowd"] for o in expected]
        found = np.array(row["bbox"], dtype=np.float64).reshape(-1, 4)
        np.testing.assert_allclose(found, np.array([o["bbox"] for o in expected]).reshape(-1, 4), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(row["area"], [o["area"] for o in expected], rtol=1e-6)
    found = {key: value for key, value in summary.as_dict().items() if key in counts}
    assert found == counts
    assert summary.boxes == sum(len(rows) for rows in objects.values())


def test_png_images_load(tmp_path: Path) -> None:
    """PNG datasets load (the header check once read the EXIF before `Image.verify()`, which Pillow refuses for PNG:
    "verify must be called directly after open")."""
    document = {
        "images": [{"id": 0, "file_name": "0.png", "width": 5, "height": 4, "_size": (5, 4)}],
        "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "bbox": [1, 1, 2, 2]}],
        "categories": [{"id": 1, "name": "c1", "supercategory": "none"}],
    }
    loaded, summaries = load_coco_folder(write_folder(document, tmp_path / "data"), return_summary=True)
    check_loaded(loaded["train"], summaries["train"], document)


# ----------------------------------------------------------------------------------------------------------------------
# EXIF orientations
# ----------------------------------------------------------------------------------------------------------------------

#: Orientation -> the transpose that undoes it (the inverse of what `ImageOps.exif_transpose` applies).
TO_STORED = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
DISPLAYED = (40, 24)  # (width, height)
MARKER = (2, 3, 12, 8)  # (x, y, w, h): a red block in the displayed frame, the annotated object


def exif_folder(root: Path, orientation: int) -> Path:
    """One JPEG stored rotated/flipped with an EXIF orientation that displays it as `DISPLAYED` with the marker."""
    displayed = Image.new("RGB", DISPLAYED, (0, 0, 255))
    x, y, w, h = MARKER
    displayed.paste((255, 0, 0), (x, y, x + w, y + h))
    stored = displayed if TO_STORED[orientation] is None else displayed.transpose(TO_STORED[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    folder = root / "train"
    folder.mkdir(parents=True)
    stored.save(folder / "photo.jpg", quality=95, exif=exif.tobytes())
    with Image.open(folder / "photo.jpg") as check:  # the test itself: what a viewer shows is `displayed`
        assert ImageOps.exif_transpose(check).size == DISPLAYED
    document = {
        "images": [{"id": 0, "file_name": "photo.jpg", "width": DISPLAYED[0], "height": DISPLAYED[1]}],
        "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "bbox": list(MARKER), "iscrowd": 0}],
        "categories": [{"id": 1, "name": "marker", "supercategory": "none"}],
    }
    (folder / ANNOTATION_FILE).write_text(json.dumps(document))
    return root


@pytest.mark.parametrize("orientation", range(1, 9), ids=lambda o: f"exif{o}")
def test_exif_orientation_boxes_and_sizes_are_in_the_displayed_frame(tmp_path: Path, orientation: int) -> None:
    root = exif_folder(tmp_path / "data", orientation)
    loaded = load_coco_folder(root, check_images="full")
    row = loaded["train"].cast_column("image", datasets.Image(decode=False))[0]
    assert (row["width"], row["height"]) == DISPLAYED
    np.testing.assert_allclose(row["objects"]["bbox"], [list(MARKER)])
    picture = np.asarray(decode_image(row["image"], 0)).astype(int)  # what the transforms train on
    assert picture.shape[:2] == (DISPLAYED[1], DISPLAYED[0])
    x, y, w, h = MARKER
    inside, outside = picture[y + h // 2, x + w // 2], picture[DISPLAYED[1] - 2, DISPLAYED[0] - 2]
    assert inside[0] > 200 and inside[2] < 60, f"the marker is not where the box says: {inside}"
    assert outside[2] > 200 and outside[0] < 60, outside
