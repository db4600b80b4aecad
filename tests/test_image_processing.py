"""Tests of `RFDetrImageProcessor`: parity with the original `rfdetr` pre/post-processing, inputs, padding, labels."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import socket  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812
from PIL import Image  # noqa: E402
from transformers import AutoImageProcessor, pipeline  # noqa: E402

from hf_rfdetr import RFDetrForObjectDetection  # noqa: E402
from hf_rfdetr.models.rfdetr import post_processing  # noqa: E402
from hf_rfdetr.models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor  # noqa: E402

from .conftest import tiny_config  # noqa: E402

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
LOGGER_NAME = "hf_rfdetr.models.rfdetr.coco_targets"  # the annotation warnings


def make_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Deterministic "real-looking" uint8 RGB image `(height, width, 3)`: gradients, a disc, a box and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack(
        [
            255 * xx / max(width - 1, 1),
            255 * yy / max(height - 1, 1),
            128 + 100 * np.sin(xx / 17.0) * np.cos(yy / 23.0),
        ],
        axis=-1,
    )
    disc = (xx - 0.3 * width) ** 2 + (yy - 0.4 * height) ** 2 < (0.15 * min(height, width)) ** 2
    image[disc] = (220, 40, 60)
    image[int(0.55 * height) : int(0.85 * height), int(0.5 * width) : int(0.8 * width)] = (30, 200, 90)
    image += rng.normal(0.0, 8.0, size=image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def nano_processor(**kwargs: Any) -> RFDetrImageProcessor:
    """Processor configured like RF-DETR Nano (384x384, block 32)."""
    return RFDetrImageProcessor(size={"height": 384, "width": 384}, size_divisor=32, **kwargs)


def pixels(processor: RFDetrImageProcessor, images: Any, **kwargs: Any) -> torch.Tensor:
    """`pixel_values` of `processor(images)`."""
    return processor(images, return_tensors="pt", **kwargs)["pixel_values"]


def _no_network(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("network access attempted during an offline test")


def _import_original(module: str) -> Any:
    """Import a module of the original `rfdetr` package (tests that call this are marked `reference`: the package
    needs transformers 5, and the transformers 4.57 run deselects them)."""
    return importlib.import_module(module)


def _build_original_nano() -> Any:
    """The original `RFDETRNano` on CPU with random weights (patch 16: no DINOv2 weights are fetched)."""
    return _import_original("rfdetr").RFDETRNano(pretrain_weights=None, device="cpu")


class _NetworkInput(Exception):
    """Raised by a forward pre-hook to hand back the network input and skip the (slow, irrelevant) forward pass."""

    def __init__(self, tensor: torch.Tensor) -> None:
        super().__init__("captured network input")
        self.tensor = tensor


def _capture_and_stop(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
    raise _NetworkInput(args[0].detach().clone())


# ----------------------------------------------------------------------------------------------------------------------
# 1. Parity with the original `RFDETR.predict` pre-processing
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predict_input() -> Iterator[Callable[[Any], torch.Tensor]]:
    """Function returning the tensor the original `RFDETRNano.predict` feeds its network for some images.

    Built once per module with sockets disabled, which proves no weights are downloaded. A forward pre-hook on the
    LWDETR module captures its input and aborts the forward pass, so each call costs only the pre-processing.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(socket.socket, "connect", _no_network)
        model = _build_original_nano()
        model.model.model.register_forward_pre_hook(_capture_and_stop)

        def run(images: Any) -> torch.Tensor:
            with pytest.raises(_NetworkInput) as stopped:
                model.predict(images, threshold=0.5)
            return stopped.value.tensor

        yield run


@pytest.mark.reference
@pytest.mark.parametrize(
    ("shape", "mode"), [((480, 640), "RGB"), ((333, 517), "RGB"), ((333, 517), "RGBA"), ((99, 71), "L")]
)
def test_parity_pil(predict_input: Callable[[Any], torch.Tensor], shape: tuple[int, int], mode: str) -> None:
    image = Image.fromarray(make_image(*shape)).convert(mode)
    expected = predict_input(image)
    ours = pixels(nano_processor(), image)
    assert ours.shape == expected.shape == (1, 3, 384, 384)
    assert ours.dtype == torch.float32
    assert (ours - expected).abs().max().item() <= 1e-5


@pytest.mark.reference
def test_parity_uint8_numpy(predict_input: Callable[[Any], torch.Tensor]) -> None:
    image = make_image(333, 517, seed=1)
    expected = predict_input(image)
    assert (pixels(nano_processor(), image) - expected).abs().max().item() <= 1e-5


@pytest.mark.reference
def test_parity_float_chw_tensor(predict_input: Callable[[Any], torch.Tensor]) -> None:
    image = torch.from_numpy(make_image(333, 517, seed=2)).permute(2, 0, 1).float() / 255
    expected = predict_input(image)
    assert (pixels(nano_processor(), image) - expected).abs().max().item() <= 1e-5


@pytest.mark.reference
def test_parity_mixed_size_batch(predict_input: Callable[[Any], torch.Tensor]) -> None:
    images = [Image.fromarray(make_image(480, 640, seed=3)), Image.fromarray(make_image(333, 517, seed=4))]
    expected = predict_input(images)
    ours = nano_processor()(images)
    assert expected.shape == ours["pixel_values"].shape == (2, 3, 384, 384)
    assert (ours["pixel_values"] - expected).abs().max().item() <= 1e-5
    assert ours["pixel_mask"].dtype == torch.int64
    assert torch.equal(ours["pixel_mask"], torch.ones(2, 384, 384, dtype=torch.int64))


