# Copyright 2026 The hf_rfdetr Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Video, webcam and stream inference: read frames, detect, annotate, write a video, report frames per second.

    >>> from hf_rfdetr import RFDETRBase, process_video
    >>> model = RFDETRBase(pretrain_weights="checkpoint")
    >>> stats = process_video("input.mp4", model, output="annotated.mp4", threshold=0.5)  # or 0 (webcam), "rtsp://..."
    >>> print(f"{stats.frames} frames at {stats.fps:.1f} frames/s")

Frames are read with OpenCV (`cv2.VideoCapture`) when it is installed, otherwise with supervision's PyAV-based
fallback (files and network streams, not webcams). As in OpenCV and supervision, frames are BGR `(H, W, 3)` uint8
arrays: `model.predict` wants RGB, hence `frame[:, :, ::-1]`. Annotated videos are written with supervision's
`VideoSink`; frames are drawn by `hf_rfdetr.annotate.annotate_frame` (supervision's box / label annotators, one
colour per class name, as `draw_detections` draws images).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from .annotate import annotate_frame

if TYPE_CHECKING:
    import supervision as sv

    from .facade import RFDETR

__all__ = [
    "VideoStats",
    "annotate_frame",
    "frame_callback",
    "iter_frames",
    "open_capture",
    "process_video",
    "read_ahead",
]

#: A video file path, a webcam index (0, "0") or a stream URL ("rtsp://...", "http://...").
VideoSource = str | int | os.PathLike
#: `callback(frame, index)`: a BGR frame and its index -> the frame to write / show (BGR), or None for the input.
FrameCallback = Callable[[np.ndarray, int], "np.ndarray | None"]
_STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
DEFAULT_FPS = 30.0


@dataclass
class VideoStats:
    """What `process_video` did: frames processed, wall-clock seconds, the process's CPU seconds over the same time
    (all its threads), and the written video (if any)."""

    frames: int
    seconds: float
    output: Path | None = None
    cpu_seconds: float = 0.0

    @property
    def fps(self) -> float:
        """Frames processed per second (reading, inference, annotation and writing together)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_cores(self) -> float:
        """Average number of CPU cores the process kept busy (`cpu_seconds / seconds`)."""
        return self.cpu_seconds / self.seconds if self.seconds > 0 else 0.0


def _backend() -> ModuleType:
    """OpenCV when installed, else supervision's OpenCV-shaped PyAV fallback."""
    try:
        import cv2

        return cv2
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from supervision import _cv2
    except ImportError as error:
        raise ImportError(
            "video input needs OpenCV (pip install opencv-python) or supervision with PyAV (pip install supervision av)"
        ) from error
    return _cv2


def _has_opencv() -> bool:
    return _backend().__name__ == "cv2"


def parse_source(source: VideoSource) -> str | int:
    """A webcam index as int, a stream URL as is, a file path checked to exist (`FileNotFoundError` otherwise)."""
    if isinstance(source, int):
        return source
    text = os.fspath(source)
    if text.isdigit():
        return int(text)
    if urlparse(text).scheme in _STREAM_SCHEMES:
        return text
    if not Path(text).is_file():
        raise FileNotFoundError(f"video {text!r} does not exist or is not a file")
    return text


_FFMPEG_LOG_SETTINGS = ("OPENCV_FFMPEG_LOGLEVEL", "OPENCV_FFMPEG_DEBUG")


@contextlib.contextmanager
def _quiet_opencv(backend: ModuleType) -> Iterator[None]:
    """OpenCV's log silenced (not supervision's fallback), unless the user chose a level with `OPENCV_LOG_LEVEL`.

    OpenCV's FFmpeg backend logs on its own ("[tcp @ 0x...] Connection ... failed: Connection refused" for an
    unreachable stream): it is quiet too, unless `OPENCV_FFMPEG_LOGLEVEL` / `OPENCV_FFMPEG_DEBUG` is set. OpenCV reads
    that level once, at the process's first FFmpeg open, so FFmpeg stays quiet afterwards (`os.environ` is restored).
    """
    logging_module = getattr(getattr(backend, "utils", None), "logging", None)
    if logging_module is None or "OPENCV_LOG_LEVEL" in os.environ:
        yield
        return
    level = logging_module.getLogLevel()
    logging_module.setLogLevel(logging_module.LOG_LEVEL_SILENT)
    quiet_ffmpeg = not any(name in os.environ for name in _FFMPEG_LOG_SETTINGS)
    if quiet_ffmpeg:
        os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "-8"  # AV_LOG_QUIET
    try:
        yield
    finally:
        logging_module.setLogLevel(level)
        if quiet_ffmpeg:
            os.environ.pop("OPENCV_FFMPEG_LOGLEVEL", None)


