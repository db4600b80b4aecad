"""Fuzzing `RFDetrImageProcessor` with hypothesis (bounded, reproducible budget: see `tests/fuzzing.py`).

Every drawn input either gives a batch that matches a reference decoding computed here independently, or raises a
`ValueError` naming the problem. The reference: the pixels as floats (uint8 / 255, float as given; grey replicated,
alpha dropped; PIL modes through their palette or `convert("RGB")`), a numpy bilinear resize with half-pixel centres
and no antialiasing (the definition `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`
implements), `(x - mean) / std`, zero padding bottom/right to the size divisor. Tolerance: `ATOL` on normalised
values (float32 arithmetic of the processor, including its float32 source coordinates, against float64 here).

Inputs have a well-defined layout: HWC always; CHW only where the last dimension cannot be read as channels (a
`(C, H, W)` array with `W` in {1, 3, 4} is ambiguous without `input_data_format`, which the layout work covers).
EXIF orientation and 16-bit PIL modes are decoding questions covered elsewhere; 16-bit and int64 arrays are drawn
here with the property "a `ValueError` naming the dtype, or the reference decoding at full scale".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import event, example, given
from hypothesis import strategies as st
from PIL import Image

from hf_rfdetr.image_processing_rfdetr import IMAGENET_MEAN, IMAGENET_STD, RFDetrImageProcessor

from .fuzzing import fuzz_settings

ATOL = 2e-3  # on normalised values: ~0.1 of one uint8 grey level (1 / 255 / 0.225 = 0.017)
DIVISOR = 16
VALID_CHANNELS = (1, 3, 4)
SMALL_SIDES = st.integers(2, 40)
ODD_SIDES = st.sampled_from([1, 2, 3, 4, 5, 97, 641, 2049])
FLOAT_DTYPES = ("float16", "float32", "float64")
INT_DTYPES = ("uint16", "int64")


# ----------------------------------------------------------------------------------------------------------------------
# Reference decoding
# ----------------------------------------------------------------------------------------------------------------------


def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of a half-pixel-centre bilinear resize along one axis."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    return low, np.minimum(low + 1, n_in - 1), src - low


def reference_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize (no antialias) of an `(H, W, 3)` float64 image."""
    y0, y1, wy = _axis(image.shape[0], height)
    x0, x1, wx = _axis(image.shape[1], width)
    rows = image[y0] * (1 - wy)[:, None, None] + image[y1] * wy[:, None, None]
    return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]


def reference_rgb(logical: np.ndarray, scale: float) -> np.ndarray:
    """`(H, W)` or `(H, W, C)` pixels -> `(H, W, 3)` float64 times `scale` (grey replicated, alpha dropped)."""
    values = logical.astype(np.float64) * scale
    if values.ndim == 2:
        values = values[:, :, None]
    return np.repeat(values, 3, axis=2) if values.shape[2] == 1 else values[:, :, :3]


