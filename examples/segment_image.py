"""Segment objects in one image with RF-DETR Seg (the `rfdetr`-style facade) and draw the masks with supervision.

    python examples/segment_image.py [--model CHECKPOINT] [--image PATH_OR_URL] [--threshold 0.5] [--output out.jpg]

The reference README's segmentation snippet, with this package: `RFDETRSegNano().predict(image)` returns
`supervision.Detections` whose `mask` is an `(N, H, W)` bool array at the image's size, drawn here with supervision's
mask, box and label annotators. Without `--model` the COCO checkpoint of RF-DETR Seg Nano is downloaded once and
cached (`hf_rfdetr.pretrained("seg-nano")`); `--model` may also be another checkpoint name (seg-small, ...), a Hub
repository id, a local folder or an original rfdetr `.pt` file. `--image` is a file or an http(s) URL (default: the
bundled street scene). The same masks come from `pipeline("image-segmentation", model=...)` (as PIL images, one per
segment, overlaps resolved) and from the model and processor run by hand
(`processor.post_process_instance_segmentation`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import supervision as sv
from transformers.image_utils import load_image

import hf_rfdetr
from hf_rfdetr import RFDETRSegNano

DEFAULT_IMAGE = Path(hf_rfdetr.__file__).parent / "assets" / "demo.jpg"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint name, Hub id, local folder or original .pt (default: seg-nano)")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE), help="image file or http(s) URL")
    parser.add_argument("--threshold", type=float, default=0.5, help="keep objects scoring above this")
    parser.add_argument("--output", type=Path, default=Path("segmentation.jpg"), help="annotated image to write")
    parser.add_argument("--show", action="store_true", help="also plot the result with matplotlib")
    args = parser.parse_args(argv)

    model = RFDETRSegNano() if args.model is None else RFDETRSegNano(pretrain_weights=args.model)
    image = load_image(args.image)  # a PIL image, from a file or a URL
    detections = model.predict(image, threshold=args.threshold)  # detections.mask: (N, H, W) bool

    labels = [
        f"{class_name} {confidence:.2f}"
        for class_name, confidence in zip(detections.data["class_name"], detections.confidence)
    ]
    annotated_image = image.copy()
    annotated_image = sv.MaskAnnotator().annotate(annotated_image, detections)
    annotated_image = sv.BoxAnnotator().annotate(annotated_image, detections)
    annotated_image = sv.LabelAnnotator().annotate(annotated_image, detections, labels)

    for label, mask in zip(labels, detections.mask):
        print(label, f"{int(np.count_nonzero(mask))} px")
    annotated_image.save(args.output)
    print(f"{len(detections)} objects -> {args.output}")
    if args.show:
        sv.plot_image(annotated_image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
