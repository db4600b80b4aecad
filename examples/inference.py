"""Detect objects in one image with the `rfdetr`-style facade and draw them with supervision.

    python examples/inference.py --model CHECKPOINT [--image PATH_OR_URL] [--threshold 0.5] [--output out.jpg]

The reference README's first snippet, with this package: `RFDETRBase(pretrain_weights=...)`, `model.predict(image)`
returning `supervision.Detections`, and supervision's box / label annotators. `--model` is a Hub repository id, a
local folder (e.g. written by `hf-rfdetr convert`) or an original rfdetr `.pth` file (converted on the fly).
`--image` is a file or an http(s) URL (default: the bundled street scene). With `--show`, the result is plotted
with matplotlib (`sv.plot_image`); it is always written to `--output`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import supervision as sv
from transformers.image_utils import load_image

import hf_rfdetr
from hf_rfdetr import RFDETRBase

DEFAULT_IMAGE = Path(hf_rfdetr.__file__).parent / "assets" / "demo.jpg"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Hub id, local folder or original .pth checkpoint")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE), help="image file or http(s) URL")
    parser.add_argument("--threshold", type=float, default=0.5, help="keep detections scoring above this")
    parser.add_argument("--output", type=Path, default=Path("inference.jpg"), help="annotated image to write")
    parser.add_argument("--show", action="store_true", help="also plot the result with matplotlib")
    args = parser.parse_args(argv)

    model = RFDETRBase(pretrain_weights=args.model)
    image = load_image(args.image)  # a PIL image, from a file or a URL
    detections = model.predict(image, threshold=args.threshold)

    # For a COCO checkpoint, `hf_rfdetr.COCO_CLASSES[class_id]` gives the same names as `class_name`.
    labels = [
        f"{class_name} {confidence:.2f}"
        for class_name, confidence in zip(detections.data["class_name"], detections.confidence)
    ]
    annotated_image = image.copy()
    annotated_image = sv.BoxAnnotator().annotate(annotated_image, detections)
    annotated_image = sv.LabelAnnotator().annotate(annotated_image, detections, labels)

    for label, box in zip(labels, detections.xyxy):
        print(label, [round(float(v), 1) for v in box])
    annotated_image.save(args.output)
    print(f"{len(detections)} detections -> {args.output}")
    if args.show:
        sv.plot_image(annotated_image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