def reference_batch(images: list[np.ndarray], options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """`(B, 3, H, W)` values and `(B, H, W)` mask for `(H_i, W_i, 3)` float64 images and processor options."""
    size = options["size"]
    if options["do_resize"] and not options["keep_aspect_ratio"]:
        images = [reference_resize(image, size, size) for image in images]
    elif options["do_resize"]:
        images = [reference_resize(image, *aspect_size(*image.shape[:2], size)) for image in images]
    if options["do_normalize"]:
        images = [(image - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD) for image in images]
    height = -(-max(image.shape[0] for image in images) // DIVISOR) * DIVISOR
    width = -(-max(image.shape[1] for image in images) // DIVISOR) * DIVISOR
    if options["do_resize"] and not options["keep_aspect_ratio"]:
        height, width = size, size
    values = np.zeros((len(images), 3, height, width))
    mask = np.zeros((len(images), height, width), dtype=np.int64)
    for index, image in enumerate(images):
        values[index, :, : image.shape[0], : image.shape[1]] = image.transpose(2, 0, 1)
        mask[index, : image.shape[0], : image.shape[1]] = 1
    return values, mask


def aspect_size(height: int, width: int, longest: int) -> tuple[int, int]:
    """The longer side to `longest`, the other rounded half up (at least 1)."""
    if height >= width:
        return longest, max(1, int(width * longest / height + 0.5))
    return max(1, int(height * longest / width + 0.5)), longest


def assert_matches(output: Any, expected: tuple[np.ndarray, np.ndarray]) -> None:
    values, mask = expected
    pixel_values = output["pixel_values"]
    assert pixel_values.dtype == torch.float32 and tuple(pixel_values.shape) == values.shape
    assert torch.equal(output["pixel_mask"], torch.from_numpy(mask))
    assert torch.isfinite(pixel_values).all()
    np.testing.assert_allclose(pixel_values.double().numpy(), values, rtol=0, atol=ATOL)


# ----------------------------------------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------------------------------------


@st.composite
def processor_options(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "do_resize": draw(st.booleans() | st.just(True)),
        "keep_aspect_ratio": draw(st.booleans()),
        "size": draw(st.sampled_from([16, 32, 48])),
        "do_normalize": draw(st.booleans() | st.just(True)),
    }


@st.composite
def image_shapes(draw: st.DrawFn) -> tuple[int, int]:
    """`(H, W)` from 1 px to a few thousand, extreme aspect ratios included, at most ~1.5 megapixels."""
    height, width = draw(SMALL_SIDES | ODD_SIDES), draw(SMALL_SIDES | ODD_SIDES)
    if height * width > 1_500_000:
        width = draw(st.integers(1, 8))
    return height, width


@st.composite
def arrays(draw: st.DrawFn) -> dict[str, Any]:
    """The spec of a logical `(H, W[, C])` image: shape, dtype, value regime, seed, input layout and type."""
    height, width = draw(image_shapes())
    channels = draw(st.sampled_from([None, *VALID_CHANNELS]))
    dtype = draw(st.sampled_from(["uint8", *FLOAT_DTYPES, *INT_DTYPES]))
    regime = "unit" if dtype not in FLOAT_DTYPES else draw(st.sampled_from(["unit", "unit", "above", "below", "nan"]))
    layout = "hw" if channels is None else draw(st.sampled_from(["hwc", "chw"]))
    if layout == "chw" and width in VALID_CHANNELS:
        layout = "hwc"  # (C, H, W) with W in {1, 3, 4} is ambiguous without input_data_format
    shape = (height, width) if channels is None else (height, width, channels)
    seed = draw(st.integers(0, 2**32 - 1))
    return {
        "shape": shape,
        "dtype": dtype,
        "regime": regime,
        "layout": layout,
        "torch": draw(st.booleans()),
        "seed": seed,
    }


def logical(case: dict[str, Any]) -> np.ndarray:
    """The `(H, W[, C])` pixels of a spec; an out-of-range or non-finite value goes into a colour channel."""
    rng, shape, dtype, regime = np.random.default_rng(case["seed"]), case["shape"], case["dtype"], case["regime"]
    if dtype == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if dtype in INT_DTYPES:
        return rng.integers(0, np.iinfo(dtype).max if dtype == "uint16" else 70000, shape).astype(dtype)
    values = rng.random(shape)
    spot = (rng.integers(shape[0]), rng.integers(shape[1])) + ((0,) if len(shape) == 3 else ())
    if regime != "unit":
        values[spot] = {"above": 1.5, "below": -0.25}.get(regime) or rng.choice([np.nan, np.inf, -np.inf])
    return values.astype(dtype)


def as_input(case: dict[str, Any]) -> np.ndarray | torch.Tensor:
    array = logical(case)
    if case["layout"] == "chw":
        array = np.ascontiguousarray(array.transpose(2, 0, 1))
    return torch.from_numpy(array) if case["torch"] else array


def expected_error(case: dict[str, Any], options: dict[str, Any]) -> str | None:
    """The pattern of the `ValueError` the case must raise, `None` when it must give a batch, `"any"` when either."""
    height, width = case["shape"][:2]
    if min(height, width) < 2:
        return "smaller than the minimum 2x2"
    if case["dtype"] in INT_DTYPES:
        return "any"
    if case["regime"] == "nan":
        return "NaN or infinite"
    if case["regime"] in ("above", "below"):
        return "above 1" if case["regime"] == "above" else "below 0"
    return None


def scale_of(dtype: str) -> float:
    return {"uint8": 1 / 255, "uint16": 1 / 65535}.get(dtype, 1.0)


# ----------------------------------------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------------------------------------


def run_property(inputs: Any, cases: list[dict[str, Any]], options: dict[str, Any]) -> None:
    """Either the reference batch, or the expected `ValueError` (naming the first offending image)."""
    processor = RFDetrImageProcessor(size_divisor=DIVISOR)
    errors = [(index, expected_error(case, options)) for index, case in enumerate(cases)]
    errors = [(index, error) for index, error in errors if error is not None]
    if errors and errors[0][1] != "any":
        index, pattern = errors[0]
        event(f"refused: {pattern}")
        with pytest.raises(ValueError, match=rf"Image {index}: .*{pattern}"):
            processor(inputs, **options)
        return
    try:
        output = processor(inputs, **options)
    except ValueError as error:
        assert errors, f"a valid input was refused: {error}"
        assert case_dtype_named(error, cases[errors[0][0]]), error
        event("refused: dtype")
        return
    event("batch matches the reference")
    references = [reference_rgb(logical(case), scale_of(case["dtype"])) for case in cases]
    assert_matches(output, reference_batch(references, options))


def case_dtype_named(error: ValueError, case: dict[str, Any]) -> bool:
    return case["dtype"] in str(error) or "dtype" in str(error)


@fuzz_settings(400)
@given(case=arrays(), options=processor_options())
@example(
    case={"shape": (3000, 4000, 3), "dtype": "uint8", "regime": "unit", "layout": "hwc", "torch": False, "seed": 0},
    options={"do_resize": True, "keep_aspect_ratio": True, "size": 48, "do_normalize": True},
).via("a 12-megapixel photo")
def test_arrays_and_tensors_match_the_reference_or_raise(case: dict[str, Any], options: dict[str, Any]) -> None:
    run_property(as_input(case), [case], options)


@fuzz_settings(120)
@given(cases=st.lists(arrays(), min_size=1, max_size=3), options=processor_options(), stacked=st.booleans())
def test_batches_match_the_reference_or_raise(cases: list[dict[str, Any]], options: dict[str, Any], stacked: bool):
    """A list of images of different sizes (padded together); or one `(B, H, W, C)` / `(B, C, H, W)` array of
    same-shaped images, which is refused with a message asking for a list or decoded image by image."""
    inputs = [as_input(case) for case in cases]
    # a stack of 2-D grey images, (B, H, W), cannot be told from one (H, W, C) / (C, H, W) image: not drawn stacked
    if (
        not stacked
        or len(cases[0]["shape"]) == 2
        or len({tuple(item.shape) for item in inputs}) != 1
        or len({type(i) for i in inputs}) != 1
    ):
        run_property(inputs, cases, options)
        return
    batch = torch.stack(inputs) if isinstance(inputs[0], torch.Tensor) else np.stack(inputs)
    try:
        output = RFDetrImageProcessor(size_divisor=DIVISOR)(batch, **options)
    except ValueError as error:
        assert "Pass a list of images" in str(error) or "Image 0" in str(error), error
        return
    references = [reference_rgb(logical(case), scale_of(case["dtype"])) for case in cases]
    assert_matches(output, reference_batch(references, options))


# ----------------------------------------------------------------------------------------------------------------------
# PIL images
# ----------------------------------------------------------------------------------------------------------------------

PIL_MODES = ("L", "RGB", "RGBA", "P", "CMYK", "LA", "1")


def pil_image(mode: str, height: int, width: int, seed: int) -> tuple[Image.Image, np.ndarray]:
    """A PIL image of `mode` and its reference RGB pixels `(H, W, 3)` uint8, computed without `convert`
    (except CMYK, whose conversion is PIL's definition)."""
    rng = np.random.default_rng(seed)
    grey = rng.integers(0, 256, (height, width), dtype=np.uint8)
    if mode in ("L", "LA"):
        alpha = rng.integers(0, 256, (height, width), dtype=np.uint8)
        image = Image.fromarray(np.stack([grey, alpha], axis=-1), "LA") if mode == "LA" else Image.fromarray(grey)
        return image, np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "1":
        bits = grey > 127
        return Image.fromarray(bits), np.repeat((bits * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    if mode == "P":
        palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
        image = Image.fromarray(grey, "P")
        image.putpalette(palette.tobytes())
        return image, palette[grey]
    pixels = rng.integers(0, 256, (height, width, len(mode)), dtype=np.uint8)
    image = Image.fromarray(pixels, mode)
    if mode == "CMYK":
        return image, np.asarray(image.convert("RGB"))
    return image, pixels[:, :, :3]


@fuzz_settings(200)
@given(
    mode=st.sampled_from(PIL_MODES),
    shape=image_shapes(),
    seed=st.integers(0, 2**32 - 1),
    options=processor_options(),
)
def test_pil_modes_match_the_reference(mode: str, shape: tuple[int, int], seed: int, options: dict[str, Any]):
    image, rgb = pil_image(mode, *shape, seed)
    if min(shape) < 2:
        with pytest.raises(ValueError, match="Image 0: .*smaller than the minimum 2x2"):
            RFDetrImageProcessor(size_divisor=DIVISOR)(image, **options)
        return
    output = RFDetrImageProcessor(size_divisor=DIVISOR)(image, **options)
    assert_matches(output, reference_batch([rgb.astype(np.float64) / 255], options))


# ----------------------------------------------------------------------------------------------------------------------
# Options and annotations
# ----------------------------------------------------------------------------------------------------------------------

NUMBERS = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70)


@fuzz_settings(80)
@given(
    name=st.sampled_from(["rescale_factor", "image_mean", "image_std"]),
    value=NUMBERS | st.lists(NUMBERS, min_size=3, max_size=3),
)
def test_statistics_and_rescale_factor_are_finite_or_refused(name: str, value: Any) -> None:
    """Non-finite, zero-std or non-positive rescale values raise a `ValueError` naming the option; finite ones give
    finite pixel values."""
    values = value if isinstance(value, list) else [value] * (1 if name == "rescale_factor" else 3)
    numbers = [float(v) for v in values]
    valid = all(math.isfinite(v) for v in numbers) and (
        (name == "rescale_factor" and numbers[0] > 0) or (name == "image_std" and all(v != 0 for v in numbers))
    )
    valid = valid or (name == "image_mean" and all(math.isfinite(v) for v in numbers))
    option = value if name != "rescale_factor" or not isinstance(value, list) else value[0]
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    processor = RFDetrImageProcessor(size_divisor=DIVISOR, size=32)
    if not valid:
        with pytest.raises(ValueError, match=name):
            processor(image, **{name: option})
        return
    try:
        output = processor(image, **{name: option})
    except ValueError as error:  # finite but overflowing float32 (e.g. 2**70 as a std is fine, 1e300 is not)
        assert name in str(error) and "float32" in str(error), error
        return
    assert torch.isfinite(output["pixel_values"]).all()


BOX_VALUES = st.floats(-100, 200, allow_nan=False) | st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 1e300])


@st.composite
def coco_objects(draw: st.DrawFn) -> dict[str, Any]:
    bbox = draw(
        st.lists(BOX_VALUES, min_size=4, max_size=4)
        | st.lists(BOX_VALUES, max_size=6)
        | st.just("1 2 3 4")
        | st.just([1, 2, "3", 4])
        | st.just([True, 0, 5, 5])
    )
    obj: dict[str, Any] = {"bbox": bbox, "category_id": draw(st.sampled_from([0, 1, 7, 2.0, 2.5, "1", None]))}
    crowd = draw(st.sampled_from(["absent", 0, 1, 0.0, True, "0", "1", 2, None]))
    if crowd != "absent":
        obj["iscrowd"] = crowd
    return obj


def object_problem(obj: dict[str, Any]) -> str | None:
    """The field of an object the processor must refuse (`None` for a well-formed object)."""
    bbox, category, crowd = obj["bbox"], obj["category_id"], obj.get("iscrowd", 0)
    finite = isinstance(bbox, list) and len(bbox) == 4
    finite = finite and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    if not finite:
        return "bbox"
    if isinstance(category, bool) or not isinstance(category, (int, float)) or category != int(category):
        return "category_id"
    if isinstance(crowd, str) or crowd is None or crowd not in (0, 1):
        return "iscrowd"
    return None


@fuzz_settings(300)
@given(objects=st.lists(coco_objects(), max_size=6), options=processor_options())
def test_annotations_match_the_reference_or_raise(objects: list[dict[str, Any]], options: dict[str, Any]) -> None:
    """Boxes clipped to the image, those without area and crowd ones left out, the rest normalised cxcywh; a
    malformed object raises naming the image, the object and the field."""
    height, width = 24, 40
    image = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    annotation = {"image_id": 5, "annotations": objects}
    processor = RFDetrImageProcessor(size_divisor=DIVISOR)
    problems = [(index, object_problem(obj)) for index, obj in enumerate(objects) if object_problem(obj)]
    if problems:
        index, field = problems[0]
        with pytest.raises(ValueError, match=rf"image_id 5, annotation {index}: .*'?{field}"):
            processor(image, annotations=annotation, **options)
        return
    target = processor(image, annotations=annotation, **options)["labels"][0]
    expected_boxes, expected_classes = [], []
    for obj in objects:
        x, y, w, h = (float(v) for v in obj["bbox"])
        x0, x1 = min(max(x, 0.0), width), min(max(x + w, 0.0), width)
        y0, y1 = min(max(y, 0.0), height), min(max(y + h, 0.0), height)
        if obj.get("iscrowd", 0) or x1 <= x0 or y1 <= y0:
            continue
        expected_boxes.append([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height])
        expected_classes.append(int(obj["category_id"]))
    assert target["class_labels"].tolist() == expected_classes
    expected = torch.tensor(expected_boxes, dtype=torch.float64).reshape(-1, 4)
    torch.testing.assert_close(target["boxes"].double(), expected, rtol=0, atol=1e-6)
    assert target["orig_size"].tolist() == [height, width]
