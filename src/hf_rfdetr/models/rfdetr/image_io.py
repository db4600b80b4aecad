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
"""Reading images as people see them: one mechanism for the processor, the pipeline, the facade, the CLI and training.

Files (paths, URLs, bytes, file objects) and PIL images become 8-bit RGB PIL images with `load_image`:

- the EXIF orientation is applied (`PIL.ImageOps.exif_transpose`), so a phone photo stored sideways is read upright,
  with the width and height a viewer shows, and boxes are in that displayed frame;
- 16-bit and 32-bit modes (`I;16`, `I;16B`, `I;16L`, `I;16N`, `I`) are scaled from 0-65535 to 0-255
  (`round(v / 257)`, so a 16-bit copy of an 8-bit image gives back exactly its pixels) instead of being clipped to
  white by Pillow's `convert("RGB")`; float images (`F`) must hold values in `[0, 1]` and are scaled by 255;
  every other mode goes through Pillow's `convert("RGB")` (grey replicated, palette expanded, alpha dropped);
- images of more than `MAX_IMAGE_PIXELS` pixels are refused from their header, before decoding (decompression
  bombs), with an `ImageTooLargeError` naming the file and the limit;
- a missing file raises `FileNotFoundError`, an unreadable, truncated or non-image file an `ImageReadError`
  (a `ValueError`), each naming the file.

Arrays and tensors follow one layout and dtype rule, `to_chw`:

- `torch.Tensor`: channels first, `(C, H, W)`, as torchvision; numpy arrays: channels last, `(H, W, C)`, as PIL and
  OpenCV give them; `(H, W)` is grey. `C` is 1 (grey), 3 (RGB) or 4 (RGBA, alpha dropped).
- A 3-D shape whose only channel-sized dimension (1, 3 or 4) is on the other side is read that way (a `(3, H, W)`
  numpy array, an `(H, W, 3)` tensor: there is one possible reading). A tensor whose first dimension is 1, 3 or 4 is
  always channels-first, even when its last dimension is too (a `(3, H, 4)` tensor is a 4-pixel-wide RGB image). A
  numpy array with 3 or 4 in both its first and last dimensions (e.g. `(3, 100, 4)`: 3 x 100 RGBA or 100 x 4 RGB)
  is genuinely ambiguous and refused with a message naming the shape; with a 1 there (e.g. `(1, 20, 3)`) it is
  read channels-last, as numpy arrays are (and refused as smaller than 2x2 when it is).
- dtypes: `uint8` (0-255); `uint16` (0-65535, scaled to 8 bits as 16-bit files are); `bool` (False black, True
  white); floats (`float16`, `bfloat16`, `float32`, `float64`) in `[0, 1]`. Other dtypes are refused.

`to_chw` also takes PIL images, with their EXIF orientation applied as `load_image` does. A PIL image that still
carries an orientation other than 1 (`Image.open(path)`, `.convert("RGB")` keeps the tag) is logged with one warning
per image (transformers' logging, this module's logger), naming it, the orientation and its displayed and stored
sizes: its `.size` is the stored one, not the displayed frame the boxes and masks come out in, so `target_sizes`
taken from it or boxes drawn on it would be wrong. Read it upright first, `PIL.ImageOps.exif_transpose(image)`
(transformers' `load_image` does it), and use that image and its size (or `displayed_size(image)`). Files read by
`load_image`, and the images it returns, carry no orientation any more: they never warn.

The image processor's pixel stage lives here too: `to_float_chw` (one input image to a validated float32 `(C, H, W)`
tensor, rescaled to `[0, 1]`), `check_channels` and `normalize`.
"""

from __future__ import annotations

import io
import os
import urllib.request
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import functional as tvf
from transformers.utils import logging

__all__ = [
    "MAX_IMAGE_PIXELS",
    "ImageReadError",
    "ImageTooLargeError",
    "check_pixel_limit",
    "displayed_size",
    "load_image",
    "to_chw",
    "to_rgb",
]

