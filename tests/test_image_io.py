"""Images are read as people see them, on every path: processor, pipeline, facade, CLI, training loader.

The demo scene (`DEMO_IMAGE`, 480 x 360) with the bundled demo checkpoint (`DEMO_MODEL`) has six objects. Stored
sideways with EXIF orientation 6 (as phones write photos), every path must find the same six, with boxes in the
displayed 480 x 360 frame; a 16-bit copy of an 8-bit image must give exactly the 8-bit pixels; tensors are
channels-first; unreadable files are named; `pipeline([])` is `[]`; the pixel limit refuses decompression bombs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from transformers import AutoModelForObjectDetection, pipeline
from transformers.image_utils import load_image as transformers_load_image

import hf_rfdetr.models.rfdetr.image_io as image_io
from hf_rfdetr import RFDETR, RFDetrImageProcessor
from hf_rfdetr.cli import main
from hf_rfdetr.demo_assets import DEMO_IMAGE, DEMO_MODEL, demo_ground_truth
from hf_rfdetr.models.rfdetr.image_io import ImageReadError, ImageTooLargeError, load_image, to_chw
from hf_rfdetr.training.data import DatasetError, load_coco_folder
from hf_rfdetr.training.transforms import decode_image

THRESHOLD = 0.5
WIDTH, HEIGHT = 480, 360  # the demo scene as displayed


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The demo scene upright, stored sideways with EXIF orientation 6, in 8- and 16-bit grey, truncated, not an image."""
    folder = tmp_path_factory.mktemp("images")
    scene = Image.open(DEMO_IMAGE).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    scene.transpose(Image.Transpose.ROTATE_90).save(folder / "rotated.jpg", exif=exif, quality=95)
    grey = np.asarray(scene.convert("L"))
    Image.fromarray(grey).save(folder / "grey8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(folder / "grey16.png")  # 0..255 -> 0..65535
    (folder / "truncated.jpg").write_bytes(DEMO_IMAGE.read_bytes()[:4000])
    (folder / "notes.jpg").write_text("not an image")
    return {path.stem: path for path in folder.iterdir()}


@pytest.fixture(scope="module")
def detector():
    return pipeline("object-detection", model=str(DEMO_MODEL))


@pytest.fixture(scope="module")
def facade() -> RFDETR:
    return RFDETR(pretrain_weights=str(DEMO_MODEL), device="cpu")


@pytest.fixture(scope="module")
def processor() -> RFDetrImageProcessor:
    return RFDetrImageProcessor.from_pretrained(DEMO_MODEL)


@pytest.fixture(scope="module")
def model():
    return AutoModelForObjectDetection.from_pretrained(DEMO_MODEL).eval()


def run_processor(processor, model, image, size: tuple[int, int]) -> tuple[list[str], np.ndarray]:
    """Labels and xyxy boxes from the processor and model used directly, boxes scaled to `size` (height, width)."""
    with torch.no_grad():
        outputs = model(**processor(image, return_tensors="pt"))
    (result,) = processor.post_process_object_detection(outputs, THRESHOLD, target_sizes=[size])
    return [model.config.id2label[int(i)] for i in result["labels"]], result["boxes"].numpy()


def pipeline_boxes(results: list[dict]) -> tuple[list[str], np.ndarray]:
    boxes = [[r["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for r in results]
    return [r["label"] for r in results], np.array(boxes, dtype=float).reshape(-1, 4)


def assert_demo_scene(labels: list[str], boxes: np.ndarray, where: str) -> None:
    """The six ground-truth objects of the upright demo scene, each found once with IoU > 0.8, in the 480x360 frame."""
    truth = demo_ground_truth()
    assert len(labels) == len(truth) == 6, f"{where}: {len(labels)} detections"
    assert (boxes[:, [0, 2]] <= WIDTH + 1e-3).all() and (boxes[:, [1, 3]] <= HEIGHT + 1e-3).all(), where
    for obj in truth:
        expected = np.array([obj["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")], dtype=float)
        matches = [i for i, label in enumerate(labels) if label == obj["label"] and iou(boxes[i], expected) > 0.8]
        assert len(matches) == 1, f"{where}: {obj} found {len(matches)} times in {list(zip(labels, boxes.tolist()))}"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ----------------------------------------------------------------------------------------------------------------------
# EXIF orientation
# ----------------------------------------------------------------------------------------------------------------------


def test_exif_rotated_photo_is_read_upright(files) -> None:
    with Image.open(files["rotated"]) as stored:
        assert stored.size == (HEIGHT, WIDTH)  # stored sideways
    assert load_image(files["rotated"]).size == (WIDTH, HEIGHT)
    assert image_io.displayed_size(Image.open(files["rotated"])) == (WIDTH, HEIGHT)
    from hf_rfdetr.annotate import draw_detections

    assert draw_detections(Image.open(files["rotated"]), []).size == (WIDTH, HEIGHT)  # drawn in the displayed frame


def test_exif_rotated_photo_every_path_finds_the_six_objects(
    files, detector, facade: RFDETR, processor, model, tmp_path: Path
) -> None:
    path = files["rotated"]
    assert_demo_scene(*pipeline_boxes(detector(str(path), threshold=THRESHOLD)), "pipeline")
    found = facade.predict(str(path), threshold=THRESHOLD)
    assert_demo_scene(list(found.data["class_name"]), found.xyxy, "facade")
    assert_demo_scene(*run_processor(processor, model, str(path), (HEIGHT, WIDTH)), "processor(path)")
    assert_demo_scene(*run_processor(processor, model, Image.open(path), (HEIGHT, WIDTH)), "processor(Image.open)")
    assert main(["predict", str(path), "--model", str(DEMO_MODEL), "--output-dir", str(tmp_path), "--no-progress"]) == 0
    (entry,) = json.loads((tmp_path / "detections.json").read_text())["images"]
    assert (entry["width"], entry["height"]) == (WIDTH, HEIGHT)
    labels = [d["label"] for d in entry["detections"]]
    assert_demo_scene(labels, np.array([d["box"] for d in entry["detections"]]), "hf-rfdetr predict")
    with Image.open(entry["output"]) as annotated:
        assert annotated.size == (WIDTH, HEIGHT)


def orientation_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The EXIF-orientation warnings logged by `image_io` since the last `caplog.clear()`."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == image_io.__name__
        and record.levelno == logging.WARNING
        and "EXIF orientation" in record.getMessage()
    ]


def test_pil_image_still_carrying_an_exif_orientation_warns(files, processor, caplog) -> None:
    """`Image.open(path).convert("RGB")` keeps the orientation tag: the processor reads the image upright (480 x 360)
    while `image.size` is the stored 360 x 480, so target sizes taken from it would be wrong; one warning per such
    image says so, with the index, the orientation, both sizes and the way out. Upright images and paths are quiet."""
    tagged = Image.open(files["rotated"]).convert("RGB")
    assert tagged.getexif().get(0x0112) == 6 and tagged.size == (HEIGHT, WIDTH)
    upright = Image.open(DEMO_IMAGE)
    with caplog.at_level(logging.WARNING, logger=image_io.__name__):
        processor([upright, tagged])
        (message,) = orientation_warnings(caplog)
        assert message.startswith("Image 1: PIL image with EXIF orientation 6 (rotated 90 degrees clockwise)")
        assert "480x360 (width x height)" in message and "`.size` are 360x480" in message
        assert "Boxes and masks come out in the displayed 480x360 frame" in message
        assert (
            "PIL.ImageOps.exif_transpose(image)" in message and "target_sizes=[(image.height, image.width)]" in message
        )
        assert "displayed_size(image)" in message
        caplog.clear()
        processor([tagged, tagged])
        assert [m.split(":")[0] for m in orientation_warnings(caplog)] == ["Image 0", "Image 1"]  # one per image
        caplog.clear()
        processor(upright)
        processor(str(files["rotated"]))  # files are read upright by load_image: no tag left, nothing to warn about
        processor(ImageOps.exif_transpose(tagged))
        processor(transformers_load_image(str(files["rotated"])))
        assert load_image(tagged).getexif().get(0x0112) is None
        assert orientation_warnings(caplog) == []


def test_readme_pattern_on_an_exif_rotated_photo_gives_the_boxes_of_the_path(
    files, processor, model, detector, facade: RFDETR, caplog
) -> None:
    """The README reads photos upright (transformers' `load_image`, or `ImageOps.exif_transpose`) and takes
    `target_sizes` from that image: the boxes are those of the processor and `predict` on the path. The pipeline
    (which reads PIL images upright first) does not warn; `predict` on the tagged PIL image warns once."""
    path = files["rotated"]
    reference_labels, reference = run_processor(processor, model, str(path), (HEIGHT, WIDTH))
    assert_demo_scene(reference_labels, reference, "processor(path)")
    with caplog.at_level(logging.WARNING, logger=image_io.__name__):
        for upright in (transformers_load_image(str(path)), ImageOps.exif_transpose(Image.open(path)).convert("RGB")):
            assert upright.size == (WIDTH, HEIGHT)
            labels, boxes = run_processor(processor, model, upright, (upright.height, upright.width))
            assert labels == reference_labels
            np.testing.assert_allclose(boxes, reference, atol=1e-4)
        found = facade.predict(str(path), threshold=THRESHOLD)
        np.testing.assert_allclose(found.xyxy, reference, atol=1e-3)
        tagged = Image.open(path).convert("RGB")
        assert_demo_scene(*pipeline_boxes(detector(tagged, threshold=THRESHOLD)), "pipeline(tagged PIL image)")
        assert orientation_warnings(caplog) == []
        from_tagged = facade.predict(tagged, threshold=THRESHOLD)
        (message,) = orientation_warnings(caplog)  # the facade's own read; the processor then gets a tensor
        assert message.startswith("image 0: PIL image with EXIF orientation 6")
    np.testing.assert_allclose(from_tagged.xyxy, reference, atol=1e-3)
    # the stored size as target_sizes (the old README pattern) gives other boxes: what the warning is about
    _, stored = run_processor(processor, model, tagged, (tagged.height, tagged.width))
    assert np.abs(stored - reference).max() > 50


def test_pil_image_with_an_orientation_is_upright_also_without_rgb_conversion() -> None:
    """`do_convert_rgb=False` keeps grey and RGBA channels as they are, and still applies the EXIF orientation."""
    pixels = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)
    for image in (Image.fromarray(pixels), Image.fromarray(np.dstack([pixels] * 4))):
        image.getexif()[0x0112] = 6
        expected = to_chw(ImageOps.exif_transpose(image), convert_rgb=False)
        assert expected.shape[1:] == (20, 12)
        assert torch.equal(to_chw(image, convert_rgb=False), expected)
        assert torch.equal(to_chw(image)[0], expected[0])


def write_coco(folder: Path, image: Path, width: int, height: int) -> Path:
    """A one-image COCO folder (train split) with the demo scene's ground-truth boxes."""
    split = folder / "train"
    split.mkdir(parents=True)
    (split / image.name).write_bytes(image.read_bytes())
    names = sorted({obj["label"] for obj in demo_ground_truth()})
    annotations = []
    for index, obj in enumerate(demo_ground_truth()):
        box = obj["box"]
        xywh = [box["xmin"], box["ymin"], box["xmax"] - box["xmin"], box["ymax"] - box["ymin"]]
        annotations.append(
            {"id": index, "image_id": 0, "category_id": names.index(obj["label"]), "bbox": xywh, "iscrowd": 0}
        )
    document = {
        "images": [{"id": 0, "file_name": image.name, "width": width, "height": height}],
        "categories": [{"id": i, "name": name} for i, name in enumerate(names)],
        "annotations": annotations,
    }
    (split / "_annotations.coco.json").write_text(json.dumps(document))
    return folder


def test_training_loader_reads_exif_rotated_images_upright(files, tmp_path: Path) -> None:
    dataset = load_coco_folder(write_coco(tmp_path / "displayed", files["rotated"], WIDTH, HEIGHT), check_images="full")
    row = dataset["train"].cast_column("image", type(dataset["train"].features["image"])(decode=False))[0]
    assert decode_image(row["image"], 0).size == (WIDTH, HEIGHT)
    upright = np.asarray(load_image(files["rotated"]))
    assert np.array_equal(np.asarray(decode_image(row["image"], 0)), upright)
    assert np.array_equal(np.asarray(decode_image(dataset["train"][0]["image"], 0)), upright)  # decoded by datasets
    with pytest.raises(DatasetError, match=r"is 480x360 pixels but the annotation file says 360x480.*EXIF orientation"):
        load_coco_folder(write_coco(tmp_path / "stored", files["rotated"], HEIGHT, WIDTH))


# ----------------------------------------------------------------------------------------------------------------------
# 16-bit images
# ----------------------------------------------------------------------------------------------------------------------


def test_sixteen_bit_png_gives_the_eight_bit_pixels(files, processor) -> None:
    with Image.open(files["grey16"]) as opened:
        assert opened.mode.startswith("I")  # Pillow clips this to white with convert("RGB")
    eight, sixteen = load_image(files["grey8"]), load_image(files["grey16"])
    assert np.array_equal(np.asarray(eight), np.asarray(sixteen)) and np.asarray(sixteen).std() > 10
    reference = processor(str(files["grey8"]))["pixel_values"]
    assert torch.equal(processor(str(files["grey16"]))["pixel_values"], reference)
    assert torch.equal(processor(Image.open(files["grey16"]))["pixel_values"], reference)
    grey = np.asarray(Image.open(files["grey8"]))
    assert torch.equal(processor(grey.astype(np.uint16) * 257)["pixel_values"], reference)  # uint16 arrays too
    as_int32 = Image.fromarray(grey.astype(np.int32) * 257)  # older Pillow's mode for 16-bit PNGs
    assert as_int32.mode == "I" and torch.equal(processor(as_int32)["pixel_values"], reference)
    as_float = Image.fromarray(grey.astype(np.float32) / 255)
    assert as_float.mode == "F" and (processor(as_float)["pixel_values"] - reference).abs().max() < 1e-5
    assert np.array_equal(np.asarray(decode_image(str(files["grey16"]))), np.asarray(eight))


def test_sixteen_bit_png_same_detections_on_every_path(files, detector, facade: RFDETR, tmp_path: Path) -> None:
    eight, sixteen = str(files["grey8"]), str(files["grey16"])
    expected = detector(eight, threshold=0.1)
    assert len(expected) > 0
    assert detector(sixteen, threshold=0.1) == expected
    one, other = facade.predict([eight, sixteen], threshold=0.1)
    assert len(one) == len(expected)
    np.testing.assert_array_equal(one.xyxy, other.xyxy)
    np.testing.assert_array_equal(one.class_id, other.class_id)
    argv = ["predict", eight, sixteen, "--model", str(DEMO_MODEL), "--output-dir", str(tmp_path), "--no-progress"]
    assert main([*argv, "--threshold", "0.1"]) == 0
    first, second = json.loads((tmp_path / "detections.json").read_text())["images"]
    assert first["detections"] == second["detections"] and len(first["detections"]) == len(expected)


# ----------------------------------------------------------------------------------------------------------------------
# Array and tensor layout
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [2, 3, 4])
def test_channels_first_tensors_with_tiny_width(processor, width: int) -> None:
    tensor = torch.rand(3, 64, width)
    mask = processor(tensor, do_resize=False, keep_aspect_ratio=True)["pixel_mask"][0]
    assert (int(mask[:, 0].sum()), int(mask[0, :].sum())) == (64, tensor.shape[2])
    assert torch.equal(to_chw(tensor), tensor)


def test_tensor_tiny_width_through_the_facade(facade: RFDETR) -> None:
    found = facade.predict(torch.rand(3, 64, 4), threshold=0.0)
    assert len(found) > 0 and (found.xyxy[:, [0, 2]] <= 4 + 1e-4).all() and (found.xyxy[:, [1, 3]] <= 64 + 1e-4).all()


def test_layout_rule() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    expected = torch.from_numpy(rgb).permute(2, 0, 1)
    assert torch.equal(to_chw(rgb), expected)  # numpy: channels last
    assert torch.equal(to_chw(rgb.transpose(2, 0, 1)), expected)  # (3, H, W) numpy: the one possible reading
    assert torch.equal(to_chw(torch.from_numpy(rgb)), expected)  # (H, W, 3) tensor: the one possible reading
    assert torch.equal(to_chw(expected), expected)
    assert torch.equal(to_chw(Image.fromarray(rgb)), expected)
    assert torch.equal(to_chw(torch.from_numpy(rgb[..., 0])), expected[:1].expand(3, -1, -1))
    assert torch.equal(to_chw(np.ones((5, 4, 3), bool)), torch.full((3, 5, 4), 255, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"numpy array of shape \(3, 40, 4\) is ambiguous"):
        to_chw(np.zeros((3, 40, 4), np.uint8))
    with pytest.raises(ValueError, match=r"got shape \(5, 20, 2\)"):
        to_chw(torch.zeros(5, 20, 2))
    for dtype in (np.int8, np.int32, np.int64, np.uint32, np.complex64):
        with pytest.raises(ValueError, match=f"unsupported dtype {np.dtype(dtype)}"):
            to_chw(np.zeros((8, 8, 3), dtype))
    with pytest.raises(TypeError, match="unsupported type list"):
        to_chw([[0, 1], [1, 0]])


def test_ambiguous_numpy_is_refused_by_processor_and_facade(processor, facade: RFDETR) -> None:
    with pytest.raises(ValueError, match=r"Image 0: numpy array of shape \(3, 40, 4\) is ambiguous"):
        processor(np.zeros((3, 40, 4), np.uint8))
    with pytest.raises(ValueError, match=r"image 0: numpy array of shape \(4, 40, 3\) is ambiguous"):
        facade.predict(np.zeros((4, 40, 3), np.uint8))


# ----------------------------------------------------------------------------------------------------------------------
# Unreadable files, empty input, pixel limit
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "problem"), [("truncated", "truncated"), ("notes", "not an image")])
def test_unreadable_files_are_named_on_every_path(files, detector, facade: RFDETR, processor, name, problem) -> None:
    path = files[name]
    pattern = f"{path.name}'.*{problem}"
    with pytest.raises(ImageReadError, match=pattern):
        detector(str(path))
    with pytest.raises(ImageReadError, match=f"image 0: '.*{pattern}"):
        facade.predict(str(path))
    with pytest.raises(ImageReadError, match=f"Image 0: '.*{pattern}"):
        processor(str(path))
    with pytest.raises(DatasetError, match=f"{path.name}.*image_id 7.*{problem}"):
        decode_image(str(path), 7)
    if name == "truncated":  # a lazily opened PIL image names its file when it fails to decode
        with pytest.raises(ImageReadError, match=pattern):
            processor(Image.open(path))


