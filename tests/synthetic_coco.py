"""A tiny synthetic detection dataset in the Roboflow COCO layout, for tests (training, accelerate, CLI).

`write_synthetic_coco(root)` writes `root/{train,valid,test}/_annotations.coco.json` plus JPEG images: a soft
gradient background with 1-4 non-overlapping filled shapes per image. The class of an object is recognisable from
its shape and colour (class `k` is `SHAPES[k % 3]` in `COLOURS[k]`), and its box is the shape's exact pixel extent.
Categories follow a Roboflow export: id 0 is an unused superclass (`"shapes"`, supercategory `"none"`), then class
`k` has category id `k + 1` and name `class_names(num_classes)[k]`.

Example:
    >>> root = write_synthetic_coco(tmp_path / "shapes", num_train=64, num_valid=16)
    >>> dataset = load_coco_folder(root)  # labels: 0 = "shapes" (unused), 1.. = the classes
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

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
SUPERCLASS = "shapes"
ANNOTATION_FILE = "_annotations.coco.json"
SPLIT_FOLDERS = {"train": "train", "valid": "valid", "test": "test"}


def class_names(num_classes: int = 3) -> list[str]:
    """Names of the synthetic classes, e.g. `["red-rectangle", "green-circle", "blue-triangle"]`."""
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
) -> Path:
    """Write a Roboflow-style COCO folder of simple scenes and return `root`.

    Args:
        root: output folder (created).
        num_train, num_valid, num_test: images per split; a split with 0 images is not written.
        image_size: `(height, width)` of every image.
        seed: seeds the scenes; the same arguments write the same files.
        num_classes: number of real classes (1..8).

    Returns:
        `Path(root)`.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    categories = _categories(num_classes)
    annotation_id = 0
    for split, count in (("train", num_train), ("valid", num_valid), ("test", num_test)):
        if count <= 0:
            continue
        folder = root / SPLIT_FOLDERS[split]
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for image_id in range(count):
            file_name = f"{split}_{image_id:05d}.jpg"
            scene, objects = _scene(rng, image_size, num_classes)
            scene.save(folder / file_name, quality=95)
            images.append(_image_entry(image_id, file_name, image_size))
            for category_id, bbox in objects:
                annotations.append(_annotation_entry(annotation_id, image_id, category_id, bbox))
                annotation_id += 1
        document = {"info": {"description": "synthetic shapes"}, "licenses": [], "categories": categories}
        document.update(images=images, annotations=annotations)
        (folder / ANNOTATION_FILE).write_text(json.dumps(document))
    return root


def _categories(num_classes: int) -> list[dict]:
    """Roboflow-style categories: an unused superclass with id 0, then the classes with ids 1..K."""
    entries = [{"id": 0, "name": SUPERCLASS, "supercategory": "none"}]
    for k, name in enumerate(class_names(num_classes)):
        entries.append({"id": k + 1, "name": name, "supercategory": SUPERCLASS})
    return entries


def _image_entry(image_id: int, file_name: str, image_size: tuple[int, int]) -> dict:
    height, width = image_size
    return {"id": image_id, "license": 1, "file_name": file_name, "height": height, "width": width}


def _annotation_entry(annotation_id: int, image_id: int, category_id: int, bbox: list[int]) -> dict:
    area = bbox[2] * bbox[3]
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": bbox,
        "area": area,
        "segmentation": [],
        "iscrowd": 0,
    }


def _scene(
    rng: np.random.Generator, image_size: tuple[int, int], num_classes: int
) -> tuple[Image.Image, list[tuple[int, list[int]]]]:
    """One image and its objects `(category_id, [x, y, w, h])`."""
    height, width = image_size
    image = Image.fromarray(_background(rng, height, width))
    draw = ImageDraw.Draw(image)
    placed: list[list[int]] = []
    objects = []
    for _ in range(int(rng.integers(1, 5))):
        box = _free_box(rng, height, width, placed)
        if box is None:
            continue
        label = int(rng.integers(num_classes))
        _draw(draw, label, box)
        placed.append(box)
        objects.append((label + 1, box))
    return image, objects


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A pale two-colour gradient `(H, W, 3)` uint8 along a random direction."""
    start, end = rng.uniform(150, 245, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width]
    t = (np.cos(angle) * xs / max(width - 1, 1) + np.sin(angle) * ys / max(height - 1, 1)) * 0.5 + 0.5
    return (start + (end - start) * t[..., None]).clip(0, 255).astype(np.uint8)


def _free_box(rng: np.random.Generator, height: int, width: int, placed: list[list[int]]) -> list[int] | None:
    """A box `[x, y, w, h]` (15-45 % of the short side, inside the image) not touching `placed`, or `None`."""
    short = min(height, width)
    for _ in range(20):
        w, h = (int(v) for v in rng.integers(int(0.15 * short), int(0.45 * short) + 1, size=2))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        if all(x + w <= px or px + pw <= x or y + h <= py or py + ph <= y for px, py, pw, ph in placed):
            return [x, y, w, h]
    return None


def _draw(draw: ImageDraw.ImageDraw, label: int, box: list[int]) -> None:
    """Fill the shape of class `label` so that its pixel extent is exactly `box`."""
    x, y, w, h = box
    colour = list(COLOURS.values())[label]
    corners = (x, y, x + w - 1, y + h - 1)
    shape = SHAPES[label % len(SHAPES)]
    if shape == "rectangle":
        draw.rectangle(corners, fill=colour)
    elif shape == "circle":
        draw.ellipse(corners, fill=colour)
    else:
        draw.polygon([(x, y + h - 1), (x + w - 1, y + h - 1), (x + (w - 1) / 2, y)], fill=colour)