logger = logging.get_logger(__name__)

_DEFAULT_MAX_IMAGE_PIXELS = 2 * 89_478_485


def _limit_from_environment(default: int | None = _DEFAULT_MAX_IMAGE_PIXELS) -> int | None:
    """`HF_RFDETR_MAX_IMAGE_PIXELS` as a pixel limit (`0`, `none` or empty: no limit), else `default`."""
    text = os.environ.get("HF_RFDETR_MAX_IMAGE_PIXELS")
    if text is None:
        return default
    if text.strip().lower() in ("", "0", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"HF_RFDETR_MAX_IMAGE_PIXELS must be an integer or 'none', got {text!r}") from None


#: Largest image, in pixels (width x height), that `load_image` decodes; `None` disables the check. The default is
#: Pillow's own hard limit (twice `PIL.Image.MAX_IMAGE_PIXELS`, about 179 megapixels), or the
#: `HF_RFDETR_MAX_IMAGE_PIXELS` environment variable when it is set at import (`0` or `none`: no limit). Assign
#: `hf_rfdetr.models.rfdetr.image_io.MAX_IMAGE_PIXELS` to change it at run time (above the default, raise
#: `PIL.Image.MAX_IMAGE_PIXELS` too, or Pillow refuses the file itself), or pass `max_pixels=` to `load_image`.
MAX_IMAGE_PIXELS: int | None = _limit_from_environment()

_URL_SCHEMES = ("http://", "https://")
_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # orientations that rotate by 90 degrees: width and height swap
_ORIENTATION_NAMES = {
    2: "mirrored left-right",
    3: "rotated 180 degrees",
    4: "mirrored top-bottom",
    5: "mirrored left-right and rotated 90 degrees counter-clockwise",
    6: "rotated 90 degrees clockwise",
    7: "mirrored left-right and rotated 90 degrees clockwise",
    8: "rotated 90 degrees counter-clockwise",
}
_CHANNELS = (1, 3, 4)
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_URL_TIMEOUT_S = 30.0

ImageSource = str | os.PathLike | bytes | IO[bytes] | Image.Image


class ImageReadError(ValueError):
    """An image file or buffer that cannot be decoded (not an image, truncated, corrupt); the message names it."""


class ImageTooLargeError(ImageReadError):
    """An image with more pixels than `MAX_IMAGE_PIXELS` (a possible decompression bomb); the message names it."""


# ----------------------------------------------------------------------------------------------------------------------
# Files and PIL images
# ----------------------------------------------------------------------------------------------------------------------


def load_image(
    source: ImageSource,
    *,
    max_pixels: int | None | str = "default",
    name: str | None = None,
    timeout: float | None = None,
) -> Image.Image:
    """Read an image as people see it: an 8-bit RGB PIL image, EXIF orientation applied (see the module docstring).

    Args:
        source: a file path, an http(s) URL, encoded bytes, a binary file object, or a PIL image.
        max_pixels: refuse images with more pixels than this (`None`: no limit); default `MAX_IMAGE_PIXELS`.
        name: how to name the image in errors (default: the path or URL, or "image bytes").
        timeout: seconds to wait for a URL (default 30).

    Returns:
        A fully decoded RGB `PIL.Image.Image` (independent of the file, which is closed).

    Raises:
        FileNotFoundError: a path that does not exist. OSError: a URL that cannot be fetched.
        ImageTooLargeError: more pixels than the limit. ImageReadError: anything that is not a decodable image.
        TypeError: a source of another type.
    """
    limit = _pixel_limit(max_pixels)
    if isinstance(source, Image.Image):
        check_pixel_limit(source.size, limit, name or "image")
        return to_rgb(source, name or "image")
    opened, label = _open(source, name, timeout)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked below
        try:
            with opened as image:
                check_pixel_limit(image.size, limit, label)
                image.load()
                return to_rgb(image, label)
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            if isinstance(error, ImageReadError):
                raise
            raise ImageReadError(f"{label} cannot be decoded as an image ({type(error).__name__}: {error})") from error


