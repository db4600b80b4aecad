"""Boxes normalised to [0, 1] (YOLO-style) instead of pixels are refused before training, naming the split and the fix.

They passed every check and trained as sub-pixel boxes (area 0.1 px on an 80x60 image) to an mAP of 0 with no hint
why. `check_training_data` (so both `load_coco_folder` and `prepare_dataset` data) refuses a split whose usable boxes
all end within the first pixel of images of 16 pixels or more; `RFDetrImageProcessor` warns on such annotations.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from hf_rfdetr import RFDetrImageProcessor, fine_tune
from hf_rfdetr.training.data import ANNOTATION_FILE, DatasetError, load_coco_folder, object_columns
from hf_rfdetr.training.data_checks import NORMALISED_MIN_IMAGE_SIDE, check_training_data
from hf_rfdetr.training.hub_data import prepare_dataset

from .synthetic_coco import write_synthetic_coco

SIZE = (80, 60)  # (width, height)
NAMES = {0: "cat", 1: "dog"}
#: What every refusal says: the boxes look normalised, `bbox` must be pixels, and how to convert.
REMEDY = [
    "ends within the first pixel of its image (x + width <= 1 and y + height <= 1)",
    "look normalised to [0, 1]",
    "'bbox' must be in absolute pixels: COCO [x, y, width, height], or [x0, y0, x1, y1] with bbox_format=\"xyxy\"",
    "multiply the normalised values by the image's width (x, width, x0, x1) and height (y, height, y0, y1)",
]
PIXEL_BOXES = [[[5.0, 6.0, 20.0, 15.0], [40.0, 30.0, 25.0, 20.0]], [[10.0, 12.0, 30.0, 40.0]], [[0.0, 0.0, 80.0, 60.0]]]
CATEGORIES = [[0, 1], [1], [0]]


def normalised(boxes: list[list[list[float]]], size: tuple[int, int] = SIZE) -> list[list[list[float]]]:
    width, height = size
    return [[[x / width, y / height, w / width, h / height] for x, y, w, h in row] for row in boxes]


def xyxy(boxes: list[list[list[float]]]) -> list[list[list[float]]]:
    return [[[x, y, x + w, y + h] for x, y, w, h in row] for row in boxes]


def hub_split(boxes: list[list[list[float]]], size: tuple[int, int] = SIZE) -> datasets.Dataset:
    """The Hub detection layout with `width`/`height` columns, as the tester's repro (one image per row of boxes)."""
    images = [Image.new("RGB", size, (40 * i, 90, 160)) for i in range(len(boxes))]
    return datasets.Dataset.from_dict(
        {
            "image": images,
            "width": [size[0]] * len(boxes),
            "height": [size[1]] * len(boxes),
            "objects": [{"bbox": row, "category": [NAMES[c] for c in cats]} for row, cats in zip(boxes, CATEGORIES)],
        }
    )


def assert_refused(error: pytest.ExceptionInfo, name: str, boxes: int) -> None:
    message = str(error.value)
    assert message.startswith(f"{name}: every usable box ({boxes}) ends within the first pixel"), message
    for part in REMEDY:
        assert part in message, (part, message)
    assert f"at least {NORMALISED_MIN_IMAGE_SIDE} pixels wide and high" in message


@pytest.mark.parametrize("bbox_format", ["xywh", "xyxy"])
@pytest.mark.parametrize("split", ["train", "validation"])
def test_normalised_hub_boxes_are_refused_naming_the_split_and_the_fix(bbox_format: str, split: str) -> None:
    boxes = normalised(PIXEL_BOXES)
    bad = hub_split(xyxy(boxes) if bbox_format == "xyxy" else boxes)
    good = hub_split(xyxy(PIXEL_BOXES) if bbox_format == "xyxy" else PIXEL_BOXES)
    splits = {"train": good, "validation": good, split: bad}
    prepared = prepare_dataset(datasets.DatasetDict(splits), bbox_format=bbox_format)  # loading alone is fine
    with pytest.raises(DatasetError) as error:
        check_training_data(prepared)
    assert_refused(error, f"The {split} split", 4)


def test_fine_tune_refuses_normalised_hub_boxes_before_building_the_model(tmp_path: Path) -> None:
    """The tester's repro: one 80x60 image, `bbox=[0.1, 0.2, 0.3, 0.4]`, `width`/`height` columns."""
    row = datasets.Dataset.from_dict(
        {
            "image": [Image.new("RGB", SIZE)],
            "width": [SIZE[0]],
            "height": [SIZE[1]],
            "objects": [{"bbox": [[0.1, 0.2, 0.3, 0.4]], "category": ["cat"]}],
        }
    )
    with pytest.raises(DatasetError) as error:
        fine_tune(
            "not-a-model-it-is-never-loaded",
            dataset=datasets.DatasetDict(train=row, validation=row),
            output_dir=tmp_path / "out",
            device="cpu",
        )
    assert_refused(error, "The train split", 1)
    assert not (tmp_path / "out").exists()


