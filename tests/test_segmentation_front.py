"""The segmentation front door (issue 12): the `RFDETRSeg*` facade and its `predict` masks (parity with the original
`rfdetr` facade), the Seg COCO checkpoints by name, `hf-rfdetr predict` (masks drawn, RLE in detections.json),
`process_video`, the image-segmentation pipeline (in process and as remote code), the example and the model card."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import torch
from PIL import Image

import hf_rfdetr
from hf_rfdetr import (
    RFDETR,
    RFDetrConfig,
    RFDetrForInstanceSegmentation,
    RFDetrForObjectDetection,
    RFDetrImageProcessor,
)
from hf_rfdetr.facade import ORIGINAL_WEIGHTS
from hf_rfdetr.pretrained_weights import CHECKPOINTS, resolve_name

from .conftest import perturb_, tiny_config

SEG_CLASSES = {
    "RFDETRSegPreview": "seg-preview",
    "RFDETRSegNano": "seg-nano",
    "RFDETRSegSmall": "seg-small",
    "RFDETRSegMedium": "seg-medium",
    "RFDETRSegLarge": "seg-large",
    "RFDETRSegXLarge": "seg-xlarge",
    "RFDETRSeg2XLarge": "seg-2xlarge",
}


def tiny_seg_model(seed: int = 0, **overrides) -> RFDetrForInstanceSegmentation:
    """A perturbed tiny Seg model (64 px; class bias raised so that scores spread over (0, 1))."""
    torch.manual_seed(seed)
    model = perturb_(RFDetrForInstanceSegmentation(tiny_config(segmentation_head=True, **overrides)), seed, scale=0.1)
    with torch.no_grad():
        model.class_embed.bias.add_(3.0)
    return model.eval()


def save_tiny_seg(folder: Path, seed: int = 0) -> Path:
    model = tiny_seg_model(seed)
    model.save_pretrained(folder)
    RFDetrImageProcessor.from_config(model.config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def seg_folder(tmp_path_factory) -> Path:
    return save_tiny_seg(tmp_path_factory.mktemp("segfront") / "tiny-seg")


@pytest.fixture(scope="module")
def segmenter(seg_folder: Path) -> RFDETR:
    return RFDETR(pretrain_weights=seg_folder, device="cpu")


def random_image(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------------------------------
# 1. The facade
# ----------------------------------------------------------------------------------------------------------------------


def test_seg_classes_are_public_and_name_their_variants() -> None:
    for name, variant in SEG_CLASSES.items():
        cls = getattr(hf_rfdetr, name)
        assert cls.variant == variant and issubclass(cls, hf_rfdetr.RFDETRSeg) and issubclass(cls, RFDETR)
        assert name in hf_rfdetr.__all__
        assert ORIGINAL_WEIGHTS[variant] == CHECKPOINTS[variant].filename


def test_random_seg_model_has_the_variants_architecture_and_says_so() -> None:
    with pytest.warns(UserWarning, match="RANDOM weights"):
        model = hf_rfdetr.RFDETRSegNano(pretrain_weights=None, device="cpu", decoder_layers=1, group_detr=1)
    assert isinstance(model.model, RFDetrForInstanceSegmentation) and model.is_segmentation
    assert model.resolution == 312 and model.model.config.patch_size == 12 and model.model.config.num_windows == 1
    assert len(model.model.segmentation_head.blocks) == 1


def test_predict_returns_masks_equal_to_the_post_processed_output(segmenter: RFDETR, seg_folder: Path) -> None:
    image = Image.fromarray(random_image(48, 80, seed=1))
    detections = segmenter.predict(image, threshold=0.3)
    model = RFDetrForInstanceSegmentation.from_pretrained(seg_folder).eval()
    processor = RFDetrImageProcessor.from_pretrained(seg_folder)
    with torch.no_grad():
        outputs = model(**processor(image, return_tensors="pt"))
    expected = processor.post_process_instance_segmentation(outputs, threshold=0.3, target_sizes=[(48, 80)])[0]
    assert isinstance(detections, sv.Detections) and segmenter.is_segmentation
    assert len(detections) == len(expected["scores"]) > 0
    assert detections.mask.shape == (len(detections), 48, 80) and detections.mask.dtype == bool
    np.testing.assert_array_equal(detections.mask, expected["masks"].numpy())
    assert 0 < detections.mask.sum() < detections.mask.size  # neither empty nor full: the comparison means something
    np.testing.assert_allclose(detections.xyxy, expected["boxes"].numpy(), atol=1e-4)
    np.testing.assert_allclose(detections.confidence, expected["scores"].numpy(), atol=1e-6)
    np.testing.assert_array_equal(detections.class_id, expected["labels"].numpy())
    assert list(detections.data["class_name"]) == [model.config.id2label[int(i)] for i in detections.class_id]


def test_batch_predict_equals_one_by_one(segmenter: RFDETR) -> None:
    images = [random_image(40, 56, seed=3), Image.fromarray(random_image(72, 30, seed=4)), random_image(64, 64, 5)]
    single = [segmenter.predict(image, threshold=0.3) for image in images]
    batched = segmenter.predict(images, threshold=0.3)
    assert isinstance(batched, list) and len(batched) == 3
    for one, many, image in zip(single, batched, images):
        height, width = (image.height, image.width) if isinstance(image, Image.Image) else image.shape[:2]
        assert many.mask.shape == (len(many), height, width) and len(many) == len(one) > 0
        np.testing.assert_allclose(many.xyxy, one.xyxy, atol=1e-4)
        np.testing.assert_array_equal(many.mask, one.mask)


def test_nothing_above_the_threshold_gives_an_empty_mask_stack(segmenter: RFDETR) -> None:
    detections = segmenter.predict(random_image(30, 50, seed=6), threshold=1.0)
    assert len(detections) == 0 and detections.mask.shape == (0, 30, 50)


def test_a_seg_folder_loads_as_segmentation_and_relabels(seg_folder: Path) -> None:
    relabelled = hf_rfdetr.RFDETRSegNano(pretrain_weights=seg_folder, class_names=["a", "b"], device="cpu")
    assert relabelled.is_segmentation and relabelled.class_names == ["a", "b"]
    assert relabelled.predict(random_image(40, 40, seed=7), threshold=0.0).mask.shape[1:] == (40, 40)


def test_a_seg_class_given_a_detectors_weights_says_it_returns_no_masks(tmp_path: Path, seg_folder: Path) -> None:
    """The weights decide the model; a Seg class loading a detector returned mask=None without a word."""
    from .conftest import tiny_config

    detector = RFDetrForObjectDetection(tiny_config())
    detector.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match=r"RFDETRSegNano: pretrain_weights=.* hold a detection model \(no mask head\)"):
        facade = hf_rfdetr.RFDETRSegNano(pretrain_weights=tmp_path, device="cpu")
    assert not facade.is_segmentation and facade.predict(random_image(40, 40, seed=7), threshold=0.0).mask is None
    with warnings.catch_warnings(record=True) as caught:  # a detector class given a detector, Seg given Seg: quiet
        warnings.simplefilter("always")
        hf_rfdetr.RFDETRNano(pretrain_weights=tmp_path, device="cpu")
        hf_rfdetr.RFDETRSegNano(pretrain_weights=seg_folder, device="cpu")
    assert not [w for w in caught if "mask head" in str(w.message)]


def test_optimized_seg_predict_keeps_the_masks(seg_folder: Path) -> None:
    segmenter = RFDETR(pretrain_weights=seg_folder, device="cpu")
    image = random_image(50, 70, seed=8)
    reference = segmenter.predict(image, threshold=0.3)
    segmenter.optimize_for_inference(dtype=torch.float32)
    optimized = segmenter.predict(image, threshold=0.3)
    np.testing.assert_array_equal(optimized.mask, reference.mask)
    segmenter.remove_optimized_model()


# ----------------------------------------------------------------------------------------------------------------------
# 2. Parity with the original facade's predict (rfdetr 1.11.2, perturbed random weights in both)
# ----------------------------------------------------------------------------------------------------------------------


def _original_seg_nano_with_weights(state_dict: dict[str, torch.Tensor]):
    """The original `RFDETRSegNano` facade (random init, offline) holding `state_dict`."""
    logging.getLogger("rf-detr").setLevel(logging.ERROR)
    import rfdetr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = rfdetr.RFDETRSegNano(pretrain_weights=None, device="cpu")
    original.model.model.load_state_dict(state_dict)
    original.model.model.eval()
    return original


@pytest.fixture(scope="module")
def seg_nano_pair(tmp_path_factory) -> tuple:
    """(original facade, our facade) on the same perturbed SegNano weights (class bias raised by 3 so that scores
    spread around 0.5). Ours loads the original-format checkpoint from the current folder by its default file name,
    as the original does."""
    from .segmentation_reference import reference_seg_model

    state_dict = {k: v.clone() for k, v in reference_seg_model("seg-nano").state_dict().items()}
    state_dict["class_embed.bias"] += 3.0
    original = _original_seg_nano_with_weights(state_dict)
    folder = tmp_path_factory.mktemp("seg-nano-original")
    torch.save({"model": state_dict, "model_name": "RFDETRSegNano"}, folder / ORIGINAL_WEIGHTS["seg-nano"])
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        ours = hf_rfdetr.RFDETRSegNano(device="cpu")
    return original, ours


def _assert_same_as_original(ours: sv.Detections, theirs: sv.Detections, within: tuple[np.ndarray, np.ndarray]) -> None:
    """Same boxes, scores, class ids; masks equal except where the resized logit is within 1e-4 of 0 (`within`:
    our masks at logit > 1e-4 and at logit > -1e-4)."""
    assert len(ours) == len(theirs) > 0
    np.testing.assert_array_equal(ours.class_id, theirs.class_id)
    np.testing.assert_allclose(ours.confidence, theirs.confidence, atol=1e-5)
    np.testing.assert_allclose(ours.xyxy, theirs.xyxy, atol=1e-3)
    assert ours.mask.shape == theirs.mask.shape and ours.mask.dtype == theirs.mask.dtype == bool
    strict, loose = within
    assert not (strict & ~theirs.mask).any() and not (theirs.mask & ~loose).any()
    flips = int((ours.mask != theirs.mask).sum())
    assert flips <= int((loose & ~strict).sum())
    assert 0 < theirs.mask.sum() < theirs.mask.size
    print(
        f"\n[seg parity] {len(ours)} detections, {int(theirs.mask.sum())} mask pixels, {flips} flipped, "
        f"{int((loose & ~strict).sum())} within 1e-4 of logit 0; max |d score| "
        f"{np.abs(ours.confidence - theirs.confidence).max():.1e}, max |d box| {np.abs(ours.xyxy - theirs.xyxy).max():.1e}"
    )


def _masks_around_zero(model: RFDETR, images: list, threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Our masks at logit > 1e-4 and at logit > -1e-4 (the band where a float difference may flip a pixel)."""
    pixels = model.processor(images, return_tensors="pt")
    with torch.no_grad():
        outputs = model.model(**pixels)
    sizes = [np.asarray(image).shape[:2] for image in images]
    results = []
    for logit in (1e-4, -1e-4):
        probability = 1 / (1 + math.exp(-logit))
        kept = model.processor.post_process_instance_segmentation(
            outputs, threshold=threshold, target_sizes=sizes, mask_threshold=probability, return_binary_maps=True
        )
        results.append([result["masks"].numpy() for result in kept])
    return list(zip(*results))