def _open(source: Any, name: str | None, timeout: float | None = None) -> tuple[Image.Image, str]:
    """A lazily opened PIL image of `source` and the label that names it in errors."""
    if isinstance(source, str) and source.startswith(_URL_SCHEMES):
        label = name or source
        return _open_buffer(io.BytesIO(_fetch(source, timeout)), label), label
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or repr(str(path))
        if not path.is_file():
            raise FileNotFoundError(f"{label} does not exist or is not a file")
        return _open_buffer(path, label), label
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "image bytes"
        return _open_buffer(io.BytesIO(bytes(source)), label), label
    if hasattr(source, "read"):
        label = name or repr(getattr(source, "name", "image file object"))
        return _open_buffer(source, label), label
    raise TypeError(
        f"unsupported image source of type {type(source).__name__}; expected a path, an http(s) URL, bytes, a binary "
        "file object or a PIL image"
    )


def _open_buffer(source: Path | IO[bytes], label: str) -> Image.Image:
    """`Image.open` with Pillow's errors turned into `ImageReadError` / `ImageTooLargeError` naming `label`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(source)
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(
            f"{label} is too large for Pillow ({error}); raise PIL.Image.MAX_IMAGE_PIXELS and "
            "hf_rfdetr.models.rfdetr.image_io.MAX_IMAGE_PIXELS if you trust it"
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{label} is not an image Pillow can read ({error})") from error


def _fetch(url: str, timeout: float | None = None) -> bytes:
    """The bytes at an http(s) URL; `OSError` naming the URL when it cannot be fetched."""
    try:
        with urllib.request.urlopen(url, timeout=timeout or _URL_TIMEOUT_S) as response:  # noqa: S310 - http(s) only
            return response.read()
    except Exception as error:  # URLError, timeouts, HTTP errors
        raise OSError(
            f"could not fetch {url} ({type(error).__name__}: {error}); check the URL and the network connection, or "
            "download the image and pass its path"
        ) from error


def _pixel_limit(max_pixels: int | None | str) -> int | None:
    """The pixel limit in force: `max_pixels`, or `MAX_IMAGE_PIXELS` for "default"."""
    return MAX_IMAGE_PIXELS if max_pixels == "default" else max_pixels  # type: ignore[return-value]


def check_pixel_limit(size: tuple[int, int], max_pixels: int | None | str = "default", name: str = "image") -> None:
    """Raise `ImageTooLargeError` naming `name` if a `(width, height)` image exceeds the pixel limit."""
    limit = _pixel_limit(max_pixels)
    width, height = size
    if limit is not None and width * height > limit:
        raise ImageTooLargeError(
            f"{name} has {width}x{height} = {width * height:,} pixels, more than the limit of {limit:,} (a possible "
            "decompression bomb); if you trust it, raise hf_rfdetr.models.rfdetr.image_io.MAX_IMAGE_PIXELS or set "
            "HF_RFDETR_MAX_IMAGE_PIXELS"
        )


def displayed_size(image: Image.Image) -> tuple[int, int]:
    """`(width, height)` of an opened (not necessarily decoded) image as a viewer shows it (EXIF orientation)."""
    orientation = _orientation(image)
    width, height = image.size
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def size_mismatch(
    stored: tuple[int, int],
    displayed: tuple[int, int],
    expected: tuple[int, int],
    image: str,
    declared: str,
    frame: str,
) -> str | None:
    """The error text when an image shown `displayed` (stored `stored`; `(width, height)`) is not the `expected` size
    that its annotations declare, else None. `image` names the image ("the file"), `declared` where the size comes
    from, with its verb ("the annotation file says"), and `frame` what must be in the displayed frame ("the annotation's size (and
    boxes)"); an EXIF orientation that explains the difference is named."""
    if displayed == expected:
        return None
    rotated = (
        f" It is stored {stored[0]}x{stored[1]} with an EXIF orientation that displays it {displayed[0]}x"
        f"{displayed[1]}; images are read as displayed, so {frame} must be in that frame (or remove the orientation "
        "tag if the boxes refer to the stored pixels)."
        if stored == expected
        else ""
    )
    return (
        f"{image} is {displayed[0]}x{displayed[1]} pixels but {declared} {expected[0]}x{expected[1]} (width x "
        f"height); the boxes would not match the image.{rotated}"
    )


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent or unreadable)."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a corrupt EXIF block: Pillow's exif_transpose would fail on it too
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """An 8-bit RGB copy of a PIL image with its EXIF orientation applied and 16-bit / float modes scaled.

    RGB images without an orientation are returned as they are (no copy). A lazily opened image that cannot be
    decoded raises `ImageReadError` naming `name` and its file."""
    image = _upright(image, name)
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float64)
        return Image.fromarray(_sixteen_to_eight_bit(values)).convert("RGB")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        _check_unit_interval(values, name)
        return Image.fromarray(np.rint(values * 255).astype(np.uint8)).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as error:  # modes Pillow cannot convert to RGB (e.g. LAB, HSV without a profile)
        raise ImageReadError(f"{name}: cannot convert Pillow mode {image.mode!r} to RGB ({error})") from error


