"""Fine-tuning data: COCO folder loading, bad-data errors, Hub layout, transforms (vs the original) and collator."""

from __future__ import annotations

import io
import json
import logging
import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import datasets
import pytest
import torch
import torch.nn.functional as nnf
from PIL import Image
from torchvision.transforms import v2

from hf_rfdetr import RFDetrForObjectDetection, RFDetrImageProcessor, fine_tune
from hf_rfdetr.training.data import (
    ANNOTATION_FILE,
    DatasetError,
    id2label_from_dataset,
    load_coco_folder,
    object_columns,
)
from hf_rfdetr.training.data_checks import check_training_data
from hf_rfdetr.training.hub_data import prepare_dataset
from hf_rfdetr.training.transforms import (
    MULTI_SCALE_KEY,
    DetectionTransform,
    RandomSquareCrop,
    RFDetrDataCollator,
    apply_transforms,
    build_transforms,
    multi_scale_scales,
    training_scales,
)

from .conftest import tiny_config
from .synthetic_coco import SUPERCLASS, class_names, write_synthetic_coco

DATA_LOGGER = "hf_rfdetr.training.data"
IMAGE_SIZE = (48, 64)  # (height, width): non-square, so that (h, w) order mistakes show
TINY_MAX_SCALE = 144  # max(multi_scale_scales(64, 16)) for tiny_config()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_coco(
        tmp_path_factory.mktemp("coco") / "shapes", num_train=12, num_valid=4, num_test=2, image_size=IMAGE_SIZE
    )


@pytest.fixture(scope="module")
def dataset(folder: Path) -> datasets.DatasetDict:
    return load_coco_folder(folder)


def small_folder(tmp_path: Path, **kwargs) -> Path:
    return write_synthetic_coco(tmp_path / "data", num_train=4, num_valid=2, image_size=IMAGE_SIZE, **kwargs)


def edit_json(root: Path, split: str, edit: Callable[[dict], None]) -> Path:
    """Apply `edit` to a split's COCO document in place; returns the file."""
    file = root / split / ANNOTATION_FILE
    document = json.loads(file.read_text())
    edit(document)
    file.write_text(json.dumps(document))
    return file


def coco_document(root: Path, split: str) -> dict:
    return json.loads((root / split / ANNOTATION_FILE).read_text())


def coco_annotations(objects: dict) -> list[dict]:
    """A Hub-layout row's objects as COCO annotation dicts (category ids = labels)."""
    boxes, categories = objects["bbox"], objects["category"]
    return [{"bbox": b, "category_id": c, "iscrowd": 0, "area": b[2] * b[3]} for b, c in zip(boxes, categories)]


def reference_coco():
    """The original package's dataset helpers (the `reference` extra; only `reference`-marked tests call this)."""
    logging.getLogger("rf-detr").setLevel(logging.ERROR)
    from rfdetr.datasets import coco

    return coco


# ----------------------------------------------------------------------------------------------------------------------
# Synthetic data and loading
# ----------------------------------------------------------------------------------------------------------------------


def test_synthetic_writer_is_deterministic_and_roboflow_like(tmp_path: Path) -> None:
    first = write_synthetic_coco(tmp_path / "a", num_train=6, num_valid=0, seed=3)
    second = write_synthetic_coco(tmp_path / "b", num_train=6, num_valid=0, seed=3)
    document = coco_document(first, "train")
    assert document == coco_document(second, "train")
    assert (first / "train" / "train_00000.jpg").read_bytes() == (second / "train" / "train_00000.jpg").read_bytes()
    assert not (first / "valid").exists()
    assert document["categories"][0] == {"id": 0, "name": SUPERCLASS, "supercategory": "none"}
    assert [c["name"] for c in document["categories"][1:]] == class_names(3)
    used = {annotation["category_id"] for annotation in document["annotations"]}
    assert 0 not in used and used <= {1, 2, 3}
    per_image = [sum(a["image_id"] == image["id"] for a in document["annotations"]) for image in document["images"]]
    assert 1 <= min(per_image) and max(per_image) <= 4


