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

import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, Pipeline, pipeline
from transformers.utils import logging as transformers_logging

import hf_rfdetr
from hf_rfdetr import RFDetrConfig, RFDetrForObjectDetection, RFDetrImageProcessor
from hf_rfdetr.annotate import PALETTE, draw_detections  # noqa: F401  (PALETTE: re-exported for the tests)

DEFAULT_IMAGE = Path(hf_rfdetr.__file__).parent / "assets" / "demo.jpg"
RANDOM_MODEL_TOP_K = 10


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