def _upright(image: Image.Image, name: str) -> Image.Image:
    """The decoded image with its EXIF orientation applied (the image itself when it has none)."""
    _decode(image, name)
    return ImageOps.exif_transpose(image) if _orientation(image) != 1 else image


def _warn_if_oriented(image: Image.Image, where: str) -> None:
    """Log a warning when an in-memory PIL image carries an EXIF orientation other than 1: it is read upright, so
    its `.size` (stored) is not the frame of the boxes and masks (displayed)."""
    orientation = _orientation(image)
    if orientation == 1:
        return
    (stored_width, stored_height), (width, height) = image.size, displayed_size(image)
    logger.warning(
        "%s: PIL image with EXIF orientation %d (%s) is read as a viewer shows it, %dx%d (width x height), while "
        "its stored pixels and `.size` are %dx%d. Boxes and masks come out in the displayed %dx%d frame. To work in "
        "that frame, read it upright first, `image = PIL.ImageOps.exif_transpose(image)` (transformers' `load_image` "
        "does it), and use that image and its size, e.g. target_sizes=[(image.height, image.width)] (or "
        "`hf_rfdetr.models.rfdetr.image_io.displayed_size(image)` for the (width, height)).",
        where,
        orientation,
        _ORIENTATION_NAMES[orientation],
        width,
        height,
        stored_width,
        stored_height,
        width,
        height,
    )


def _decode(image: Image.Image, name: str) -> None:
    """Decode a lazily opened PIL image now, so that a truncated or corrupt file fails here, named."""
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        filename = getattr(image, "filename", "") or ""
        label = f"{name}: {str(filename)!r}" if filename and str(filename) not in name else name
        raise ImageReadError(f"{label} cannot be decoded as an image ({type(error).__name__}: {error})") from error


def _sixteen_to_eight_bit(values: np.ndarray) -> np.ndarray:
    """0-65535 values (clipped to that range) as uint8 `round(v / 257)`: 257 * v maps back to v exactly."""
    return np.rint(np.clip(values, 0, 65535) / 257.0).astype(np.uint8)


def _check_unit_interval(values: np.ndarray, name: str) -> None:
    if values.size and (not np.isfinite(values).all() or values.min() < 0 or values.max() > 1):
        raise ImageReadError(
            f"{name}: float image with values in [{np.nanmin(values):.4g}, {np.nanmax(values):.4g}] (or NaN / inf); "
            "float images must hold values in [0, 1]"
        )


# ----------------------------------------------------------------------------------------------------------------------
# Arrays and tensors
# ----------------------------------------------------------------------------------------------------------------------