def test_load_coco_folder_splits_columns_and_class_names(folder: Path, dataset: datasets.DatasetDict) -> None:
    assert set(dataset) == {"train", "validation", "test"}
    assert {name: split.num_rows for name, split in dataset.items()} == {"train": 12, "validation": 4, "test": 2}
    assert dataset["train"].column_names == ["image_id", "image", "width", "height", "objects"]
    features = dataset["train"].features
    assert isinstance(features["image"], datasets.Image)
    category = features["objects"]["category"].feature
    assert isinstance(category, datasets.ClassLabel)
    # Roboflow's unannotated superclass (id 0, the supercategory of every class) is left out: 3 classes, 3 labels.
    assert category.names == class_names(3)
    assert id2label_from_dataset(dataset) == dict(enumerate(class_names(3)))
    row = dataset["train"][0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (IMAGE_SIZE[1], IMAGE_SIZE[0])
    assert (row["height"], row["width"]) == IMAGE_SIZE


def test_boxes_and_categories_round_trip(folder: Path, dataset: datasets.DatasetDict) -> None:
    for split, name in (("train", "train"), ("valid", "validation")):
        document = coco_document(folder, split)
        rows = {row["image_id"]: row for row in dataset[name]}
        assert set(rows) == {image["id"] for image in document["images"]}
        for annotation in document["annotations"]:
            objects = rows[annotation["image_id"]]["objects"]
            index = objects["id"].index(annotation["id"])
            assert objects["bbox"][index] == pytest.approx(annotation["bbox"])
            assert objects["area"][index] == pytest.approx(annotation["area"])
            assert objects["category"][index] == annotation["category_id"] - 1  # ids 1..3 -> labels 0..2
            assert objects["iscrowd"][index] == 0


def test_grouping_categories_are_kept_when_annotated_or_flat(tmp_path: Path) -> None:
    root = small_folder(tmp_path)

    def flatten(document: dict) -> None:  # no category groups others: nothing is a parent
        for category in document["categories"]:
            category["supercategory"] = "none"

    for split in ("train", "valid"):
        edit_json(root, split, flatten)
    assert id2label_from_dataset(load_coco_folder(root)) == dict(enumerate([SUPERCLASS, *class_names(3)]))

    root = small_folder(tmp_path / "annotated")

    def annotate_parent(document: dict) -> None:  # the grouping category has a box of its own: a real class
        document["annotations"][0]["category_id"] = 0

    edit_json(root, "train", annotate_parent)
    assert id2label_from_dataset(load_coco_folder(root))[0] == SUPERCLASS


def test_sparse_category_ids_map_to_contiguous_labels_in_id_order(tmp_path: Path) -> None:
    root = small_folder(tmp_path)
    new_ids = {0: 7, 1: 42, 2: 3, 3: 19}  # file order is not id order

    def remap(document: dict) -> None:
        for category in document["categories"]:
            category["id"] = new_ids[category["id"]]
        for annotation in document["annotations"]:
            annotation["category_id"] = new_ids[annotation["category_id"]]

    for split in ("train", "valid"):
        edit_json(root, split, remap)
    loaded = load_coco_folder(root)
    names_by_id = {new_ids[k + 1]: name for k, name in enumerate(class_names(3))}
    sorted_ids = sorted(names_by_id)
    assert id2label_from_dataset(loaded) == {label: names_by_id[cid] for label, cid in enumerate(sorted_ids)}
    document = coco_document(root, "train")
    rows = {row["image_id"]: row["objects"] for row in loaded["train"]}
    for annotation in document["annotations"]:
        objects = rows[annotation["image_id"]]
        label = objects["category"][objects["id"].index(annotation["id"])]
        assert sorted_ids[label] == annotation["category_id"]


def test_split_selection_and_val_folder_name(tmp_path: Path) -> None:
    root = small_folder(tmp_path)
    (root / "valid").rename(root / "val")
    loaded = load_coco_folder(root, splits=["train", "val"])
    assert set(loaded) == {"train", "validation"} and loaded["validation"].num_rows == 2
    assert set(load_coco_folder(root)) == {"train", "validation"}
    edit_json(root, "val", lambda document: document["categories"].pop(0))  # lists a subset: no superclass
    valid_only = load_coco_folder(root, splits=["valid"])
    assert set(valid_only) == {"validation"}
    assert id2label_from_dataset(valid_only) == id2label_from_dataset(loaded)  # labels still follow train
    with pytest.raises(DatasetError, match=f"{root / 'test' / ANNOTATION_FILE}"):
        load_coco_folder(root, splits=["train", "test"])
    with pytest.raises(ValueError, match="Unknown split"):
        load_coco_folder(root, splits=["training"])


def test_summary_counts(tmp_path: Path) -> None:
    root = small_folder(tmp_path)
    loaded, summaries = load_coco_folder(root, return_summary=True)
    document = coco_document(root, "train")
    counts = summaries["train"].as_dict()
    assert counts["images"] == 4 and counts["annotations"] == counts["boxes"] == len(document["annotations"])
    assert counts["clipped"] == counts["dropped_degenerate"] == counts["dropped_outside"] == 0
    assert summaries["validation"].as_dict()["images"] == loaded["validation"].num_rows


# ----------------------------------------------------------------------------------------------------------------------
# Bad data
# ----------------------------------------------------------------------------------------------------------------------


def test_missing_train_split_names_the_expected_file(tmp_path: Path) -> None:
    root = small_folder(tmp_path)
    (root / "train" / ANNOTATION_FILE).rename(root / "train" / "other.json")
    with pytest.raises(DatasetError, match="Missing annotation file .*train/_annotations.coco.json"):
        load_coco_folder(root)
    (root / "train").rename(root / "training")
    with pytest.raises(DatasetError, match=f"Missing split 'train': expected {root / 'train' / ANNOTATION_FILE}"):
        load_coco_folder(root)
    with pytest.raises(DatasetError, match="does not exist"):
        load_coco_folder(tmp_path / "nowhere")


def test_malformed_json_names_file_and_position(tmp_path: Path) -> None:
    root = small_folder(tmp_path)
    file = root / "valid" / ANNOTATION_FILE
    file.write_text('{"images": [], "annotations": [,]}')
    with pytest.raises(DatasetError, match=rf"{file} is not valid JSON: .* line 1, column"):
        load_coco_folder(root)
    file.write_text('{"images": [], "annotations": []}')
    with pytest.raises(DatasetError, match=rf"{file}: 'categories' must be a list, but it is missing"):
        load_coco_folder(root)


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_missing_or_unreadable_image_names_the_file(tmp_path: Path, damage: str) -> None:
    root = small_folder(tmp_path)
    image = root / "train" / "train_00002.jpg"
    if damage == "missing":
        image.unlink()
    else:
        image.write_bytes(b"this is not a JPEG")
    message = "image file not found" if damage == "missing" else "cannot read the image file"
    with pytest.raises(DatasetError, match=rf"image id 2 \({image}\): {message}"):
        load_coco_folder(root)


def test_truncated_image_fails_at_decode_time_or_with_full_check(tmp_path: Path) -> None:
    root = small_folder(tmp_path)
    image = root / "train" / "train_00001.jpg"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    with pytest.raises(
        DatasetError, match=rf"image id 1 \({image}\): cannot read the image file: image file is truncated"
    ):
        load_coco_folder(root, check_images="full")
    loaded = load_coco_folder(root)  # the header check cannot see a truncated body
    transformed = apply_transforms(loaded, tiny_config())
    transformed["train"][0]
    with pytest.raises(DatasetError, match=rf"Cannot decode image {image} \(image_id 1\)"):
        transformed["train"][1]


def test_image_size_disagreeing_with_json_is_an_error(tmp_path: Path) -> None:
    root = small_folder(tmp_path)
    edit_json(root, "valid", lambda document: document["images"][1].update(width=65))
    with pytest.raises(DatasetError, match=r"image id 1 .*valid_00001.jpg.*64x48 pixels .* says 65x48"):
        load_coco_folder(root)


def test_unknown_category_names_annotation_and_image(tmp_path: Path) -> None:
    root = small_folder(tmp_path)
    document = coco_document(root, "train")
    annotation = document["annotations"][3]
    file = edit_json(root, "train", lambda doc: doc["annotations"][3].update(category_id=99))
    expected = (
        rf"{file}: annotation id {annotation['id']} \(image id {annotation['image_id']}, "
        rf"train_{annotation['image_id']:05d}.jpg\) has category_id 99, which is not in 'categories'"
    )
    with pytest.raises(DatasetError, match=expected):
        load_coco_folder(root)


def test_annotation_of_unknown_image_and_malformed_bbox(tmp_path: Path) -> None:
    root = small_folder(tmp_path)
    first_id = coco_document(root, "train")["annotations"][0]["id"]
    edit_json(root, "train", lambda doc: doc["annotations"][0].update(image_id=1234))
    with pytest.raises(DatasetError, match=f"annotation id {first_id} refers to image_id 1234"):
        load_coco_folder(root)
    edit_json(root, "train", lambda doc: doc["annotations"][0].update(image_id=0, bbox=[1, 2, "3", 4]))
    with pytest.raises(DatasetError, match=f"annotation id {first_id} .*'bbox' must be 4 finite numbers"):
        load_coco_folder(root)


@pytest.mark.parametrize("area", [float("nan"), float("inf"), -4.0, "12"])
def test_annotation_area_that_is_not_a_finite_number_is_refused(tmp_path: Path, area) -> None:
    """An `area` that is NaN, infinite, negative or not a number was silently replaced by the box's area; it is refused
    naming the file and the annotation, as the `datasets` layout refuses it."""
    root = small_folder(tmp_path)
    first_id = coco_document(root, "train")["annotations"][0]["id"]
    file = edit_json(root, "train", lambda doc: doc["annotations"][0].update(area=area))
    expected = rf"{file}: annotation id {first_id} .*'area' must be a finite number >= 0 .*; got {area!r}\."
    with pytest.raises(DatasetError, match=expected):
        load_coco_folder(root)


def test_annotation_area_zero_or_absent_is_computed(tmp_path: Path) -> None:
    root = small_folder(tmp_path)
    document = coco_document(root, "train")
    first, second = document["annotations"][:2]

    def edit(doc: dict) -> None:
        doc["annotations"][0]["area"] = 0
        del doc["annotations"][1]["area"]

    edit_json(root, "train", edit)
    rows = load_coco_folder(root)["train"]
    areas = {i: a for row in rows for i, a in zip(row["objects"]["id"], row["objects"]["area"])}
    for annotation in (first, second):
        assert areas[annotation["id"]] == pytest.approx(annotation["bbox"][2] * annotation["bbox"][3], rel=1e-5)


def test_splits_must_agree_on_categories(tmp_path: Path) -> None:
    root = small_folder(tmp_path)
    file = edit_json(root, "valid", lambda document: document["categories"][2].update(name="purple-circle"))
    with pytest.raises(DatasetError, match=rf"{file}: category id 2 \('purple-circle'\) disagrees with .*train"):
        load_coco_folder(root)


def test_out_of_image_and_degenerate_boxes_are_clipped_or_dropped_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = small_folder(tmp_path)
    height, width = IMAGE_SIZE
    fixes = {0: [-5.0, 10.0, 20.0, 10.0], 1: [30.0, 40.0, 50.0, 20.0], 2: [5.0, 5.0, 0.0, 8.0]}
    fixes |= {3: [5.0, 5.0, 8.0, -2.0], 4: [width + 1.0, 3.0, 5.0, 5.0]}

    def damage(document: dict) -> None:
        for index, bbox in fixes.items():
            document["annotations"][index].update(bbox=bbox, image_id=0)

    edit_json(root, "train", damage)
    document = coco_document(root, "train")
    ids = [document["annotations"][index]["id"] for index in range(5)]
    with caplog.at_level(logging.WARNING, logger=DATA_LOGGER):
        loaded, summaries = load_coco_folder(root, return_summary=True)
    warnings_ = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings_) == 1, warnings_
    assert (
        f"2 box(es) extending outside their image were clipped to the image (annotation ids {ids[0]}, {ids[1]})"
        in (warnings_[0])
    )
    assert (
        f"2 box(es) with zero or negative width/height were dropped (annotation ids {ids[2]}, {ids[3]})"
        in (warnings_[0])
    )
    assert f"1 box(es) lying entirely outside their image were dropped (annotation ids {ids[4]})" in warnings_[0]
    counts = summaries["train"].as_dict()
    assert (counts["clipped"], counts["dropped_degenerate"], counts["dropped_outside"]) == (2, 2, 1)
    assert counts["boxes"] == counts["annotations"] - 3
    objects = loaded["train"][0]["objects"]
    assert objects["bbox"][objects["id"].index(ids[0])] == pytest.approx([0.0, 10.0, 15.0, 10.0])
    assert objects["bbox"][objects["id"].index(ids[1])] == pytest.approx([30.0, 40.0, 34.0, 8.0])
    assert not set(ids[2:]) & set(objects["id"])


