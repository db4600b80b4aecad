"""Detect objects in an image with RF-DETR and write an annotated copy.

    python examples/demo.py [--model NAME_ID_OR_FOLDER] [--image PATH] [--threshold T] [--output PATH]

It runs the `transformers` object-detection pipeline (`import hf_rfdetr` registers RF-DETR with the Auto classes),
prints one line per detection and draws the boxes with "label score" captions, one colour per label
(`hf_rfdetr.annotate.draw_detections`). The output format follows the extension of `--output` (`.jpg`, `.png`, ...).

Without arguments it runs offline on what the package bundles (`hf_rfdetr.demo_assets`): `DEMO_MODEL`, a ~1M-parameter
RF-DETR trained from scratch on synthetic shapes by `scripts/train_demo_checkpoint.py`, on `DEMO_IMAGE`, a scene of
the same generator. That checkpoint knows three classes only (red rectangles, green circles, blue triangles). Real use
starts from a COCO-pretrained checkpoint: `--model` takes a checkpoint name (`base`, `nano`, ...: the original's COCO
weights, downloaded and converted on first use), a Hugging Face Hub repository id or a local folder, for example one
converted from an original rfdetr `.pth` with `hf-rfdetr convert rf-detr-base.pth rf-detr-base-hf`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageOps
from transformers import AutoConfig, AutoImageProcessor, Pipeline, pipeline
from transformers.utils import logging as transformers_logging

import hf_rfdetr
from hf_rfdetr import RFDetrImageProcessor
from hf_rfdetr.annotate import PALETTE, draw_detections  # noqa: F401  (PALETTE: the caption colours, for the tests)
from hf_rfdetr.demo_assets import DEMO_IMAGE, DEMO_MODEL

BUNDLED_MODEL_NOTE = (
    "Using the bundled demo checkpoint ({model}):\n"
    "  a ~1M-parameter RF-DETR trained on synthetic shapes; it detects red rectangles, green circles and blue\n"
    "  triangles only. For real images pass --model with a COCO-pretrained checkpoint from the Hugging Face Hub,\n"
    "  or a folder converted from an original rfdetr .pth (hf-rfdetr convert CHECKPOINT.pth FOLDER)."
)


def load_detector(model: str) -> Pipeline:
    """The object-detection pipeline of `model`: a checkpoint name ("base", "nano", ...: the original's COCO weights,
    downloaded and converted once), a Hub repository id or a local folder (`hf_rfdetr.pretrained` resolves it)."""
    model = hf_rfdetr.pretrained(model)
    try:
        processor = AutoImageProcessor.from_pretrained(model)
    except OSError:  # a folder with weights and config only: derive the processor from the config
        processor = RFDetrImageProcessor.from_config(AutoConfig.from_pretrained(model))
    return pipeline("object-detection", model=model, image_processor=processor)


def read_image(path: Path) -> Image.Image:
    """The image at `path` in RGB, upright (its EXIF orientation applied, so that the boxes fit what is drawn);
    `OSError` naming it when it is missing or not an image."""
    if not path.is_file():
        raise FileNotFoundError(f"image {str(path)!r} does not exist or is not a file")
    try:
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")
    except OSError as error:  # Pillow's UnidentifiedImageError, a truncated file, ...
        raise OSError(f"image {str(path)!r} cannot be read as an image ({error})") from error


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        help="checkpoint name (base, nano, ...), Hub repository id or local folder (default: the bundled demo checkpoint)",
    )
    parser.add_argument("--image", type=Path, default=DEMO_IMAGE, help="input image (default: the bundled scene)")
    parser.add_argument("--threshold", type=float, default=0.5, help="keep detections scoring above this")
    parser.add_argument("--output", type=Path, default=Path("demo_detections.jpg"), help="annotated image to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    transformers_logging.disable_progress_bar()
    try:  # before the model loads: a wrong path is one line, not a traceback
        image = read_image(args.image)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.model is None:
        print(BUNDLED_MODEL_NOTE.format(model=DEMO_MODEL))
    model = str(DEMO_MODEL) if args.model is None else args.model
    try:
        detector = load_detector(model)
    except (OSError, ValueError) as error:
        hint = "" if Path(model).is_dir() else " (not a local folder; is the Hub reachable, or HF_HUB_OFFLINE set?)"
        reason = " ".join(line.strip() for line in str(error).splitlines() if line.strip())  # one line
        print(f"error: could not load model {model!r}{hint}: {reason}", file=sys.stderr)
        return 2
    detections = sorted(detector(image, threshold=args.threshold), key=lambda d: -d["score"])
    for detection in detections:
        box = detection["box"]
        corners = ", ".join(str(box[key]) for key in ("xmin", "ymin", "xmax", "ymax"))
        print(f"{detection['label']:>16}  {detection['score']:.3f}  box=({corners})")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    draw_detections(image, detections).save(args.output)
    print(f"{len(detections)} detection(s) above {args.threshold}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