def to_chw(
    image: np.ndarray | torch.Tensor | Image.Image,
    where: str = "image",
    *,
    channels_first: bool | None = None,
    convert_rgb: bool = True,
) -> torch.Tensor:
    """A `(3, H, W)` CPU tensor of an array, tensor or PIL image: uint8 (0-255), or float (values unchecked).

    Applies the layout and dtype rule of the module docstring; uint16 is scaled to uint8, bool to 0 / 255, floats
    become float32. `channels_first` (transformers' `input_data_format`) states the layout of a 3-D array or tensor
    instead of the rule. With `convert_rgb=False` gray is not replicated nor alpha dropped: the result is
    `(C, H, W)` with the image's own C in {1, 3, 4} (a PIL image in a mode other than L, RGB or RGBA is refused).
    `where` starts every error message (e.g. "Image 2"). Raises `ValueError` naming the shape or dtype,
    `TypeError` for another type.
    """
    if isinstance(image, Image.Image):
        if not convert_rgb and image.mode != "RGB":
            if image.mode not in ("L", "RGBA"):
                _refuse_non_rgb(f"mode {image.mode!r}", where)
            upright = _upright(image, where)
            chw = torch.from_numpy(np.array(upright, dtype=np.uint8).reshape(upright.height, upright.width, -1))
            chw = chw.permute(2, 0, 1)
        else:
            chw = torch.from_numpy(np.array(to_rgb(image, where), dtype=np.uint8)).permute(2, 0, 1)
        check_spatial_size(
            int(chw.shape[1]), int(chw.shape[2]), where
        )  # PIL images obey the same 2x2 minimum as arrays
        _warn_if_oriented(image, where)
        return chw
    if isinstance(image, np.ndarray):
        tensor, default_first = torch.from_numpy(_numpy_pixels(image, where)), False
    elif isinstance(image, torch.Tensor):
        tensor, default_first = image.detach().cpu(), True
    else:
        raise TypeError(
            f"{where}: unsupported type {type(image).__name__}; expected a file path, a PIL image, a numpy array "
            "(H, W, C) or a torch tensor (C, H, W)"
        )
    if channels_first is not None and tensor.ndim == 3:
        chw = tensor if channels_first else tensor.permute(2, 0, 1)
        if chw.shape[0] not in _CHANNELS:
            raise ValueError(
                f"{where}: shape {tuple(tensor.shape)} read as {'(C, H, W)' if channels_first else '(H, W, C)'} "
                f"(input_data_format) has {chw.shape[0]} channels; expected 1 (gray), 3 (RGB) or 4 (RGBA)."
            )
    else:
        chw = _layout(tensor, where, default_first)
    check_spatial_size(int(chw.shape[1]), int(chw.shape[2]), where)
    pixels = _pixel_dtype(chw, where)
    return _to_three_channels(pixels, where) if convert_rgb else pixels


def _refuse_non_rgb(what: str, where: str) -> None:
    raise ValueError(
        f"{where} has {what} and do_convert_rgb=False, which keeps only L, RGB or RGBA channels as they are. Pass "
        "do_convert_rgb=True to convert it to RGB."
    )


def _numpy_pixels(array: np.ndarray, where: str) -> np.ndarray:
    """A native-byte-order copy torch can hold (uint16 scaled to uint8 here, as torch barely supports uint16)."""
    if array.dtype.kind not in "buf" or array.dtype.itemsize > 8 or array.dtype in (np.uint32, np.uint64):
        raise ValueError(f"{where}: unsupported dtype {array.dtype}; {_DTYPE_HINT}")
    if array.dtype == np.uint16 or array.dtype.newbyteorder("=") == np.uint16:
        return _sixteen_to_eight_bit(array.astype(np.float64))
    return np.array(array, dtype=array.dtype.newbyteorder("="), copy=True)  # writable, native, contiguous


_DTYPE_HINT = "pass uint8 (0-255), uint16 (0-65535), bool, or float (0-1) pixels, or a PIL image"


