"""Detect objects in several images in one forward pass and write an annotated copy of each.

    python examples/batch_inference.py --model CHECKPOINT --images A.jpg B.jpg ... [--output-dir batch_output]

`model.predict([...])` takes a list of images (files, URLs, PIL images, RGB arrays or tensors; sizes may differ),
runs them as one batch and returns one `supervision.Detections` per image, as the reference README's batch snippet.
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
    parser.add_argument("--images", nargs="+", default=[str(DEFAULT_IMAGE)], help="image files or http(s) URLs")
    parser.add_argument("--threshold", type=float, default=0.5, help="keep detections scoring above this")
    parser.add_argument("--output-dir", type=Path, default=Path("batch_output"), help="where annotated images go")
    args = parser.parse_args(argv)

    model = RFDETRBase(pretrain_weights=args.model)
    images = [load_image(source) for source in args.images]
    detections_list = model.predict(images, threshold=args.threshold)  # one forward pass, one Detections per image

    args.output_dir.mkdir(parents=True, exist_ok=True)
    for index, (image, detections) in enumerate(zip(images, detections_list)):
        labels = [
            f"{class_name} {confidence:.2f}"
            for class_name, confidence in zip(detections.data["class_name"], detections.confidence)
        ]
        annotated_image = image.copy()
        annotated_image = sv.BoxAnnotator().annotate(annotated_image, detections)
        annotated_image = sv.LabelAnnotator().annotate(annotated_image, detections, labels)
        output = args.output_dir / f"{index:03d}.jpg"
        annotated_image.save(output)
        print(f"{args.images[index]}: {len(detections)} detections -> {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
