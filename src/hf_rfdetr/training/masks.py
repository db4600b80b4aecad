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
"""COCO `segmentation` fields (polygons, compressed or uncompressed RLE) -> validated compressed RLE -> binary masks.

Rasterisation and decoding are pycocotools' (`frPyObjects`, `merge`, `decode`), as in the original
(`rfdetr/datasets/coco.py`, `convert_coco_poly_to_mask`): the polygons of one object are united, an uncompressed RLE is
compressed first, a compressed one is decoded as it is. What this module adds is validation before pycocotools sees
the data, which it does not do itself: a polygon of 2 points (4 numbers) is taken by `frPyObjects` for a box and
crashes, a vertex far outside the image (e.g. `1e9`) makes its rasteriser walk the edge pixel by pixel for ever (and
`1e300` crashes the interpreter), and a compressed RLE string whose runs do not add up to `height * width` decodes
to uninitialised memory.

`segmentation_to_rle` returns the compressed `counts` string of one object at its image's size (what
`load_coco_folder(..., masks=True)` stores per object); `decode_masks` turns such strings back into `(N, H, W)` bool.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

#: Polygon vertices may lie this many image sides outside the image (annotation tools allow some overshoot; pycocotools'
#: rasteriser costs time in proportion to the edges' length, and hangs on coordinates such as 1e9).
POLYGON_MARGIN = 10
#: Characters of COCO's compressed RLE alphabet (`rleToString` in pycocotools' `maskApi.c`): 48 ('0') .. 111 ('o').
_RLE_FIRST, _RLE_LAST = 48, 111

__all__ = ["MASKS_HOW_TO", "MaskError", "decode_masks", "is_missing", "rle_runs", "segmentation_to_rle"]

#: How a segmentation model gets its masks, for error messages, in the terms of the CLI (which has no masks option: a
#: Seg model reads them) and of the Python API.
MASKS_HOW_TO = (
    "hf-rfdetr train / eval with a Seg --model (seg-nano, ...) read every annotation's 'segmentation' (COCO polygons "
    "or RLE) from the COCO folder; in Python, load_coco_folder(path, masks=True) reads them and a datasets dataset "
    "needs an objects.segmentation field"
)


class MaskError(ValueError):
    """A `segmentation` value that is not a valid COCO polygon list or RLE; the message says what was expected."""


def is_missing(segmentation: Any) -> bool:
    """True for an absent segmentation: `None`, `[]` or `""` (the original gives such an object an all-zero mask)."""
    return segmentation is None or (isinstance(segmentation, (list, tuple, str)) and len(segmentation) == 0)


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> str:
    """The compressed RLE `counts` (a str, COCO's column-major runs) of one object's mask at `(height, width)`.

    Accepts a COCO polygon list `[[x1, y1, x2, y2, ...], ...]` (several polygons are united), an RLE dict
    `{"size": [height, width], "counts": str | bytes | list[int]}`, or a compressed `counts` string alone (taken at
    `(height, width)`).

    Raises:
        MaskError: on a missing segmentation (check `is_missing` first), a polygon with fewer than 3 points, an odd
            number of coordinates or non-finite ones, an RLE whose `size` is not `[height, width]` or whose runs do not
            add up to `height * width`, or any other type.
    """
    if is_missing(segmentation):
        raise MaskError("the segmentation is empty")
    if isinstance(segmentation, (str, bytes)):
        return _checked_compressed(segmentation, height, width)
    if isinstance(segmentation, dict):
        return _rle_dict_counts(segmentation, height, width)
    if isinstance(segmentation, (list, tuple)):
        return _polygons_counts(segmentation, height, width)
    raise MaskError(
        f"expected a list of polygons [[x1, y1, x2, y2, ...], ...] or an RLE dict {{'size': [h, w], 'counts': ...}}; "
        f"got a {type(segmentation).__name__}"
    )


def _polygons_counts(polygons: Sequence[Any], height: int, width: int) -> str:
    """Validate COCO polygons and rasterise them with pycocotools (united, as the original's `any` over parts)."""
    if all(_is_number(value) for value in polygons):
        raise MaskError(
            f"expected a list of polygons [[x1, y1, x2, y2, ...], ...]; got a flat list of {len(polygons)} numbers "
            "(wrap a single polygon in another list)"
        )
    cleaned = []
    for index, polygon in enumerate(polygons):
        if not isinstance(polygon, (list, tuple)) or not all(_is_number(value) for value in polygon):
            raise MaskError(f"polygon {index} must be a list of numbers [x1, y1, x2, y2, ...]; got {_short(polygon)}")
        if len(polygon) % 2:
            raise MaskError(f"polygon {index} has an odd number of coordinates ({len(polygon)}); expected x, y pairs")
        if len(polygon) < 6:
            raise MaskError(f"polygon {index} has {len(polygon) // 2} point(s); a polygon needs at least 3 points")
        if not all(math.isfinite(value) for value in polygon):
            raise MaskError(f"polygon {index} has non-finite coordinates: {_short(polygon)}")
        _check_extent(polygon, index, height, width)
        cleaned.append([float(value) for value in polygon])
    rle = mask_utils.merge(mask_utils.frPyObjects(cleaned, height, width), intersect=False)
    return rle["counts"].decode("ascii")


def _check_extent(polygon: Sequence[float], index: int, height: int, width: int) -> None:
    """Raise `MaskError` when a vertex lies more than `POLYGON_MARGIN` image sides outside the image."""
    for axis, side, name in ((0, width, "x"), (1, height, "y")):
        low, high = -POLYGON_MARGIN * side, (POLYGON_MARGIN + 1) * side
        values = polygon[axis::2]
        if min(values) < low or max(values) > high:
            far = min(values) if min(values) < low else max(values)
            raise MaskError(
                f"polygon {index} has {name} = {far!r}, far outside the {width}x{height} image (accepted: {low} to "
                f"{high}); polygons are in pixel coordinates of their image"
            )


def _rle_dict_counts(rle: dict[str, Any], height: int, width: int) -> str:
    """Validate an RLE dict (size = the image's, runs covering it) and return its compressed counts."""
    size, counts = rle.get("size"), rle.get("counts")
    if "size" not in rle or "counts" not in rle:
        raise MaskError(f"an RLE needs 'size' [height, width] and 'counts'; got the keys {sorted(rle)}")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(value) for value in size)):
        raise MaskError(f"RLE 'size' must be [height, width]; got {_short(size)}")
    if [int(size[0]), int(size[1])] != [height, width]:
        raise MaskError(
            f"RLE 'size' is {[int(size[0]), int(size[1])]} (height, width) but the image is [{height}, {width}]"
        )
    if isinstance(counts, (str, bytes)):
        return _checked_compressed(counts, height, width)
    if not isinstance(counts, (list, tuple)) or not all(_is_int(value) and value >= 0 for value in counts):
        raise MaskError(
            "RLE 'counts' must be a compressed string or a list of non-negative integers (uncompressed RLE); "
            f"got {_short(counts)}"
        )
    _check_total(sum(int(value) for value in counts), height, width)
    compressed = mask_utils.frPyObjects({"size": [height, width], "counts": [int(v) for v in counts]}, height, width)
    return compressed["counts"].decode("ascii")