def _layout(tensor: torch.Tensor, where: str, channels_first: bool) -> torch.Tensor:
    """The `(C, H, W)` view of a `(H, W)`, `(C, H, W)` or `(H, W, C)` tensor, by the rule of the module docstring."""
    shape = tuple(tensor.shape)
    if tensor.ndim == 2:
        return tensor.unsqueeze(0)
    if tensor.ndim != 3:
        raise ValueError(
            f"{where}: expected a 2-D (H, W) or 3-D image, got shape {shape} ({tensor.ndim}-D). Pass a list of "
            "images for a batch."
        )
    first, last = shape[0] in _CHANNELS, shape[2] in _CHANNELS
    if not first and not last:
        raise ValueError(
            f"{where}: expected 1 (gray), 3 (RGB) or 4 (RGBA) channels in the first (C, H, W) or last (H, W, C) "
            f"dimension, got shape {shape}."
        )
    if first and last and not channels_first and min(shape) >= 2:  # both readings are images of 2x2 or more
        raise ValueError(
            f"{where}: numpy array of shape {shape} is ambiguous: it reads as {shape[0]}x{shape[1]} pixels with "
            f"{shape[2]} channels (H, W, C) or as {shape[1]}x{shape[2]} pixels with {shape[0]} channels (C, H, W). "
            "Pass a PIL image, or a torch tensor (C, H, W) (torch.from_numpy(array), permuted if needed)."
        )
    return tensor if (first and channels_first) or not last else tensor.permute(2, 0, 1)


def check_spatial_size(height: int, width: int, where: str) -> None:
    """Raise `ValueError` naming `where` for an empty image or one smaller than 2x2 (what the model can take)."""
    if height == 0 or width == 0:
        raise ValueError(f"{where}: empty image (height={height}, width={width}).")
    if height < 2 or width < 2:
        raise ValueError(f"{where}: image of {height}x{width} pixels is smaller than the minimum 2x2.")


def _pixel_dtype(chw: torch.Tensor, where: str) -> torch.Tensor:
    """uint8 as is, bool as 0 / 255 uint8, floats as float32; other dtypes raise `ValueError`."""
    if chw.dtype == torch.uint8:
        return chw
    if chw.dtype == torch.bool:
        return chw.to(torch.uint8) * 255
    if chw.dtype == getattr(torch, "uint16", None):
        return torch.from_numpy(_sixteen_to_eight_bit(chw.to(torch.int32).numpy().astype(np.float64)))
    if chw.dtype in _FLOAT_DTYPES:
        return chw.to(torch.float32)
    raise ValueError(f"{where}: unsupported dtype {chw.dtype}; {_DTYPE_HINT}")


def _to_three_channels(chw: torch.Tensor, where: str) -> torch.Tensor:
    """Replicate a gray channel to RGB, drop an alpha channel; `(C, H, W)` -> `(3, H, W)`."""
    channels = int(chw.shape[0])
    if channels == 1:
        return chw.expand(3, -1, -1)
    if channels == 3:
        return chw
    if channels == 4:
        return chw[:3]
    raise ValueError(  # unreachable through _layout, kept for direct callers
        f"{where}: expected 1 (gray), 3 (RGB) or 4 (RGBA) channels, got {channels} (shape {tuple(chw.shape)})."
    )


# ----------------------------------------------------------------------------------------------------------------------
# The image processor's pixel stage: each input image to a validated float32 (C, H, W) tensor, the channel checks and
# the per-channel normalisation (resizing and padding: `image_sizing`)
# ----------------------------------------------------------------------------------------------------------------------


def check_channels(images: list[torch.Tensor], options: dict[str, Any]) -> None:
    """Raise `ValueError` unless all images have the same channel count C and, when normalising, `image_mean` /
    `image_std` have C values (a statistic given as a number is broadcast to any C)."""
    channels = int(images[0].shape[0])
    for index, image in enumerate(images):
        if image.shape[0] != channels:
            raise ValueError(
                f"Image {index} has {image.shape[0]} channels and image 0 has {channels}; with do_convert_rgb=False "
                "all images of a call must have the same number of channels."
            )
    if not options["do_normalize"]:
        return
    for name in ("image_mean", "image_std"):
        values = options[name]
        if len(values) != channels and not (len(values) == 3 and len(set(values)) == 1):
            raise ValueError(
                f"`{name}` has {len(values)} values {values} but the images have {channels} channels "
                f"(do_convert_rgb={options['do_convert_rgb']}); give one value per channel."
            )


