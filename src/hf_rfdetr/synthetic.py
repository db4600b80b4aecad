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
"""Synthetic detection data: simple scenes of coloured shapes, written as a Roboflow-style COCO folder.

The scenes need no download and are learnable in minutes on a CPU, which makes them useful for tests, for trying the
training loop end to end, and for the small demo checkpoint bundled with the package (see
`scripts/train_demo_checkpoint.py`).

A scene is a pale two-colour gradient with non-overlapping filled shapes. The class of an object is recognisable from
its shape and colour (class `k` is `SHAPES[k % 3]` in the `k`-th of `COLOURS`), and its box is the shape's exact
pixel extent. `write_synthetic_coco(root)` writes `root/{train,valid,test}/_annotations.coco.json` plus JPEG images;
categories follow a Roboflow export: id 0 is an unused superclass (`"shapes"`, supercategory `"none"`), then class
`k` has category id `k + 1` and name `class_names(num_classes)[k]`. `render_scene(...)` draws one scene with chosen
classes (the bundled demo image is one).

With `masks=True` every annotation also carries the shape's `segmentation` (for instance segmentation): a COCO polygon
(`mask_format="polygon"`: the rectangle's and triangle's corners, 32 points on the ellipse), or the exact drawn pixels
as compressed RLE (`"rle"`), or both alternately (`"mixed"`: even annotation ids polygon, odd ids RLE); `area` is then
the mask's pixel area. Without masks the files are byte for byte what they were before masks existed.

Example:
    >>> from hf_rfdetr.synthetic import write_synthetic_coco
    >>> from hf_rfdetr.training import load_coco_folder
    >>> root = write_synthetic_coco("shapes", num_train=64, num_valid=16)
    >>> dataset = load_coco_folder(root)  # labels: 0 = "shapes" (unused), 1.. = the classes
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "ANNOTATION_FILE",
    "COLOURS",
    "SHAPES",
    "SPLIT_FOLDERS",
    "SUPERCLASS",
    "class_names",
    "render_scene",
    "shape_polygon",
    "write_synthetic_coco",
]

#: Shapes drawn per class (cycled).
SHAPES = ("rectangle", "circle", "triangle")
#: Class colours (RGB, saturated so that they stand out from the pale background).
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (230, 200, 20),
    "magenta": (200, 40, 200),
    "cyan": (20, 190, 200),
    "orange": (240, 120, 10),
    "black": (15, 15, 15),
}
#: Name of the unused category id 0 (a Roboflow export's superclass).
SUPERCLASS = "shapes"
#: Annotation file name inside each split folder (Roboflow's COCO export).
ANNOTATION_FILE = "_annotations.coco.json"
#: Folder name of each split.
SPLIT_FOLDERS = {"train": "train", "valid": "valid", "test": "test"}

#: An object of a scene: `(class index k, [x, y, w, h])` in pixels.
SceneObject = tuple[int, list[int]]
#: How `write_synthetic_coco(masks=True)` writes each `segmentation`.
MaskFormat = Literal["polygon", "rle", "mixed"]
#: Points of the polygon written for an ellipse.
ELLIPSE_POINTS = 32


def class_names(num_classes: int = 3) -> list[str]:
    """Names of the first `num_classes` (1..8) synthetic classes, e.g. `["red-rectangle", "green-circle",
    "blue-triangle"]`."""
    if not 1 <= num_classes <= len(COLOURS):
        raise ValueError(f"num_classes must be in 1..{len(COLOURS)}, got {num_classes}")
    return [f"{colour}-{SHAPES[k % len(SHAPES)]}" for k, colour in enumerate(list(COLOURS)[:num_classes])]


def write_synthetic_coco(
    root: str | Path,
    num_train: int = 32,
    num_valid: int = 8,
    num_test: int = 0,
    image_size: tuple[int, int] = (96, 128),
    seed: int = 0,
    num_classes: int = 3,
    max_objects: int = 4,
    object_size: tuple[float, float] = (0.15, 0.45),
    masks: bool = False,
    mask_format: MaskFormat = "polygon",
) -> Path:
    """Write a Roboflow-style COCO folder of simple scenes and return `root`.

    Args:
        root: output folder (created).
        num_train, num_valid, num_test: images per split; a split with 0 images is not written.
        image_size: `(height, width)` of every image.
        seed: seeds the scenes; the same arguments write the same files.
        num_classes: number of real classes (1..8); each object's class is drawn uniformly.
        max_objects: each image gets 1..`max_objects` objects (fewer when they do not fit).
        object_size: range of an object's width and height as fractions of the image's short side.
        masks: also write each object's `segmentation` (see the module docstring); the scenes are the same.
        mask_format: `"polygon"`, `"rle"` (the exact drawn pixels) or `"mixed"`.

    Returns:
        `Path(root)`.
    """
    class_names(num_classes)  # validates num_classes
    if mask_format not in ("polygon", "rle", "mixed"):
        raise ValueError(f"mask_format must be 'polygon', 'rle' or 'mixed', got {mask_format!r}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    annotation_id = 0
    for split, count in (("train", num_train), ("valid", num_valid), ("test", num_test)):
        if count <= 0:
            continue
        folder = root / SPLIT_FOLDERS[split]
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for image_id in range(count):
            file_name = f"{split}_{image_id:05d}.jpg"
            scene, objects = _random_scene(rng, image_size, num_classes, max_objects, object_size)
            scene.save(folder / file_name, quality=95)
            images.append(_image_entry(image_id, file_name, image_size))
            for label, bbox in objects:
                annotations.append(_annotation_entry(annotation_id, image_id, label + 1, bbox))
                if masks:
                    annotations[-1].update(_segmentation_entry(label, bbox, image_size, mask_format, annotation_id))
                annotation_id += 1
        document = {"info": {"description": "synthetic shapes"}, "licenses": [], "categories": _categories(num_classes)}
        document.update(images=images, annotations=annotations)
        (folder / ANNOTATION_FILE).write_text(json.dumps(document))
    return root


def render_scene(
    image_size: tuple[int, int],
    labels: Sequence[int],
    seed: int = 0,
    object_size: tuple[float, float] = (0.15, 0.45),
    gap: int = 0,
) -> tuple[Image.Image, list[SceneObject]]:
    """Draw one scene with one object per entry of `labels` (class indices 0..7).

    Args:
        image_size: `(height, width)`.
        labels: the class index of each object, placed in this order.
        seed: seeds the background, the sizes and the positions.
        object_size: range of an object's width and height as fractions of the image's short side.
        gap: minimum distance in pixels between two objects' boxes.

    Returns:
        The RGB image and its objects `(k, [x, y, w, h])`, in the order of `labels`.

    Raises:
        ValueError: when a label is out of range or the objects do not fit (fewer or smaller objects, or a larger
            image, or another seed help).
    """
    if any(not 0 <= label < len(COLOURS) for label in labels):
        raise ValueError(f"labels must be in 0..{len(COLOURS) - 1}, got {list(labels)}")
    rng = np.random.default_rng(seed)
    height, width = image_size
    image = Image.fromarray(_background(rng, height, width))
    draw = ImageDraw.Draw(image)
    objects: list[SceneObject] = []
    for label in labels:
        box = _free_box(rng, height, width, [box for _, box in objects], object_size, gap, attempts=200)
        if box is None:
            raise ValueError(f"could not place object {len(objects) + 1} of {len(labels)} in a {width}x{height} image")
        _draw(draw, label, box)
        objects.append((int(label), box))
    return image, objects


def _categories(num_classes: int) -> list[dict]:
    """Roboflow-style categories: an unused superclass with id 0, then the classes with ids 1..K."""
    entries = [{"id": 0, "name": SUPERCLASS, "supercategory": "none"}]
    for k, name in enumerate(class_names(num_classes)):
        entries.append({"id": k + 1, "name": name, "supercategory": SUPERCLASS})
    return entries


def _image_entry(image_id: int, file_name: str, image_size: tuple[int, int]) -> dict:
    """A COCO `images` entry."""
    height, width = image_size
    return {"id": image_id, "license": 1, "file_name": file_name, "height": height, "width": width}


def _annotation_entry(annotation_id: int, image_id: int, category_id: int, bbox: list[int]) -> dict:
    """A COCO `annotations` entry for a box `[x, y, w, h]`."""
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": bbox,
        "area": bbox[2] * bbox[3],
        "segmentation": [],
        "iscrowd": 0,
    }


def shape_polygon(label: int, box: Sequence[int]) -> list[float]:
    """The COCO polygon `[x1, y1, x2, y2, ...]` of the shape `_draw` fills for class `label` in `box` `[x, y, w, h]`.

    In COCO's pixel-corner coordinates (pixel `(i, j)` spans `[i, i + 1] x [j, j + 1]`): a rectangle's polygon covers
    exactly its drawn pixels; the triangle's and the ellipse's follow the drawn outline to within a pixel."""
    x, y, w, h = (float(value) for value in box)
    shape = SHAPES[label % len(SHAPES)]
    if shape == "rectangle":
        return [x, y, x + w, y, x + w, y + h, x, y + h]
    if shape == "triangle":
        return [x, y + h, x + w, y + h, x + w / 2, y]
    angles = np.linspace(0.0, 2 * np.pi, ELLIPSE_POINTS, endpoint=False)
    points = np.stack([x + w / 2 + w / 2 * np.cos(angles), y + h / 2 + h / 2 * np.sin(angles)], axis=1)
    return [round(float(value), 3) for value in points.reshape(-1)]


def _drawn_mask(label: int, box: list[int], image_size: tuple[int, int]) -> np.ndarray:
    """`(H, W)` bool: the pixels `_draw` fills for class `label` in `box`."""
    height, width = image_size
    canvas = Image.new("L", (width, height), 0)
    _draw(ImageDraw.Draw(canvas), label, box, fill=255)
    return np.asarray(canvas) > 0


def _segmentation_entry(
    label: int, box: list[int], image_size: tuple[int, int], mask_format: MaskFormat, annotation_id: int
) -> dict[str, Any]:
    """`{"segmentation": polygon or compressed RLE, "area": its pixel area}` of one drawn shape."""
    from pycocotools import mask as mask_utils  # the "train" extra; only needed for masks

    height, width = image_size
    if mask_format == "rle" or (mask_format == "mixed" and annotation_id % 2):
        rle = mask_utils.encode(np.asfortranarray(_drawn_mask(label, box, image_size).astype(np.uint8)))
        segmentation: Any = {"size": [height, width], "counts": rle["counts"].decode("ascii")}
    else:
        segmentation = [shape_polygon(label, box)]
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    return {"segmentation": segmentation, "area": int(mask_utils.area(rle))}


def _random_scene(
    rng: np.random.Generator,
    image_size: tuple[int, int],
    num_classes: int,
    max_objects: int,
    object_size: tuple[float, float],
) -> tuple[Image.Image, list[SceneObject]]:
    """One image with 1..`max_objects` objects of random classes, and its objects `(k, [x, y, w, h])`."""
    height, width = image_size
    image = Image.fromarray(_background(rng, height, width))
    draw = ImageDraw.Draw(image)
    objects: list[SceneObject] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        box = _free_box(rng, height, width, [box for _, box in objects], object_size)
        if box is None:
            continue
        label = int(rng.integers(num_classes))
        _draw(draw, label, box)
        objects.append((label, box))
    return image, objects


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A pale two-colour gradient `(H, W, 3)` uint8 along a random direction."""
    start, end = rng.uniform(150, 245, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width]
    t = (np.cos(angle) * xs / max(width - 1, 1) + np.sin(angle) * ys / max(height - 1, 1)) * 0.5 + 0.5
    return (start + (end - start) * t[..., None]).clip(0, 255).astype(np.uint8)