def test_matches_independent_formula() -> None:
    """Default mode = float /255, bilinear resize without antialias (align_corners=False), then (x - mean) / std."""
    image = make_image(333, 517, seed=5)
    chw = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    resized = F.interpolate(chw[None], size=(384, 384), mode="bilinear", align_corners=False, antialias=False)
    expected = (resized - MEAN) / STD
    assert (pixels(nano_processor(), image) - expected).abs().max().item() <= 1e-6


def test_device_moves_the_uint8_image_before_converting(monkeypatch) -> None:
    """`device=`: the image goes to the device as read (uint8, 4x fewer bytes than float32), and the conversion, the
    resize and the normalisation run there; the values are those computed without it."""
    from hf_rfdetr.models.rfdetr import image_io as module

    image = make_image(61, 83, seed=3)
    expected = nano_processor()(image, return_tensors="pt")
    seen = []
    to_float = module.to_float32
    monkeypatch.setattr(
        module, "to_float32", lambda chw, *args: seen.append((chw.dtype, chw.device)) or to_float(chw, *args)
    )
    moved = nano_processor()(
        torch.from_numpy(image), input_data_format="channels_last", return_tensors="pt", device="cpu"
    )
    assert seen == [(torch.uint8, torch.device("cpu"))]
    assert torch.equal(moved["pixel_values"], expected["pixel_values"])
    assert torch.equal(moved["pixel_mask"], expected["pixel_mask"])
    with pytest.raises(RuntimeError, match="device"):
        nano_processor()(image, device="no-such-device")


# ----------------------------------------------------------------------------------------------------------------------
# 2. Post-processing parity with the original `PostProcess`
# ----------------------------------------------------------------------------------------------------------------------


def _random_outputs(seed: int = 0, integer_logits: bool = False) -> SimpleNamespace:
    """Model-output-like object: logits (2, 300, 91), pred_boxes (2, 300, 4) partly outside the image."""
    generator = torch.Generator().manual_seed(seed)
    if integer_logits:  # many exact ties
        logits = torch.randint(-4, 3, (2, 300, 91), generator=generator).float()
    else:
        logits = torch.randn(2, 300, 91, generator=generator) * 3 - 2
    centers = torch.rand(2, 300, 2, generator=generator) * 1.2 - 0.1
    sizes = torch.rand(2, 300, 2, generator=generator) * 0.7 - 0.05  # a few negative widths / heights
    return SimpleNamespace(logits=logits, pred_boxes=torch.cat([centers, sizes], dim=-1))


