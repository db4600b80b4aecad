"""Instance-segmentation data: COCO polygons / RLE -> masks, masks through the augmentations and the collator, checks."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as mask_utils

from hf_rfdetr.synthetic import SHAPES
from hf_rfdetr.training.data import ANNOTATION_FILE, DatasetError, load_coco_folder
from hf_rfdetr.training.data_checks import check_training_data
from hf_rfdetr.training.hub_data import prepare_dataset
from hf_rfdetr.training.masks import MaskError, decode_masks, rle_runs, segmentation_to_rle
from hf_rfdetr.training.transforms import (
    RFDetrDataCollator,
    apply_transforms,
    build_transforms,
    training_scales,
)

from .conftest import tiny_config
from .fuzzing import fuzz_settings
from .synthetic_coco import write_synthetic_coco

IMAGE_SIZE = (48, 64)  # (height, width)
TINY_MAX_SCALE = 144  # max(multi_scale_scales(64, 16)) for tiny_config()


def seg_config(**overrides):
    return tiny_config(segmentation_head=True, **overrides)


def seg_folder(tmp_path: Path, mask_format: str = "mixed", **kwargs) -> Path:
    options = dict(num_train=6, num_valid=2, image_size=IMAGE_SIZE, masks=True, mask_format=mask_format) | kwargs
    return write_synthetic_coco(tmp_path / "data", **options)


def edit_json(root: Path, split: str, edit: Callable[[dict], None]) -> Path:
    file = root / split / ANNOTATION_FILE
    document = json.loads(file.read_text())
    edit(document)
    file.write_text(json.dumps(document))
    return file


def pycocotools_mask(segmentation, height: int, width: int) -> np.ndarray:
    """The original's decoding (`convert_coco_poly_to_mask`), straight from pycocotools."""
    if isinstance(segmentation, dict):
        rle = segmentation
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, height, width)
        return mask_utils.decode(rle).astype(bool)
    return mask_utils.decode(mask_utils.frPyObjects(segmentation, height, width)).any(axis=2)


