"""Detect objects live in a webcam's frames; show them in a window and/or write an annotated video.

    python examples/webcam.py --model CHECKPOINT [--source 0] [--show] [--output webcam.mp4] [--max-frames N]

The reference README's webcam loop: read a frame, `model.predict(frame[:, :, ::-1])` (OpenCV frames are BGR),
annotate with supervision. `--source` is a camera index (default 0) or a video file standing in for the camera.
Frames are read with OpenCV (`cv2.VideoCapture`) or, without OpenCV, supervision's PyAV fallback (files only, not
cameras); `--show` opens an OpenCV window ("q" quits), so it needs OpenCV with GUI support. Ctrl+C stops cleanly.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import supervision as sv

from hf_rfdetr import RFDETRBase
from hf_rfdetr.video import open_capture


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Hub id, local folder or original .pth checkpoint")
    parser.add_argument("--source", default="0", help="camera index, or a video file standing in for the camera")
    parser.add_argument("--threshold", type=float, default=0.5, help="keep detections scoring above this")
    parser.add_argument("--show", action="store_true", help="show the annotated frames in a window (needs OpenCV)")
    parser.add_argument("--output", help="also write the annotated frames to this video (.mp4)")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    args = parser.parse_args(argv)

    try:  # before the model loads: no camera (or an unreadable file) is one line, not a traceback
        cap = open_capture(args.source)  # cv2.VideoCapture(0) in the reference
    except (OSError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    model = RFDETRBase(pretrain_weights=args.model)
    if args.show:
        import cv2  # only for the window

    box_annotator, label_annotator = sv.BoxAnnotator(), sv.LabelAnnotator()
    sink, frames, start = None, 0, time.perf_counter()
    try:
        while args.max_frames is None or frames < args.max_frames:
            success, frame = cap.read()
            if not success:
                break

            detections = model.predict(frame[:, :, ::-1], threshold=args.threshold)
            labels = [
                f"{class_name} {confidence:.2f}"
                for class_name, confidence in zip(detections.data["class_name"], detections.confidence)
            ]
            annotated_frame = frame.copy()
            annotated_frame = box_annotator.annotate(annotated_frame, detections)
            annotated_frame = label_annotator.annotate(annotated_frame, detections, labels)
            frames += 1

            if args.output:
                if sink is None:  # the frame size is known now; streams rarely report their frame rate
                    info = sv.VideoInfo(width=frame.shape[1], height=frame.shape[0], fps=30.0)
                    sink = sv.VideoSink(args.output, info).__enter__()
                sink.write_frame(annotated_frame)
            if args.show:
                cv2.imshow("Webcam", annotated_frame)
                if cv2.waitKey(1) & 0xFF == ord("q"):
                    break
    except KeyboardInterrupt:
        pass
    finally:
        cap.release()
        if sink is not None:
            sink.__exit__(None, None, None)
        if args.show:
            cv2.destroyAllWindows()
    seconds = time.perf_counter() - start
    print(f"{frames} frames in {seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s)")
    if args.output and frames:
        print(f"annotated video -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