def _original_postprocess(outputs: SimpleNamespace, target_sizes: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    postprocess = _import_original("rfdetr.models.postprocess").PostProcess(num_select=300)
    return postprocess({"pred_logits": outputs.logits, "pred_boxes": outputs.pred_boxes}, target_sizes)


TARGET_SIZES = torch.tensor([[480, 640], [333, 517]])


@pytest.mark.reference
@pytest.mark.parametrize("integer_logits", [False, True])
def test_postprocess_parity(integer_logits: bool) -> None:
    outputs = _random_outputs(seed=1, integer_logits=integer_logits)
    expected = _original_postprocess(outputs, TARGET_SIZES)
    ours = nano_processor().post_process_object_detection(outputs, threshold=0.0, target_sizes=TARGET_SIZES)
    assert len(ours) == 2
    for mine, ref in zip(ours, expected):
        assert mine["scores"].shape == (300,)
        assert torch.equal(mine["labels"], ref["labels"])
        assert (mine["scores"] - ref["scores"]).abs().max().item() <= 1e-6
        assert (mine["boxes"] - ref["boxes"]).abs().max().item() <= 1e-4


@pytest.mark.parametrize("k", [0, 1, 7, 300, 300 * 91, 10**9])
def test_top_k_selection_is_the_full_stable_sort(k: int) -> None:
    """The post-processing selects with `topk` and sorts only what it selected; it must return exactly the first k of
    the original's full stable descending sort: ties (many here: integer logits) broken by the lower flattened index,
    also where a tie straddles the k-th place, and NaN scores ranked first as the sort ranks them."""
    generator = torch.Generator().manual_seed(5)
    logits = torch.randint(-3, 3, (3, 300, 91), generator=generator).float()
    logits[1, 10:13, 4] = float("nan")
    logits[2] = float("nan")  # a row of NaN only
    probs = logits.sigmoid().reshape(3, -1)
    expected = torch.argsort(probs, dim=1, descending=True, stable=True)[:, :k]
    scores, labels, queries = post_processing.select_top_k(logits, k)
    assert torch.equal(queries * 91 + labels, expected)
    torch.testing.assert_close(scores, probs.gather(1, expected), rtol=0, atol=0, equal_nan=True)


def test_postprocess_threshold_is_strict() -> None:
    outputs = _random_outputs(seed=2)
    outputs.logits[0, 5, 7] = 0.0  # sigmoid(0) == 0.5 exactly
    everything = 300 * 91
    full = nano_processor().post_process_object_detection(outputs, 0.0, TARGET_SIZES, top_k=everything)
    kept = nano_processor().post_process_object_detection(outputs, 0.5, TARGET_SIZES, top_k=everything)
    for all_dets, dets in zip(full, kept):
        mask = all_dets["scores"] > 0.5
        assert 0 < int(mask.sum()) < everything
        assert torch.equal(dets["scores"], all_dets["scores"][mask])
        assert torch.equal(dets["labels"], all_dets["labels"][mask])
        assert torch.equal(dets["boxes"], all_dets["boxes"][mask])
    assert (full[0]["scores"] == 0.5).any()
    assert not (kept[0]["scores"] == 0.5).any()


def test_postprocess_top_k_override() -> None:
    outputs = _random_outputs(seed=3)
    processor = nano_processor()
    full = processor.post_process_object_detection(outputs, 0.0, TARGET_SIZES)
    top10 = processor.post_process_object_detection(outputs, 0.0, TARGET_SIZES, top_k=10)
    for small, big in zip(top10, full):
        assert small["scores"].shape == (10,)
        assert torch.equal(small["labels"], big["labels"][:10])
        assert torch.equal(small["boxes"], big["boxes"][:10])
    everything = processor.post_process_object_detection(outputs, 0.0, TARGET_SIZES, top_k=10**9)
    assert everything[0]["scores"].shape == (300 * 91,)
    assert bool((everything[0]["scores"][:-1] >= everything[0]["scores"][1:]).all())
    assert nano_processor(num_top_queries=7).post_process_object_detection(outputs, 0.0)[1]["scores"].shape == (7,)


def test_postprocess_normalized_boxes_and_bounds() -> None:
    outputs = _random_outputs(seed=4)
    processor = nano_processor()
    absolute = processor.post_process_object_detection(outputs, 0.0, TARGET_SIZES)
    normalized = processor.post_process_object_detection(outputs, 0.0, None)
    for dets_abs, dets_norm, (height, width) in zip(absolute, normalized, TARGET_SIZES.tolist()):
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        assert torch.equal(dets_abs["labels"], dets_norm["labels"])
        assert torch.allclose(dets_norm["boxes"] * scale, dets_abs["boxes"], atol=1e-3)
        assert dets_norm["boxes"].min() >= 0 and dets_norm["boxes"].max() <= 1
        assert dets_abs["boxes"].min() >= 0
        assert bool((dets_abs["boxes"] <= scale).all())
        assert bool((dets_abs["boxes"][:, 2:] >= dets_abs["boxes"][:, :2]).all())
        # some predictions leave the image, so clamping is exercised
        assert bool((dets_abs["boxes"] == scale).any()) and bool((dets_abs["boxes"] == 0).any())


def test_postprocess_input_forms() -> None:
    outputs = _random_outputs(seed=5)
    processor = nano_processor()
    reference = processor.post_process_object_detection(outputs, 0.3, TARGET_SIZES)
    as_dict = {"logits": outputs.logits, "pred_boxes": outputs.pred_boxes}
    as_list = [(480, 640), (333, 517)]
    positional = processor.post_process_object_detection(as_dict, 0.3, as_list)  # how the pipeline calls it
    for mine, ref in zip(positional, reference):
        for key in ("scores", "labels", "boxes"):
            assert torch.equal(mine[key], ref[key])
    with pytest.raises(ValueError, match="target sizes"):
        processor.post_process_object_detection(outputs, 0.3, [(480, 640)])


@pytest.mark.parametrize(
    "sizes, shown",
    [
        ([(-360, -480), (333, 517)], "(-360.0, -480.0)"),
        ([(480, 640), (0, 0)], "(0.0, 0.0)"),
        ([(float("nan"), 480), (333, 517)], "(nan, 480.0)"),
        ([(480, 640), (float("inf"), 517)], "(inf, 517.0)"),
        ([(480.5, 640), (333, 517)], "(480.5, 640.0)"),
        (torch.tensor([[480, 640], [-1, 517]]), "(-1.0, 517.0)"),
    ],
)
def test_postprocess_refuses_target_sizes_that_are_not_positive_integers(sizes: Any, shown: str) -> None:
    """Zero, negative, fractional, NaN or infinite sizes gave boxes like [-480, -360, ...], all zeros or NaN; detection
    refuses them as segmentation does, with the same message naming the image."""
    index = 0 if shown.startswith(("(-360", "(nan", "(480.5")) else 1
    message = (
        rf"`target_sizes\[{index}\]` must be a \(height, width\) pair of positive integers.*got {re.escape(shown)}"
    )
    with pytest.raises(ValueError, match=message):
        nano_processor().post_process_object_detection(_random_outputs(seed=5), 0.3, sizes)
    with pytest.raises(ValueError, match=message):
        nano_processor().post_process_instance_segmentation(
            SimpleNamespace(**vars(_random_outputs(seed=5)), pred_masks=torch.zeros(2, 300, 4, 4)), 0.3, sizes
        )


def test_postprocess_target_sizes_as_integral_floats_and_unreadable_ones() -> None:
    outputs, processor = _random_outputs(seed=5), nano_processor()
    reference = processor.post_process_object_detection(outputs, 0.3, TARGET_SIZES)
    as_floats = processor.post_process_object_detection(outputs, 0.3, TARGET_SIZES.float())
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(as_floats, reference))
    with pytest.raises(ValueError, match=r"`target_sizes` must hold one \(height, width\) pair of positive integers"):
        processor.post_process_object_detection(outputs, 0.3, [("480", "wide"), (333, 517)])
    with pytest.raises(ValueError, match=r"`target_sizes` must hold one \(height, width\) pair"):
        processor.post_process_object_detection(outputs, 0.3, [None, (333, 517)])


@pytest.mark.parametrize("threshold", [None, "0.5", -0.1, 1.5, float("nan"), True, [0.5]])
def test_postprocess_threshold_must_be_a_number_in_the_unit_interval(threshold: Any) -> None:
    """`threshold=None` or `"0.5"` raised a raw TypeError comparing a Tensor with it; out-of-range values kept all or
    nothing silently. Detection and segmentation refuse them naming `threshold`."""
    outputs = _random_outputs(seed=6)
    message = rf"`threshold` must be in \[0, 1\] \(a number\), got {re.escape(repr(threshold))}"
    with pytest.raises(ValueError, match=message):
        nano_processor().post_process_object_detection(outputs, threshold, TARGET_SIZES)
    with pytest.raises(ValueError, match=message):
        nano_processor().post_process_instance_segmentation(
            SimpleNamespace(**vars(outputs), pred_masks=torch.zeros(2, 300, 4, 4)), threshold
        )