def mask_box(mask: torch.Tensor) -> list[int]:
    """`[x0, y0, x1, y1]` (exclusive ends) of the True pixels."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


# ----------------------------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------------------------


def test_rle_runs_parse_pycocotools_encodings() -> None:
    rng = np.random.default_rng(0)
    for trial in range(60):
        height, width = (int(v) for v in rng.integers(1, 30, size=2))
        mask = rng.random((height, width)) < [0.0, 1.0, rng.random()][trial % 3]
        counts = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
        flat = mask.flatten(order="F").astype(int)
        changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
        expected = np.diff(np.concatenate([[0], changes])).tolist()  # runs, starting with zeros (possibly 0 long)
        assert rle_runs(counts) == expected
        assert np.array_equal(decode_masks([counts], height, width)[0], mask)


def test_loaded_masks_equal_pycocotools_for_polygons_and_rle(tmp_path: Path) -> None:
    height, width = IMAGE_SIZE
    root = seg_folder(tmp_path, mask_format="mixed")
    square = np.zeros((height, width), dtype=np.uint8)
    square[5:9, 10:13] = 1
    uncompressed_runs = mask_utils.encode(np.asfortranarray(square))["counts"].decode()

    def edit(document: dict) -> None:
        annotations = document["annotations"]
        annotations[0]["segmentation"] = [[1, 1, 20, 1, 20, 15], [30.5, 30, 50, 30, 50, 47.2, 30.5, 47.2]]  # 2 parts
        annotations[1]["segmentation"] = {"size": [height, width], "counts": rle_runs(uncompressed_runs)}
        annotations[2]["segmentation"] = [[60, 40, 80, 40, 80, 60]]  # partly outside the image: clipped by pycocotools

    file = edit_json(root, "train", edit)
    document = json.loads(file.read_text())
    loaded = load_coco_folder(root, masks=True)["train"]
    by_id = {annotation["id"]: annotation for annotation in document["annotations"]}
    formats = set()
    for row in loaded:
        masks = decode_masks(row["objects"]["segmentation"], row["height"], row["width"])
        assert masks.shape == (len(row["objects"]["id"]), height, width) and masks.dtype == bool
        for mask, annotation_id in zip(masks, row["objects"]["id"]):
            segmentation = by_id[annotation_id]["segmentation"]
            formats.add(type(segmentation["counts"]).__name__ if isinstance(segmentation, dict) else "polygon")
            assert np.array_equal(mask, pycocotools_mask(segmentation, height, width)), annotation_id
    assert formats == {"polygon", "str", "list"}
    assert np.array_equal(decode_masks([loaded[0]["objects"]["segmentation"][1]], height, width)[0], square)


@pytest.mark.reference
def test_loaded_masks_equal_the_originals_convert_coco_poly_to_mask(tmp_path: Path) -> None:
    from rfdetr.datasets.coco import convert_coco_poly_to_mask

    root = seg_folder(tmp_path, mask_format="mixed")
    document = json.loads((root / "train" / ANNOTATION_FILE).read_text())
    by_id = {annotation["id"]: annotation["segmentation"] for annotation in document["annotations"]}
    for row in load_coco_folder(root, masks=True)["train"]:
        ours = decode_masks(row["objects"]["segmentation"], row["height"], row["width"])
        expected = convert_coco_poly_to_mask([by_id[i] for i in row["objects"]["id"]], row["height"], row["width"])
        assert torch.equal(torch.from_numpy(ours), expected.bool())


def test_detection_loading_does_not_read_segmentation(tmp_path: Path) -> None:
    root = seg_folder(tmp_path)
    edit_json(root, "train", lambda d: d["annotations"][0].update(segmentation=[[1, 2]]))  # invalid, but not read
    loaded = load_coco_folder(root)
    assert "segmentation" not in loaded["train"].features["objects"]
    with pytest.raises(DatasetError, match="polygon 0 has 1 point"):
        load_coco_folder(root, masks=True)


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ([[1, 2, 3, 4]], r"polygon 0 has 2 point\(s\); a polygon needs at least 3 points"),
        ([[1, 2, 3, 4, 5]], r"polygon 0 has an odd number of coordinates \(5\)"),
        ([1, 2, 3, 4, 5, 6], r"got a flat list of 6 numbers \(wrap a single polygon in another list\)"),
        ([[1, 2, 3, 4, 5, "6"]], r"polygon 0 must be a list of numbers"),
        ([[1, 2, 3, 4, 5, 6], [1e9, 0, 5, 0, 5, 5]], r"polygon 1 has x = 1000000000.0, far outside the 64x48 image"),
        ([[1, 2, 3, 4, 5, float("nan")]], r"polygon 0 has non-finite coordinates"),
        (
            {"size": [10, 64], "counts": "PZ1"},
            r"RLE 'size' is \[10, 64\] \(height, width\) but the image is \[48, 64\]",
        ),
        ({"size": [48, 64], "counts": [5, 5]}, r"the RLE runs add up to 10 pixels but the image has 48 x 64 = 3072"),
        ({"size": [48, 64], "counts": "0"}, r"the RLE runs add up to 0 pixels"),
        ({"size": [48, 64], "counts": "abc"}, r"the compressed RLE string ends inside a number"),
        ({"size": [48, 64], "counts": "~~"}, r"invalid character '~' at 0"),
        ({"size": [48, 64], "counts": [3, -1, 3070]}, r"list of non-negative integers"),
        ({"counts": "PZ1"}, r"an RLE needs 'size' \[height, width\] and 'counts'"),
        ("PZ1", r"RLE runs add up to"),
        (7, r"expected a list of polygons .* got a int"),
    ],
)
def test_malformed_segmentation_is_an_error_naming_file_annotation_and_image(
    tmp_path: Path, segmentation: object, message: str
) -> None:
    root = seg_folder(tmp_path)
    file = edit_json(root, "train", lambda d: d["annotations"][2].update(segmentation=segmentation))
    annotation = json.loads(file.read_text())["annotations"][2]
    where = rf"{file}: annotation id {annotation['id']} \(image id {annotation['image_id']}, train_\d+\.jpg\)"
    with pytest.raises(DatasetError, match=where + r": invalid 'segmentation': .*" + message):
        load_coco_folder(root, masks=True)


@pytest.mark.parametrize("missing", ["absent", None, []])
def test_missing_segmentation_is_an_error_unless_crowd(tmp_path: Path, missing: object) -> None:
    root = seg_folder(tmp_path)

    def drop(document: dict) -> None:
        if missing == "absent":
            del document["annotations"][1]["segmentation"]
        else:
            document["annotations"][1]["segmentation"] = missing

    file = edit_json(root, "train", drop)
    found = "no 'segmentation'" if missing == "absent" else rf"'segmentation': {missing!r}".replace("[", r"\[")
    with pytest.raises(DatasetError, match=rf"{file}: annotation id 1 \(image id 0, .*\) has {found}, but a "):
        load_coco_folder(root, masks=True)
    edit_json(root, "train", lambda d: d["annotations"][1].update(iscrowd=1))
    loaded, summaries = load_coco_folder(root, masks=True, return_summary=True)
    assert loaded["train"][0]["objects"]["iscrowd"][1] == 1 and loaded["train"][0]["objects"]["segmentation"][1] == ""
    assert summaries["train"].masks == summaries["train"].boxes - 1


def test_segmentation_outside_the_image_is_kept_empty_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = seg_folder(tmp_path)
    edit_json(root, "train", lambda d: d["annotations"][0].update(segmentation=[[100, 100, 120, 100, 120, 130]]))
    with caplog.at_level(logging.WARNING, logger="hf_rfdetr.training.data"):
        loaded, summaries = load_coco_folder(root, masks=True, return_summary=True)
    assert summaries["train"].empty_masks == [0]
    assert "1 segmentation(s) cover no pixel of their image (kept, with an all-zero mask) (annotation ids 0)" in (
        caplog.text
    )
    row = loaded["train"][0]
    assert not decode_masks(row["objects"]["segmentation"][:1], row["height"], row["width"]).any()


def test_segmentation_to_rle_accepts_every_coco_form() -> None:
    mask = np.zeros((6, 5), dtype=np.uint8)
    mask[1:4, 2:5] = 1
    compressed = mask_utils.encode(np.asfortranarray(mask))["counts"]
    polygon = [[2, 1, 5, 1, 5, 4, 2, 4]]
    forms = [polygon, {"size": [6, 5], "counts": compressed}, {"size": [6, 5], "counts": compressed.decode()}]
    forms += [{"size": [6, 5], "counts": rle_runs(compressed.decode())}, compressed.decode()]
    for form in forms:
        assert np.array_equal(decode_masks([segmentation_to_rle(form, 6, 5)], 6, 5)[0], mask.astype(bool)), form
    with pytest.raises(MaskError, match="the segmentation is empty"):
        segmentation_to_rle([], 6, 5)


COORDINATES = st.floats(-10, 40, allow_nan=False) | st.sampled_from([float("nan"), float("inf"), 1e300, -1e300])
POINTS = st.lists(st.tuples(COORDINATES, COORDINATES), max_size=6).map(
    lambda pairs: [v for pair in pairs for v in pair]
)
POLYGONS = st.lists(POINTS | st.lists(COORDINATES, max_size=7), max_size=3)
MASKS = st.lists(st.booleans(), min_size=30, max_size=30).map(lambda bits: np.array(bits, dtype=np.uint8).reshape(6, 5))
ENCODED = MASKS.map(lambda mask: mask_utils.encode(np.asfortranarray(mask))["counts"].decode())
RLE_STRINGS = ENCODED | st.text(alphabet=st.characters(min_codepoint=40, max_codepoint=120), max_size=12)
RUNS = ENCODED.map(rle_runs) | st.lists(st.integers(-2, 40), max_size=8)
SIZES = st.sampled_from([[6, 5], [6, 5], [5, 6], [6, 5.0], [6], "6x5", None])
SEGMENTATIONS = (
    POLYGONS
    | st.fixed_dictionaries({"size": SIZES, "counts": RLE_STRINGS | RUNS | st.none()})
    | RLE_STRINGS
    | st.sampled_from([7, 2.5, True, {"counts": "1"}, [1, 2, 3, 4, 5, 6], [[1, 2, 3, "4", 5, 6]]])
)


@fuzz_settings(max_examples=300)
@given(segmentation=SEGMENTATIONS)
def test_fuzzed_segmentations_are_refused_or_decode_as_pycocotools(segmentation: object) -> None:
    """Any value either raises `MaskError` or gives an RLE that covers the 6 x 5 image exactly and decodes to
    pycocotools' own mask (never pycocotools' garbage from a malformed string, nor its crash on a 2-point polygon)."""
    try:
        counts = segmentation_to_rle(segmentation, 6, 5)
    except MaskError:
        event("refused")
        return
    event("accepted")
    assert sum(rle_runs(counts)) == 30
    mask = decode_masks([counts], 6, 5)[0]
    if isinstance(segmentation, str):
        segmentation = {"size": [6, 5], "counts": segmentation}
    assert np.array_equal(mask, pycocotools_mask(segmentation, 6, 5))


# ----------------------------------------------------------------------------------------------------------------------
# Transforms and collator
# ----------------------------------------------------------------------------------------------------------------------


def test_eval_transform_nearest_resizes_masks_to_the_expected_array() -> None:
    image = Image.new("RGB", (16, 8))  # (width, height): upscaled 4x horizontally, 8x vertically to 64 x 64
    objects = {"bbox": [[2, 1, 3, 4]], "category": [1], "segmentation": [[[2, 1, 5, 1, 5, 5, 2, 5]]]}
    pixels, labels = build_transforms(seg_config(), train=False).transform_example(image, objects, 0)
    source = np.zeros((8, 16), dtype=bool)
    source[1:5, 2:5] = True
    expected = np.repeat(np.repeat(source, 8, axis=0), 4, axis=1)  # nearest-neighbour upscaling
    assert labels["masks"].dtype == torch.bool and labels["masks"].shape == (1, 64, 64)
    assert np.array_equal(labels["masks"][0].numpy(), expected)
    box = (labels["boxes"][0] * 64).tolist()  # cx, cy, w, h in pixels
    assert mask_box(labels["masks"][0]) == [box[0] - box[2] / 2, box[1] - box[3] / 2, box[0] + box[2] / 2, 40]


def test_forced_flip_mirrors_the_masks() -> None:
    image = Image.new("RGB", (16, 8))
    objects = {"bbox": [[2, 1, 3, 4]], "category": [1], "segmentation": [[[2, 1, 5, 1, 5, 5, 2, 5]]]}
    plain = build_transforms(seg_config(), train=True, scale_jitter=False, hflip_prob=0.0, multi_scale=False)
    flipped = build_transforms(seg_config(), train=True, scale_jitter=False, hflip_prob=1.0, multi_scale=False)
    _, labels = plain.transform_example(image, objects, 0)
    _, mirror = flipped.transform_example(image, objects, 0)
    assert labels["masks"].any() and torch.equal(mirror["masks"], labels["masks"].flip(-1))


def test_rectangle_masks_stay_on_their_boxes_through_the_training_augmentation(tmp_path: Path) -> None:
    """Rectangles: every augmented mask's extent is its augmented box's, to within the nearest-resize rounding: under
    one output pixel for the direct resize, plus under 144/384 of one for the crop branch's first resize (its crop
    side is at least 384 pixels)."""
    root = write_synthetic_coco(tmp_path / "rects", num_train=8, num_valid=0, image_size=IMAGE_SIZE, num_classes=1)
    edit_json(root, "train", lambda d: [a.update(segmentation=_box_polygon(a["bbox"])) for a in d["annotations"]])
    dataset = load_coco_folder(root, masks=True)["train"]
    transform = build_transforms(seg_config(), train=True)
    objects_seen = objects_kept = 0
    for seed in range(40):
        row = dataset[seed % len(dataset)]
        torch.manual_seed(seed)
        pixels, labels = transform.transform_example(row["image"], row["objects"], row["image_id"])
        masks = labels["masks"]
        assert masks.shape == (len(labels["boxes"]), TINY_MAX_SCALE, TINY_MAX_SCALE) == (len(masks), *pixels.shape[1:])
        objects_seen, objects_kept = objects_seen + len(row["objects"]["id"]), objects_kept + len(masks)
        cx, cy, w, h = (labels["boxes"] * TINY_MAX_SCALE).unbind(-1)
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
        for mask, box in zip(masks, boxes):
            if mask.any():  # a box sliver thinner than one output pixel can lose all its mask pixels
                error = (torch.tensor(mask_box(mask), dtype=torch.float32) - box).abs().max()
                assert error < 1 + TINY_MAX_SCALE / 384, (seed, box)
    assert objects_kept < objects_seen  # the crop branch removed objects, and their masks with them


def _box_polygon(bbox: list[float]) -> list[list[float]]:
    x, y, w, h = bbox
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def test_images_without_objects_give_empty_masks_through_every_transform(tmp_path: Path) -> None:
    """rf-detr #739: an image without objects crashed Albumentations ("masks cannot be empty")."""
    root = seg_folder(tmp_path)
    edit_json(root, "train", lambda d: d.update(annotations=[a for a in d["annotations"] if a["image_id"] != 0]))
    dataset = load_coco_folder(root, masks=True)
    assert dataset["train"][0]["objects"]["id"] == []
    transformed = apply_transforms(dataset, seg_config())
    collator = RFDetrDataCollator.from_config(seg_config(), seed=0)
    for seed in range(6):  # both branches of the scale jitter, with and without the flip
        torch.manual_seed(seed)
        sample = transformed["train"][0]
        assert sample["labels"]["masks"].shape == (0, TINY_MAX_SCALE, TINY_MAX_SCALE)
        assert sample["labels"]["masks"].dtype == torch.bool
        batch = collator([sample, transformed["train"][1]])
        assert batch["labels"][0]["masks"].shape == (0, *batch["pixel_values"].shape[-2:])
    assert transformed["validation"][0]["labels"]["masks"].shape[1:] == (64, 64)
    crowd_only = {"bbox": [[1, 1, 5, 5]], "category": [0], "iscrowd": [1], "segmentation": [""]}
    _, labels = build_transforms(seg_config(), train=False).transform_example(Image.new("RGB", (20, 10)), crowd_only)
    assert labels["masks"].shape == (0, 64, 64) and labels["class_labels"].tolist() == []


