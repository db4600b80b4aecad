"""Detect objects in every frame of a video and write an annotated video, with supervision's `process_video`.

    python examples/video.py --model CHECKPOINT --source input.mp4 [--output annotated.mp4] [--threshold 0.5]

The reference README's video snippet: a `callback(frame, index)` gets BGR frames (OpenCV's order), so the model is
given `frame[:, :, ::-1]` (RGB). supervision decodes and encodes with OpenCV, or with PyAV when OpenCV is not
installed. `hf_rfdetr.process_video` does the same for files, webcams and streams, with frames/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import supervision as sv

from hf_rfdetr import RFDETRBase


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Hub id, local folder or original .pth checkpoint")
    parser.add_argument("--source", required=True, help="input video file")
    parser.add_argument("--output", default="annotated.mp4", help="annotated video to write (.mp4)")
    parser.add_argument("--threshold", type=float, default=0.5, help="keep detections scoring above this")
    args = parser.parse_args(argv)
    if not Path(args.source).is_file():
        parser.error(f"--source {args.source!r} does not exist")

    model = RFDETRBase(pretrain_weights=args.model)
    box_annotator, label_annotator = sv.BoxAnnotator(), sv.LabelAnnotator()
    frames = 0

    def callback(frame, index):
        nonlocal frames
        detections = model.predict(frame[:, :, ::-1], threshold=args.threshold)
        labels = [
            f"{class_name} {confidence:.2f}"
            for class_name, confidence in zip(detections.data["class_name"], detections.confidence)
        ]
        annotated_frame = frame.copy()
        annotated_frame = box_annotator.annotate(annotated_frame, detections)
        annotated_frame = label_annotator.annotate(annotated_frame, detections, labels)
        frames += 1
        return annotated_frame

    start = time.perf_counter()
    sv.process_video(source_path=args.source, target_path=args.output, callback=callback, show_progress=True)
    seconds = time.perf_counter() - start
    print(f"{frames} frames in {seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s) -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
