"""`examples/demo.py`: end to end on a tiny saved model, its error path, and its drawing function."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import huggingface_hub
import numpy as np
import pytest
import torch
from PIL import Image

import hf_rfdetr
from hf_rfdetr import RFDetrForObjectDetection, RFDetrImageProcessor

from .conftest import tiny_config

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
DEMO_IMAGE = Path(hf_rfdetr.__file__).parent / "assets" / "demo.jpg"
LINE = re.compile(r"^\s*(?P<label>\S.*?)\s+(?P<score>\d\.\d{3})\s+box=\((?P<box>\d+, \d+, \d+, \d+)\)$")


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rfdetr_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    config = tiny_config()
    torch.manual_seed(0)
    model = RFDetrForObjectDetection(config)
    with torch.no_grad():
        model.class_embed.bias.zero_()  # scores around 0.5 instead of the 0.01 prior, so a threshold of 0.5 selects
    model.save_pretrained(tmp_path / "model")
    RFDetrImageProcessor.from_config(config).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def _detections(stdout: str) -> list[tuple[str, float, tuple[int, int, int, int]]]:
    found = [LINE.match(line) for line in stdout.splitlines()]
    return [(m["label"], float(m["score"]), tuple(int(v) for v in m["box"].split(", "))) for m in found if m]


def _drawn_corners(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The corners `draw_detections` draws for a pipeline box: clamped to the image."""
    (x0, y0, x1, y1), (width, height) = box, size
    return min(x0, width - 1), min(y0, height - 1), min(x1, width - 1), min(y1, height - 1)


def test_demo_script_draws_the_printed_detections(tiny_folder: Path, tmp_path: Path, demo: ModuleType) -> None:
    output = tmp_path / "out.png"  # lossless, so the drawn colours can be compared exactly
    result = subprocess.run(
        [sys.executable, str(DEMO), "--model", str(tiny_folder), "--threshold", "0.0", "--output", str(output)],
        cwd=tmp_path,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    detections = _detections(result.stdout)
    assert len(detections) == 20 * 3  # threshold 0 keeps every (query, label) pair of the tiny model
    assert {label for label, _, _ in detections} <= {"cat", "dog", "bird"}
    assert [score for _, score, _ in detections] == sorted((score for _, score, _ in detections), reverse=True)
    assert "RANDOM" not in result.stdout and f"wrote {output}" in result.stdout

    before = np.asarray(Image.open(DEMO_IMAGE).convert("RGB")).astype(int)
    after = np.asarray(Image.open(output)).astype(int)
    assert after.shape == before.shape == (480, 640, 3)
    x0, y0, x1, y1 = _drawn_corners(detections[0][2], (640, 480))
    color = np.array(demo.PALETTE[0])  # the best detection's label gets the first colour and is drawn last
    left_edge, right_edge = after[y0 : y1 + 1, x0], after[y0 : y1 + 1, x1]
    assert (left_edge == color).all() and (right_edge == color).mean() > 0.5  # the caption may cross the right edge
    assert (before[y0 : y1 + 1, x0] != color).any(axis=-1).all()
    changed = (after != before).any(axis=-1)
    assert 0.001 < changed.mean() < 0.9


def test_demo_writes_jpeg_by_default(tiny_folder: Path, tmp_path: Path, demo: ModuleType, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "scene.png"
    Image.new("RGB", (200, 120), (30, 30, 30)).save(image)
    assert demo.main(["--model", str(tiny_folder), "--image", str(image)]) == 0
    detections = _detections(capsys.readouterr().out)
    assert 0 < len(detections) < 60 and all(score > 0.5 for _, score, _ in detections)  # default threshold 0.5
    drawn = Image.open(tmp_path / "demo_detections.jpg")
    assert drawn.format == "JPEG" and drawn.size == (200, 120)
    x0, y0, x1, y1 = _drawn_corners(detections[0][2], drawn.size)
    left_edge = np.asarray(drawn.convert("RGB")).astype(int)[y0 : y1 + 1, x0]
    assert np.abs(left_edge - np.array(demo.PALETTE[0])).max(axis=-1).mean() < 40  # JPEG: approximately


def test_demo_reports_a_model_it_cannot_load(demo: ModuleType, tmp_path: Path, capsys) -> None:
    if not huggingface_hub.constants.HF_HUB_OFFLINE:
        pytest.skip("needs HF_HUB_OFFLINE=1 before huggingface_hub is imported (conftest sets it)")
    code = demo.main(["--model", "no-such-org/no-such-rfdetr", "--output", str(tmp_path / "out.jpg")])
    assert code == 2
    assert "could not load model 'no-such-org/no-such-rfdetr'" in capsys.readouterr().err
    assert not (tmp_path / "out.jpg").exists()


@pytest.mark.slow
def test_demo_without_model_runs_a_random_nano(demo: ModuleType, tmp_path: Path, capsys) -> None:
    assert demo.main(["--output", str(tmp_path / "out.jpg")]) == 0
    stdout = capsys.readouterr().out
    assert "RANDOM weights" in stdout and "--model" in stdout
    assert len(_detections(stdout)) == demo.RANDOM_MODEL_TOP_K
    assert Image.open(tmp_path / "out.jpg").size == (640, 480)