@pytest.mark.reference
def test_predict_equals_the_original_facade(seg_nano_pair) -> None:
    original, ours = seg_nano_pair
    assert ours.is_segmentation and ours.model.config.variant == "seg-nano"
    image = Image.fromarray(random_image(150, 230, seed=11))
    theirs, mine = original.predict(image, threshold=0.5), ours.predict(image, threshold=0.5)
    assert 0 < len(mine) < 100  # the threshold splits the scores
    _assert_same_as_original(mine, theirs, _masks_around_zero(ours, [image], 0.5)[0])
    np.testing.assert_array_equal(mine.data["class_name"], theirs.data["class_name"])


@pytest.mark.reference
def test_batch_predict_equals_the_original_facade(seg_nano_pair) -> None:
    original, ours = seg_nano_pair
    images = [Image.fromarray(random_image(120, 90, seed=12)), Image.fromarray(random_image(64, 200, seed=13))]
    theirs, mine = original.predict(images, threshold=0.45), ours.predict(images, threshold=0.45)
    for one_mine, one_theirs, within in zip(mine, theirs, _masks_around_zero(ours, images, 0.45)):
        _assert_same_as_original(one_mine, one_theirs, within)


# ----------------------------------------------------------------------------------------------------------------------
# 3. The Seg COCO checkpoints by name
# ----------------------------------------------------------------------------------------------------------------------