def normalise_json(root: Path, split: str) -> Path:
    """Rewrite a split's COCO boxes (and areas) as fractions of their image's width and height."""
    file = root / split / ANNOTATION_FILE
    document = json.loads(file.read_text())
    sizes = {image["id"]: (image["width"], image["height"]) for image in document["images"]}
    for annotation in document["annotations"]:
        width, height = sizes[annotation["image_id"]]
        x, y, w, h = annotation["bbox"]
        annotation["bbox"] = [x / width, y / height, w / width, h / height]
        annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
    file.write_text(json.dumps(document))
    return file


@pytest.mark.parametrize("folder_name", ["train", "valid"])
def test_normalised_coco_folder_boxes_are_refused_naming_the_split_and_its_file(
    tmp_path: Path, folder_name: str
) -> None:
    root = write_synthetic_coco(tmp_path / "data", num_train=4, num_valid=2, image_size=(48, 64))
    file = normalise_json(root, folder_name)
    boxes = len(json.loads(file.read_text())["annotations"])
    splits, summaries = load_coco_folder(root, return_summary=True)
    split = "train" if folder_name == "train" else "validation"
    assert summaries[split].clipped == [] and summaries[split].boxes == boxes  # kept as written: inside the image
    with pytest.raises(DatasetError) as error:
        check_training_data(splits, summaries=summaries)
    assert_refused(error, f"The {split} split ({file})", boxes)
    with pytest.raises(DatasetError, match=re.escape(f"The {split} split ({file}): every usable box")):
        fine_tune("not-a-model-it-is-never-loaded", root, output_dir=tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()


def test_small_boxes_beside_normal_ones_and_small_images_pass_unchanged() -> None:
    """A split of tiny boxes (within the first pixel too) beside normal ones passes, as does one whose only boxes are
    a pixel or less on images under 16 pixels (icons); the boxes load as given."""
    tiny = [[[0.2, 0.3, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]], [[0.5, 0.5, 0.4, 0.4]], [[3.0, 4.0, 0.5, 0.6]]]
    mixed = [tiny[0], tiny[1], PIXEL_BOXES[1]]
    icons = hub_split(tiny, size=(NORMALISED_MIN_IMAGE_SIDE - 1, 40))
    prepared = prepare_dataset(datasets.DatasetDict(train=hub_split(mixed), validation=icons))
    counts = check_training_data(prepared)
    assert (counts["train"].usable, counts["train"].in_first_pixel) == (4, 3)
    assert (counts["validation"].usable, counts["validation"].in_first_pixel) == (4, 0)
    for split, boxes in (("train", mixed), ("validation", tiny)):
        loaded = [object_columns(objects)["bbox"] for objects in prepared[split]["objects"]]
        np.testing.assert_allclose(np.concatenate(loaded), np.concatenate(boxes), rtol=1e-6)


def test_a_normal_synthetic_coco_folder_passes_with_its_boxes_unchanged(tmp_path: Path) -> None:
    root = write_synthetic_coco(tmp_path / "data", num_train=6, num_valid=3, image_size=(48, 64))
    splits, summaries = load_coco_folder(root, return_summary=True)
    counts = check_training_data(splits, summaries=summaries)
    for split, folder_name in (("train", "train"), ("validation", "valid")):
        document = json.loads((root / folder_name / ANNOTATION_FILE).read_text())
        assert counts[split].usable == len(document["annotations"]) > 0
        assert counts[split].in_first_pixel == 0
        loaded = [box for objects in splits[split]["objects"] for box in object_columns(objects)["bbox"]]
        expected = [annotation["bbox"] for annotation in document["annotations"]]
        np.testing.assert_allclose(sorted(loaded), sorted(expected), rtol=1e-6)


def test_a_split_without_width_and_height_is_not_checked_for_it() -> None:
    """Without the columns the image sizes are unknown (the check reads no image): normalised boxes pass here."""
    prepared = prepare_dataset(
        datasets.DatasetDict(train=hub_split(normalised(PIXEL_BOXES)).remove_columns(["width", "height"]))
    )
    assert check_training_data(prepared)["train"].in_first_pixel == 0


def test_the_image_processor_warns_on_normalised_annotations() -> None:
    processor = RFDetrImageProcessor(size=56)
    image = np.zeros((SIZE[1], SIZE[0], 3), dtype=np.uint8)

    def annotations(boxes: list[list[float]]) -> dict:
        return {"image_id": 1, "annotations": [{"bbox": box, "category_id": 0} for box in boxes]}

    with pytest.warns(UserWarning, match=r"look normalised to \[0, 1\].*multiply x and width by the image's width"):
        labels = processor([image, image], annotations=[annotations(row) for row in normalised(PIXEL_BOXES[:2])])
    assert labels["labels"][0]["boxes"].shape == (2, 4)  # still converted as given
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        processor([image, image], annotations=[annotations(row) for row in PIXEL_BOXES[:2]])  # pixels
        processor(image, annotations=annotations([[0.0, 0.0, 1.0, 1.0], [30.0, 20.0, 10.0, 10.0]]))  # mixed
        processor(np.zeros((12, 40, 3), dtype=np.uint8), annotations=annotations([[0.0, 0.0, 0.5, 0.5]]))  # tiny
        processor(image, annotations=annotations([]))  # no boxes
