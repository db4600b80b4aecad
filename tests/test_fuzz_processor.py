"""Fuzzing `RFDetrImageProcessor` with hypothesis (bounded, reproducible budget: see `tests/fuzzing.py`).

Every drawn input either gives a batch that matches a reference decoding computed here independently, or raises a
`ValueError` naming the problem. The reference restates the documented rules of `hf_rfdetr.models.rfdetr.image_io` (its module
docstring) and of the processor, from the input as passed:

- layout: numpy arrays channels-last `(H, W, C)`, tensors channels-first `(C, H, W)`, `(H, W)` grey, `C` in
  {1, 3, 4}; the other layout only where it is the one possible reading; a tensor with 1, 3 or 4 first is always
  channels-first; a numpy array with 3 or 4 in both its first and last dimensions is refused as ambiguous, naming its
  shape (with a 1 there it is channels-last); any other rank or channel count is refused;
- dtypes: uint8 / 255; uint16 (either byte order, numpy or tensor) `round(v / 257) / 255`; bool as 0 / 1; floats
  (float16, bfloat16, float32, float64, either byte order) as given, refused when non-finite or outside `[0, 1]`
  (in the channels used: a dropped alpha channel is not checked);
  any other dtype (int64 here) refused naming it;
- PIL images: the EXIF orientation applied; `I;16`, `I;16B` and `I` clipped to 0-65535 and scaled by
  `round(v / 257)`; `F` refused outside `[0, 1]`, else `round(255 v)`; other modes through their palette (or
  PIL's `convert("RGB")` for CMYK, its definition), grey replicated, alpha dropped;
- every image at least 2x2 after orientation and layout.

Then a numpy bilinear resize with half-pixel centres and no antialiasing (the definition
`torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` implements), `(x - mean) / std`, zero padding
bottom/right to the size divisor. Tolerance: `ATOL` on normalised values (float32 arithmetic of the processor,
including its float32 source coordinates, against float64 here). An input that breaks several rules may be refused
for any of them (the rules do not order their checks); the first refused image of a list is the one named.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import event, example, given
from hypothesis import strategies as st
from PIL import Image

from hf_rfdetr.models.rfdetr.image_processing_rfdetr import IMAGENET_MEAN, IMAGENET_STD, RFDetrImageProcessor

from .fuzzing import fuzz_settings

ATOL = 2e-3  # on normalised values: ~0.1 of one uint8 grey level (1 / 255 / 0.225 = 0.017)
DIVISOR = 16
VALID_CHANNELS = (1, 3, 4)
SMALL_SIDES = st.integers(2, 40)
ODD_SIDES = st.sampled_from([1, 2, 3, 4, 5, 97, 641, 2049])
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
DTYPES = ("uint8", "uint16", "bool", "float16", "float32", "float64", "int64")  # numpy and torch
TORCH_ONLY_DTYPES = ("bfloat16",)
NUMPY_ONLY_DTYPES = (">u2", ">f4")  # big-endian (non-native) byte order
EXIF_ORIENTATION = 0x0112

# The refusals, as patterns of the message after "Image <index>: ".
SMALL = "smaller than the minimum 2x2"
RANK = r"expected a 2-D \(H, W\) or 3-D image, got shape .*Pass a list of images"
NO_CHANNELS = r"expected 1 \(gray\), 3 \(RGB\) or 4 \(RGBA\) channels in the first \(C, H, W\) or last"
NON_FINITE = "NaN or infinite"
ABOVE_ONE, BELOW_ZERO = "float image has pixel values above 1", "float image has pixel values below 0"
PIL_FLOAT_RANGE = r"float images must hold values in \[0, 1\]"


def ambiguous(shape: tuple[int, ...]) -> str:
    return rf"numpy array of shape {re.escape(str(shape))} is ambiguous"


def unsupported_dtype(name: str) -> str:
    return rf"unsupported dtype (torch\.)?{name}"


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


def reference_layout(values: np.ndarray, is_tensor: bool) -> np.ndarray | set[str]:
    """`(H, W, C)` float64 values of an array / tensor by the layout rule, or the refusals that apply."""
    shape = values.shape
    if values.ndim == 2:
        return values[:, :, None]
    if values.ndim != 3:
        return {RANK}
    first, last = shape[0] in VALID_CHANNELS, shape[2] in VALID_CHANNELS
    if not first and not last:
        return {NO_CHANNELS}
    if not is_tensor and shape[0] in (3, 4) and shape[2] in (3, 4):
        # both readings are images unless the middle side is 1, when both are below 2x2 (refused either way)
        return {ambiguous(shape)} if shape[1] >= 2 else {ambiguous(shape), SMALL}
    channels_first = first if is_tensor else not last
    return values.transpose(1, 2, 0) if channels_first else values


def reference_scale(values: np.ndarray, dtype: str) -> np.ndarray:
    """Values of a supported dtype in `[0, 1]`: uint8 / 255, uint16 round(v / 257) / 255, bool and floats as they are."""
    if dtype == "uint8":
        return values / 255
    if dtype == "uint16":
        return np.floor(values / 257 + 0.5) / 255  # v / 257 is never exactly halfway (257 is odd)
    return values


def to_rgb3(pixels: np.ndarray) -> np.ndarray:
    """`(H, W, C)` -> `(H, W, 3)`: grey replicated, alpha dropped."""
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[:, :, :3]


def reference_decode(image: np.ndarray | torch.Tensor) -> np.ndarray | set[str]:
    """The `(H, W, 3)` float64 pixels in `[0, 1]` the rules give for one array or tensor, or the refusals that apply."""
    is_tensor = isinstance(image, torch.Tensor)
    dtype = str(image.dtype).removeprefix("torch.") if is_tensor else image.dtype.name
    values = image.to(torch.float64).numpy() if is_tensor else image.astype(np.float64)
    errors = set() if dtype in ("uint8", "uint16", "bool", *FLOAT_DTYPES) else {unsupported_dtype(dtype)}
    pixels = reference_layout(values, is_tensor)
    if isinstance(pixels, set):
        return errors | pixels
    if min(pixels.shape[:2]) < 2:
        errors.add(SMALL)
    if dtype in FLOAT_DTYPES:
        as_float32 = to_rgb3(pixels).astype(np.float32)  # the processor checks its float32 copy of the RGB it uses
        if not np.isfinite(as_float32).all():
            errors.add(NON_FINITE)
        elif as_float32.max() > 1 or as_float32.min() < 0:
            errors.add(ABOVE_ONE if as_float32.max() > 1 else BELOW_ZERO)
    return errors or to_rgb3(reference_scale(pixels, dtype))


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
    """Fit in `longest x longest` keeping the aspect ratio, sides truncated (transformers' max_height/max_width
    rule), at least 1."""
    scale = min(longest / height, longest / width)
    return max(1, int(height * scale)), max(1, int(width * scale))


def assert_matches(output: Any, expected: tuple[np.ndarray, np.ndarray]) -> None:
    values, mask = expected
    pixel_values = output["pixel_values"]
    assert pixel_values.dtype == torch.float32 and tuple(pixel_values.shape) == values.shape
    assert torch.equal(output["pixel_mask"], torch.from_numpy(mask))
    assert torch.isfinite(pixel_values).all()
    np.testing.assert_allclose(pixel_values.double().numpy(), values, rtol=0, atol=ATOL)


def run_property(images: Any, decoded: list[np.ndarray | set[str]], options: dict[str, Any]) -> None:
    """The processor on `images` (one image or a list) gives the reference batch of `decoded`, or refuses the first
    image the reference refuses, with one of the messages that apply."""
    processor = RFDetrImageProcessor(size_divisor=DIVISOR)
    refused = [(index, errors) for index, errors in enumerate(decoded) if isinstance(errors, set)]
    if refused:
        index, errors = refused[0]
        event(f"refused ({len(errors)} possible reasons): " + " | ".join(sorted(errors))[:60])
        with pytest.raises(ValueError, match=rf"^Image {index}: .*({'|'.join(sorted(errors))})"):
            processor(images, **options)
        return
    event("batch matches the reference")
    assert_matches(processor(images, **options), reference_batch(decoded, options))


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
    """The spec of an array or tensor input: logical `(H, W[, C])` shape, dtype, value regime, seed, layout, type.

    Every layout is drawn for every shape (a `(C, H, W)` numpy array with `W` in {1, 3, 4}, an `(H, W, C)` tensor
    with `H` in {1, 3, 4} included): the reference decodes the input as passed, by the layout rule."""
    use_torch = draw(st.booleans())
    height, width = draw(image_shapes())
    channels = draw(st.sampled_from([None, *VALID_CHANNELS]))
    dtype = draw(st.sampled_from(DTYPES + (TORCH_ONLY_DTYPES if use_torch else NUMPY_ONLY_DTYPES)))
    floating = dtype in FLOAT_DTYPES or dtype == ">f4"
    regime = draw(st.sampled_from(["unit", "unit", "above", "below", "nan"])) if floating else "unit"
    return {
        "shape": (height, width) if channels is None else (height, width, channels),
        "dtype": dtype,
        "regime": regime,
        "layout": "hw" if channels is None else draw(st.sampled_from(["hwc", "chw"])),
        "torch": use_torch,
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def logical(case: dict[str, Any]) -> np.ndarray:
    """The `(H, W[, C])` pixels of a spec (bfloat16 as float32); an out-of-range or non-finite value goes into a
    colour channel."""
    rng, shape, dtype, regime = np.random.default_rng(case["seed"]), case["shape"], case["dtype"], case["regime"]
    if dtype == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if dtype in ("uint16", ">u2"):
        return rng.integers(0, 65536, shape).astype(dtype)
    if dtype == "int64":
        return rng.integers(0, 70000, shape).astype(np.int64)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    values = rng.random(shape)
    spot = (rng.integers(shape[0]), rng.integers(shape[1])) + ((0,) if len(shape) == 3 else ())
    if regime != "unit":
        values[spot] = {"above": 1.5, "below": -0.25}.get(regime) or rng.choice([np.nan, np.inf, -np.inf])
    return values.astype("float32" if dtype == "bfloat16" else dtype)


def as_input(case: dict[str, Any]) -> np.ndarray | torch.Tensor:
    array = logical(case)
    if case["layout"] == "chw":
        array = np.ascontiguousarray(array.transpose(2, 0, 1))
    if not case["torch"]:
        return array
    tensor = torch.from_numpy(array)
    return tensor.to(torch.bfloat16) if case["dtype"] == "bfloat16" else tensor


# ----------------------------------------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------------------------------------


@fuzz_settings(400)
@given(case=arrays(), options=processor_options())
@example(
    case={"shape": (3000, 4000, 3), "dtype": "uint8", "regime": "unit", "layout": "hwc", "torch": False, "seed": 0},
    options={"do_resize": True, "keep_aspect_ratio": True, "size": 48, "do_normalize": True},
).via("a 12-megapixel photo")
@example(
    case={"shape": (2, 2), "dtype": "uint16", "regime": "unit", "layout": "hw", "torch": False, "seed": 0},
    options={"do_resize": False, "keep_aspect_ratio": False, "size": 16, "do_normalize": True},
).via("uint16 is round(v / 257) / 255, not v / 65535")
@example(
    case={"shape": (40, 3, 4), "dtype": "uint8", "regime": "unit", "layout": "chw", "torch": False, "seed": 0},
    options={"do_resize": False, "keep_aspect_ratio": False, "size": 16, "do_normalize": True},
).via("an ambiguous (4, 40, 3) numpy array")
@example(
    case={"shape": (40, 3, 4), "dtype": "uint8", "regime": "unit", "layout": "chw", "torch": True, "seed": 0},
    options={"do_resize": False, "keep_aspect_ratio": False, "size": 16, "do_normalize": True},
).via("a (4, 40, 3) tensor is channels-first")
def test_arrays_and_tensors_match_the_reference_or_raise(case: dict[str, Any], options: dict[str, Any]) -> None:
    image = as_input(case)
    event(f"{'tensor' if case['torch'] else 'numpy'} {case['dtype']}")
    run_property(image, [reference_decode(image)], options)


@fuzz_settings(120)
@given(cases=st.lists(arrays(), min_size=1, max_size=3), options=processor_options(), stacked=st.booleans())
def test_batches_match_the_reference_or_raise(cases: list[dict[str, Any]], options: dict[str, Any], stacked: bool):
    """A list of images of different sizes (padded together); or same-shaped images stacked into one array /
    tensor, which the processor takes as one image: a `(B, H, W)` stack is read by the layout rule, a 4-D stack is
    refused with a message asking for a list."""
    if stacked:  # same spec, different pixels
        inputs = [as_input(dict(cases[0], seed=case["seed"])) for case in cases]
        batch = torch.stack(inputs) if cases[0]["torch"] else np.stack(inputs)
        event(f"stacked {batch.ndim}-D")
        run_property(batch, [reference_decode(batch)], options)
        return
    inputs = [as_input(case) for case in cases]
    run_property(inputs, [reference_decode(image) for image in inputs], options)


# ----------------------------------------------------------------------------------------------------------------------
# PIL images
# ----------------------------------------------------------------------------------------------------------------------

PIL_MODES = ("L", "RGB", "RGBA", "P", "CMYK", "LA", "1", "I;16", "I;16B", "I", "F")
ORIENTATIONS: dict[int, Any] = {  # EXIF orientation -> the numpy transform that shows the stored pixels upright
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def grey3(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[:, :, None], 3, axis=2)


def pil_image(mode: str, height: int, width: int, seed: int, bad_float: bool) -> tuple[Image.Image, np.ndarray | None]:
    """A PIL image of `mode` (`width` x `height`) and its reference RGB pixels `(H, W, 3)` in 0-255, computed without
    `convert` (except CMYK, whose conversion is PIL's definition); `None` for an `F` image outside `[0, 1]`."""
    rng = np.random.default_rng(seed)
    grey = rng.integers(0, 256, (height, width), dtype=np.uint8)
    if mode in ("L", "LA"):
        alpha = rng.integers(0, 256, (height, width), dtype=np.uint8)
        image = Image.fromarray(np.stack([grey, alpha], axis=-1), "LA") if mode == "LA" else Image.fromarray(grey)
        return image, grey3(grey)
    if mode == "1":
        bits = grey > 127
        return Image.fromarray(bits), grey3(bits * 255)
    if mode == "P":
        palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
        image = Image.fromarray(grey, "P")
        image.putpalette(palette.tobytes())
        return image, palette[grey]
    if mode in ("I;16", "I;16B", "I"):
        values = rng.integers(0 if mode != "I" else -3000, 65536 if mode != "I" else 70000, (height, width))
        if mode == "I;16B":
            image = Image.frombytes(mode, (width, height), values.astype(">u2").tobytes())
        else:
            image = Image.fromarray(values.astype(np.uint16 if mode == "I;16" else np.int32))
        assert image.mode == mode
        return image, grey3(np.floor(np.clip(values, 0, 65535) / 257 + 0.5))
    if mode == "F":
        values = rng.random((height, width)).astype(np.float32)
        if bad_float:
            values[rng.integers(height), rng.integers(width)] = rng.choice([1.5, -0.25, np.nan, np.inf])
        return Image.fromarray(values), None if bad_float else grey3(np.floor(values.astype(np.float64) * 255 + 0.5))
    pixels = rng.integers(0, 256, (height, width, len(mode)), dtype=np.uint8)
    image = Image.fromarray(pixels, mode)
    if mode == "CMYK":
        return image, np.asarray(image.convert("RGB"))
    return image, pixels[:, :, :3]


@fuzz_settings(250)
@given(
    mode=st.sampled_from(PIL_MODES),
    shape=image_shapes(),
    seed=st.integers(0, 2**32 - 1),
    orientation=st.sampled_from([1, 1, *ORIENTATIONS]),
    bad_float=st.booleans(),
    options=processor_options(),
)
@example(
    mode="L",
    shape=(2, 1),
    seed=0,
    orientation=1,
    bad_float=False,
    options={"do_resize": False, "keep_aspect_ratio": False, "size": 16, "do_normalize": True},
).via("a 1-pixel-wide PIL image is refused as arrays are")
def test_pil_modes_match_the_reference(
    mode: str, shape: tuple[int, int], seed: int, orientation: int, bad_float: bool, options: dict[str, Any]
) -> None:
    """Every mode, with every EXIF orientation, decodes to the reference (or is refused: below 2x2, `F` outside
    `[0, 1]`)."""
    image, rgb = pil_image(mode, *shape, seed, bad_float)
    image.getexif()[EXIF_ORIENTATION] = orientation
    errors = ({SMALL} if min(shape) < 2 else set()) | ({PIL_FLOAT_RANGE} if rgb is None else set())
    decoded = errors or ORIENTATIONS[orientation](rgb).astype(np.float64) / 255
    event(f"mode {mode}, orientation {orientation}")
    run_property(image, [decoded], options)


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