# ----------------------------------------------------------------------------------------------------------------------
# Image conversion
# ----------------------------------------------------------------------------------------------------------------------


def to_float_chw(image: Any, index: int, options: dict[str, Any]) -> torch.Tensor:
    """Convert one input image into a validated `(C, H, W)` float32 tensor (C = 3 unless `do_convert_rgb=False`; in
    `[0, 1]` when rescaling).

    Files are read by `image_io.load_image` (EXIF orientation, 16-bit scaling, pixel limit, the file named in errors);
    arrays, tensors and PIL images follow `image_io.to_chw`'s layout and dtype rule.
    """
    where = f"Image {index}"
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image, name=f"{where}: {os.fspath(image)!r}")
    try:
        chw = to_chw(image, where, channels_first=options["channels_first"], convert_rgb=options["do_convert_rgb"])
    except TypeError as error:
        raise ValueError(str(error)) from error
    if options.get("device") is not None:
        chw = chw.to(options["device"], non_blocking=True)
    return to_float32(chw, index, options["do_rescale"], options["rescale_factor"])


def to_float32(chw: torch.Tensor, index: int, do_rescale: bool, rescale_factor: float) -> torch.Tensor:
    """Convert a `(C, H, W)` uint8 or float tensor to contiguous float32; uint8 is divided by `1 / rescale_factor`.

    Dividing by 255 (rather than multiplying by 1/255) reproduces the original's rounding bit for bit. Float input is
    taken as already scaled and must lie in `[0, 1]` when `do_rescale` is on.
    """
    if chw.dtype == torch.uint8:
        values = chw.to(torch.float32, memory_format=torch.contiguous_format)
        if do_rescale:
            values = values.div_(torch.tensor(1.0 / rescale_factor, dtype=torch.float32))
        return values
    if not chw.is_floating_point():
        raise ValueError(
            f"Image {index}: unsupported dtype {chw.dtype}; pass uint8 (0-255) or float (0-1) pixels, or a PIL image."
        )
    values = chw.to(torch.float32, memory_format=torch.contiguous_format)
    if not torch.isfinite(values).all():  # also without rescaling: NaN would flow silently into the model
        raise ValueError(f"Image {index}: float image contains NaN or infinite values.")
    if do_rescale:
        _check_unit_range(values, index)
    return values


def _check_unit_range(values: torch.Tensor, index: int) -> None:
    """Raise `ValueError` if a (finite) float image has values outside `[0, 1]`."""
    if (values > 1).any():
        raise ValueError(
            f"Image {index}: float image has pixel values above 1 (max {values.max().item():.4g}); float images must "
            "be scaled to [0, 1] (pass uint8 for 0-255 data)."
        )
    if (values < 0).any():
        raise ValueError(
            f"Image {index}: float image has pixel values below 0 (min {values.min().item():.4g}); float images must "
            "be scaled to [0, 1]."
        )


# ----------------------------------------------------------------------------------------------------------------------
# Normalise (resizing and padding: `image_sizing`)
# ----------------------------------------------------------------------------------------------------------------------


def normalize(images: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
    """`(x - mean) / std` per channel of a `(..., 3, H, W)` tensor when `do_normalize` is on."""
    if not options["do_normalize"]:
        return images
    channels = int(images.shape[-3])
    mean, std = (_per_channel(options[name], channels) for name in ("image_mean", "image_std"))
    return tvf.normalize(images, mean=mean, std=std)


def _per_channel(values: list[float], channels: int) -> list[float]:
    """A statistic checked by `check_channels`, with one value per channel (3 equal values stand for any C)."""
    return values if len(values) == channels else values[:1] * channels