def test_crowd_objects_and_their_masks_are_left_out(tmp_path: Path) -> None:
    root = seg_folder(tmp_path)
    edit_json(root, "train", lambda d: d["annotations"][0].update(iscrowd=1))
    row = load_coco_folder(root, masks=True)["train"][0]
    _, labels = build_transforms(seg_config(), train=False).transform_example(row["image"], row["objects"], 0)
    expected = decode_masks(row["objects"]["segmentation"][1:], row["height"], row["width"])
    resized = torch.nn.functional.interpolate(torch.from_numpy(expected)[None].float(), size=(64, 64), mode="nearest")
    assert labels["masks"].shape[0] == len(row["objects"]["id"]) - 1
    assert torch.equal(labels["masks"], resized[0].bool())


def test_collator_resizes_masks_to_the_batch_scale(tmp_path: Path) -> None:
    dataset = load_coco_folder(seg_folder(tmp_path), masks=True)
    transformed = apply_transforms(dataset, seg_config())["train"]
    collator = RFDetrDataCollator(scales=training_scales(seg_config()), seed=3)
    samples = [transformed[index] for index in range(3)]
    sizes = set()
    for _ in range(4):
        batch = collator([{**s, "labels": dict(s["labels"])} for s in samples])
        size = tuple(batch["pixel_values"].shape[-2:])
        sizes.add(size)
        for sample, labels in zip(samples, batch["labels"]):
            expected = torch.nn.functional.interpolate(sample["labels"]["masks"][None].float(), size=size)[0].bool()
            assert labels["masks"].dtype == torch.bool and torch.equal(labels["masks"], expected)
    assert len(sizes) > 1


