"""`hf_rfdetr.annotate.draw_detections`: outlines in label colours, captions, clamping, box formats."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import hf_rfdetr
from hf_rfdetr.annotate import PALETTE, box_corners, draw_detections, label_color, label_colors


def _detection(label: str, score: float, box: tuple[int, int, int, int]) -> dict:
    return {"label": label, "score": score, "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), box))}


def test_the_package_exposes_draw_detections_lazily() -> None:
    assert hf_rfdetr.draw_detections is draw_detections


def _text_color(color: tuple[int, int, int]) -> int:
    return 0 if sum(color) > 382 else 255  # black text on light label colours, white on dark ones


def test_label_colors_follow_the_label_not_the_order() -> None:
    first = [_detection("dog", 0.3, (0, 0, 1, 1)), _detection("cat", 0.9, (0, 0, 1, 1))]
    second = [_detection("cat", 0.2, (0, 0, 1, 1)), _detection("bird", 0.8, (0, 0, 1, 1))]
    second.append(_detection("dog", 0.95, (0, 0, 1, 1)))
    assert label_colors(first) == {"dog": label_color("dog"), "cat": label_color("cat")}
    assert label_colors(second)["cat"] == label_colors(first)["cat"]
    assert label_colors(second)["dog"] == label_colors(first)["dog"]
    assert label_color("cat") == PALETTE[4] and label_color("dog") == PALETTE[1]  # CRC-32 of the text, mod 12
    assert len({label_color(f"l{k}") for k in range(100)}) == len(PALETTE)  # labels spread over the palette


def test_same_label_has_the_same_colour_in_two_images_with_other_labels() -> None:
    image = Image.new("RGB", (100, 80), (0, 0, 0))
    one = draw_detections(image, [_detection("cat", 0.9, (10, 30, 90, 70)), _detection("dog", 0.95, (0, 0, 5, 5))])
    two = draw_detections(image, [_detection("bird", 0.99, (0, 0, 5, 5)), _detection("cat", 0.5, (10, 30, 90, 70))])
    left_edge = (slice(40, 60), 10)  # below the caption, on the cat box's outline
    assert (np.asarray(one)[left_edge] == label_color("cat")).all()
    assert (np.asarray(two)[left_edge] == label_color("cat")).all()


def test_box_corners_accepts_dicts_and_sequences() -> None:
    assert box_corners({"xmin": 1, "ymin": 2, "xmax": 3, "ymax": 4}) == (1.0, 2.0, 3.0, 4.0)
    assert box_corners([1.5, 2, 3, 4]) == (1.5, 2.0, 3.0, 4.0)
    with pytest.raises(ValueError):
        box_corners([1, 2, 3])


def test_draw_detections_outlines_boxes_in_label_colours() -> None:
    background = (90, 90, 90)
    image = Image.new("RGB", (200, 150), background)
    boxes = [_detection("cat", 0.9, (40, 60, 160, 130)), _detection("dog", 0.3, (10, 100, 60, 145))]
    drawn = np.asarray(draw_detections(image, boxes)).astype(int)
    cat, dog = np.array(label_color("cat")), np.array(label_color("dog"))
    assert np.asarray(image).max() == 90  # the input is left as it was
    for x, y in [(40, 95), (41, 95), (160, 95), (100, 130), (100, 60)]:  # cat outline, 2 px wide, inward
        assert (drawn[y, x] == cat).all(), (x, y, drawn[y, x])
    for x, y in [(10, 120), (60, 140), (35, 145)]:  # dog, partly under the cat box (drawn first: lower score)
        assert (drawn[y, x] == dog).all(), (x, y, drawn[y, x])
    assert (drawn[62:128, 70:158] == background).all()  # the cat box's interior
    assert (drawn[10:40, 120:200] == background).all()  # away from boxes and captions
    caption = drawn[47:60, 40:90]  # "cat 0.90" above the cat box: black or white text on the label colour
    text = _text_color(label_color("cat"))
    assert (caption == cat).all(axis=-1).mean() > 0.25 and (caption == text).all(axis=-1).any()


def test_draw_detections_puts_the_caption_inside_a_box_at_the_top_edge() -> None:
    image = Image.new("RGB", (120, 100), (0, 0, 0))
    drawn = np.asarray(draw_detections(image, [_detection("bird", 0.5, (10, 0, 110, 90))])).astype(int)
    caption, bird = drawn[2:14, 12:50], label_color("bird")
    assert (caption == bird).all(axis=-1).mean() > 0.25 and (caption == _text_color(bird)).all(axis=-1).any()
    assert (drawn[40:80, 20:100] == 0).all()


def test_draw_detections_clamps_boxes_to_the_image() -> None:
    image = Image.new("RGB", (100, 80), (0, 0, 0))
    drawn = np.asarray(draw_detections(image, [_detection("bird", 0.5, (-5, 0, 100, 80))])).astype(int)
    color = np.array(label_color("bird"))
    assert (drawn[40, 0] == color).all() and (drawn[40, 99] == color).all() and (drawn[79, 50] == color).all()
    assert (drawn[40, 50] == 0).all()


def test_draw_detections_takes_given_colours_widths_and_sequence_boxes() -> None:
    image = Image.new("L", (100, 80), 0)  # converted to RGB
    detection = {"label": "cat", "score": 0.7, "box": (20.7, 30.2, 80, 70)}
    drawn = np.asarray(draw_detections(image, [detection], colors={"cat": (1, 2, 3)}, line_width=5)).astype(int)
    assert drawn.shape == (80, 100, 3)
    assert (drawn[50, 20:25] == (1, 2, 3)).all() and (drawn[50, 25] == 0).all()  # x0 truncated to 20, 5 px wide
    assert (drawn[50, 76:81] == (1, 2, 3)).all() and (drawn[50, 75] == 0).all()
    other = np.asarray(draw_detections(image, [detection], colors={"dog": (1, 2, 3)})).astype(int)
    assert (other[50, 20] == label_color("cat")).all()  # a label missing from `colors` gets its own colour


def test_draw_detections_without_detections_returns_an_unchanged_copy() -> None:
    image = Image.new("RGB", (30, 20), (5, 6, 7))
    drawn = draw_detections(image, [])
    assert drawn is not image and (np.asarray(drawn) == np.asarray(image)).all()