@pytest.mark.parametrize(
    ("value", "accepted"), [(0, 0), (1, 1), (0.0, 0), (True, 1), ("0", None), ("1", None), (2, None), (None, None)]
)
def test_iscrowd_must_be_0_or_1(tmp_path: Path, value: object, accepted: int | None) -> None:
    """`"iscrowd": "0"` was read as a crowd box (a non-empty string is truthy) and silently left out of training."""
    root = small_folder(tmp_path)
    annotation = coco_document(root, "train")["annotations"][0]
    file = edit_json(root, "train", lambda document: document["annotations"][0].update(iscrowd=value))
    if accepted is None:
        expected = rf"{file}: annotation id {annotation['id']} .*'iscrowd' must be the integer 0 or 1; got {value!r}"
        with pytest.raises(DatasetError, match=expected):
            load_coco_folder(root)
        return
    objects = load_coco_folder(root)["train"][annotation["image_id"]]["objects"]
    assert objects["iscrowd"][objects["id"].index(annotation["id"])] == accepted


def test_hub_layout_iscrowd_must_be_integers() -> None:
    as_strings = hub_dataset().map(
        lambda row: {"objects": {**row["objects"], "iscrowd": ["0"] * len(row["objects"]["bbox"])}}
    )
    with pytest.raises(DatasetError, match=r"objects.iscrowd must hold the integers 0 and 1; its feature is .*string"):
        prepare_dataset(as_strings)
    twos = hub_dataset().map(lambda row: {"objects": {**row["objects"], "iscrowd": [2] * len(row["objects"]["bbox"])}})
    with pytest.raises(DatasetError, match=r"split 'dataset', row 0: objects.iscrowd \[2, 2\] are not 0 or 1"):
        prepare_dataset(twos)


def _no_images(document: dict) -> None:
    document["images"], document["annotations"] = [], []


def _no_annotations(document: dict) -> None:
    document["annotations"] = []


def _all_degenerate(document: dict) -> None:
    for index, annotation in enumerate(document["annotations"]):
        annotation["bbox"][2 + index % 2] = -(index % 3)  # zero or negative width or height


def _all_crowd_or_outside(document: dict) -> None:
    for index, annotation in enumerate(document["annotations"]):
        annotation.update(iscrowd=1) if index % 2 else annotation.update(bbox=[500, 500, 5, 5])


@pytest.mark.parametrize(
    ("folder_name", "edit", "message"),
    [
        ("valid", _no_images, r"The validation split \({file}\) has no images: there is nothing to compute the "),
        ("train", _no_images, r"The train split \({file}\) has no images: there is nothing to train on"),
        ("train", _no_annotations, r"The train split \({file}\) has 4 image\(s\) but no annotations at all"),
        ("valid", _no_annotations, r"The validation split \({file}\) has 2 image\(s\) but no annotations at all"),
        (
            "train",
            _all_degenerate,
            r"train split \({file}\) has {n} annotation\(s\) but not one usable box to train "
            r"on: {n} with zero, negative or non-finite width/height, 0 entirely outside their image, 0 crowd",
        ),
        (
            "train",
            _all_crowd_or_outside,
            r"has {n} annotation\(s\) but not one usable box to train on: 0 with zero, "
            r"negative or non-finite width/height, {rest} entirely outside their image, {half} crowd",
        ),
    ],
)
def test_splits_that_cannot_be_trained_or_measured_on_are_refused_before_training(
    tmp_path: Path, folder_name: str, edit: Callable[[dict], None], message: str
) -> None:
    """An empty `valid/` crashed after a whole epoch (`KeyError: ... 'eval_map' not found`) and saved nothing; an
    empty train split failed inside the sampler, and one without usable boxes trained on empty targets."""
    root = small_folder(tmp_path)
    count = len(coco_document(root, folder_name)["annotations"])
    file = edit_json(root, folder_name, edit)
    expected = message.format(file=file, n=count, half=count // 2, rest=count - count // 2)
    splits, summaries = load_coco_folder(root, return_summary=True)  # loading alone is fine (e.g. a test split)
    with pytest.raises(DatasetError, match=expected):
        check_training_data(splits, summaries=summaries)
    with pytest.raises(ValueError, match=expected):  # fine_tune checks before it builds the model
        fine_tune("not-a-model-it-is-never-loaded", root, output_dir=tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()


def test_check_training_data_counts_and_names_hub_splits() -> None:
    prepared = prepare_dataset(datasets.DatasetDict({"train": hub_dataset()}), id2label={0: "a", 1: "b", 2: "c"})
    counts = check_training_data(prepared)
    assert (counts["train"].images, counts["train"].objects, counts["train"].usable) == (2, 3, 3)
    degenerate = hub_dataset().map(
        lambda row: {"objects": {**row["objects"], "bbox": [[1, 1, 0, 4]] * len(row["objects"]["bbox"])}}
    )
    prepared = prepare_dataset(
        datasets.DatasetDict({"train": hub_dataset(), "validation": degenerate}), id2label={0: "a", 1: "b", 2: "c"}
    )
    with pytest.raises(DatasetError, match=r"The validation split has 3 annotation\(s\) but not one usable box"):
        check_training_data(prepared)
    with pytest.raises(DatasetError, match=r"needs a 'train' split to train on; it has \['validation'\]"):
        check_training_data(datasets.DatasetDict({"validation": prepared["validation"]}))


# ----------------------------------------------------------------------------------------------------------------------
# Hub detection layout
# ----------------------------------------------------------------------------------------------------------------------


def hub_dataset(layout: str = "columns", bbox_format: str = "xywh") -> datasets.Dataset:
    """Two images in the cppe-5 style (dict of lists) or list-of-dicts style, integer categories, no image_id."""
    images = [Image.new("RGB", (40, 30), (200, 200, 200)), Image.new("RGB", (32, 32), (10, 10, 10))]
    boxes = [[[2.0, 3.0, 10.0, 5.0], [20.0, 10.0, 30.0, 25.0]], [[0.0, 0.0, 32.0, 32.0]]]
    if bbox_format == "xyxy":
        boxes = [[[x, y, x + w, y + h] for x, y, w, h in row] for row in boxes]
    categories = [[2, 0], [1]]
    bbox_feature = datasets.List(datasets.Value("float32"), length=4)
    if layout == "columns":
        objects = [{"bbox": b, "category": c} for b, c in zip(boxes, categories)]
        objects_feature = {"bbox": datasets.List(bbox_feature), "category": datasets.List(datasets.Value("int64"))}
    else:
        objects = [[{"bbox": box, "category": cat} for box, cat in zip(b, c)] for b, c in zip(boxes, categories)]
        objects_feature = datasets.List({"bbox": bbox_feature, "category": datasets.Value("int64")})
    features = datasets.Features(
        {"image": datasets.Image(), "width": datasets.Value("int32"), "height": datasets.Value("int32")}
        | {"objects": objects_feature}
    )
    return datasets.Dataset.from_dict(
        {"image": images, "width": [40, 32], "height": [30, 32], "objects": objects}, features=features
    )


@pytest.mark.parametrize(("layout", "bbox_format"), [("columns", "xywh"), ("rows", "xyxy")])
def test_hub_layout_dataset_is_accepted(layout: str, bbox_format: str) -> None:
    names = {0: "cat", 1: "dog", 2: "bird"}
    prepared = prepare_dataset(
        datasets.DatasetDict(
            {"train": hub_dataset(layout, bbox_format), "validation": hub_dataset(layout, bbox_format)}
        ),
        id2label=names,
        bbox_format=bbox_format,
    )
    assert id2label_from_dataset(prepared) == names
    assert prepared["train"]["image_id"] == [0, 1]
    first = prepared["train"][0]["objects"]
    boxes = first["bbox"] if layout == "columns" else [obj["bbox"] for obj in first]
    assert boxes == [[2.0, 3.0, 10.0, 5.0], [20.0, 10.0, 30.0, 25.0]]
    sample = apply_transforms(prepared, tiny_config(id2label=names))["validation"][0]
    assert sample["pixel_values"].shape == (3, 64, 64)
    assert sample["labels"]["class_labels"].tolist() == [2, 0]
    # the second box sticks out of the 40x30 image: clipped to x in [20, 40], y in [10, 30]
    expected = torch.tensor([[7 / 40, 5.5 / 30, 10 / 40, 5 / 30], [30 / 40, 20 / 30, 20 / 40, 20 / 30]])
    torch.testing.assert_close(sample["labels"]["boxes"], expected)


def test_hub_layout_reports_boxes_the_transforms_fix_and_infers_names(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=DATA_LOGGER):
        prepared = prepare_dataset(hub_dataset())
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "using ['0', '1', '2']" in messages
    assert "1 box(es) partly outside their image will be clipped" in messages
    assert isinstance(prepared, datasets.Dataset)
    assert id2label_from_dataset(prepared) == {0: "0", 1: "1", 2: "2"}


def test_hub_layout_missing_column_is_named() -> None:
    no_objects = datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8))], "labels": [[1]]})
    with pytest.raises(DatasetError, match=r"split 'train' has no column 'objects' \(columns: \['image', 'labels'\]\)"):
        prepare_dataset(datasets.DatasetDict({"train": no_objects}))
    no_bbox = datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (8, 8))], "objects": [{"boxes": [], "category": []}]}
    )
    with pytest.raises(DatasetError, match="column 'objects' has no field 'bbox'"):
        prepare_dataset(no_bbox)
    bad_category = hub_dataset().select([0]).map(lambda row: {"objects": {**row["objects"], "category": [7, 0]}})
    with pytest.raises(DatasetError, match=r"split 'dataset', row 0: objects.category \[7\] are outside 0..2\."):
        prepare_dataset(bad_category, id2label={0: "a", 1: "b", 2: "c"})
    with pytest.raises(DatasetError, match="not a datasets.ClassLabel"):
        id2label_from_dataset(hub_dataset())


