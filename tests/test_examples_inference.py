"""The inference examples run end to end on a tiny model: image, batch, video, webcam and RTSP (a file stands in)."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_rfdetr import RFDETR
from hf_rfdetr.video import iter_frames

from .test_facade import random_image, save_tiny
from .test_video import write_video

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str):
    """The `main(argv)` of examples/NAME.py, loaded with runpy (not as __main__)."""
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=f"example_{name}")["main"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("examples") / "tiny")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "stream.mp4", frames=6)


def test_inference_script_runs_as_a_program(model_folder: Path, tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    Image.fromarray(random_image(60, 80, seed=1)).save(image)
    output = tmp_path / "annotated.jpg"
    command = [sys.executable, str(EXAMPLES / "inference.py"), "--model", str(model_folder), "--image", str(image)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*command, "--threshold", "0.3", "--output", str(output)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    expected = RFDETR(pretrain_weights=model_folder, device="cpu").predict(str(image), threshold=0.3)
    assert f"{len(expected)} detections -> {output}" in result.stdout and len(expected) > 0
    first = f"{expected.data['class_name'][0]} {expected.confidence[0]:.2f} " + str(
        [round(float(v), 1) for v in expected.xyxy[0]]
    )
    assert first in result.stdout
    with Image.open(output) as annotated:
        assert annotated.size == (80, 60)


def test_batch_inference_writes_one_image_per_input(model_folder: Path, tmp_path: Path, capsys) -> None:
    paths = []
    for index, (height, width) in enumerate([(60, 80), (40, 40), (72, 50)]):
        paths.append(tmp_path / f"{index}.png")
        Image.fromarray(random_image(height, width, seed=index)).save(paths[-1])
    out = tmp_path / "out"
    argv = ["--model", str(model_folder), "--images", *map(str, paths), "--threshold", "0.3", "--output-dir", str(out)]
    assert example("batch_inference")(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["000.jpg", "001.jpg", "002.jpg"]
    detector = RFDETR(pretrain_weights=model_folder, device="cpu")
    printed = capsys.readouterr().out
    for index, path in enumerate(paths):
        with Image.open(out / f"{index:03d}.jpg") as annotated, Image.open(path) as original:
            assert annotated.size == original.size
        count = len(detector.predict(str(path), threshold=0.3))
        assert f"{path}: {count} detections" in printed


def test_video_script_annotates_every_frame(model_folder: Path, clip: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "annotated.mp4"
    argv = ["--model", str(model_folder), "--source", str(clip), "--output", str(output), "--threshold", "0.3"]
    assert example("video")(argv) == 0
    assert len(list(iter_frames(output))) == 6 and "6 frames in" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        example("video")(["--model", str(model_folder), "--source", str(tmp_path / "missing.mp4")])


@pytest.mark.parametrize("name", ["webcam", "rtsp"])
def test_live_scripts_take_a_file_for_the_stream(name: str, model_folder: Path, clip: Path, tmp_path: Path, capsys):
    output = tmp_path / f"{name}.mp4"
    argv = ["--model", str(model_folder), "--source", str(clip), "--threshold", "0.3"]
    assert example(name)([*argv, "--output", str(output)]) == 0  # no --show: no window is opened
    written = list(iter_frames(output))
    assert len(written) == 6 and written[0].shape == (64, 96, 3)
    printed = capsys.readouterr().out
    assert "6 frames in" in printed and "frames/s" in printed and f"annotated video -> {output}" in printed
    assert example(name)([*argv, "--max-frames", "2"]) == 0 and "2 frames in" in capsys.readouterr().out
    source = next(iter_frames(clip))
    detections = RFDETR(pretrain_weights=model_folder, device="cpu").predict(source[:, :, ::-1], threshold=0.3)
    if len(detections):  # boxes were drawn on the written frame
        assert np.abs(written[0].astype(int) - source.astype(int)).max() > 50


@pytest.mark.parametrize("name", ["webcam", "rtsp"])
def test_live_scripts_name_an_unreachable_source(name: str, model_folder: Path, capsys) -> None:
    assert example(name)(["--model", str(model_folder), "--source", "rtsp://127.0.0.1:9/live"]) == 1
    assert (
        capsys.readouterr().err
        == "error: cannot open stream 'rtsp://127.0.0.1:9/live': not a readable video, or the stream is unreachable\n"
    )


def _run_example(name: str, *argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(EXAMPLES / f"{name}.py"), *argv]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_webcam_without_a_camera_and_demo_without_its_image_exit_with_one_line(
    model_folder: Path, tmp_path: Path
) -> None:
    """Both ended in a Python traceback (and OpenCV's own warnings for the camera); they now exit non-zero with one
    line naming the problem. Camera 99 stands in for a machine without a camera."""
    webcam = _run_example("webcam", "--model", str(model_folder), "--source", "99")
    assert webcam.returncode == 1 and webcam.stdout == ""
    assert webcam.stderr == "error: cannot open webcam 99: is a camera connected and free?\n", webcam.stderr

    output = tmp_path / "out.jpg"
    missing = _run_example(
        "demo", "--model", str(model_folder), "--image", str(tmp_path / "missing.jpg"), "--output", str(output)
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr == f"error: image {str(tmp_path / 'missing.jpg')!r} does not exist or is not a file\n"
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    unreadable = _run_example("demo", "--model", str(model_folder), "--image", str(text), "--output", str(output))
    assert unreadable.returncode == 2 and len(unreadable.stderr.splitlines()) == 1, unreadable.stderr
    assert unreadable.stderr.startswith(f"error: image {str(text)!r} cannot be read as an image (")
    assert not output.exists()


def test_rtsp_with_an_unreachable_stream_or_a_missing_file_exits_with_one_line(tmp_path: Path) -> None:
    """rtsp.py ended in a traceback for a stream it cannot open; like webcam.py it now exits 1 with one line, checked
    before the model loads (the model folder here does not exist, and is never read)."""
    model = str(tmp_path / "no-model")
    stream = _run_example("rtsp", "--model", model, "--source", "rtsp://127.0.0.1:9/live")
    assert stream.returncode == 1 and stream.stdout == "", stream.stderr
    assert stream.stderr == (
        "error: cannot open stream 'rtsp://127.0.0.1:9/live': not a readable video, or the stream is unreachable\n"
    )
    missing = _run_example("rtsp", "--model", model, "--source", str(tmp_path / "missing.mp4"))
    assert missing.returncode == 1 and missing.stdout == "", missing.stderr
    assert missing.stderr == f"error: video {str(tmp_path / 'missing.mp4')!r} does not exist or is not a file\n"