def test_postprocess_threshold_accepts_every_kind_of_number() -> None:
    outputs, processor = _random_outputs(seed=6), nano_processor()
    reference = processor.post_process_object_detection(outputs, 0.5, TARGET_SIZES)
    for same in (np.float64(0.5), np.float32(0.5), torch.tensor(0.5), np.array(0.5)):
        results = processor.post_process_object_detection(outputs, same, TARGET_SIZES)
        assert all(torch.equal(a["scores"], b["scores"]) for a, b in zip(results, reference))
    assert processor.post_process_object_detection(outputs, 1, TARGET_SIZES)[0]["scores"].numel() == 0
    assert processor.post_process_object_detection(outputs, 0, TARGET_SIZES)[0]["scores"].numel() == 300


# ----------------------------------------------------------------------------------------------------------------------
# 3. Input formats and validation
# ----------------------------------------------------------------------------------------------------------------------


def test_grayscale_inputs_match_rgb() -> None:
    gray = make_image(120, 90, seed=6)[..., 1]
    expected = pixels(nano_processor(), Image.fromarray(gray).convert("RGB"))
    assert torch.equal(pixels(nano_processor(), gray), expected)
    assert torch.equal(pixels(nano_processor(), Image.fromarray(gray)), expected)
    assert torch.equal(pixels(nano_processor(), gray[..., None]), expected)
    assert torch.equal(pixels(nano_processor(), torch.from_numpy(gray)[None]), expected)


def test_rgba_inputs_drop_alpha() -> None:
    rgb = make_image(100, 150, seed=7)
    alpha = np.linspace(0, 255, 100 * 150).reshape(100, 150, 1).astype(np.uint8)
    rgba = np.concatenate([rgb, alpha], axis=-1)
    expected = pixels(nano_processor(), rgb)
    assert torch.equal(pixels(nano_processor(), Image.fromarray(rgba, mode="RGBA")), expected)
    assert torch.equal(pixels(nano_processor(), rgba), expected)
    assert torch.equal(pixels(nano_processor(), torch.from_numpy(rgba).permute(2, 0, 1)), expected)


def test_do_convert_rgb_false_keeps_the_channels() -> None:
    """With do_convert_rgb=False an RGBA image keeps its alpha channel, normalised with its own 4th mean/std value
    (as transformers' processors do); a statistic of the wrong length is refused, naming it and the channel count."""
    rgb = make_image(40, 40, seed=7)
    rgba = np.concatenate([rgb, np.full((40, 40, 1), 51, dtype=np.uint8)], axis=-1)
    options = {"do_convert_rgb": False, "image_mean": [0.0, 0.0, 0.0, 0.1], "image_std": [1.0, 1.0, 1.0, 0.5]}
    rgba_out = pixels(nano_processor(), rgba, **options)
    assert rgba_out.shape == (1, 4, 384, 384)
    assert torch.allclose(rgba_out[0, 3], torch.full((384, 384), (51 / 255 - 0.1) / 0.5), atol=1e-6)
    unit = {"image_mean": [0.0] * 3, "image_std": [1.0] * 3}
    assert torch.allclose(rgba_out[:, :3], pixels(nano_processor(), rgb, **unit), atol=1e-6)
    for image in (Image.fromarray(rgba, mode="RGBA"), torch.from_numpy(rgba).permute(2, 0, 1)):
        assert torch.equal(pixels(nano_processor(), image, **options), rgba_out)
    assert pixels(nano_processor(), rgba, do_convert_rgb=False, image_mean=0.5, image_std=0.5).shape[1] == 4
    with pytest.raises(ValueError, match=r"`image_mean` has 3 values .* 4 channels \(do_convert_rgb=False\)"):
        nano_processor()(rgba, do_convert_rgb=False)
    with pytest.raises(ValueError, match=r"Image 1 has 3 channels and image 0 has 4"):
        nano_processor()([rgba, rgb], **options)


def test_layouts_and_dtypes_match() -> None:
    rgb = make_image(101, 77, seed=8)
    expected = pixels(nano_processor(), Image.fromarray(rgb))
    chw_uint8 = torch.from_numpy(rgb).permute(2, 0, 1)
    assert torch.equal(pixels(nano_processor(), rgb), expected)
    assert torch.equal(pixels(nano_processor(), torch.from_numpy(rgb)), expected)
    assert torch.equal(pixels(nano_processor(), chw_uint8), expected)
    assert torch.equal(pixels(nano_processor(), np.ascontiguousarray(rgb.transpose(2, 0, 1))), expected)
    assert torch.equal(pixels(nano_processor(), rgb[:, ::-1][:, ::-1]), expected)  # negative-stride view
    assert torch.allclose(pixels(nano_processor(), chw_uint8.float() / 255), expected, atol=1e-6)
    assert torch.allclose(pixels(nano_processor(), (rgb / 255.0).astype(np.float64)), expected, atol=1e-5)


def test_mixed_size_batch_matches_single_images() -> None:
    images = [make_image(60, 80, seed=9), Image.fromarray(make_image(200, 50, seed=10)), make_image(33, 333)]
    batch = pixels(nano_processor(), images)
    assert batch.shape == (3, 3, 384, 384)
    for row, image in zip(batch, images):
        assert torch.equal(row, pixels(nano_processor(), image)[0])
    assert torch.equal(pixels(nano_processor(), tuple(images)), batch)


def test_other_pil_modes_follow_pil_rgb_conversion() -> None:
    gray = make_image(64, 48, seed=11)[..., 0]
    for image in (Image.fromarray(gray).convert("P"), Image.fromarray(gray).convert("LA")):
        assert torch.equal(pixels(nano_processor(), image), pixels(nano_processor(), np.array(image.convert("RGB"))))