def hub_rows(bad_objects: dict, good_objects: dict | None = None, layout: str = "columns") -> datasets.Dataset:
    """Two 64x48 images: row 0 with `good_objects` (default: one box of class 0), row 1 with `bad_objects`, both
    given as dicts of lists and stored as such (`layout="columns"`, cppe-5) or as lists of dicts (`"rows"`)."""
    objects = [good_objects or {"bbox": [[1.0, 2.0, 30.0, 20.0]], "category": [0]}, bad_objects]
    if layout == "rows":
        objects = [[dict(zip(row, values)) for values in zip(*row.values())] for row in objects]
    rows = {"image": [Image.new("RGB", (64, 48))] * 2, "width": [64, 64], "height": [48, 48]}
    return datasets.Dataset.from_dict(rows | {"objects": objects})


@pytest.mark.parametrize(
    ("bbox", "bbox_format", "layout", "shown"),
    [
        ([5, 5, float("inf"), 10], "xywh", "columns", r"\[5.0, 5.0, inf, 10.0\]"),
        ([float("nan"), 2, 10, 10], "xywh", "rows", r"\[nan, 2.0, 10.0, 10.0\]"),
        ([5, 5, float("-inf"), 10], "xyxy", "columns", r"\[5.0, 5.0, -inf, 10.0\]"),
        ([1, 2, 3], "xywh", "columns", r"\[1.0, 2.0, 3.0\]"),
        ([1, 2, 3, 4, 5], "xyxy", "rows", r"\[1.0, 2.0, 3.0, 4.0, 5.0\]"),
    ],
)
def test_hub_layout_malformed_bbox_names_split_row_and_object(
    bbox: list, bbox_format: str, layout: str, shown: str
) -> None:
    """An infinite width was clamped to the image edge and trained on, a NaN box dropped unreported, and a bbox of 3
    or 5 numbers failed with a bare unpacking error; all are refused up front, as `load_coco_folder` refuses them."""
    order = "x, y, width, height" if bbox_format == "xywh" else "x0, y0, x1, y1"
    expected = rf"split 'train', row 1, object 1: objects.bbox must be 4 finite numbers \[{order}\]; got {shown}\."
    objects = {"bbox": [[1, 2, 3, 4], bbox], "category": [0, 0]}
    with pytest.raises(DatasetError, match=expected):
        prepare_dataset(
            datasets.DatasetDict({"train": hub_rows(objects, layout=layout)}),
            id2label={0: "a"},
            bbox_format=bbox_format,
        )


def test_hub_layout_classlabel_no_label_is_refused_before_training(tmp_path: Path) -> None:
    """A `ClassLabel` -1 (datasets' "no label") passed every check and failed at the first training step, naming a
    batch position ("labels[0]: class_labels must be in [0, 2)") instead of the dataset row."""
    bbox = datasets.List(datasets.List(datasets.Value("float32")))
    category = datasets.List(datasets.ClassLabel(names=["a", "b"]))
    rows = hub_rows({"bbox": [[1, 2, 3, 4]] * 2, "category": [1, -1]})
    splits = datasets.DatasetDict({"train": rows.cast_column("objects", {"bbox": bbox, "category": category})})
    expected = (
        r"split 'train', row 1: objects.category \[-1\] are outside 0..1 \(-1 is a datasets.ClassLabel's 'no label'"
    )
    with pytest.raises(DatasetError, match=expected):
        prepare_dataset(splits)
    with pytest.raises(DatasetError, match=expected):  # before the model is loaded
        fine_tune("not-a-model-it-is-never-loaded", dataset=splits, output_dir=tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("category", "id2label", "message"),
    [
        ([1.5], None, r"\[1.5\] are not class ids: expected integers 0..K-1\."),
        ([1.5], {0: "cat", 1: "dog"}, r"\[1.5\] are not class ids: expected integers 0..1\."),
        ([-2], None, r"\[-2\] are outside 0..K-1\."),
        ([0, 2], {0: "cat", 1: "dog"}, r"\[2\] are outside 0..1\."),
    ],
)
def test_hub_layout_categories_that_are_not_class_ids_name_split_and_row(
    category: list, id2label: dict | None, message: str
) -> None:
    """A float category failed with Arrow's "Float value 1.500000 was truncated" from the cast, naming neither the
    split, the row nor the column, nor saying what is accepted (class names: see the tests below)."""
    rows = hub_rows({"bbox": [[1, 2, 3, 4]] * len(category), "category": category}, {"bbox": [], "category": []})
    with pytest.raises(DatasetError, match=rf"Dataset split 'train', row 1: objects.category {message}"):
        prepare_dataset(datasets.DatasetDict({"train": rows}), id2label=id2label)


@pytest.mark.parametrize(
    ("field", "values", "boxes"),
    [("category", [0], 2), ("category", [0, 0], 1), ("iscrowd", [0, 0], 1), ("area", [4.0], 2), ("category", None, 2)],
)
def test_hub_layout_object_fields_of_another_length_name_split_and_row(field: str, values: list, boxes: int) -> None:
    """Two boxes with one category passed `prepare_dataset` and failed in the transforms with a bare IndexError; a
    field stored as null (None) failed with a bare TypeError."""
    good = {"bbox": [[1, 2, 3, 4]], "category": [0], field: [0] if values is None else values[:1]}
    bad = {"bbox": [[1, 2, 3, 4]] * boxes, "category": [0] * boxes} | {field: values}
    count = 0 if values is None else len(values)
    expected = rf"split 'train', row 1: objects.{field} has {count} value\(s\) but objects.bbox has {boxes};"
    with pytest.raises(DatasetError, match=expected):
        prepare_dataset(datasets.DatasetDict({"train": hub_rows(bad, good)}), id2label={0: "a"})


