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
"""Draw detections on an image with Pillow: box outlines and "label score" captions, one colour per label.

    >>> from hf_rfdetr.annotate import draw_detections
    >>> detections = detector(image, threshold=0.5)  # the object-detection pipeline's output
    >>> draw_detections(image, detections).save("detections.jpg")

A detection is a mapping with `"label"` (str), `"score"` (float) and `"box"`, either the pipeline's
`{"xmin", "ymin", "xmax", "ymax"}` dict or a sequence `(x0, y0, x1, y1)`, in pixels of the image.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .image_io import to_rgb

__all__ = ["PALETTE", "Detection", "box_corners", "draw_detections", "label_color", "label_colors"]

Color = tuple[int, int, int]
#: A detection as the object-detection pipeline returns it: `{"score": float, "label": str, "box": {...}}`.
Detection = Mapping[str, Any]

#: Box colours; a label's colour is `label_color(label)`, the same in every image.
PALETTE: list[Color] = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (170, 110, 40),
]
_BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


def label_color(label: str) -> Color:
    """The `PALETTE` colour of `label`, chosen by the label's text (CRC-32), so a class has the same colour in every
    image, frame and run, whatever else is detected. With more labels than colours, some labels share one."""
    return PALETTE[zlib.crc32(str(label).encode("utf-8")) % len(PALETTE)]


def label_colors(detections: Sequence[Detection]) -> dict[str, Color]:
    """`label_color` of each label among the detections. Pass the result, or a mapping of your own, as
    `draw_detections(..., colors=...)`."""
    return {detection["label"]: label_color(detection["label"]) for detection in detections}


def box_corners(box: Mapping[str, float] | Sequence[float]) -> tuple[float, float, float, float]:
    """`(x0, y0, x1, y1)` of a pipeline box dict (`xmin`, `ymin`, `xmax`, `ymax`) or of a 4-sequence."""
    if isinstance(box, Mapping):
        return tuple(float(box[key]) for key in _BOX_KEYS)  # type: ignore[return-value]
    x0, y0, x1, y1 = (float(v) for v in box)
    return x0, y0, x1, y1


def draw_detections(
    image: Image.Image,
    detections: Sequence[Detection],
    colors: Mapping[str, Color] | None = None,
    line_width: int | None = None,
) -> Image.Image:
    """Return an RGB copy of `image` with each detection's box outline and a "label score" caption.

    Args:
        image: any Pillow image, drawn as a viewer shows it (`hf_rfdetr.image_io.to_rgb`: EXIF orientation applied,
            16-bit data scaled, converted to RGB), the frame every detector path reports boxes in; the input is not
            modified.
        detections: mappings with `label`, `score` and `box` (see the module docstring), in image pixels.
        colors: label -> RGB colour; labels missing from it (all, by default) get `label_color(label)`.
        line_width: outline width in pixels; default `max(2, round(min(width, height) / 240))`.

    Returns:
        The annotated copy. Boxes are drawn from the lowest score to the highest, so the best detection ends on top.
        Corners are truncated to integers and clamped to the image, and the outline lies inside the box. The caption
        (black or white text on the label colour) sits above the box, or inside it at the top edge when there is no
        room above.
    """
    canvas = to_rgb(image)
    canvas = canvas.copy() if canvas is image else canvas
    draw = ImageDraw.Draw(canvas)
    width = line_width if line_width is not None else max(2, round(min(canvas.size) / 240))
    font = _font(max(12, round(min(canvas.size) / 32)))
    colors = {} if colors is None else colors
    for detection in sorted(detections, key=lambda d: d["score"]):
        x0, y0, x1, y1 = _clamped(box_corners(detection["box"]), canvas.size)
        color = tuple(colors.get(detection["label"]) or label_color(detection["label"]))
        draw.rectangle((x0, y0, x1, y1), outline=color, width=width)
        _caption(draw, f"{detection['label']} {detection['score']:.2f}", (x0, y0), color, font)
    return canvas


def _clamped(corners: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer corners inside an image of `size` `(width, height)`, with `x1 >= x0` and `y1 >= y0`."""
    right, bottom = size[0] - 1, size[1] - 1
    x0, x1 = (min(max(int(v), 0), right) for v in (corners[0], corners[2]))
    y0, y1 = (min(max(int(v), 0), bottom) for v in (corners[1], corners[3]))
    return x0, y0, max(x0, x1), max(y0, y1)


def _caption(
    draw: ImageDraw.ImageDraw,
    text: str,
    anchor: tuple[int, int],
    color: Sequence[int],
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> None:
    """Draw `text` on a filled `color` label whose bottom-left is the box's top-left `anchor` (or inside the box)."""
    x0, y0 = anchor
    left, top, text_right, text_bottom = draw.textbbox((0, 0), text, font=font)
    text_width, text_height = text_right - left + 4, text_bottom - top + 4
    caption_y = y0 - text_height if y0 >= text_height else y0
    draw.rectangle((x0, caption_y, x0 + text_width, caption_y + text_height), fill=tuple(color))
    text_color = (0, 0, 0) if sum(color) > 382 else (255, 255, 255)
    draw.text((x0 + 2 - left, caption_y + 2 - top), text, fill=text_color, font=font)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at `size` pixels (a fixed-size bitmap font on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()