def test_float_out_of_range_names_index() -> None:
    good = np.full((20, 20, 3), 0.5, dtype=np.float32)
    with pytest.raises(ValueError, match=r"Image 1: .*above 1"):
        nano_processor()([good, good * 4])
    with pytest.raises(ValueError, match=r"Image 0: .*below 0"):
        nano_processor()(torch.full((3, 20, 20), -0.1))
    with pytest.raises(ValueError, match=r"Image 0: .*NaN"):
        nano_processor()(torch.full((3, 20, 20), float("nan")))
    # without rescaling, float pixels are the caller's business
    assert pixels(nano_processor(), good * 4, do_rescale=False).shape == (1, 3, 384, 384)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((2, 20, 20, 3), dtype=np.uint8), r"Image 0: .*4-D"),
        (np.zeros(20, dtype=np.uint8), r"Image 0: .*1-D"),
        (np.zeros((20, 20, 2), dtype=np.uint8), r"Image 0: .*channels in the first .*got shape \(20, 20, 2\)"),
        (torch.zeros(5, 20, 20), r"Image 0: .*channels in the first .*got shape \(5, 20, 20\)"),
        (torch.zeros(5, 20, 2), r"Image 0: .*channels in the first .*got shape \(5, 20, 2\)"),
        (np.zeros((1, 20, 3), dtype=np.uint8), r"Image 0: .*smaller than the minimum 2x2"),
        (np.zeros((0, 20, 3), dtype=np.uint8), r"Image 0: empty image"),
        (np.zeros((20, 20, 3), dtype=np.int32), r"Image 0: unsupported dtype"),
        (b"not an image", r"Image 0: unsupported type bytes"),
        (np.zeros((3, 20, 4), dtype=np.uint8), r"Image 0: numpy array of shape \(3, 20, 4\) is ambiguous"),
    ],
)
def test_invalid_images(image: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        nano_processor()(image)


def test_a_path_is_read_and_a_missing_one_named(tmp_path) -> None:
    image = make_image(40, 30, seed=5)
    Image.fromarray(image).save(tmp_path / "a.png")
    assert torch.equal(pixels(nano_processor(), str(tmp_path / "a.png")), pixels(nano_processor(), image))
    with pytest.raises(FileNotFoundError, match=r"Image 1: '.*missing.png' does not exist"):
        nano_processor()([image, tmp_path / "missing.png"])


def test_invalid_image_index_in_batch() -> None:
    with pytest.raises(ValueError, match=r"Image 2: .*channels"):
        nano_processor()([make_image(20, 20), make_image(30, 30), np.zeros((20, 20, 5), dtype=np.uint8)])
    with pytest.raises(ValueError, match="empty"):
        nano_processor()([])


def test_size_must_be_divisible() -> None:
    with pytest.raises(ValueError, match=r"`size`.*`size_divisor`=32"):
        RFDetrImageProcessor(size={"height": 400, "width": 384}, size_divisor=32)(make_image(50, 50))
    with pytest.raises(ValueError, match=r"`size`.*`size_divisor`=56"):
        RFDetrImageProcessor()(make_image(50, 50), size={"height": 384, "width": 384})
    with pytest.raises(TypeError, match="Unexpected preprocess argument"):
        nano_processor()(make_image(50, 50), do_flip=True)
    with pytest.raises(ValueError, match="size_divisor"):
        RFDetrImageProcessor(size_divisor=0)
    # padding mode has no such constraint
    out = RFDetrImageProcessor(size={"height": 400, "width": 400}, size_divisor=32, keep_aspect_ratio=True)
    assert out(make_image(50, 50))["pixel_values"].shape == (1, 3, 416, 416)


def test_non_square_size_and_overrides() -> None:
    image = make_image(333, 517, seed=12)
    out = pixels(nano_processor(), image, size={"height": 320, "width": 640})
    chw = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    resized = F.interpolate(chw[None], size=(320, 640), mode="bilinear", align_corners=False, antialias=False)
    assert (out - (resized - MEAN) / STD).abs().max().item() <= 1e-6
    raw = pixels(nano_processor(), image, do_normalize=False, do_rescale=False)
    assert raw.max().item() > 200 and raw.min().item() >= 0


def test_pipeline_style_call() -> None:
    """The object-detection pipeline calls `processor(images=[image], return_tensors="pt").to(dtype)`."""
    image = Image.fromarray(make_image(48, 64))
    inputs = nano_processor()(images=[image], return_tensors="pt").to(torch.float16)
    assert inputs["pixel_values"].dtype == torch.float16 and inputs["pixel_mask"].dtype == torch.int64
    assert set(inputs.keys()) == set(nano_processor().model_input_names)


def test_return_numpy() -> None:
    out = nano_processor()(make_image(40, 60), return_tensors="np")
    assert isinstance(out["pixel_values"], np.ndarray) and out["pixel_values"].dtype == np.float32
    assert isinstance(out["pixel_mask"], np.ndarray) and out["pixel_mask"].dtype == np.int64


# ----------------------------------------------------------------------------------------------------------------------
# 4. keep_aspect_ratio
# ----------------------------------------------------------------------------------------------------------------------


def test_keep_aspect_ratio_single_image() -> None:
    image = make_image(333, 517, seed=13)
    out = nano_processor(keep_aspect_ratio=True)(image)
    values, mask = out["pixel_values"], out["pixel_mask"]
    # longer side 517 -> 384, shorter 333 * 384 / 517 = 247.3 -> 247, padded up to a multiple of 32
    assert values.shape == (1, 3, 256, 384) and mask.shape == (1, 256, 384)
    assert int(mask[0, :, 0].sum()) == 247 and int(mask[0, 0, :].sum()) == 384
    assert bool((mask[0, :247] == 1).all()) and bool((mask[0, 247:] == 0).all())
    assert bool((values[0, :, 247:] == 0).all())
    chw = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    resized = F.interpolate(chw[None], size=(247, 384), mode="bilinear", align_corners=False, antialias=False)
    assert (values[:, :, :247] - (resized - MEAN) / STD).abs().max().item() <= 1e-6


def test_keep_aspect_ratio_batch_padding() -> None:
    images = [make_image(333, 517, seed=14), make_image(100, 50, seed=15)]
    out = nano_processor(keep_aspect_ratio=True)(images)
    values, mask = out["pixel_values"], out["pixel_mask"]
    assert values.shape == (2, 3, 384, 384)
    assert values.shape[2] % 32 == 0 and values.shape[3] % 32 == 0
    for i, (height, width) in enumerate([(247, 384), (384, 192)]):
        expected_mask = torch.zeros(384, 384, dtype=torch.int64)
        expected_mask[:height, :width] = 1
        assert torch.equal(mask[i], expected_mask)
        assert max(height, width) == 384
        assert bool((values[i][:, expected_mask == 0] == 0).all())
        single = nano_processor(keep_aspect_ratio=True)(images[i])["pixel_values"][0]
        assert torch.equal(values[i, :, :height, :width], single[:, :height, :width])


def test_no_resize_pads_to_divisor() -> None:
    out = nano_processor(do_resize=False)([make_image(50, 70), make_image(65, 30)])
    assert out["pixel_values"].shape == (2, 3, 96, 96)
    assert int(out["pixel_mask"][0].sum()) == 50 * 70 and int(out["pixel_mask"][1].sum()) == 65 * 30


# ----------------------------------------------------------------------------------------------------------------------
# 5. Annotations
# ----------------------------------------------------------------------------------------------------------------------


def _annotation(image_id: int, *objects: dict[str, Any]) -> dict[str, Any]:
    return {"image_id": image_id, "annotations": list(objects)}


def test_annotation_known_box() -> None:
    annotation = _annotation(7, {"bbox": [100, 50, 200, 100], "category_id": 18, "area": 20000.0, "iscrowd": 0})
    out = nano_processor()(make_image(480, 640), annotations=[annotation])
    (target,) = out["labels"]
    assert target["class_labels"].dtype == torch.int64 and target["class_labels"].tolist() == [18]
    assert target["boxes"].dtype == torch.float32
    torch.testing.assert_close(target["boxes"], torch.tensor([[0.3125, 100 / 480, 0.3125, 100 / 480]]))
    # area in pixel_values pixels: (200 * 384 / 640) * (100 * 384 / 480) = 120 * 80
    torch.testing.assert_close(target["area"], torch.tensor([9600.0]))
    assert target["image_id"].tolist() == [7]
    assert target["iscrowd"].tolist() == [0]
    assert target["orig_size"].tolist() == [480, 640]
    assert target["size"].tolist() == [384, 384]


def test_annotation_keep_aspect_ratio() -> None:
    annotation = _annotation(8, {"bbox": [100, 50, 200, 100], "category_id": 1})
    out = nano_processor(keep_aspect_ratio=True)(make_image(480, 640), annotations=annotation)
    (target,) = out["labels"]
    torch.testing.assert_close(target["boxes"], torch.tensor([[0.3125, 100 / 480, 0.3125, 100 / 480]]))
    assert target["size"].tolist() == list(out["pixel_values"].shape[2:]) == [288, 384]
    # resized to 288x384: (200 * 384 / 640) * (100 * 288 / 480)
    torch.testing.assert_close(target["area"], torch.tensor([120.0 * 60.0]))


def test_annotation_clipping_and_drops_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    annotation = _annotation(
        3,
        {"bbox": [-10, -10, 50, 50], "category_id": 1},  # clipped to [0, 0, 40, 40]
        {"bbox": [600, 400, 100, 100], "category_id": 2},  # clipped to [600, 400, 640, 480]
        {"bbox": [700, 10, 20, 20], "category_id": 3},  # outside -> dropped
        {"bbox": [10, 10, 0, 20], "category_id": 4},  # zero width -> dropped
        {"bbox": [5, 5, 10, 10], "category_id": 5, "iscrowd": 1},  # crowd -> dropped
        {"bbox": [10, 20, 30, 40], "category_id": 6},  # untouched
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        out = nano_processor()(make_image(480, 640), annotations=[annotation])
    (target,) = out["labels"]
    assert target["class_labels"].tolist() == [1, 2, 6]
    expected = torch.tensor(
        [
            [20 / 640, 20 / 480, 40 / 640, 40 / 480],
            [620 / 640, 440 / 480, 40 / 640, 80 / 480],
            [25 / 640, 40 / 480, 30 / 640, 40 / 480],
        ]
    )
    torch.testing.assert_close(target["boxes"], expected)
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER_NAME]
    assert len(messages) == 1
    assert "image_id 3" in messages[0]
    assert (
        "dropped 1 crowd" in messages[0] and "dropped 2 box(es)" in messages[0] and "clipped 2 box(es)" in messages[0]
    )


def test_clean_annotations_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        out = nano_processor()(make_image(60, 60), annotations=_annotation(1, {"bbox": [1, 2, 3, 4], "category_id": 0}))
    assert not [r for r in caplog.records if r.name == LOGGER_NAME]
    assert out["labels"][0]["boxes"].shape == (1, 4)


def test_empty_annotations() -> None:
    out = nano_processor()([make_image(40, 40), make_image(50, 30)], annotations=[_annotation(1), _annotation(2)])
    for target in out["labels"]:
        assert target["boxes"].shape == (0, 4) and target["class_labels"].shape == (0,)
    assert out["labels"][1]["orig_size"].tolist() == [50, 30]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"category_id": 1}, r"image_id 5, annotation 1: missing 'bbox'"),
        ({"bbox": [1, 2, 3, 4]}, r"image_id 5, annotation 1: missing 'category_id'"),
        ({"bbox": [1, 2, 3], "category_id": 1}, r"image_id 5, annotation 1: 'bbox' must be 4"),
        ({"bbox": [1, 2, "3", 4], "category_id": 1}, r"image_id 5, annotation 1: 'bbox' must be 4"),
        ({"bbox": [1, 2, float("nan"), 4], "category_id": 1}, r"image_id 5, annotation 1: 'bbox' must be 4"),
        ({"bbox": [1, 2, 3, 4], "category_id": 1.5}, r"image_id 5, annotation 1: 'category_id'"),
    ],
)
def test_malformed_annotation(obj: dict[str, Any], message: str) -> None:
    annotation = _annotation(5, {"bbox": [1, 2, 3, 4], "category_id": 1}, obj)
    with pytest.raises(ValueError, match=message):
        nano_processor()(make_image(40, 40), annotations=[annotation])