#: rfdetr 1.11.2's asset table (`rfdetr/assets/model_weights.py`): local file name, URL basename and md5.
SEG_ASSETS = {
    "seg-preview": ("rf-detr-seg-preview.pt", "rf-detr-seg-preview.pt", "e35820c28fb86080558123e47a5e49ca"),
    "seg-nano": ("rf-detr-seg-nano.pt", "rf-detr-seg-n-ft.pth", "9995497791d0ff1664a1d9ddee9cfd20"),
    "seg-small": ("rf-detr-seg-small.pt", "rf-detr-seg-s-ft.pth", "0a2a3006381d0c42853907e700eadd08"),
    "seg-medium": ("rf-detr-seg-medium.pt", "rf-detr-seg-m-ft.pth", "a49af1562c3719227ad43d0ca53b4c7a"),
    "seg-large": ("rf-detr-seg-large.pt", "rf-detr-seg-l-ft.pth", "275f7b094909544ed2841c94a677d07e"),
    "seg-xlarge": ("rf-detr-seg-xlarge.pt", "rf-detr-seg-xl-ft.pth", "3693b35d0eea86ebb3e0444f4a611fba"),
    "seg-2xlarge": ("rf-detr-seg-xxlarge.pt", "rf-detr-seg-2xl-ft.pth", "040bc3412af840fa8a47e0ff69b552ba"),
}