@pytest.mark.parametrize(("layout", "bbox_format"), [("columns", "xywh"), ("rows", "xyxy")])
def test_hub_layout_class_names_map_to_the_ids_of_id2label(layout: str, bbox_format: str) -> None:
    """Category names (`["cat", "dog"]`, as many Hub datasets store them) were refused even with `id2label` naming
    every class; they are mapped to their ids through it."""
    names = {0: "cat", 1: "dog", 2: "bird"}
    bad = {"bbox": [[1, 2, 30, 20], [5, 5, 20, 20], [0, 0, 9, 9]], "category": ["bird", "cat", "bird"]}
    good = {"bbox": [[1, 2, 30, 20]], "category": ["dog"]}
    prepared = prepare_dataset(
        datasets.DatasetDict({"validation": hub_rows(bad, good, layout=layout)}),
        id2label=names,
        bbox_format=bbox_format,
    )
    assert id2label_from_dataset(prepared) == names
    rows = [object_columns(row) for row in prepared["validation"]["objects"]]
    assert [row["category"] for row in rows] == [[1], [2, 0, 2]]
    if bbox_format == "xyxy":  # converted in the same pass
        assert rows[1]["bbox"] == [[1.0, 2.0, 29.0, 18.0], [5.0, 5.0, 15.0, 15.0], [0.0, 0.0, 9.0, 9.0]]
    sample = apply_transforms(prepared, tiny_config(id2label=names))["validation"][1]
    assert sample["labels"]["class_labels"].tolist() == [2, 0, 2]


def test_hub_layout_class_names_map_to_the_ids_of_another_splits_classlabel() -> None:
    """A split storing names beside one whose category is a `ClassLabel`: the names take the `ClassLabel`'s ids."""
    validation = hub_rows({"bbox": [[1, 2, 3, 4]], "category": [1]})
    category = datasets.List(datasets.ClassLabel(names=["dog", "cat"]))
    validation = validation.cast_column(
        "objects", {"bbox": validation.features["objects"]["bbox"], "category": category}
    )
    train = hub_rows({"bbox": [[1, 2, 3, 4]] * 3, "category": ["cat", "dog", "cat"]}, {"bbox": [], "category": []})
    prepared = prepare_dataset(datasets.DatasetDict({"train": train, "validation": validation}))
    assert id2label_from_dataset(prepared) == {0: "dog", 1: "cat"}
    assert prepared["train"]["objects"][1]["category"] == [1, 0, 1]
    assert prepared["validation"]["objects"][1]["category"] == [1]


def test_hub_layout_class_names_without_a_class_list_are_sorted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without `id2label` or a `ClassLabel`, the names make the class list: the distinct names of every split,
    sorted, so that the ids depend neither on row order nor on which split holds a class; digits sort by value.
    fine_tune (which takes no class list) gets past its data checks with them."""
    train = hub_rows(
        {"bbox": [[1, 2, 3, 4]] * 2, "category": ["dog", "cat"]}, {"bbox": [[1, 2, 3, 4]], "category": ["dog"]}
    )
    validation = hub_rows({"bbox": [[1, 2, 3, 4]], "category": ["bird"]}, {"bbox": [], "category": []})
    with caplog.at_level(logging.INFO, logger=DATA_LOGGER):
        prepared = prepare_dataset(datasets.DatasetDict({"train": train, "validation": validation}))
    assert "class ids follow their sorted order: ['bird', 'cat', 'dog']" in caplog.text
    assert id2label_from_dataset(prepared) == {0: "bird", 1: "cat", 2: "dog"}
    assert prepared["train"]["objects"][0]["category"] == [2]
    assert prepared["train"]["objects"][1]["category"] == [2, 1]
    assert prepared["validation"]["objects"][1]["category"] == [0]
    digits = hub_rows({"bbox": [[1, 2, 3, 4]] * 3, "category": ["10", "2", "1"]}, {"bbox": [], "category": []})
    prepared = prepare_dataset(digits)
    assert id2label_from_dataset(prepared) == {0: "1", 1: "2", 2: "10"}
    assert prepared["objects"][1]["category"] == [2, 1, 0]
    with pytest.raises(OSError, match="not-a-model-it-is-never-loaded"):  # the data passed; the model is reported
        fine_tune(
            "not-a-model-it-is-never-loaded",
            dataset=datasets.DatasetDict({"train": train, "validation": validation}),
            output_dir=tmp_path / "out",
            device="cpu",
        )


def test_hub_layout_unknown_class_names_are_refused_naming_split_row_and_name() -> None:
    """A name that is not in the class list is refused, naming it and (some of) the known names; names beside integer
    ids in another split, with no class list to say which id each is, are refused saying how to give one."""
    rows = hub_rows({"bbox": [[1, 2, 3, 4]] * 3, "category": ["cat", "cow", "cow"]}, {"bbox": [], "category": []})
    expected = (
        r"Dataset split 'train', row 1: objects.category \['cow'\] are not known class names \(known: 'cat', 'dog'\);"
    )
    with pytest.raises(DatasetError, match=expected):
        prepare_dataset(datasets.DatasetDict({"train": rows}), id2label={0: "cat", 1: "dog"})
    many = {index: f"class{index}" for index in range(12)}
    expected = r"\['cat', 'cow'\] are not known class names \(known: 'class0', .*, 'class9', \.\.\. \(12 in all\)\)"
    with pytest.raises(DatasetError, match=expected):
        prepare_dataset(rows, id2label=many)
    ids = hub_rows({"bbox": [[1, 2, 3, 4]], "category": [0]})
    expected = (
        r"split 'validation', row 1: objects.category \['cat', 'cow', 'cow'\] are class names, but no class list is "
        r"known .* pass id2label=\{0: name, 1: \.\.\.\} to prepare_dataset"
    )
    with pytest.raises(DatasetError, match=expected):
        prepare_dataset(datasets.DatasetDict({"train": ids, "validation": rows}))


@pytest.mark.parametrize("layout", ["columns", "rows"])
@pytest.mark.parametrize(("area", "shown"), [(float("nan"), "nan"), (float("inf"), "inf"), (-4.0, "-4.0")])
def test_hub_layout_area_that_is_not_finite_or_negative_names_split_row_and_object(
    area: float, shown: str, layout: str
) -> None:
    """A NaN, infinite or negative `area` passed unchecked into COCO evaluation, which ranks objects small / medium /
    large (and crowd regions) by it."""
    bad = {"bbox": [[1, 2, 3, 4]] * 2, "category": [0, 0], "area": [12.0, area]}
    good = {"bbox": [[1, 2, 3, 4]], "category": [0], "area": [12.0]}
    expected = rf"split 'train', row 1, object 1: objects.area must be a finite number >= 0 .*; got {shown}\."
    with pytest.raises(DatasetError, match=expected):
        prepare_dataset(datasets.DatasetDict({"train": hub_rows(bad, good, layout=layout)}), id2label={0: "a"})


def test_hub_layout_area_zero_or_none_is_kept() -> None:
    """0 and None (no area: evaluation takes the box's) are accepted and kept; no `area` field at all is fine too."""
    objects = {"bbox": [[1, 2, 3, 4]] * 2, "category": [0, 0], "area": [0.0, None]}
    prepared = prepare_dataset(
        hub_rows(objects, {"bbox": [[1, 2, 3, 4]], "category": [0], "area": [12.0]}), id2label={0: "a"}
    )
    assert [row["area"] for row in prepared["objects"]] == [[12.0], [0.0, None]]
    assert "area" not in prepare_dataset(hub_rows({"bbox": [[1, 2, 3, 4]], "category": [0]}))["objects"][1]


def test_hub_layout_width_height_columns_must_be_the_displayed_image_size(tmp_path: Path) -> None:
    """`width`/`height` columns of another size than the image (annotated on a 160x120 original, images resized to
    80x60) were never compared with it: the boxes were clipped to and dropped against the real image silently. An
    EXIF-rotated image with columns in its stored frame was accepted and its boxes applied to the rotated image. Both
    are refused as `load_coco_folder` refuses them; columns in the displayed frame are accepted."""
    objects = {"bbox": [[100.0, 70.0, 50.0, 40.0]], "category": [0]}
    resized = datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (64, 48))] * 2, "width": [64, 160], "height": [48, 120], "objects": [objects] * 2}
    )
    expected = (
        r"Dataset split 'train', row 1: the image is 64x48 pixels but the width/height columns say 160x120 "
        r"\(width x height\); the boxes would not match the image\.$"
    )
    with pytest.raises(DatasetError, match=expected):
        prepare_dataset(datasets.DatasetDict({"train": resized}), id2label={0: "a"})
    photo = Image.new("RGB", (80, 60), (90, 120, 150))
    exif = photo.getexif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise when displayed: 60x80
    path = tmp_path / "photo.jpg"
    photo.save(path, exif=exif.tobytes())
    for image in (str(path), {"path": None, "bytes": path.read_bytes()}):  # a file path, encoded bytes
        stored_frame = datasets.Dataset.from_dict(
            {"image": [image], "width": [80], "height": [60], "objects": [objects]},
            features=datasets.Features(
                {"image": datasets.Image(), "width": datasets.Value("int32"), "height": datasets.Value("int32")}
                | {
                    "objects": {
                        "bbox": datasets.List(datasets.List(datasets.Value("float32"))),
                        "category": datasets.List(datasets.Value("int64")),
                    }
                }
            ),
        )
        named = re.escape(f" ({path})") if isinstance(image, str) else ""
        expected = (
            rf"split 'dataset', row 0{named}: the image is 60x80 pixels but the width/height columns say 80x60 .* It "
            r"is stored 80x60 with an EXIF orientation that displays it 60x80; images are read as displayed"
        )
        with pytest.raises(DatasetError, match=expected):
            prepare_dataset(stored_frame, id2label={0: "a"})
        displayed = stored_frame.map(lambda row: {"width": 60, "height": 80})
        prepared = prepare_dataset(displayed, id2label={0: "a"})
        assert (prepared[0]["width"], prepared[0]["height"]) == (60, 80)
    no_size = hub_rows({"bbox": [[1, 2, 3, 4]], "category": [0]}).map(lambda row: {"height": None})
    with pytest.raises(DatasetError, match=r"split 'dataset', row 0: width and height must be positive integers"):
        prepare_dataset(no_size, id2label={0: "a"})
    # without the columns nothing is compared: the transforms use the decoded size
    prepare_dataset(resized.remove_columns(["width", "height"]), id2label={0: "a"})