def test_detection_transform_ignores_segmentation_and_segmentation_needs_it(tmp_path: Path) -> None:
    root = seg_folder(tmp_path)
    plain = load_coco_folder(root)
    sample = apply_transforms(plain, tiny_config())["validation"][0]
    assert "masks" not in sample["labels"]
    with pytest.raises(DatasetError, match=r"the objects have no 'segmentation' field.*masks=True"):
        apply_transforms(plain, seg_config())["validation"][0]
    with pytest.raises(DatasetError, match=r"The train split has no objects.segmentation, but the model segments"):
        check_training_data(plain, masks=True)


@pytest.mark.reference
def test_segmentation_transforms_equal_the_original_under_the_same_seed(tmp_path: Path) -> None:
    logging.getLogger("rf-detr").setLevel(logging.ERROR)
    from rfdetr.datasets import coco

    root = write_synthetic_coco(
        tmp_path / "cmp", num_train=8, num_valid=0, image_size=IMAGE_SIZE, masks=True, mask_format="mixed", seed=1
    )
    file = edit_json(root, "train", lambda d: d.update(annotations=[a for a in d["annotations"] if a["image_id"] != 3]))
    annotations = {annotation["id"]: annotation for annotation in json.loads(file.read_text())["annotations"]}
    dataset = load_coco_folder(root, masks=True)["train"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original_train = coco.make_coco_transforms_square_div_64(
            "train", 64, multi_scale=True, expanded_scales=True, skip_random_resize=True, patch_size=8, num_windows=2
        )
        original_eval = coco.make_coco_transforms_square_div_64("val", 64, patch_size=8, num_windows=2)
    pairs = [
        (original_train, build_transforms(seg_config(), True)),
        (original_eval, build_transforms(seg_config(), False)),
    ]
    shapes = set()
    for seed in range(32):
        row = dataset[seed % len(dataset)]
        target = {"image_id": row["image_id"], "annotations": [annotations[i] for i in row["objects"]["id"]]}
        image, target = coco.ConvertCoco(include_masks=True)(row["image"].convert("RGB"), target)
        for original, ours in pairs:
            torch.manual_seed(seed)
            expected_pixels, expected = original(image, target)
            torch.manual_seed(seed)
            pixels, labels = ours.transform_example(row["image"], row["objects"], row["image_id"])
            assert torch.equal(pixels, expected_pixels)
            assert torch.equal(labels["class_labels"] + 1, expected["labels"])  # the original keeps category ids
            assert torch.equal(labels["masks"], expected["masks"]), seed
            shapes.add((len(row["objects"]["id"]), len(labels["masks"])))
    assert (0, 0) in shapes and any(kept < total for total, kept in shapes)  # an empty image; a crop that drops


# ----------------------------------------------------------------------------------------------------------------------
# Checks and Hub datasets
# ----------------------------------------------------------------------------------------------------------------------


def hub_seg_dataset(segmentations: list[list]) -> datasets.Dataset:
    images = [Image.new("RGB", (40, 30), (200, 200, 200)), Image.new("RGB", (32, 32), (10, 10, 10))]
    boxes = [[[2.0, 3.0, 10.0, 5.0], [20.0, 10.0, 10.0, 10.0]], [[0.0, 0.0, 32.0, 32.0]]]
    objects = [{"bbox": b, "category": [0] * len(b), "segmentation": s} for b, s in zip(boxes, segmentations)]
    return datasets.Dataset.from_dict({"image": images, "width": [40, 30 + 2], "height": [30, 32], "objects": objects})


def test_hub_dataset_with_polygon_segmentation_trains_masks() -> None:
    polygons = [[[[2, 3, 12, 3, 12, 8, 2, 8]], [[20, 10, 30, 10, 30, 20]]], [[[0, 0, 32, 0, 32, 32, 0, 32]]]]
    prepared = prepare_dataset(datasets.DatasetDict({"train": hub_seg_dataset(polygons)}), id2label={0: "a"})
    counts = check_training_data(prepared, masks=True)
    assert (counts["train"].usable, counts["train"].masked) == (3, 3)
    sample = apply_transforms(prepared, seg_config(id2label={0: "a"}), train_split="none")["train"][0]
    expected = [pycocotools_mask(polygon, 30, 40) for polygon in polygons[0]]
    resized = torch.nn.functional.interpolate(torch.from_numpy(np.stack(expected))[None].float(), size=(64, 64))
    assert torch.equal(sample["labels"]["masks"], resized[0].bool())


def test_hub_dataset_segmentation_errors() -> None:
    bad = [[[[2, 3, 12, 3]], [[20, 10, 30, 10, 30, 20]]], [[[0, 0, 32, 0, 32, 32]]]]
    with pytest.raises(DatasetError, match=r"split 'train', row 0, object 0: invalid objects.segmentation: polygon 0 "):
        prepare_dataset(datasets.DatasetDict({"train": hub_seg_dataset(bad)}), id2label={0: "a"})
    missing = [[[[2, 3, 12, 3, 12, 8]], []], [[]]]
    prepared = prepare_dataset(datasets.DatasetDict({"train": hub_seg_dataset(missing)}), id2label={0: "a"})
    check_training_data(prepared)  # fine for detection
    with pytest.raises(
        DatasetError, match=r"The train split: 2 of 3 usable object\(s\) have no segmentation \(rows 0, 1"
    ):
        check_training_data(prepared, masks=True)


def test_loaded_folder_passes_the_segmentation_check(tmp_path: Path) -> None:
    splits, summaries = load_coco_folder(seg_folder(tmp_path), masks=True, return_summary=True)
    counts = check_training_data(splits, summaries=summaries, masks=True)
    assert counts["train"].masked == counts["train"].usable == summaries["train"].masks > 0


# ----------------------------------------------------------------------------------------------------------------------
# Synthetic data
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask_format", ["polygon", "rle", "mixed"])
def test_synthetic_masks_cover_the_drawn_shapes(tmp_path: Path, mask_format: str) -> None:
    plain = write_synthetic_coco(tmp_path / "plain", num_train=6, num_valid=0, image_size=IMAGE_SIZE)
    masked = write_synthetic_coco(
        tmp_path / "masked", num_train=6, num_valid=0, image_size=IMAGE_SIZE, masks=True, mask_format=mask_format
    )
    for image in (plain / "train").glob("*.jpg"):
        assert image.read_bytes() == (masked / "train" / image.name).read_bytes()
    boxes_only = json.loads((plain / "train" / ANNOTATION_FILE).read_text())["annotations"]
    with_masks = json.loads((masked / "train" / ANNOTATION_FILE).read_text())["annotations"]
    assert [a["bbox"] for a in boxes_only] == [a["bbox"] for a in with_masks]
    assert all(a["segmentation"] == [] for a in boxes_only)
    for annotation in with_masks:
        segmentation = annotation["segmentation"]
        is_rle = isinstance(segmentation, dict)
        assert is_rle == (mask_format == "rle" or (mask_format == "mixed" and annotation["id"] % 2 == 1))
        mask = torch.from_numpy(pycocotools_mask(segmentation, *IMAGE_SIZE))
        assert annotation["area"] == int(mask.sum())
        x, y, w, h = annotation["bbox"]
        shape = SHAPES[(annotation["category_id"] - 1) % 3]
        if is_rle or shape != "triangle":  # the drawn pixels (RLE) and the rectangle/ellipse polygons span the box
            assert mask_box(mask) == [x, y, x + w, y + h], annotation
        if shape == "rectangle":
            assert mask.sum() == w * h
        box_fill = mask.sum() / (w * h)
        assert {"rectangle": 0.99, "circle": 0.7, "triangle": 0.4}[shape] < box_fill <= 1.0


def test_missing_mask_errors_tell_cli_and_api_users_what_to_do(tmp_path: Path, capsys) -> None:
    """The errors for missing masks told users to pass `masks=True`, an option `hf-rfdetr train` / `eval` do not
    have (a Seg --model reads the folder's masks by itself): they now say what to do in both."""
    from hf_rfdetr.cli import main

    root = seg_folder(tmp_path)
    edit_json(root, "train", lambda document: document["annotations"][1].pop("segmentation"))
    arguments = ["train", "--dataset-dir", str(root), "--model", "seg-nano", "--from-scratch", "--output-dir"]
    assert main([*arguments, str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("hf-rfdetr train: error: ")
    assert "has no 'segmentation', but a segmentation model needs a mask for every object" in error
    assert "boxes only, train or evaluate a detection model (hf-rfdetr: a --model that is not a Seg one" in error
    assert "Python: load_coco_folder without masks=True)" in error
    assert not (tmp_path / "out").exists()

    how = (
        "hf-rfdetr train / eval with a Seg --model (seg-nano, ...) read every annotation's 'segmentation' (COCO "
        "polygons or RLE) from the COCO folder; in Python, load_coco_folder(path, masks=True) reads them and a "
        "datasets dataset needs an objects.segmentation field"
    )
    plain = load_coco_folder(seg_folder(tmp_path / "plain"))  # loaded without the masks
    with pytest.raises(DatasetError, match=r"the objects have no 'segmentation' field, which a segmentation") as info:
        apply_transforms(plain, seg_config())["validation"][0]
    assert how in str(info.value)
    with pytest.raises(DatasetError, match=r"The train split has no objects.segmentation, but the model") as info:
        check_training_data(plain, masks=True)
    assert how in str(info.value)