def test_annotation_count_and_structure() -> None:
    with pytest.raises(ValueError, match="2 annotation dict"):
        nano_processor()(make_image(40, 40), annotations=[_annotation(1), _annotation(2)])
    with pytest.raises(ValueError, match="image 0 must be a dict with 'image_id' and 'annotations'"):
        nano_processor()(make_image(40, 40), annotations=[{"annotations": []}])


# ----------------------------------------------------------------------------------------------------------------------
# 6. Serialisation and construction
# ----------------------------------------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Any) -> None:
    processor = RFDetrImageProcessor(
        size={"height": 512, "width": 512},
        size_divisor=32,
        keep_aspect_ratio=True,
        image_mean=[0.5, 0.4, 0.3],
        image_std=[0.2, 0.25, 0.3],
        num_top_queries=100,
    )
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["size"] == {"height": 512, "width": 512}
    assert saved["size_divisor"] == 32 and saved["keep_aspect_ratio"] is True and saved["num_top_queries"] == 100
    assert saved["image_mean"] == [0.5, 0.4, 0.3] and saved["image_std"] == [0.2, 0.25, 0.3]
    assert saved["image_processor_type"] == "RFDetrImageProcessor"
    loaded = RFDetrImageProcessor.from_pretrained(tmp_path)
    fields = ("do_resize", "size", "keep_aspect_ratio", "size_divisor", "do_rescale", "rescale_factor")
    fields += ("do_normalize", "image_mean", "image_std", "num_top_queries")
    assert {k: getattr(loaded, k) for k in fields} == {k: getattr(processor, k) for k in fields}
    assert loaded.to_dict() == processor.to_dict()
    images = [make_image(333, 517, seed=16), make_image(90, 60, seed=17)]
    before, after = processor(images), loaded(images)
    assert torch.equal(before["pixel_values"], after["pixel_values"])
    assert torch.equal(before["pixel_mask"], after["pixel_mask"])
    outputs = _random_outputs(seed=6)
    for a, b in zip(
        processor.post_process_object_detection(outputs, 0.0, TARGET_SIZES),
        loaded.post_process_object_detection(outputs, 0.0, TARGET_SIZES),
    ):
        assert a["scores"].shape == b["scores"].shape == (100,)
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["labels"], b["labels"])