def open_capture(source: VideoSource) -> Any:
    """An opened `VideoCapture` (OpenCV's, or supervision's fallback) for a file, webcam index or stream URL.

    Raises:
        FileNotFoundError: a file path that does not exist.
        OSError: a source that cannot be opened, with what to check.
    """
    parsed = parse_source(source)
    backend = _backend()
    with _quiet_opencv(backend):  # its warnings ("can't open camera by index") would repeat our error over lines
        capture = backend.VideoCapture(parsed)
    if capture.isOpened():
        return capture
    capture.release()
    if isinstance(parsed, int):
        hint = (
            "is a camera connected and free?"
            if _has_opencv()
            else "webcams need OpenCV, which is not installed: pip install opencv-python"
        )
        raise OSError(f"cannot open webcam {parsed}: {hint}")
    what = "stream" if urlparse(parsed).scheme in _STREAM_SCHEMES else "video"
    raise OSError(f"cannot open {what} {str(source)!r}: not a readable video, or the stream is unreachable")


def _capture_info(capture: Any) -> tuple[float, int | None]:
    """`(fps, total frames or None)` as the capture reports them (streams and webcams: often 0 / unknown)."""
    backend = _backend()
    fps = float(capture.get(backend.CAP_PROP_FPS) or 0.0)
    total = int(capture.get(backend.CAP_PROP_FRAME_COUNT) or 0)
    return (fps if 0 < fps < 1000 else DEFAULT_FPS), (total if total > 0 else None)


