"""`hf_rfdetr.process_video`: frames from files and streams, per-frame detection, written videos, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import supervision as sv

import hf_rfdetr
from hf_rfdetr import RFDETR
from hf_rfdetr.video import (
    VideoStats,
    _backend,
    iter_frames,
    open_capture,
    parse_source,
    process_video,
    read_ahead,
)

from .test_facade import save_tiny


def write_video(path: Path, frames: int = 6, size: tuple[int, int] = (64, 96), fps: float = 12.0) -> Path:
    """A short video of moving coloured squares (BGR), `size` = (height, width); `.mp4` (mp4v) or `.avi` (MJPG)."""
    backend = _backend()
    codec = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = backend.VideoWriter(str(path), backend.VideoWriter_fourcc(*codec), fps, (size[1], size[0]))
    assert writer.isOpened()
    for index in range(frames):
        frame = np.full((*size, 3), 200, np.uint8)
        x = 4 + 6 * index
        frame[10:30, x : x + 20] = (30, 30, 220)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> RFDETR:
    return RFDETR(pretrain_weights=save_tiny(tmp_path_factory.mktemp("video") / "tiny"), device="cpu")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("clips") / "clip.mp4", frames=7)


def test_process_video_detects_every_frame_and_writes_them(detector: RFDETR, video: Path, tmp_path: Path) -> None:
    stats = process_video(video, detector, output=tmp_path / "out" / "annotated.mp4", threshold=0.3, progress=False)
    assert isinstance(stats, VideoStats) and stats.frames == 7 and stats.fps > 0
    assert stats.output == tmp_path / "out" / "annotated.mp4"
    written = list(iter_frames(stats.output))
    assert len(written) == 7 and written[0].shape == (64, 96, 3)
    source = list(iter_frames(video))
    assert np.abs(written[0].astype(int) - source[0].astype(int)).max() > 50  # boxes were drawn
    assert hf_rfdetr.process_video is process_video


def test_a_callback_sees_bgr_frames_like_supervision(detector: RFDETR, video: Path, tmp_path: Path) -> None:
    seen, found = [], []

    def callback(frame: np.ndarray, index: int) -> np.ndarray:
        seen.append(index)
        detections = detector.predict(frame[:, :, ::-1], threshold=0.3)  # the reference README's call
        found.append(detections)
        return sv.BoxAnnotator().annotate(frame.copy(), detections)

    stats = process_video(video, callback=callback, output=tmp_path / "clip.avi", codec="MJPG", max_frames=4)
    assert seen == [0, 1, 2, 3] and stats.frames == 4 and len(list(iter_frames(tmp_path / "clip.avi"))) == 4
    first = next(iter_frames(video))
    expected = detector.predict(np.ascontiguousarray(first[:, :, ::-1]), threshold=0.3)
    np.testing.assert_allclose(found[0].xyxy, expected.xyxy)
    assert first[20, 10].tolist() == pytest.approx([30, 30, 220], abs=40)  # BGR: the red square is red


def test_without_output_nothing_is_written(detector: RFDETR, video: Path, tmp_path: Path, capsys) -> None:
    stats = process_video(str(video), callback=lambda frame, index: None, progress=True)
    assert stats.frames == 7 and stats.output is None
    assert "7/7" in capsys.readouterr().err  # the tqdm bar knows the length


def test_sources_are_parsed_and_bad_ones_named(video: Path, tmp_path: Path) -> None:
    assert parse_source("0") == 0 and parse_source(2) == 2
    assert parse_source("rtsp://camera.local/stream") == "rtsp://camera.local/stream"
    assert parse_source(video) == str(video)
    with pytest.raises(FileNotFoundError, match="video '.*missing.mp4' does not exist"):
        process_video(tmp_path / "missing.mp4", callback=lambda f, i: f)
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(OSError, match="cannot open video '.*notes.mp4'"):
        open_capture(tmp_path / "notes.mp4")
    with pytest.raises(OSError, match="cannot open stream 'rtsp://127.0.0.1:9/none'"):
        open_capture("rtsp://127.0.0.1:9/none")
    with pytest.raises(OSError, match="cannot open webcam 7"):
        open_capture(7)
    with pytest.raises(ValueError, match="exactly one of model"):
        process_video(video)
    with pytest.raises(ValueError, match="max_frames"):
        process_video(video, callback=lambda f, i: f, max_frames=0)


def test_read_ahead_overlaps_decoding_with_the_callers_work() -> None:
    """Frames come in order; the next frame is decoded while the caller works on the current one (in another
    thread); a reading error reaches the caller at its frame; closing early stops the decoding thread."""
    import threading
    import time

    events, threads = [], set()

    def slow_frames(count: int, fail_at: int | None = None):
        for index in range(count):
            threads.add(threading.get_ident())
            if index == fail_at:
                raise OSError(f"frame {index} is damaged")
            time.sleep(0.05)  # decoding
            events.append(("decoded", index))
            yield np.full((2, 2, 3), index, np.uint8)

    seen = []
    for frame in read_ahead(slow_frames(4), depth=2):
        events.append(("used", int(frame[0, 0, 0])))
        seen.append(int(frame[0, 0, 0]))
        time.sleep(0.08)  # inference
    assert seen == [0, 1, 2, 3] and threading.get_ident() not in threads
    # frame 1 was decoded before the caller finished frame 0: decoding overlapped the work
    assert events.index(("decoded", 1)) < events.index(("used", 1)) and events.index(("decoded", 1)) < 3

    with pytest.raises(OSError, match="frame 2 is damaged"):
        list(read_ahead(slow_frames(4, fail_at=2)))
    source = slow_frames(100)
    ahead = read_ahead(source, depth=2)
    assert int(next(ahead)[0, 0, 0]) == 0
    ahead.close()  # waits for the frames in flight, then stops
    assert len([e for e in events[-3:] if e[0] == "decoded"]) <= 3 and next(source) is not None
    with pytest.raises(ValueError, match="depth"):
        next(read_ahead(iter([]), depth=0))


def test_process_video_reports_cpu_use_with_and_without_prefetch(detector: RFDETR, video: Path) -> None:
    for prefetch in (0, 2):
        stats = process_video(video, detector, threshold=0.3, progress=False, prefetch=prefetch, max_frames=5)
        assert stats.frames == 5 and stats.cpu_seconds > 0 and stats.cpu_cores == stats.cpu_seconds / stats.seconds
    with pytest.raises(ValueError, match="prefetch"):
        process_video(video, detector, prefetch=-1)