@pytest.mark.parametrize(
    ("image_ids", "shown"), [(["img_a", "img_b"], "'img_a'"), ([0.0, 1.5], "1.5"), ([0, None], "None")]
)
def test_hub_layout_image_id_that_is_not_an_integer_names_split_row_and_value(image_ids: list, shown: str) -> None:
    """A string `image_id` ("img_a") passed `prepare_dataset` and `check_training_data`, then failed in the first
    training batch with a bare "invalid literal for int()"; a float 1.5 was silently truncated to 1."""
    rows = hub_rows({"bbox": [[1, 2, 3, 4]], "category": [0]}).add_column("image_id", image_ids)
    row = 0 if shown == "'img_a'" else 1
    expected = (
        rf"Dataset split 'train', row {row}: column 'image_id' must hold integers .*; got {shown}\. Drop the column "
        r"\(dataset.remove_columns\('image_id'\)\) to have the row indices used as image ids, or cast it to integers"
    )
    with pytest.raises(DatasetError, match=expected):
        prepare_dataset(datasets.DatasetDict({"train": rows}), id2label={0: "a"})


def test_hub_layout_image_id_of_digits_or_integral_floats_is_cast_to_integers() -> None:
    """File stems such as "000123" and integral floats are taken as their integers (the column becomes int64)."""
    for image_ids, expected in ((["000123", "7"], [123, 7]), ([3.0, 4.0], [3, 4])):
        rows = hub_rows({"bbox": [[1, 2, 3, 4]], "category": [0]}).add_column("image_id", image_ids)
        prepared = prepare_dataset(rows, id2label={0: "a"})
        assert prepared.features["image_id"] == datasets.Value("int64")
        assert prepared["image_id"] == expected
        sample = apply_transforms({"validation": prepared}, tiny_config(id2label={0: "a"}))["validation"][0]
        assert sample["labels"]["image_id"].tolist() == [expected[0]]


def test_streaming_datasets_are_refused_saying_what_to_do(tmp_path: Path) -> None:
    """An `IterableDataset(Dict)` (`load_dataset(..., streaming=True)`) failed with "Expected a datasets.Dataset or
    DatasetDict, got IterableDatasetDict" in `prepare_dataset` and `fine_tune`, and with an obscure AttributeError in
    `apply_transforms`."""
    rows = hub_rows({"bbox": [[1, 2, 3, 4]], "category": [0]})
    streaming = datasets.IterableDatasetDict({"train": rows.to_iterable_dataset()})
    expected = (
        r"Streaming datasets are not supported by prepare_dataset, fine_tune and apply_transforms; got "
        r"{got} \(load_dataset\(..., streaming=True\).*Load it without streaming=True.*"
        r"datasets.Dataset.from_generator\(lambda: iter\(split\), features=split.features\)"
    )
    with pytest.raises(DatasetError, match=expected.format(got="IterableDatasetDict")):
        prepare_dataset(streaming)
    with pytest.raises(DatasetError, match=expected.format(got="IterableDataset")):
        prepare_dataset(streaming["train"])
    with pytest.raises(DatasetError, match=expected.format(got="IterableDatasetDict")):
        fine_tune("not-a-model-it-is-never-loaded", dataset=streaming, output_dir=tmp_path / "out", device="cpu")
    config = tiny_config(id2label={0: "a"})
    with pytest.raises(DatasetError, match=expected.format(got="a dict of IterableDataset")):
        apply_transforms({"train": streaming["train"]}, config)
    with pytest.raises(DatasetError, match=expected.format(got="IterableDatasetDict")):
        apply_transforms(streaming, config)
    # the suggested way round gives a dataset prepare_dataset takes
    split = streaming["train"]
    materialised = datasets.Dataset.from_generator(lambda: iter(split), features=split.features)
    assert prepare_dataset(materialised, id2label={0: "a"})["image_id"] == [0, 1]


def test_hub_layout_classlabel_ids_map_to_id2label_by_name() -> None:
    """A `ClassLabel` holding id2label's classes in another order (or a subset: a model's `config.id2label`) was
    refused with "Splits disagree on the class names", even with a single split; its ids are mapped by name, as class
    names stored as strings are. A ClassLabel name that id2label lacks is refused naming both."""
    bbox = datasets.List(datasets.List(datasets.Value("float32")))
    category = datasets.List(datasets.ClassLabel(names=["bird", "cat", "dog"]))
    rows = hub_rows({"bbox": [[1, 2, 3, 4]] * 3, "category": [0, 2, 1]}, {"bbox": [[1, 2, 3, 4]], "category": [2]})
    rows = rows.cast_column("objects", {"bbox": bbox, "category": category})
    for id2label, ids in (
        ({0: "dog", 1: "cat", 2: "bird"}, [[0], [2, 0, 1]]),
        ({0: "fish", 1: "bird", 2: "cat", 3: "dog"}, [[3], [1, 3, 2]]),
    ):
        prepared = prepare_dataset(datasets.DatasetDict({"train": rows, "validation": rows}), id2label=id2label)
        assert id2label_from_dataset(prepared) == id2label
        for split in ("train", "validation"):
            assert [object_columns(row)["category"] for row in prepared[split]["objects"]] == ids
        sample = apply_transforms(prepared, tiny_config(id2label=id2label))["validation"][1]
        assert sample["labels"]["class_labels"].tolist() == ids[1]
    expected = (
        r"Dataset split 'train': its objects.category ClassLabel has class name\(s\) \['bird'\] that id2label "
        r"\['dog', 'cat'\] does not have \(ClassLabel names: \['bird', 'cat', 'dog'\]\)"
    )
    with pytest.raises(DatasetError, match=expected):
        prepare_dataset(datasets.DatasetDict({"train": rows}), id2label={0: "dog", 1: "cat"})


# ----------------------------------------------------------------------------------------------------------------------
# Scales and training transform
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.reference
@pytest.mark.parametrize(("resolution", "patch_size", "num_windows"), [(384, 16, 2), (560, 14, 4), (64, 8, 2)])
@pytest.mark.parametrize("expanded", [True, False])
def test_multi_scale_scales_match_the_original(resolution: int, patch_size: int, num_windows: int, expanded: bool):
    ours = multi_scale_scales(resolution, patch_size * num_windows, expanded)
    assert all(scale % (patch_size * num_windows) == 0 and scale > 0 for scale in ours)
    assert ours == reference_coco().compute_multi_scale_scales(resolution, expanded, patch_size, num_windows)


