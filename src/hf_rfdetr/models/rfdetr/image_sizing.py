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
"""Sizes for [`RFDetrImageProcessor`]: the `size` / `pad_size` option forms and their checks, the output size of the
resize, the bilinear resize itself and the padding of a batch to one canvas (a multiple of the backbone block)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tvf
from transformers.image_processing_utils import get_size_dict
from transformers.image_transforms import get_size_with_aspect_ratio
from transformers.image_utils import get_image_size_for_max_height_width

# The `size` forms of transformers' detection processors (DETR, RT-DETR): an exact (squash) resize, and the two
# aspect-preserving resizes.
SIZE_FORMS = ({"height", "width"}, {"shortest_edge", "longest_edge"}, {"max_height", "max_width"})


def positive_int(value: Any, name: str) -> int:
    """Return `value` as an int, raising `ValueError` unless it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return int(value)


def size_dict(size: Any) -> dict[str, int]:
    """Normalise `size` with transformers' `get_size_dict` (an int or a `(height, width)` pair is `{"height": h,
    "width": w}`) and check that it is one of the forms in `SIZE_FORMS`, with positive integer values."""
    if isinstance(size, bool) or not isinstance(size, (Mapping, int, np.integer, Sequence)) or isinstance(size, str):
        raise ValueError(f"`size` must be an int, a (height, width) pair or a dict, got {size!r}.")
    if isinstance(size, Sequence) and len(size) != 2:
        raise ValueError(f"`size` must be an int, a (height, width) pair or a dict, got {size!r}.")
    if isinstance(size, np.integer):
        size = int(size)
    form = set(size) if isinstance(size, Mapping) else {"height", "width"}
    if form not in SIZE_FORMS:
        raise ValueError(
            f"`size` must have the keys {' or '.join(str(sorted(keys)) for keys in SIZE_FORMS)}, got {dict(size)}."
        )
    size = dict(get_size_dict(dict(size) if isinstance(size, Mapping) else size, default_to_square=True))
    return {key: positive_int(value, f"size[{key!r}]") for key, value in size.items()}


def pad_size_dict(pad_size: Any) -> dict[str, int]:
    """Normalise `pad_size` (a dict, an int or a `(height, width)` pair) to `{"height": h, "width": w}`."""
    if not isinstance(pad_size, Mapping) or set(pad_size) != {"height", "width"}:
        raise ValueError(f"`pad_size` must be a dict with the keys 'height' and 'width', got {pad_size!r}.")
    return {key: positive_int(pad_size[key], f"pad_size[{key!r}]") for key in ("height", "width")}


def is_squash(options: dict[str, Any]) -> bool:
    """Whether the resize is the exact (aspect-squashing) resize to `size["height"] x size["width"]`."""
    return set(options["size"]) == {"height", "width"} and not options["keep_aspect_ratio"]


def check_square_size(size: dict[str, int], size_divisor: int) -> None:
    """Raise `ValueError` unless both sides of `size` are multiples of `size_divisor`."""
    if size["height"] % size_divisor or size["width"] % size_divisor:
        raise ValueError(
            f"`size` {size} must be divisible by `size_divisor`={size_divisor} (patch_size * num_windows) in both "
            "height and width; choose a multiple of it, or an aspect-preserving `size` ({'max_height', 'max_width'} or "
            "{'shortest_edge', 'longest_edge'}), which pads."
        )


def check_pad_size(pad_size: dict[str, int], size_divisor: int) -> None:
    """Raise `ValueError` unless both sides of `pad_size` are multiples of `size_divisor`."""
    if pad_size["height"] % size_divisor or pad_size["width"] % size_divisor:
        raise ValueError(
            f"`pad_size` {pad_size} must be divisible by `size_divisor`={size_divisor} (patch_size * num_windows, the "
            f"model's block size) in both height and width; use e.g. {round_up(pad_size['height'], size_divisor)} x "
            f"{round_up(pad_size['width'], size_divisor)}, or leave `pad_size` unset to pad to the batch's largest "
            "image rounded up to a multiple."
        )


def output_size(height: int, width: int, options: dict[str, Any]) -> tuple[int, int]:
    """Resized `(h, w)` of an `height x width` image for the `size` form in `options` (see the class docstring);
    the aspect-preserving forms follow transformers' DETR processors, each side at least 1 pixel."""
    size = options["size"]
    if is_squash(options):
        return size["height"], size["width"]
    if "shortest_edge" in size:
        new = get_size_with_aspect_ratio((height, width), size["shortest_edge"], size["longest_edge"])
    elif "max_height" in size:
        new = get_image_size_for_max_height_width((height, width), size["max_height"], size["max_width"])
    else:  # keep_aspect_ratio with {"height", "width"}
        longest = max(size["height"], size["width"])
        new = get_image_size_for_max_height_width((height, width), longest, longest)
    return max(1, int(new[0])), max(1, int(new[1]))


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a float `(C, H, W)` tensor to `(C, *size)` without antialiasing (as `rfdetr` `predict`)."""
    return tvf.resize(image, [int(size[0]), int(size[1])], interpolation=InterpolationMode.BILINEAR, antialias=False)


def canvas_size(images: list[torch.Tensor], options: dict[str, Any]) -> tuple[int, int]:
    """`(H, W)` of the batch: `pad_size`, else the largest image rounded up to a multiple of `size_divisor`; without
    padding, the images' common size, which must already be a multiple."""
    divisor = options["size_divisor"]
    height = max(int(image.shape[1]) for image in images)
    width = max(int(image.shape[2]) for image in images)
    if not options["do_pad"]:
        sizes = sorted({tuple(image.shape[1:]) for image in images})
        if len(sizes) > 1 or height % divisor or width % divisor:
            raise ValueError(
                f"do_pad=False, but the resized images have the size(s) {sizes}: the batch needs one size with height "
                f"and width multiples of `size_divisor`={divisor}; pass do_pad=True (the default)."
            )
        return height, width
    if options["pad_size"] is None:
        return round_up(height, divisor), round_up(width, divisor)
    pad_height, pad_width = options["pad_size"]["height"], options["pad_size"]["width"]
    if height > pad_height or width > pad_width:
        raise ValueError(
            f"`pad_size` {options['pad_size']} is smaller than a resized image ({height} x {width}); use a `size` "
            "that fits in it or a larger `pad_size`."
        )
    return pad_height, pad_width


def pad_batch(images: list[torch.Tensor], canvas: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad `(C, H_i, W_i)` images bottom/right to `canvas` with `torchvision`'s `pad`.

    Returns `(B, C, H, W)` values and a `(B, H, W)` int64 mask that is 1 on image pixels and 0 on padding.
    """
    values, masks = [], []
    for image in images:
        padding = [0, 0, canvas[1] - int(image.shape[2]), canvas[0] - int(image.shape[1])]  # left, top, right, bottom
        values.append(tvf.pad(image, padding, fill=0.0))
        ones = torch.ones((1, *image.shape[1:]), dtype=torch.int64, device=image.device)
        masks.append(tvf.pad(ones, padding, fill=0)[0])
    return torch.stack(values), torch.stack(masks)


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of `multiple` that is >= `value`."""
    return -(-value // multiple) * multiple