def test_cli_folder_with_one_unreadable_file(files, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(9):
        (folder / f"{index}.jpg").write_bytes(DEMO_IMAGE.read_bytes())
    (folder / "4.jpg").write_bytes(files["truncated"].read_bytes())
    out = tmp_path / "out"
    argv = ["predict", str(folder), "--model", str(DEMO_MODEL), "--output-dir", str(out), "--no-progress"]
    assert main([*argv, "--batch-size", "4"]) == 1
    report = json.loads((out / "detections.json").read_text())
    assert [Path(entry["input"]).name for entry in report["images"]] == [f"{i}.jpg" for i in range(9) if i != 4]
    assert all(len(entry["detections"]) == 6 for entry in report["images"])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["detections.json"] + [f"{i}.jpg" for i in range(9) if i != 4]
    )
    (error,) = report["errors"]
    assert error["input"] == str(folder / "4.jpg") and "truncated" in error["error"]
    captured = capsys.readouterr()
    assert "8 image(s) (48 detections)" in captured.out
    assert "could not read 1 of 9 input(s)" in captured.err and "4.jpg' cannot be decoded" in captured.err


def test_pipeline_with_an_empty_list(detector) -> None:
    assert detector([]) == []


def test_pipeline_still_reads_base64_strings(files, detector) -> None:
    import base64

    encoded = base64.b64encode(files["rotated"].read_bytes()).decode()
    expected = detector(str(files["rotated"]))
    assert detector(encoded) == expected and detector(f"data:image/jpeg;base64,{encoded}") == expected
    # A missing path that happens to be valid base64 ("data/img" decodes) is reported as the missing file it is.
    with pytest.raises(FileNotFoundError, match=r"'data/img': no such file, nor a base64-encoded image"):
        detector("data/img")
    with pytest.raises(FileNotFoundError, match="missing.jpg' does not exist"):
        detector(str(files["rotated"].parent / "missing.jpg"))