def test_the_seg_table_is_the_originals() -> None:
    for variant, (filename, basename, md5) in SEG_ASSETS.items():
        spec = CHECKPOINTS[variant]
        assert (spec.filename, spec.url, spec.md5) == (
            filename,
            f"https://storage.googleapis.com/rfdetr/{basename}",
            md5,
        )
        for text in (variant, variant.upper(), filename, filename.rsplit(".", 1)[0]):
            assert resolve_name(text) == variant
    assert resolve_name("seg-xxlarge") == "seg-2xlarge"
    assert resolve_name("rf-detr-seg-nano.pth") is None  # the original's file is .pt


@pytest.mark.reference
def test_the_seg_table_equals_the_installed_original() -> None:
    from rfdetr.assets.model_weights import ModelWeights

    published = {w.value.filename: (w.value.url, w.value.md5_hash) for w in ModelWeights}
    for spec in (CHECKPOINTS[variant] for variant in SEG_ASSETS):
        assert published[spec.filename] == (spec.url, spec.md5)


@dataclasses.dataclass
class SegServed:
    url: str
    payload: bytes
    md5: str
    requests: int = 0


@pytest.fixture(scope="module")
def seg_server() -> Iterator[tuple[SegServed, RFDetrForInstanceSegmentation]]:
    """An original-format SegNano checkpoint (random weights, 1 decoder layer, 1 group, 10 queries) on 127.0.0.1."""
    from http.server import BaseHTTPRequestHandler

    from .original_checkpoint import original_checkpoint_bytes

    args = {"dec_layers": 1, "group_detr": 1, "num_queries": 10}
    torch.manual_seed(0)
    config = RFDetrConfig.from_variant("seg-nano", decoder_layers=1, group_detr=1, num_queries=10)
    model = perturb_(RFDetrForInstanceSegmentation(config), seed=0).eval()
    payload = original_checkpoint_bytes(model, args, "RFDETRSegNano")
    served = SegServed("", payload, hashlib.md5(payload).hexdigest())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            served.requests += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.close_connection = True

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}/rf-detr-seg-n-ft.pth"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, model
    httpd.shutdown()
    httpd.server_close()