def _free_box(
    rng: np.random.Generator,
    height: int,
    width: int,
    placed: list[list[int]],
    object_size: tuple[float, float] = (0.15, 0.45),
    gap: int = 0,
    attempts: int = 20,
) -> list[int] | None:
    """A box `[x, y, w, h]` inside the image, sized within `object_size` of the short side, at least `gap` pixels
    away from every box of `placed`; `None` when `attempts` random tries all collide."""
    short = min(height, width)
    low, high = int(object_size[0] * short), int(object_size[1] * short) + 1
    for _ in range(attempts):
        w, h = (int(v) for v in rng.integers(low, high, size=2))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        if all(
            x + w + gap <= px or px + pw + gap <= x or y + h + gap <= py or py + ph + gap <= y
            for px, py, pw, ph in placed
        ):
            return [x, y, w, h]
    return None


def _draw(draw: ImageDraw.ImageDraw, label: int, box: list[int], fill: Any = None) -> None:
    """Fill the shape of class `label` so that its pixel extent is exactly `box` `[x, y, w, h]`, in its class colour
    (or `fill`)."""
    x, y, w, h = box
    colour = list(COLOURS.values())[label] if fill is None else fill
    corners = (x, y, x + w - 1, y + h - 1)
    shape = SHAPES[label % len(SHAPES)]
    if shape == "rectangle":
        draw.rectangle(corners, fill=colour)
    elif shape == "circle":
        draw.ellipse(corners, fill=colour)
    else:
        draw.polygon([(x, y + h - 1), (x + w - 1, y + h - 1), (x + (w - 1) / 2, y)], fill=colour)
