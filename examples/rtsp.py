"""Detect objects live in an RTSP (or HTTP) camera stream; show them and/or write an annotated video.

    python examples/rtsp.py --model CHECKPOINT --source rtsp://USER:PASS@HOST:554/stream [--show] [--output out.mp4]

The reference README's RTSP loop, done by `hf_rfdetr.process_video`: it reads the stream (OpenCV, or supervision's
PyAV fallback without OpenCV), runs `model.predict(frame[:, :, ::-1])` on every frame, draws the detections with
supervision, writes / shows the frames and reports frames/s (examples/webcam.py spells the same loop out). A video
file can stand in for the stream. The run ends when the stream ends, after `--max-frames`, on "q" in the `--show`
window or on Ctrl+C; an unreachable stream (or a missing file) exits with one `error: ...` line, checked before the model
loads.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hf_rfdetr import RFDETRBase, process_video
from hf_rfdetr.video import open_capture


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Hub id, local folder or original .pth checkpoint")
    parser.add_argument("--source", required=True, help="stream URL (rtsp://, http://, ...) or a video file")
    parser.add_argument("--threshold", type=float, default=0.5, help="keep detections scoring above this")
    parser.add_argument("--show", action="store_true", help="show the annotated frames in a window (needs OpenCV)")
    parser.add_argument("--output", help="also write the annotated frames to this video (.mp4)")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    args = parser.parse_args(argv)

    try:  # before the model loads: an unreachable stream (or a missing file) is one line, not a traceback
        open_capture(args.source).release()  # process_video opens it again for the run
    except (OSError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    model = RFDETRBase(pretrain_weights=args.model)
    try:
        stats = process_video(
            args.source, model, output=args.output, threshold=args.threshold, show=args.show, max_frames=args.max_frames
        )
    except OSError as error:  # the stream went away between the check and the run
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{stats.frames} frames in {stats.seconds:.1f} s ({stats.fps:.1f} frames/s)")
    if stats.output is not None:
        print(f"annotated video -> {stats.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