def test_pixel_limit(files, detector, facade: RFDETR, processor, tmp_path: Path, monkeypatch) -> None:
    path = files["grey8"]
    monkeypatch.setattr(image_io, "MAX_IMAGE_PIXELS", 1000)
    message = rf"{path.name}'? has 480x360 = 172,800 pixels, more than the limit of 1,000"
    with pytest.raises(ImageTooLargeError, match=message):
        load_image(path)
    with pytest.raises(ImageTooLargeError, match=message):
        detector(str(path))
    with pytest.raises(ImageTooLargeError, match=message):
        facade.predict(str(path))
    with pytest.raises(ImageTooLargeError, match=message):
        processor(str(path))
    with pytest.raises(DatasetError, match=message):
        decode_image(str(path))
    with pytest.raises(DatasetError, match=r"rotated.jpg has 360x480 = 172,800 pixels, more than the limit"):
        load_coco_folder(write_coco(tmp_path / "big", files["rotated"], WIDTH, HEIGHT))
    assert load_image(path, max_pixels=None).size == (WIDTH, HEIGHT)
    monkeypatch.setenv("HF_RFDETR_MAX_IMAGE_PIXELS", "none")
    assert image_io._limit_from_environment() is None
    monkeypatch.setenv("HF_RFDETR_MAX_IMAGE_PIXELS", "100")
    assert image_io._limit_from_environment() == 100


def test_the_pipeline_is_the_rfdetr_subclass(detector) -> None:
    from transformers.pipelines.object_detection import ObjectDetectionPipeline

    from hf_rfdetr.pipeline_rfdetr import RFDetrObjectDetectionPipeline

    assert type(detector) is RFDetrObjectDetectionPipeline and isinstance(detector, ObjectDetectionPipeline)