def test_seg_checkpoint_by_name_downloads_converts_and_loads(seg_server, tmp_path: Path, monkeypatch) -> None:
    served, model = seg_server
    monkeypatch.setenv("HF_ASSETS_CACHE", str(tmp_path / "assets"))
    monkeypatch.setenv("RF_HOME", str(tmp_path / "roboflow"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setitem(
        CHECKPOINTS, "seg-nano", dataclasses.replace(CHECKPOINTS["seg-nano"], url=served.url, md5=served.md5)
    )
    monkeypatch.chdir(tmp_path)  # no rf-detr-seg-nano.pt here
    segmenter = hf_rfdetr.RFDETRSegNano(device="cpu")
    assert served.requests == 1
    folder = Path(hf_rfdetr.pretrained("rf-detr-seg-nano.pt"))
    assert folder.name == f"rf-detr-seg-nano-{served.md5[:8]}" and served.requests == 1  # cached
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["RFDetrForInstanceSegmentation"] and config["segmentation_head"] is True
    assert "pipeline_tag: image-segmentation" in (folder / "README.md").read_text()
    assert isinstance(segmenter.model, RFDetrForInstanceSegmentation) and segmenter.model.config.num_labels == 91
    state = segmenter.model.state_dict()
    assert all(torch.equal(state[key], value) for key, value in model.state_dict().items())
    image = random_image(90, 120, seed=14)
    detections = segmenter.predict(image, threshold=0.0)
    assert len(detections) == 10 and detections.mask.shape == (10, 90, 120)  # num_select = num_queries = 10


# ----------------------------------------------------------------------------------------------------------------------
# 4. Drawing masks, `hf-rfdetr predict`, `process_video`
# ----------------------------------------------------------------------------------------------------------------------


def test_draw_detections_fills_masks_in_the_label_colour() -> None:
    from hf_rfdetr.annotate import MASK_OPACITY, draw_detections, label_color

    image = Image.new("RGB", (60, 40), (0, 0, 0))
    mask = np.zeros((1, 40, 60), dtype=bool)
    mask[0, 15:25, 20:30] = True  # well inside the box, away from its outline and caption
    detections = [{"label": "cat", "score": 0.9, "box": [5, 5, 55, 35]}]
    drawn = np.asarray(draw_detections(image, detections, masks=mask)).astype(int)
    plain = np.asarray(draw_detections(image, detections)).astype(int)
    expected = np.round(np.array(label_color("cat")) * MASK_OPACITY)
    np.testing.assert_allclose(drawn[20, 25], expected, atol=1)  # half the label colour over black
    assert (plain[20, 25] == 0).all() and (drawn[2, 2] == 0).all()  # no mask: untouched; outside: untouched
    with pytest.raises(ValueError, match=r"masks must be \(number of detections, height, width\) = \(1, 40, 60\)"):
        draw_detections(image, detections, masks=np.zeros((1, 20, 60), dtype=bool))


def test_cli_predict_draws_masks_and_writes_rle(seg_folder: Path, segmenter: RFDETR, tmp_path: Path) -> None:
    from pycocotools import mask as mask_utils

    from hf_rfdetr.annotate import draw_detections
    from hf_rfdetr.cli import main

    from .test_video import write_video

    Image.fromarray(random_image(48, 64, seed=21)).save(tmp_path / "photo.png")
    write_video(tmp_path / "clip.mp4", frames=3)
    arguments = ["predict", "--model", str(seg_folder), str(tmp_path / "photo.png"), str(tmp_path / "clip.mp4")]
    assert main([*arguments, "--output-dir", str(tmp_path / "out"), "--threshold", "0.3", "--no-progress"]) == 0
    report = json.loads((tmp_path / "out" / "detections.json").read_text())
    found = report["images"][0]["detections"]
    expected = segmenter.predict(str(tmp_path / "photo.png"), threshold=0.3)
    assert len(found) == len(expected) > 0
    for entry, mask in zip(found, expected.mask):
        assert entry["mask"]["size"] == [48, 64] and isinstance(entry["mask"]["counts"], str)
        decoded = mask_utils.decode({"size": entry["mask"]["size"], "counts": entry["mask"]["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), mask)
    drawn = np.asarray(Image.open(tmp_path / "out" / "photo.png")).astype(int)
    without_masks = [{key: value for key, value in entry.items() if key != "mask"} for entry in found]
    boxes_only = np.asarray(draw_detections(Image.open(tmp_path / "photo.png"), without_masks)).astype(int)
    covered = expected.mask.any(axis=0)
    assert np.abs(drawn - boxes_only)[covered].max() > 10 and (drawn == boxes_only)[~covered].all()
    frames = report["videos"][0]["detections"]
    assert len(frames) == 3 and all("mask" in d and d["mask"]["size"] == [64, 96] for d in frames[0])


def test_process_video_draws_masks(segmenter: RFDETR, tmp_path: Path) -> None:
    from hf_rfdetr.annotate import annotate_frame
    from hf_rfdetr.video import frame_callback, iter_frames, process_video

    from .test_video import write_video

    video = write_video(tmp_path / "clip.mp4", frames=2)
    # Few detections, so that their masks are not hidden under the captions on this small frame (a fresh tiny model's
    # scores sit just above 0.3 for about 20 queries).
    threshold = 0.45
    seen: list[sv.Detections] = []

    def callback(frame: np.ndarray, index: int) -> np.ndarray:
        detections = segmenter.predict(frame[:, :, ::-1], threshold=threshold)
        seen.append(detections)
        return annotate_frame(frame, detections)

    written = tmp_path / "masks.mp4"
    process_video(video, segmenter, output=written, threshold=threshold, progress=False)
    process_video(video, callback=callback, progress=False)
    source, drawn = list(iter_frames(video)), list(iter_frames(written))
    assert len(drawn) == 2 and seen[0].mask is not None and seen[0].mask.shape == (len(seen[0]), 64, 96)
    boxes_only = sv.Detections(
        xyxy=seen[0].xyxy, confidence=seen[0].confidence, class_id=seen[0].class_id, data=dict(seen[0].data)
    )
    with_masks, without_masks = annotate_frame(source[0], seen[0]), annotate_frame(source[0], boxes_only)
    assert not np.array_equal(with_masks, without_masks)
    # Compared where the masks are drawn (random-noise frames leave mp4 errors of about 9 grey levels everywhere)
    region = seen[0].mask.any(axis=0)
    assert region.sum() > 100
    error_with = np.abs(drawn[0].astype(int) - with_masks.astype(int))[region].mean()
    error_without = np.abs(drawn[0].astype(int) - without_masks.astype(int))[region].mean()
    assert error_with < 0.8 * error_without, (error_with, error_without)  # the written frame has the masks
    exact = frame_callback(segmenter, threshold=threshold)(source[0], 0)  # what process_video writes, before encoding
    np.testing.assert_array_equal(exact, with_masks)


# ----------------------------------------------------------------------------------------------------------------------
# 5. The image-segmentation pipeline
# ----------------------------------------------------------------------------------------------------------------------


def _expected_segments(folder: Path, image: Image.Image, threshold: float) -> list[tuple[str, float, np.ndarray]]:
    """(label, score, mask) of each segment, from the model and processor run by hand with the pipeline's options."""
    model = RFDetrForInstanceSegmentation.from_pretrained(folder).eval()
    processor = RFDetrImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        outputs = model(**processor(image, return_tensors="pt"))
    result = processor.post_process_instance_segmentation(
        outputs,
        threshold=threshold,
        mask_threshold=0.5,
        overlap_mask_area_threshold=0.5,
        target_sizes=[(image.height, image.width)],
    )[0]
    return [
        (model.config.id2label[info["label_id"]], info["score"], (result["segmentation"] == info["id"]).numpy())
        for info in result["segments_info"]
    ]


def _assert_segments(annotations: list[dict], expected: list[tuple[str, float, np.ndarray]]) -> None:
    assert len(annotations) == len(expected) > 0
    for annotation, (label, score, mask) in zip(annotations, expected):
        assert annotation["label"] == label and annotation["score"] == pytest.approx(score, abs=1e-6)
        assert annotation["mask"].mode == "L"
        np.testing.assert_array_equal(np.asarray(annotation["mask"]) == 255, mask)
        assert mask.any()


def test_image_segmentation_pipeline_gives_instance_masks(seg_folder: Path, tmp_path: Path) -> None:
    from transformers import pipeline

    from hf_rfdetr.pipeline_rfdetr import RFDetrImageSegmentationPipeline

    segmenter = pipeline("image-segmentation", model=str(seg_folder), device="cpu")
    assert isinstance(segmenter, RFDetrImageSegmentationPipeline)
    assert isinstance(segmenter.model, RFDetrForInstanceSegmentation)
    image = Image.fromarray(random_image(48, 80, seed=31))
    expected = _expected_segments(seg_folder, image, threshold=0.1)
    _assert_segments(segmenter(image, threshold=0.1), expected)
    image.save(tmp_path / "photo.png")
    batch = segmenter([str(tmp_path / "photo.png"), image], threshold=0.1)
    for found in batch:
        _assert_segments(found, expected)
    assert segmenter([]) == []


def test_image_segmentation_pipeline_reads_16_bit_files_as_the_facade(seg_folder: Path, tmp_path: Path) -> None:
    """transformers' `load_image` clips 16-bit data (`convert("RGB")`); the RF-DETR pipeline scales it as `predict`."""
    from transformers import pipeline

    from hf_rfdetr.models.rfdetr.image_io import load_image

    grey = (np.random.default_rng(32).integers(0, 65536, (40, 60))).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "deep.png")
    segmenter = pipeline("image-segmentation", model=str(seg_folder), device="cpu")
    expected = _expected_segments(seg_folder, load_image(tmp_path / "deep.png"), threshold=0.1)
    _assert_segments(segmenter(str(tmp_path / "deep.png"), threshold=0.1), expected)
    with pytest.raises(ValueError, match="broken.png"):
        (tmp_path / "broken.png").write_bytes(b"not a png")
        segmenter(str(tmp_path / "broken.png"))


def test_image_segmentation_pipeline_as_remote_code(seg_folder: Path, tmp_path: Path) -> None:
    """`trust_remote_code=True` in a process where `hf_rfdetr` cannot be imported: transformers' own pipeline, the
    saved code, the same segments."""
    image = Image.fromarray(random_image(48, 80, seed=31))
    image.save(tmp_path / "photo.png")
    expected = _expected_segments(seg_folder, image, threshold=0.1)
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["hf_rfdetr"] = None  # any import of the package now fails
        import numpy as np
        from transformers import pipeline
        segmenter = pipeline("image-segmentation", model={str(seg_folder)!r}, trust_remote_code=True, device="cpu")
        assert type(segmenter.model).__module__.startswith("transformers_modules"), type(segmenter.model).__module__
        found = segmenter({str(tmp_path / "photo.png")!r}, threshold=0.1)
        for index, annotation in enumerate(found):
            np.save({str(tmp_path)!r} + f"/mask{{index}}.npy", np.asarray(annotation["mask"]))
        print(json.dumps([[a["label"], a["score"]] for a in found]))
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    assert len(found) == len(expected) > 0
    for index, ((label, score), (expected_label, expected_score, mask)) in enumerate(zip(found, expected)):
        assert label == expected_label and score == pytest.approx(expected_score, abs=1e-6)
        np.testing.assert_array_equal(np.load(tmp_path / f"mask{index}.npy") == 255, mask)


def test_remote_code_segmentation_pipeline_maps_padded_masks_like_the_package(seg_folder: Path, tmp_path: Path) -> None:
    """A `keep_aspect_ratio=True` processor pads the image; the model outputs carry the `pixel_mask` they were given,
    so transformers' own image-segmentation pipeline (remote code, no `hf_rfdetr`) maps only the image's region of the
    mask logits onto the image, as the package does. Before, that pipeline resized the padded strip into the masks
    (different areas, an extra instance)."""
    folder = tmp_path / "seg-kar"
    model = perturb_(RFDetrForInstanceSegmentation.from_pretrained(seg_folder), seed=0, scale=0.3)
    with torch.no_grad():
        model.class_embed.bias.fill_(2.0)  # every query above the threshold: masks of every shape
    model.save_pretrained(folder)
    RFDetrImageProcessor.from_pretrained(seg_folder, keep_aspect_ratio=True).save_pretrained(folder)
    image = Image.fromarray(random_image(40, 88, seed=31))
    image.save(tmp_path / "photo.png")
    model = RFDetrForInstanceSegmentation.from_pretrained(folder).eval()
    processor = RFDetrImageProcessor.from_pretrained(folder)
    inputs = processor(image, return_tensors="pt")
    assert not bool(inputs["pixel_mask"].all())  # padded
    with torch.no_grad():
        outputs = model(**inputs)
    expected = processor.post_process_instance_segmentation(
        {"logits": outputs.logits, "pred_boxes": outputs.pred_boxes, "pred_masks": outputs.pred_masks},
        threshold=0.1,
        overlap_mask_area_threshold=0.5,
        target_sizes=[(image.height, image.width)],
        pixel_mask=inputs["pixel_mask"],
    )[0]
    expected_masks = [(expected["segmentation"] == info["id"]).numpy() for info in expected["segments_info"]]
    assert len(expected_masks) > 0
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["hf_rfdetr"] = None  # any import of the package now fails
        import numpy as np
        from transformers import pipeline
        segmenter = pipeline("image-segmentation", model={str(folder)!r}, trust_remote_code=True, device="cpu")
        assert type(segmenter).__name__ == "ImageSegmentationPipeline", type(segmenter)
        photo = {str(tmp_path / "photo.png")!r}
        for run, found in enumerate([segmenter(photo, threshold=0.1), *segmenter([photo, photo], threshold=0.1, batch_size=2)]):
            for index, annotation in enumerate(found):
                np.save({str(tmp_path)!r} + f"/mask{{run}}_{{index}}.npy", np.asarray(annotation["mask"]))
            print(json.dumps([len(found)]))
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    counts = [json.loads(line)[0] for line in completed.stdout.strip().splitlines()[-3:]]
    assert counts == [len(expected_masks)] * 3
    for run in range(3):
        for index, mask in enumerate(expected_masks):
            np.testing.assert_array_equal(np.load(tmp_path / f"mask{run}_{index}.npy") == 255, mask)
    torch.testing.assert_close(outputs.pixel_mask, inputs["pixel_mask"], rtol=0, atol=0)


def test_segmentation_outputs_carry_the_pixel_mask_last() -> None:
    """`pixel_mask` is the last output field: `return_dict=False` keeps every other output at its place, and without
    `target_sizes` the post-processing ignores the carried mask (the masks stay on the canvas, as before)."""
    model = RFDetrForInstanceSegmentation(tiny_config(segmentation_head=True)).eval()
    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    pixel_mask = torch.ones(2, 64, 64, dtype=torch.long)
    pixel_mask[1, :, 48:] = 0
    with torch.no_grad():
        without = model(pixel_values)
        given = model(pixel_values, pixel_mask=pixel_mask)
        as_tuple = model(pixel_values, pixel_mask=pixel_mask, return_dict=False)
    assert without.pixel_mask is None and "pixel_mask" not in without
    assert given.pixel_mask is pixel_mask and list(given.keys())[-1] == "pixel_mask"
    assert list(given.keys())[:-1] == list(without.keys())  # the other outputs keep their positions
    assert len(as_tuple) == len(without.to_tuple()) + 1 and as_tuple[-1] is pixel_mask
    for position, value in enumerate(given.to_tuple()[:-1]):
        torch.testing.assert_close(as_tuple[position], value)
    processor = RFDetrImageProcessor(size={"height": 64, "width": 64}, size_divisor=16, num_top_queries=10)
    unpadded = processor.post_process_instance_segmentation(
        {"logits": given.logits, "pred_boxes": given.pred_boxes, "pred_masks": given.pred_masks}, threshold=0.0
    )
    for found, expected in zip(processor.post_process_instance_segmentation(given, threshold=0.0), unpadded):
        assert torch.equal(found["masks"], expected["masks"])


# ----------------------------------------------------------------------------------------------------------------------
# 6. The example
# ----------------------------------------------------------------------------------------------------------------------


def test_segment_image_example_runs_as_a_program(seg_folder: Path, segmenter: RFDETR, tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "examples" / "segment_image.py"
    image = tmp_path / "photo.png"
    Image.fromarray(random_image(60, 80, seed=41)).save(image)
    output = tmp_path / "segmented.png"
    command = [sys.executable, str(script), "--model", str(seg_folder), "--image", str(image), "--threshold", "0.3"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*command, "--output", str(output)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = segmenter.predict(str(image), threshold=0.3)
    assert f"{len(expected)} objects -> {output}" in result.stdout and len(expected) > 0
    first = f"{expected.data['class_name'][0]} {expected.confidence[0]:.2f} {int(expected.mask[0].sum())} px"
    assert first in result.stdout
    with Image.open(output) as annotated, Image.open(image) as original:
        assert annotated.size == (80, 60)
        changed = np.abs(np.asarray(annotated).astype(int) - np.asarray(original).astype(int)).sum(axis=2) > 0
    assert changed[expected.mask.any(axis=0)].mean() > 0.9  # the masks are filled


# ----------------------------------------------------------------------------------------------------------------------
# 7. Model cards
# ----------------------------------------------------------------------------------------------------------------------

SEG_METRICS = {
    "eval_map": 0.41,
    "eval_map_50": 0.61,
    "eval_map_cat": 0.35,
    "eval_segm_map": 0.37,
    "eval_segm_map_50": 0.58,
    "eval_segm_map_75": 0.33,
    "eval_segm_mar_100": 0.52,
    "eval_segm_map_cat": 0.29,
    "eval_ema_segm_map": 0.9,
    "eval_loss": 3.0,
    "epoch": 4.0,
}


def test_seg_card_is_an_image_segmentation_card_with_mask_metrics(seg_folder: Path, tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    from hf_rfdetr.model_card import model_card_for_folder, read_evaluations

    folder = tmp_path / "model"
    save_tiny_seg(folder)
    (folder / "eval_results.json").write_text(json.dumps(SEG_METRICS))
    evaluations = read_evaluations(folder)
    assert evaluations[0].metrics["segm_map"] == 0.37 and "ema_segm_map" not in evaluations[0].metrics
    assert evaluations[0].metrics["map"] == 0.41 and "loss" not in evaluations[0].metrics
    text = model_card_for_folder(folder, "org/seg-model", dataset="org/shapes")
    card = ModelCard(text)
    assert card.data.pipeline_tag == "image-segmentation" and "instance-segmentation" in card.data.tags
    results = {(r.task_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results[("image-segmentation", "segm_map")] == 0.37 and results[("image-segmentation", "map")] == 0.41
    assert results[("image-segmentation", "segm_map_75")] == 0.33
    boxes, masks = text.split("### Boxes")[1].split("### Masks")
    assert "| mAP@[.50:.95] | 0.4100 |" in boxes and "| cat | 0.3500 |" in boxes
    masks = masks.split("## Usage")[0]
    assert "| mAP@[.50:.95] | 0.3700 |" in masks and "| mAR@100 | 0.5200 |" in masks
    assert "Per-class mask AP@[.50:.95]" in masks and "| cat | 0.2900 |" in masks
    assert "`RFDetrForInstanceSegmentation`" in text and "instance segmentation model" in text
    assert 'pipeline("image-segmentation", model="org/seg-model", trust_remote_code=True)' in text
    assert "AutoModelForInstanceSegmentation.from_pretrained" in text
    assert "post_process_instance_segmentation(outputs, 0.5" in text and "object-detection" not in text.split("---")[2]
    assert "top 20 (query, class) pairs" in text  # the tiny model's num_queries, the processor's default top-k
    model = RFDetrForInstanceSegmentation.from_pretrained(folder)
    assert f"| parameters | {model.num_parameters():,} |" in text


def test_mask_metrics_alone_and_from_the_log_history(tmp_path: Path) -> None:
    from hf_rfdetr.model_card import evaluation_from_log_history, load_evaluation_file, render_model_card

    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"split": "test", "metrics": {"segm_map": 0.2, "segm_map_50": 0.4}}))
    evaluation = load_evaluation_file(path)
    assert evaluation.split == "test" and evaluation.metrics == {"segm_map": 0.2, "segm_map_50": 0.4}
    text = render_model_card(RFDetrConfig.from_variant("seg-small"), 1, evaluations=[evaluation])
    assert "COCO mask (`segm`) metrics" in text and "### Masks" not in text and "| mAP@.50 | 0.4000 |" in text
    history = [{"eval_segm_map": 0.1, "epoch": 1.0, "step": 2}, {"eval_segm_map": 0.3, "epoch": 2.0, "step": 4}]
    assert evaluation_from_log_history(history).metrics == {"segm_map": 0.3}


def test_detection_cards_are_unchanged_by_the_segmentation_usage() -> None:
    from hf_rfdetr.model_card import render_model_card

    text = render_model_card(RFDetrConfig.from_variant("nano"), 1, repo_id="org/det", metrics={"map": 0.5})
    assert "pipeline_tag: object-detection" in text and "image-segmentation" not in text and "segm" not in text
    assert 'pipeline("object-detection", model="org/det"' in text and "### Boxes" not in text
    assert "| mAP@[.50:.95] | 0.5000 |" in text and "top 300 (query, class) pairs" in text