def _checked_compressed(counts: str | bytes, height: int, width: int) -> str:
    """A compressed counts string after checking that it parses and that its runs cover `height * width` pixels."""
    text = counts.decode("ascii", errors="replace") if isinstance(counts, bytes) else counts
    _check_total(sum(rle_runs(text)), height, width)
    return text


def _check_total(total: int, height: int, width: int) -> None:
    if total != height * width:
        raise MaskError(
            f"the RLE runs add up to {total} pixels but the image has {height} x {width} = {height * width}"
        )


def rle_runs(counts: str) -> list[int]:
    """The run lengths of a COCO compressed RLE string (the inverse of pycocotools' `rleToString`).

    pycocotools parses these strings without checks; this parser is what lets `segmentation_to_rle` refuse a string
    that is truncated, holds characters outside the alphabet, or has negative runs.

    Raises:
        MaskError: naming the position of the problem.
    """
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                raise MaskError(f"the compressed RLE string ends inside a number (length {len(counts)})")
            code = ord(counts[position])
            if not _RLE_FIRST <= code <= _RLE_LAST:
                raise MaskError(
                    f"the compressed RLE string has an invalid character {counts[position]!r} at {position}"
                )
            code -= _RLE_FIRST
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise MaskError(f"the compressed RLE string has a negative run ({value}) at run {len(runs)}")
        runs.append(value)
    return runs


def decode_masks(counts: Sequence[str], height: int, width: int) -> np.ndarray:
    """`(N, height, width)` bool masks from compressed RLE `counts` strings (as `segmentation_to_rle` returns)."""
    if not counts:
        return np.zeros((0, height, width), dtype=bool)
    rles = [{"size": [height, width], "counts": value.encode("ascii")} for value in counts]
    return np.ascontiguousarray(mask_utils.decode(rles).transpose(2, 0, 1).astype(bool))


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def _is_int(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value) and float(value) == int(value)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