def test_defaults_and_from_config() -> None:
    processor = RFDetrImageProcessor()
    assert processor.size == {"height": 560, "width": 560} and processor.size_divisor == 56
    assert processor.model_input_names == ["pixel_values", "pixel_mask"]
    assert processor(make_image(40, 40))["pixel_values"].shape == (1, 3, 560, 560)
    nano = RFDetrImageProcessor.from_config(SimpleNamespace(resolution=384, patch_size=16, num_windows=2))
    assert nano.size == {"height": 384, "width": 384} and nano.size_divisor == 32
    assert nano.to_dict() == nano_processor().to_dict()
    from hf_rfdetr.models.rfdetr import configuration_rfdetr as configuration

    config = configuration.RFDetrConfig(resolution=576, patch_size=16, num_windows=2)
    from_real = RFDetrImageProcessor.from_config(config)
    assert from_real.size == {"height": 576, "width": 576} and from_real.size_divisor == 32


# ----------------------------------------------------------------------------------------------------------------------
# transformers' size forms, do_pad / pad_size, unknown arguments
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "resized"),
    [
        ({"max_height": 64, "max_width": 64}, (40, 64)),  # 50 x 80 -> scale 0.8
        ({"shortest_edge": 30, "longest_edge": 40}, (25, 40)),  # longest edge caps the shortest-edge resize
        ({"shortest_edge": 20, "longest_edge": 100}, (20, 32)),
    ],
)
def test_aspect_preserving_size_forms_resize_then_pad(size: dict[str, int], resized: tuple[int, int]) -> None:
    image = make_image(50, 80, seed=3)
    out = RFDetrImageProcessor(size=size, size_divisor=16)(image)
    height, width = resized
    assert out["pixel_values"].shape == (1, 3, -(-height // 16) * 16, -(-width // 16) * 16)
    assert int(out["pixel_mask"][0, :, 0].sum()) == height and int(out["pixel_mask"][0, 0, :].sum()) == width
    chw = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    expected = (F.interpolate(chw[None], size=resized, mode="bilinear", antialias=False)[0] - MEAN) / STD
    assert (out["pixel_values"][0, :, :height, :width] - expected).abs().max().item() <= 1e-6
    assert out["pixel_values"][0, :, height:, :].abs().max().item() == 0.0


def test_guide_processor_call_pads_to_pad_size() -> None:
    processor = RFDetrImageProcessor(
        size={"max_height": 96, "max_width": 96}, do_pad=True, pad_size={"height": 96, "width": 96}, size_divisor=16
    )
    out = processor([make_image(50, 80), make_image(90, 30)])
    assert out["pixel_values"].shape == (2, 3, 96, 96)
    assert out["pixel_mask"][0].sum().item() == 60 * 96 and out["pixel_mask"][1].sum().item() == 96 * 32


def test_pad_size_and_do_pad_errors_are_named() -> None:
    with pytest.raises(ValueError, match=r"`pad_size`.*divisible by `size_divisor`=56.*504 x 504"):
        RFDetrImageProcessor(size={"max_height": 480, "max_width": 480}, pad_size={"height": 480, "width": 480})(
            make_image(50, 80)
        )
    with pytest.raises(ValueError, match=r"`pad_size`.*smaller than a resized image"):
        RFDetrImageProcessor(
            size={"max_height": 64, "max_width": 64}, pad_size={"height": 32, "width": 32}, size_divisor=16
        )(make_image(50, 80))
    with pytest.raises(ValueError, match="do_pad=False"):
        RFDetrImageProcessor(size={"max_height": 64, "max_width": 64}, do_pad=False, size_divisor=16)(
            make_image(50, 80)
        )
    with pytest.raises(ValueError, match=r"`size` must have the keys"):
        RFDetrImageProcessor(size={"shortest_edge": 30})


def test_unknown_arguments_warn(tmp_path) -> None:
    with pytest.warns(UserWarning, match=r"ignored unknown argument\(s\) \['do_flip'\]"):
        processor = RFDetrImageProcessor(do_flip=True)
    assert not hasattr(processor, "do_flip")
    processor.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match=r"ignored unknown argument\(s\) \['do_flip'\]"):
        RFDetrImageProcessor.from_pretrained(tmp_path, do_flip=True)
    loaded = RFDetrImageProcessor.from_pretrained(tmp_path, do_pad=True, pad_size={"height": 560, "width": 560})
    assert loaded.do_pad and loaded.pad_size == {"height": 560, "width": 560}


def test_padded_box_comes_back_at_its_pixels() -> None:
    """A box in a padded image: its label is normalised to the image (the model's frame given pixel_mask), so a
    prediction equal to the label, post-processed with the original size, lands on the original pixels."""
    processor = RFDetrImageProcessor(
        size={"max_height": 64, "max_width": 64}, pad_size={"height": 64, "width": 64}, size_divisor=16
    )
    box = [30.0, 10.0, 40.0, 20.0]  # x, y, w, h in a 50 x 80 image (resized to 40 x 64, padded to 64 x 64)
    out = processor(make_image(50, 80), annotations={"image_id": 1, "annotations": [{"bbox": box, "category_id": 2}]})
    assert out["pixel_mask"][0].sum().item() == 40 * 64
    boxes = out["labels"][0]["boxes"]
    assert torch.allclose(boxes, torch.tensor([[50 / 80, 20 / 50, 40 / 80, 20 / 50]]))
    logits = torch.full((1, 1, 3), -10.0)
    logits[0, 0, 2] = 10.0
    result = processor.post_process_object_detection(
        {"logits": logits, "pred_boxes": boxes[None]}, threshold=0.5, target_sizes=[(50, 80)]
    )[0]
    assert result["labels"].tolist() == [2]
    assert torch.allclose(result["boxes"], torch.tensor([[30.0, 10.0, 70.0, 30.0]]), atol=1e-4)


def test_model_frame_is_the_unpadded_image() -> None:
    """The model's proposals are normalised by the valid (unpadded) extent: with the right half of a 4 x 8 map
    padded, the last valid column's centre is at 3.5 / 4, not 3.5 / 8."""
    from hf_rfdetr.models.rfdetr.decoder_rfdetr import encoder_proposals

    padding = torch.zeros(1, 4, 8, dtype=torch.bool)
    padding[..., 4:] = True
    _, proposals = encoder_proposals(torch.randn(1, 32, 8), [(4, 8)], padding.flatten(1))
    assert proposals[0, 3, 0].item() == pytest.approx(3.5 / 4)
    assert proposals[0, 1 * 8 + 2, 1].item() == pytest.approx(1.5 / 4)


def test_from_pretrained_warns_only_about_arguments_it_drops(tmp_path) -> None:
    """Options are applied without a warning (transformers 5 also returns them as "unused"), loading arguments that
    pipelines forward (`revision`, `dtype`, `token`, ...) pass quietly, and anything else is named once."""
    RFDetrImageProcessor().save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = AutoImageProcessor.from_pretrained(
            tmp_path,
            size={"max_height": 480, "max_width": 480},
            do_pad=True,
            pad_size={"height": 480, "width": 480},
            revision="main",
            dtype="float32",
            token=None,
            code_revision=None,
        )
    assert loaded.size == {"max_height": 480, "max_width": 480} and loaded.pad_size == {"height": 480, "width": 480}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded, unused = RFDetrImageProcessor.from_pretrained(
            tmp_path, do_center_crop=True, foo=1, return_unused_kwargs=True
        )
    messages = [str(w.message) for w in caught if "ignored unknown" in str(w.message)]
    assert len(messages) == 1 and "['do_center_crop', 'foo']" in messages[0]
    assert unused == {"do_center_crop": True, "foo": 1} and not hasattr(loaded, "do_center_crop")


def test_pipeline_creation_is_quiet(tmp_path) -> None:
    model = RFDetrForObjectDetection(tiny_config())
    model.save_pretrained(tmp_path)
    RFDetrImageProcessor.from_config(model.config).save_pretrained(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline("object-detection", model=str(tmp_path))
    assert not [str(w.message) for w in caught if "RFDetrImageProcessor" in str(w.message)]