def test_multi_scale_scales_values() -> None:
    assert multi_scale_scales(384, 32) == list(range(224, 545, 32))
    assert multi_scale_scales(560, 56) == list(range(280, 841, 56))
    assert multi_scale_scales(384, 32, expanded=False) == list(range(288, 513, 32))
    assert training_scales(tiny_config()) == list(range(32, 145, 16))  # 0 and 16 px (under two blocks) are dropped


def test_training_transform_shapes_and_boxes(dataset: datasets.DatasetDict) -> None:
    transformed = apply_transforms(dataset, tiny_config())["train"]
    torch.manual_seed(0)
    dropped = 0
    for _ in range(3):
        for index in range(len(transformed)):
            sample, row = transformed[index], dataset["train"][index]
            labels = sample["labels"]
            assert sample["pixel_values"].shape == (3, TINY_MAX_SCALE, TINY_MAX_SCALE)
            assert sample["pixel_values"].dtype == torch.float32
            assert labels["class_labels"].dtype == torch.int64 and labels["boxes"].dtype == torch.float32
            boxes = labels["boxes"]
            assert boxes.shape == (len(labels["class_labels"]), 4)
            assert ((boxes >= 0) & (boxes <= 1)).all() and (boxes[:, 2:] > 0).all()
            assert (boxes[:, :2] - boxes[:, 2:] / 2 >= -1e-6).all() and (
                boxes[:, :2] + boxes[:, 2:] / 2 <= 1 + 1e-6
            ).all()
            assert set(labels["class_labels"].tolist()) <= set(row["objects"]["category"])
            assert labels["image_id"].tolist() == [row["image_id"]]
            assert labels["orig_size"].tolist() == list(IMAGE_SIZE)
            assert labels["size"].tolist() == [TINY_MAX_SCALE, TINY_MAX_SCALE]
            assert labels[MULTI_SCALE_KEY] is True
            dropped += len(row["objects"]["bbox"]) - len(boxes)
    assert dropped > 0  # the crop branch drops boxes that leave the crop


@pytest.mark.reference
def test_training_transform_equals_the_original_under_the_same_seed(dataset: datasets.DatasetDict) -> None:
    coco = reference_coco()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = coco.make_coco_transforms_square_div_64(
            "train", 64, multi_scale=True, expanded_scales=True, skip_random_resize=True, patch_size=8, num_windows=2
        )
    ours = build_transforms(tiny_config(), train=True)
    for seed in range(24):
        row = dataset["train"][seed % 12]
        target = {"image_id": row["image_id"], "annotations": coco_annotations(row["objects"])}
        image, target = coco.ConvertCoco()(row["image"].convert("RGB"), target)
        torch.manual_seed(seed)
        expected_pixels, expected = original(image, target)
        torch.manual_seed(seed)
        pixels, labels = ours.transform_example(row["image"], row["objects"], row["image_id"])
        assert torch.equal(pixels, expected_pixels)
        assert torch.equal(labels["class_labels"], expected["labels"])
        torch.testing.assert_close(labels["boxes"], expected["boxes"], atol=1e-6, rtol=0)


def test_forced_flip_mirrors_image_and_box_centres(dataset: datasets.DatasetDict) -> None:
    config = tiny_config()
    plain = build_transforms(config, train=True, scale_jitter=False, hflip_prob=0.0)
    flipped = build_transforms(config, train=True, scale_jitter=False, hflip_prob=1.0)
    for row in dataset["train"].select(range(4)):
        pixels, labels = plain.transform_example(row["image"], row["objects"], row["image_id"])
        mirror_pixels, mirror = flipped.transform_example(row["image"], row["objects"], row["image_id"])
        assert torch.equal(mirror_pixels, pixels.flip(-1))
        torch.testing.assert_close(mirror["boxes"][:, 0], 1 - labels["boxes"][:, 0], atol=1e-6, rtol=0)
        torch.testing.assert_close(mirror["boxes"][:, 1:], labels["boxes"][:, 1:], atol=1e-6, rtol=0)
        assert torch.equal(mirror["class_labels"], labels["class_labels"])


def test_square_crop_keeps_only_the_boxes_inside_the_crop() -> None:
    image = Image.new("RGB", (640, 500))
    boxes = [[0, 0, 40, 40], [600, 460, 40, 40], [300, 230, 40, 40], [380, 0, 200, 30]]
    objects = {"bbox": boxes, "category": [0, 1, 2, 3]}
    crop = RandomSquareCrop()
    transform = DetectionTransform(v2.Compose([crop, v2.ToImage()]))
    seen_drop = seen_clip = False
    for seed in range(12):
        torch.manual_seed(seed)
        window = crop.make_params([image])
        torch.manual_seed(seed)
        pixels, labels = transform.transform_example(image, objects, 0)
        top, left, side = window["top"], window["left"], window["height"]
        assert 384 <= side <= 500 and pixels.shape == (3, side, side)
        expected_classes, expected_boxes = [], []
        for label, (x, y, w, h) in enumerate(boxes):
            x0, y0 = max(x - left, 0), max(y - top, 0)
            x1, y1 = min(x + w - left, side), min(y + h - top, side)
            if x1 > x0 and y1 > y0:
                expected_classes.append(label)
                expected_boxes.append([(x0 + x1) / 2 / side, (y0 + y1) / 2 / side, (x1 - x0) / side, (y1 - y0) / side])
                seen_clip |= (x1 - x0, y1 - y0) != (w, h)
        seen_drop |= len(expected_classes) < len(boxes)
        assert labels["class_labels"].tolist() == expected_classes
        torch.testing.assert_close(labels["boxes"], torch.tensor(expected_boxes).reshape(-1, 4), atol=1e-6, rtol=0)
    assert seen_drop and seen_clip


def test_crowd_objects_are_left_out_of_targets() -> None:
    objects = {"bbox": [[1, 1, 10, 10], [5, 5, 10, 10]], "category": [1, 2], "iscrowd": [1, 0]}
    _, labels = build_transforms(tiny_config(), train=False).transform_example(Image.new("RGB", (32, 32)), objects, 5)
    assert labels["class_labels"].tolist() == [2] and labels["iscrowd"].tolist() == [0]


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation transform
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.reference
def test_eval_transform_equals_the_original(dataset: datasets.DatasetDict) -> None:
    coco = reference_coco()
    original = coco.make_coco_transforms_square_div_64("val", 64, patch_size=8, num_windows=2)
    ours = build_transforms(tiny_config(), train=False)
    for row in dataset["validation"]:
        pixels, labels = ours.transform_example(row["image"], row["objects"], row["image_id"])
        assert pixels.shape == (3, 64, 64) and MULTI_SCALE_KEY not in labels
        target = {"image_id": row["image_id"], "annotations": coco_annotations(row["objects"])}
        expected_pixels, expected = original(*coco.ConvertCoco()(row["image"].convert("RGB"), target))
        assert torch.equal(pixels, expected_pixels)  # the original's eval resize: bilinear, antialiased PIL resize
        assert torch.equal(labels["class_labels"], expected["labels"])
        torch.testing.assert_close(labels["boxes"], expected["boxes"], atol=1e-6, rtol=0)