def iter_frames(source: VideoSource, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """BGR `(H, W, 3)` uint8 frames of a video file, webcam or stream, until it ends or `max_frames` are read."""
    yield from _read(open_capture(source), max_frames)


def _read(capture: Any, max_frames: int | None) -> Iterator[np.ndarray]:
    """Frames of an opened capture until it ends or `max_frames` are read; releases the capture."""
    try:
        count = 0
        while max_frames is None or count < max_frames:
            success, frame = capture.read()
            if not success or frame is None:
                break
            count += 1
            yield frame
    finally:
        capture.release()


def read_ahead(frames: Iterator[np.ndarray], depth: int = 2) -> Iterator[np.ndarray]:
    """The frames of `frames`, each decoded in a background thread while the caller works on the previous ones (up to
    `depth` ahead), so that decoding overlaps inference. A reading error is raised in the caller at that frame.
    Closing this generator waits for the frames in flight (at most `depth`) and leaves `frames` open."""
    if depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf_rfdetr-decode") as decoder:
        pending = deque(decoder.submit(next, frames, None) for _ in range(depth))
        while (frame := pending.popleft().result()) is not None:
            pending.append(decoder.submit(next, frames, None))
            yield frame


def frame_callback(
    model: RFDETR, threshold: float = 0.5, on_detections: Callable[[int, sv.Detections], None] | None = None
) -> FrameCallback:
    """The default per-frame work: `model.predict(frame[:, :, ::-1])` (BGR -> RGB), then `annotate_frame`.

    `on_detections(index, detections)` is called with every frame's detections (e.g. to collect them)."""

    def callback(frame: np.ndarray, index: int) -> np.ndarray:
        detections = model.predict(frame[:, :, ::-1], threshold=threshold)
        if on_detections is not None:
            on_detections(index, detections)
        return annotate_frame(frame, detections)

    return callback


def process_video(
    source: VideoSource,
    model: RFDETR | None = None,
    *,
    callback: FrameCallback | None = None,
    output: str | os.PathLike | None = None,
    threshold: float = 0.5,
    show: bool = False,
    max_frames: int | None = None,
    progress: bool = True,
    codec: str = "mp4v",
    prefetch: int = 2,
) -> VideoStats:
    """Run detection on every frame of a video file, webcam (index) or stream URL.

    Args:
        source: a video path, a webcam index (`0` or `"0"`) or a stream URL (`rtsp://`, `http://`, ...).
        model: an `RFDETR` facade; each frame goes through `frame_callback(model, threshold)` (predict + annotate).
        callback: instead of `model`, `callback(frame, index) -> frame` on BGR `(H, W, 3)` uint8 frames, as
            supervision's `process_video`; return the frame to write / show, or None to keep the input frame.
        output: write the returned frames to this video (`.mp4` with `codec` "mp4v"; `.avi` works with "MJPG"), at
            the source's frame rate (30 when the source does not say, as webcams and streams often do not).
        threshold: detection threshold for `model`.
        show: display frames in an OpenCV window ("q" stops); needs OpenCV with GUI support.
        max_frames: stop after this many frames (streams and webcams run until they end, "q" or Ctrl+C).
        progress: show a tqdm progress bar (frames, frames/s).
        prefetch: frames decoded ahead in a background thread while the model works (`read_ahead`); 0 reads each
            frame when it is needed.

    Returns:
        `VideoStats`: frames processed, seconds, `fps`, CPU seconds (`cpu_cores`), and the output path.

    Raises:
        FileNotFoundError / OSError: the source cannot be opened (the message names it); ValueError: bad arguments.
    """
    if (model is None) == (callback is None):
        raise ValueError("pass exactly one of model (an RFDETR facade) or callback(frame, index)")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be a positive integer or None, got {max_frames!r}")
    if not isinstance(prefetch, int) or prefetch < 0:
        raise ValueError(f"prefetch must be a non-negative integer, got {prefetch!r}")
    callback = callback or frame_callback(model, threshold)  # type: ignore[arg-type]
    display = _display() if show else None
    capture = open_capture(source)
    fps, total = _capture_info(capture)
    total = min(total, max_frames) if total and max_frames else (total or max_frames)
    from tqdm.auto import tqdm

    frames, start, cpu_start = 0, time.perf_counter(), time.process_time()
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=total, unit="frame", desc=str(source), disable=not progress))
        reader = _read(capture, max_frames)
        stack.callback(reader.close)
        stack.callback(capture.release)
        ahead = read_ahead(reader, prefetch) if prefetch else reader
        stack.callback(ahead.close)  # before the reader: the decoding thread stops first
        sink = None
        try:
            for index, frame in enumerate(ahead):
                result = callback(frame, index)
                result = frame if result is None else result
                if output is not None and sink is None:
                    sink = stack.enter_context(_open_sink(output, result, fps, codec))
                if sink is not None:
                    sink.write_frame(result)
                frames += 1
                bar.update(1)
                if display is not None and display(result):
                    break
        except KeyboardInterrupt:  # a webcam / stream is stopped with Ctrl+C: keep what was written
            pass
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    if display is not None:
        _backend().destroyAllWindows()
    written = Path(output) if output is not None and frames else None
    return VideoStats(frames=frames, seconds=seconds, output=written, cpu_seconds=cpu_seconds)


def _open_sink(output: str | os.PathLike, frame: np.ndarray, fps: float, codec: str) -> sv.VideoSink:
    """A supervision `VideoSink` for frames like `frame` (`(H, W, 3)` BGR uint8)."""
    import supervision as sv

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    info = sv.VideoInfo(width=int(frame.shape[1]), height=int(frame.shape[0]), fps=fps)
    return sv.VideoSink(os.fspath(output), info, codec=codec)


def _display() -> Callable[[np.ndarray], bool]:
    """`show(frame) -> stop?`: an OpenCV window that stops on "q" (needs OpenCV with GUI support)."""
    if not _has_opencv():
        raise RuntimeError("show=True needs OpenCV with GUI support: pip install opencv-python")
    import cv2

    def show(frame: np.ndarray) -> bool:
        cv2.imshow("RF-DETR", frame)
        return cv2.waitKey(1) & 0xFF == ord("q")

    return show
