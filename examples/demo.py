"""Detect objects in an image with RF-DETR and write an annotated copy.

    python examples/demo.py [--model ID_OR_FOLDER] [--image PATH] [--threshold T] [--output PATH]

It runs the `transformers` object-detection pipeline (`import hf_rfdetr` registers RF-DETR with the Auto classes),
prints one line per detection and draws the boxes with "label score" captions, one colour per label.

`--model` takes a Hugging Face Hub repository id or a local folder (for example one written by
`hf-rfdetr convert` from an original `.pth` checkpoint). Without it the demo builds an RF-DETR Nano with random
weights, so that it runs offline: its boxes are meaningless, and only the top 10 detections are drawn.
The output format follows the extension of `--output` (`.jpg`, `.png`, ...).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont
from transformers import AutoConfig, AutoImageProcessor, Pipeline, pipeline
from transformers.utils import logging as transformers_logging

import hf_rfdetr
from hf_rfdetr import RFDetrConfig, RFDetrForObjectDetection, RFDetrImageProcessor

DEFAULT_IMAGE = Path(hf_rfdetr.__file__).parent / "assets" / "demo.jpg"
RANDOM_MODEL_TOP_K = 10
#: Box colours, given to labels in order of first appearance (best detection first).
PALETTE = [
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

Detection = dict[str, Any]  # the pipeline's {"score": float, "label": str, "box": {"xmin", "ymin", "xmax", "ymax"}}


def label_colors(detections: Sequence[Detection]) -> dict[str, tuple[int, int, int]]:
    """One palette colour per label, in order of first appearance among the detections sorted by score."""
    colors: dict[str, tuple[int, int, int]] = {}
    for detection in sorted(detections, key=lambda d: -d["score"]):
        colors.setdefault(detection["label"], PALETTE[len(colors) % len(PALETTE)])
    return colors


def draw_detections(image: Image.Image, detections: Sequence[Detection]) -> Image.Image:
    """Return an RGB copy of `image` with each detection's box outline and a "label score" caption.

    Boxes are drawn from the lowest score to the highest, so the best detection ends on top. Corners are clamped to
    the image (the outline lies inside the box); the caption sits above the box, or inside it at the top edge.
    """
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    line_width = max(2, round(min(canvas.size) / 240))
    font = _font(max(12, round(min(canvas.size) / 32)))
    colors = label_colors(detections)
    right, bottom = canvas.width - 1, canvas.height - 1
    for detection in sorted(detections, key=lambda d: d["score"]):
        box = detection["box"]
        x0, x1 = (min(max(int(box[key]), 0), right) for key in ("xmin", "xmax"))
        y0, y1 = (min(max(int(box[key]), 0), bottom) for key in ("ymin", "ymax"))
        color = colors[detection["label"]]
        draw.rectangle((x0, y0, max(x0, x1), max(y0, y1)), outline=color, width=line_width)
        caption = f"{detection['label']} {detection['score']:.2f}"
        left, top, text_right, text_bottom = draw.textbbox((0, 0), caption, font=font)
        text_width, text_height = text_right - left + 4, text_bottom - top + 4
        caption_y = y0 - text_height if y0 >= text_height else y0
        draw.rectangle((x0, caption_y, x0 + text_width, caption_y + text_height), fill=color)
        text_color = (0, 0, 0) if sum(color) > 382 else (255, 255, 255)
        draw.text((x0 + 2 - left, caption_y + 2 - top), caption, fill=text_color, font=font)
    return canvas


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed-size bitmap font
        return ImageFont.load_default()


def random_nano(folder: Path, seed: int = 0) -> None:
    """Save an RF-DETR Nano with random (seeded) weights and its image processor to `folder`."""
    config = RFDetrConfig.from_variant("nano")
    torch.manual_seed(seed)
    RFDetrForObjectDetection(config).save_pretrained(folder)
    RFDetrImageProcessor.from_config(config).save_pretrained(folder)


def load_detector(model: str) -> Pipeline:
    """The object-detection pipeline of `model` (a Hub repository id or a local folder)."""
    try:
        processor = AutoImageProcessor.from_pretrained(model)
    except OSError:  # a folder with weights and config only: derive the processor from the config
        processor = RFDetrImageProcessor.from_config(AutoConfig.from_pretrained(model))
    return pipeline("object-detection", model=model, image_processor=processor)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="Hub repository id or local folder (default: RF-DETR Nano, random weights)")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="input image (default: bundled scene)")
    parser.add_argument(
        "--threshold", type=float, help="keep detections scoring above this (default 0.5; 0.0 without --model)"
    )
    parser.add_argument("--output", type=Path, default=Path("demo_detections.jpg"), help="annotated image to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    transformers_logging.disable_progress_bar()
    image = Image.open(args.image).convert("RGB")
    with tempfile.TemporaryDirectory() as scratch:
        if args.model is None:
            print(
                "NOTE: no --model given, so this runs an RF-DETR Nano with RANDOM weights: the boxes are meaningless.\n"
                "      For real detections pass --model with a Hub checkpoint or a folder converted from an original\n"
                "      rfdetr .pth (hf-rfdetr convert CHECKPOINT.pth FOLDER)."
            )
            model, threshold, limit = scratch, 0.0 if args.threshold is None else args.threshold, RANDOM_MODEL_TOP_K
            random_nano(Path(scratch))
        else:
            model, threshold, limit = args.model, 0.5 if args.threshold is None else args.threshold, None
        try:
            detector = load_detector(model)
        except (OSError, ValueError) as error:
            hint = "" if Path(model).is_dir() else " (not a local folder; is the Hub reachable, or HF_HUB_OFFLINE set?)"
            print(f"error: could not load model {model!r}{hint}:\n{error}", file=sys.stderr)
            return 2
        detections = sorted(detector(image, threshold=threshold), key=lambda d: -d["score"])[:limit]
    for detection in detections:
        box = detection["box"]
        corners = ", ".join(str(box[key]) for key in ("xmin", "ymin", "xmax", "ymax"))
        print(f"{detection['label']:>16}  {detection['score']:.3f}  box=({corners})")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    draw_detections(image, detections).save(args.output)
    print(f"{len(detections)} detection(s) above {threshold}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
