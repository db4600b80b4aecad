"""`hf_rfdetr.synthetic`: the shapes dataset generator and single scenes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hf_rfdetr.synthetic import ANNOTATION_FILE, COLOURS, class_names, render_scene, write_synthetic_coco


def _shape_extent(image: np.ndarray, colour: tuple[int, int, int]) -> list[int]:
    """`[x, y, w, h]` of the pixels within 40 of `colour` (the background is pale, the shapes saturated)."""
    ys, xs = np.nonzero(np.abs(image.astype(int) - colour).max(axis=-1) < 40)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def test_class_names() -> None:
    assert class_names(3) == ["red-rectangle", "green-circle", "blue-triangle"]
    assert class_names(8)[-1] == "black-circle"
    with pytest.raises(ValueError, match="num_classes"):
        class_names(9)


def test_render_scene_draws_each_label_at_its_exact_box() -> None:
    labels = [0, 1, 2, 3, 4]
    image, objects = render_scene((120, 160), labels, seed=1, object_size=(0.2, 0.3), gap=4)
    pixels = np.asarray(image)
    assert image.size == (160, 120) and [label for label, _ in objects] == labels
    for label, box in objects:
        assert 24 <= box[2] <= 36 and 24 <= box[3] <= 36  # 20-30 % of the short side (120)
        assert _shape_extent(pixels, list(COLOURS.values())[label]) == box
    for index, (_, (x, y, w, h)) in enumerate(objects):
        for _, (px, py, pw, ph) in objects[index + 1 :]:
            assert x + w + 4 <= px or px + pw + 4 <= x or y + h + 4 <= py or py + ph + 4 <= y
    again, same = render_scene((120, 160), labels, seed=1, object_size=(0.2, 0.3), gap=4)
    assert same == objects and (np.asarray(again) == pixels).all()
    assert render_scene((120, 160), labels, seed=2, object_size=(0.2, 0.3))[1] != objects


def test_render_scene_rejects_what_it_cannot_draw() -> None:
    with pytest.raises(ValueError, match="could not place"):
        render_scene((50, 50), [0] * 10, object_size=(0.4, 0.45))
    with pytest.raises(ValueError, match="labels"):
        render_scene((50, 50), [8])


def test_write_synthetic_coco_layout_and_options(tmp_path: Path) -> None:
    root = write_synthetic_coco(
        tmp_path / "data", num_train=12, num_valid=0, num_test=2, image_size=(60, 80), num_classes=4, max_objects=7
    )
    assert sorted(p.name for p in root.iterdir()) == ["test", "train"]
    document = json.loads((root / "train" / ANNOTATION_FILE).read_text())
    assert [c["name"] for c in document["categories"]] == ["shapes", *class_names(4)]
    assert len(document["images"]) == 12 and all(
        (root / "train" / i["file_name"]).is_file() for i in document["images"]
    )
    per_image = np.bincount([a["image_id"] for a in document["annotations"]], minlength=12)
    assert per_image.min() >= 1 and per_image.max() <= 7 and per_image.max() > 4  # more than the default 4
    assert {a["category_id"] for a in document["annotations"]} <= {1, 2, 3, 4}
    for annotation in document["annotations"]:
        x, y, w, h = annotation["bbox"]
        assert 9 <= w <= 27 and 9 <= h <= 27 and x + w <= 80 and y + h <= 60  # 15-45 % of 60 px