def test_eval_transform_versus_image_processor(dataset: datasets.DatasetDict) -> None:
    config = tiny_config()
    ours = build_transforms(config, train=False)
    processor = RFDetrImageProcessor.from_config(config)
    row = dataset["validation"][0]
    pixels, labels = ours.transform_example(row["image"], row["objects"], row["image_id"])
    annotations = {"image_id": row["image_id"], "annotations": coco_annotations(row["objects"])}
    processed = processor(row["image"], annotations=annotations, return_tensors="pt")
    torch.testing.assert_close(labels["boxes"], processed["labels"][0]["boxes"], atol=1e-6, rtol=0)
    # The processor follows predict (float tensor resize, antialias=False), the original's eval transform resizes the
    # uint8 PIL image with antialiasing: upsampling differs by PIL's uint8 rounding, downsampling by the antialiasing...
    assert 0 < (pixels - processed["pixel_values"][0]).abs().max() < 0.05
    large = row["image"].resize((128, 96))
    downsampled, _ = ours.transform_example(large, {"bbox": [], "category": []}, 0)
    assert (downsampled - processor(large, return_tensors="pt")["pixel_values"][0]).abs().max() > 0.1
    # ...and agree (same normalisation constants) when no resize happens.
    same_size = row["image"].resize((64, 64))
    no_resize, _ = ours.transform_example(same_size, {"bbox": [], "category": []}, 0)
    expected = processor(same_size, return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(no_resize, expected, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# Collator and model
# ----------------------------------------------------------------------------------------------------------------------


def test_collator_draws_one_reproducible_scale_per_training_batch(dataset: datasets.DatasetDict) -> None:
    config = tiny_config()
    transformed = apply_transforms(dataset, config)
    samples = [transformed["train"][index] for index in range(3)]
    collator = RFDetrDataCollator.from_config(config, seed=7)
    scales = training_scales(config)
    drawn = []
    for _ in range(6):
        batch = collator(samples)
        size = batch["pixel_values"].shape[-1]
        drawn.append(size)
        assert batch["pixel_values"].shape == (3, 3, size, size) and size in scales
        expected = torch.stack([s["pixel_values"] for s in samples])
        if size != TINY_MAX_SCALE:
            expected = nnf.interpolate(expected, size=(size, size), mode="bilinear", align_corners=False)
        torch.testing.assert_close(batch["pixel_values"], expected, atol=0, rtol=0)
        for target, sample in zip(batch["labels"], samples):
            assert MULTI_SCALE_KEY not in target and target["size"].tolist() == [size, size]
            assert torch.equal(target["boxes"], sample["labels"]["boxes"])
        assert MULTI_SCALE_KEY in samples[0]["labels"]  # the collator does not modify its inputs
    assert len(set(drawn)) > 1
    again = RFDetrDataCollator(scales, seed=7)
    assert [again(samples)["pixel_values"].shape[-1] for _ in range(6)] == drawn
    restored = pickle.loads(pickle.dumps(again))
    assert [restored.draw_scale() for _ in range(5)] == [again.draw_scale() for _ in range(5)]
    other = RFDetrDataCollator(scales, seed=8)
    assert [other.draw_scale() for _ in range(12)] != [
        RFDetrDataCollator(scales, seed=7).draw_scale() for _ in range(12)
    ]


def test_collator_leaves_evaluation_batches_alone(dataset: datasets.DatasetDict) -> None:
    config = tiny_config()
    transformed = apply_transforms(dataset, config)["validation"]
    samples = [transformed[index] for index in range(4)]
    batch = RFDetrDataCollator.from_config(config)(samples)
    assert batch["pixel_values"].shape == (4, 3, 64, 64)
    assert torch.equal(batch["pixel_values"], torch.stack([s["pixel_values"] for s in samples]))
    assert isinstance(batch["labels"], list) and len(batch["labels"]) == 4
    with pytest.raises(ValueError, match="one shape"):
        RFDetrDataCollator()([samples[0], {**samples[1], "pixel_values": torch.zeros(3, 32, 32)}])


def test_collated_training_batch_gives_a_finite_loss(dataset: datasets.DatasetDict) -> None:
    config = tiny_config(id2label=id2label_from_dataset(dataset))
    transformed = apply_transforms(dataset, config)["train"]
    loader = torch.utils.data.DataLoader(transformed, batch_size=4, collate_fn=RFDetrDataCollator.from_config(config))
    batch = next(iter(loader))
    torch.manual_seed(0)
    model = RFDetrForObjectDetection(config).train()
    outputs = model(**batch)
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_collator_in_dataloader_workers_is_reproducible(dataset: datasets.DatasetDict) -> None:
    config = tiny_config()
    transformed = apply_transforms(dataset, config)["train"]
    collator = RFDetrDataCollator.from_config(config, seed=1)

    def scales_of_two_epochs() -> list[list[int]]:
        torch.manual_seed(0)
        loader = torch.utils.data.DataLoader(transformed, batch_size=2, num_workers=2, collate_fn=collator)
        return [[batch["pixel_values"].shape[-1] for batch in loader] for _ in range(2)]

    first = scales_of_two_epochs()
    assert first == scales_of_two_epochs()
    assert set(first[0] + first[1]) <= set(training_scales(config))
    assert first[0] != first[1]  # workers reseed from torch's per-epoch worker seeds


def test_a_model_that_cannot_be_resolved_is_reported_after_the_data_checks(tmp_path: Path) -> None:
    """fine_tune reads the model's config first (it decides whether masks are read), but a name it cannot resolve
    (offline here) is reported only once the data has passed its checks, with transformers' own error."""
    root = small_folder(tmp_path)
    with pytest.raises(OSError, match="not-a-model-it-is-never-loaded"):
        fine_tune("not-a-model-it-is-never-loaded", root, output_dir=tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()


def test_boxes_with_fractional_coordinates_inside_the_image_are_not_reported_clipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """[10.1, 2.3, 30.7, 40.9] lies inside its image but was counted 'clipped': (x + w) - x is not w in floats."""
    root = small_folder(tmp_path)
    inside = [[10.1, 2.3, 30.7, 40.9], [0.3, 0.7, 12.9, 3.3], [1.1, 2.2, 3.3, 4.4]]

    def fractional(document: dict) -> None:
        for index, bbox in enumerate(inside):
            document["annotations"][index].update(bbox=bbox, image_id=0)

    edit_json(root, "train", fractional)
    with caplog.at_level(logging.WARNING, logger=DATA_LOGGER):
        loaded, summaries = load_coco_folder(root, return_summary=True)
    assert summaries["train"].as_dict()["clipped"] == 0
    assert not [record for record in caplog.records if "clipped" in record.getMessage()]
    objects = loaded["train"][0]["objects"]
    boxes = objects["bbox"] if isinstance(objects, dict) else [item["bbox"] for item in objects]
    for bbox in inside:  # kept as they are
        assert any(box == pytest.approx(bbox) for box in boxes), bbox


def test_hub_layout_image_bytes_without_the_image_feature_are_cast_to_it() -> None:
    """An Image column saved without its feature (Parquet written outside `datasets`, `Dataset.from_pandas`) reads
    back as `{"bytes", "path"}` structs or bare encoded bytes; it was refused. It is cast to `datasets.Image` as file
    paths are, and its `width` / `height` columns are checked against the bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buffer, "PNG")
    png = buffer.getvalue()
    objects = {"bbox": [[4.0, 5.0, 10.0, 8.0]], "category": [0]}
    stored = {
        "struct": ({"bytes": png, "path": None}, {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}),
        "bytes": (png, datasets.Value("binary")),
    }
    for name, (image, feature) in stored.items():
        features = datasets.Features(
            {
                "image": feature,
                "width": datasets.Value("int32"),
                "height": datasets.Value("int32"),
                "objects": {
                    "bbox": datasets.List(datasets.List(datasets.Value("float32"))),
                    "category": datasets.List(datasets.Value("int64")),
                },
            }
        )
        rows = {"image": [image], "width": [40], "height": [30], "objects": [objects]}
        prepared = prepare_dataset(datasets.Dataset.from_dict(rows, features=features), id2label={0: "a"})
        assert isinstance(prepared.features["image"], datasets.Image), name
        assert prepared[0]["image"].size == (40, 30) and prepared[0]["image"].getpixel((0, 0)) == (200, 10, 10)
        assert prepared[0]["objects"]["bbox"] == [[4.0, 5.0, 10.0, 8.0]]
        wrong = datasets.Dataset.from_dict(rows | {"width": [80]}, features=features)
        with pytest.raises(
            DatasetError, match=r"row 0: the image is 40x30 pixels but the width/height columns say 80x30"
        ):
            prepare_dataset(wrong, id2label={0: "a"})
    numbers = datasets.Dataset.from_dict({"image": [3], "objects": [objects]})
    with pytest.raises(DatasetError, match=r"column 'image' must be a datasets.Image, file paths \(strings\), encoded"):
        prepare_dataset(numbers, id2label={0: "a"})
