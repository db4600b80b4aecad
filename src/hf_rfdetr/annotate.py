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
"""Draw detections with supervision's `BoxAnnotator` and `LabelAnnotator`: box outlines and "label score" captions,
one colour per label, the same in every image, frame and run; segmentation masks (when the detections have them) are
filled in the same colour with supervision's `MaskAnnotator` (half transparent), under the boxes.

    >>> from hf_rfdetr.annotate import draw_detections
    >>> detections = detector(image, threshold=0.5)  # the object-detection pipeline's output
    >>> draw_detections(image, detections).save("detections.jpg")

A detection is a mapping with `"label"` (str), `"score"` (float) and `"box"`, either the pipeline's
`{"xmin", "ymin", "xmax", "ymax"}` dict or a sequence `(x0, y0, x1, y1)`, in pixels of the image. Video frames and
`RFDETR.predict`'s `supervision.Detections` go through `annotate_frame`, the same drawing.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .models.rfdetr.image_io import to_rgb

if TYPE_CHECKING:
    import supervision as sv

__all__ = [
    "MASK_OPACITY",
    "PALETTE",
    "Detection",
    "annotate_frame",
    "box_corners",
    "draw_detections",
    "label_color",
    "label_colors",
]

Color = tuple[int, int, int]
#: A detection as the object-detection pipeline returns it: `{"score": float, "label": str, "box": {...}}`.
Detection = Mapping[str, Any]

#: Box colours (RGB); a label's colour is `label_color(label)`, the same in every image.
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
#: How opaque a filled mask is (supervision's `MaskAnnotator` default).
MASK_OPACITY = 0.5


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
    masks: np.ndarray | None = None,
) -> Image.Image:
    """Return an RGB copy of `image` with each detection's box outline and a "label score" caption (and its mask).

    Args:
        image: any Pillow image, drawn as a viewer shows it (`hf_rfdetr.models.rfdetr.image_io.to_rgb`: EXIF orientation applied,
            16-bit data scaled, converted to RGB), the frame every detector path reports boxes in; the input is not
            modified.
        detections: mappings with `label`, `score` and `box` (see the module docstring), in image pixels.
        colors: label -> RGB colour; labels missing from it (all, by default) get `label_color(label)`.
        line_width: the outline's thickness (supervision's `BoxAnnotator(thickness=...)`); default
            `max(2, round(min(width, height) / 240))`.
        masks: `(N, H, W)` bool, one segmentation mask per detection (in their order) at the image's size, filled
            in the detection's colour (e.g. `RFDETRSegNano().predict(image).mask`).

    Raises:
        ValueError: `masks` not `(len(detections), height, width)`.

    Returns:
        The annotated copy, drawn by `annotate_frame` (supervision's box and label annotators): boxes are drawn from
        the lowest score to the highest, so the best detection ends on top, then the captions in the same order.
        Corners are truncated to integers and clamped to the image; the outline is centred on the box's edges. The
        caption (black or white text on the label colour) sits above the box's top-left corner, or is moved into the
        image (inside the box at the top edge) when there is no room above.
    """
    import supervision as sv

    canvas = np.asarray(to_rgb(image))
    if masks is not None:
        masks = np.asarray(masks, dtype=bool)
        if masks.shape != (len(detections), *canvas.shape[:2]):
            raise ValueError(
                f"draw_detections: masks must be (number of detections, height, width) = "
                f"{(len(detections), *canvas.shape[:2])}, got {masks.shape}"
            )
    found = sv.Detections(
        xyxy=np.array([box_corners(d["box"]) for d in detections], dtype=np.float32).reshape(-1, 4),
        confidence=np.array([float(d["score"]) for d in detections], dtype=np.float32),
        mask=masks,
        data={"class_name": np.array([str(d["label"]) for d in detections], dtype=str)},
    )
    bgr = annotate_frame(np.ascontiguousarray(canvas[:, :, ::-1]), found, colors=colors, line_width=line_width)
    return Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]))


def annotate_frame(
    frame: np.ndarray,
    detections: sv.Detections,
    colors: Mapping[str, Color] | None = None,
    line_width: int | None = None,
) -> np.ndarray:
    """A copy of a BGR `(H, W, 3)` uint8 frame (OpenCV's and supervision's order) with supervision's box outlines and
    "class_name confidence" captions, coloured as `draw_detections` colours them. Detections with `mask` (a
    segmentation model's) also get their masks filled in the same colour at opacity 0.5 (`MaskAnnotator`), under the
    boxes and captions.

    Args:
        frame: the frame; it is not modified.
        detections: `supervision.Detections` (as `RFDETR.predict` returns them); the caption names are
            `detections.data["class_name"]`, else the class ids (one of them is required). They are drawn from the lowest confidence to the
            highest, so the best detection ends on top.
        colors: class name -> RGB colour; names missing from it get `label_color(name)`.
        line_width: the outline's thickness; default `max(2, round(min(height, width) / 240))`.

    Raises:
        ValueError: detections with neither `data["class_name"]` nor `class_id`.
    """
    import supervision as sv

    if detections.confidence is not None:
        detections = detections[np.argsort(detections.confidence, kind="stable")]
    names = detections.data.get("class_name", detections.class_id)
    if names is None:
        raise ValueError(
            "annotate_frame: each detection needs a name for its caption and colour: detections.data['class_name']"
            " or detections.class_id; both are missing"
        )
    names = [str(name) for name in names]
    scores = detections.confidence if detections.confidence is not None else [None] * len(detections)
    captions = [name if score is None else f"{name} {score:.2f}" for name, score in zip(names, scores)]
    palette, lookup = _palette(names, {} if colors is None else colors)
    text_palette = sv.ColorPalette([_text_color(color) for color in palette.colors])
    size = min(frame.shape[:2])
    text_scale = max(0.4, size / 720)
    clamped = _clamped(detections, frame.shape[1], frame.shape[0])
    boxes = sv.BoxAnnotator(color=palette, thickness=line_width or max(2, round(size / 240)))
    labels = sv.LabelAnnotator(
        color=palette,
        text_color=text_palette,
        text_scale=text_scale,
        text_thickness=max(1, round(text_scale * 1.5)),
        text_padding=max(3, round(text_scale * 6)),
        smart_position=True,  # captions stay inside the frame and apart from each other
    )
    annotated = frame.copy()
    if detections.mask is not None:
        annotated = sv.MaskAnnotator(color=palette, opacity=MASK_OPACITY).annotate(
            annotated, detections, custom_color_lookup=lookup
        )
    annotated = boxes.annotate(annotated, clamped, custom_color_lookup=lookup)
    return labels.annotate(annotated, clamped, labels=captions, custom_color_lookup=lookup)


def _palette(names: Sequence[str], colors: Mapping[str, Color]) -> tuple[sv.ColorPalette, np.ndarray]:
    """The distinct colours of `names` as a supervision palette, and each name's index in it (a custom lookup)."""
    import supervision as sv

    rgb = [tuple(int(v) for v in (colors.get(name) or label_color(name))) for name in names]
    distinct = list(dict.fromkeys(rgb)) or [PALETTE[0]]
    lookup = np.array([distinct.index(color) for color in rgb], dtype=int)
    return sv.ColorPalette([sv.Color(*color) for color in distinct]), lookup


def _text_color(color: sv.Color) -> sv.Color:
    """Black text on a light caption colour, white on a dark one."""
    import supervision as sv

    return sv.Color.BLACK if color.r + color.g + color.b > 382 else sv.Color.WHITE


def _clamped(detections: sv.Detections, width: int, height: int) -> sv.Detections:
    """A copy of `detections` with integer corners inside a `width` x `height` frame, `x1 >= x0` and `y1 >= y0`."""
    clamped = detections[np.arange(len(detections))]  # a copy
    xyxy = np.trunc(np.asarray(detections.xyxy, dtype=np.float64))
    xyxy[:, 0::2] = np.clip(xyxy[:, 0::2], 0, width - 1)
    xyxy[:, 1::2] = np.clip(xyxy[:, 1::2], 0, height - 1)
    xyxy[:, 2:] = np.maximum(xyxy[:, 2:], xyxy[:, :2])
    clamped.xyxy = xyxy.astype(np.float32)
    return clamped
