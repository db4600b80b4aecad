"""`hf_rfdetr.annotate`: supervision-drawn outlines in label colours, captions, clamping, box formats, frames."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv
from PIL import Image

import hf_rfdetr
from hf_rfdetr import video
from hf_rfdetr.annotate import PALETTE, annotate_frame, box_corners, draw_detections, label_color, label_colors


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
    # The cat outline, centred on the box's edges (supervision's BoxAnnotator, thickness 2).
    for x, y in [(39, 75), (40, 75), (41, 75), (160, 95), (161, 95), (100, 130), (100, 60), (100, 59)]:
        assert (drawn[y, x] == cat).all(), (x, y, drawn[y, x])
    for x, y in [(10, 120), (60, 140), (35, 145)]:  # dog, partly under the cat box (drawn first: lower score)
        assert (drawn[y, x] == dog).all(), (x, y, drawn[y, x])
    assert (drawn[130, 60] == cat).all()  # where the outlines cross, the best box is on top
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
    columns = np.flatnonzero((drawn[50] == (1, 2, 3)).all(axis=-1))  # the outline's left and right bands on row 50
    left, right = columns[columns < 50], columns[columns >= 50]
    for band, edge in ((left, 20), (right, 80)):  # x0 truncated to 20; bands centred on the edges, >= 5 px wide
        assert len(band) >= 5 and (np.diff(band) == 1).all() and band.mean() == edge, (band, edge)
    assert (drawn[50, left[-1] + 1 : right[0]] == 0).all()
    thin = np.asarray(draw_detections(image, [detection], colors={"cat": (1, 2, 3)}, line_width=1)).astype(int)
    assert np.flatnonzero((thin[50] == (1, 2, 3)).all(axis=-1)).tolist() == [20, 80]  # one pixel on each edge
    other = np.asarray(draw_detections(image, [detection], colors={"dog": (1, 2, 3)})).astype(int)
    assert (other[50, 20] == label_color("cat")).all()  # a label missing from `colors` gets its own colour


def test_draw_detections_without_detections_returns_an_unchanged_copy() -> None:
    image = Image.new("RGB", (30, 20), (5, 6, 7))
    drawn = draw_detections(image, [])
    assert drawn is not image and (np.asarray(drawn) == np.asarray(image)).all()


def test_annotate_frame_draws_bgr_frames_as_draw_detections_draws_images() -> None:
    image = Image.new("RGB", (200, 150), (90, 90, 90))
    boxes = [_detection("cat", 0.9, (40, 60, 160, 130)), _detection("dog", 0.3, (10, 100, 60, 145))]
    frame = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])  # BGR, as OpenCV / supervision read video
    detections = sv.Detections(  # best first, as RFDETR.predict returns them
        xyxy=np.array([[40, 60, 160, 130], [10, 100, 60, 145]], dtype=np.float32),
        confidence=np.array([0.9, 0.3], dtype=np.float32),
        class_id=np.array([3, 7]),
        data={"class_name": np.array(["cat", "dog"])},
    )
    drawn = annotate_frame(frame, detections)
    assert (frame == 90).all()  # the input is left as it was
    assert (drawn[:, :, ::-1] == np.asarray(draw_detections(image, boxes))).all()  # one drawing for images and video
    assert video.annotate_frame is annotate_frame
    by_id = annotate_frame(frame, sv.Detections(xyxy=detections.xyxy[1:], class_id=detections.class_id[1:]))
    assert (by_id[120, 10, ::-1] == label_color("7")).all()  # without class names: the class id names and colours
    with pytest.raises(ValueError, match="class_name.*class_id"):
        annotate_frame(frame, sv.Detections(xyxy=detections.xyxy))
