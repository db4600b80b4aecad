"""`examples/demo.py` on the bundled checkpoint and image, on other models, its error path; the bundled assets."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import huggingface_hub
import numpy as np
import pytest
import tomllib
import torch
from PIL import Image

from hf_rfdetr import RFDetrConfig, RFDetrForObjectDetection, RFDetrImageProcessor
from hf_rfdetr.annotate import draw_detections, label_color, label_colors
from hf_rfdetr.demo_assets import ASSETS, DEMO_IMAGE, DEMO_MODEL, demo_ground_truth
from hf_rfdetr.synthetic import class_names

from .conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo.py"
TRAIN_SCRIPT = ROOT / "scripts" / "train_demo_checkpoint.py"
LINE = re.compile(r"^\s*(?P<label>\S.*?)\s+(?P<score>\d\.\d{3})\s+box=\((?P<box>\d+, \d+, \d+, \d+)\)$")
Box = tuple[int, int, int, int]


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rfdetr_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bundled_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """`python examples/demo.py --output out.png`: the bundled model on the bundled image (PNG: exact colours)."""
    folder = tmp_path_factory.mktemp("bundled")
    result = subprocess.run(
        [sys.executable, str(DEMO), "--output", "out.png"],
        cwd=folder,
        env=os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, folder / "out.png"


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


def _detections(stdout: str) -> list[dict]:
    """The printed detections, as the pipeline's dicts (scores rounded to 3 decimals)."""
    found = [LINE.match(line) for line in stdout.splitlines()]
    return [
        {"label": m["label"], "score": float(m["score"]), "box": _box_dict(tuple(int(v) for v in m["box"].split(", ")))}
        for m in found
        if m
    ]


def _box_dict(box: Box) -> dict[str, int]:
    return dict(zip(("xmin", "ymin", "xmax", "ymax"), box))


def _corners(detection: dict) -> Box:
    return tuple(int(detection["box"][key]) for key in ("xmin", "ymin", "xmax", "ymax"))


def _iou(a: Box, b: Box) -> float:
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _outline_band(shape: tuple[int, int], box: Box, reach: int) -> np.ndarray:
    """Pixels within `reach` of the edges of `box` (clamped corners): where supervision's BoxAnnotator, which centres
    its outline on the edges, may draw (`reach` 1 for the thickness 2 `draw_detections` uses here)."""
    x0, y0, x1, y1 = box
    outer = np.zeros(shape, bool)
    outer[max(y0 - reach, 0) : y1 + reach + 1, max(x0 - reach, 0) : x1 + reach + 1] = True
    inner = np.zeros(shape, bool)
    inner[y0 + reach + 1 : y1 - reach, x0 + reach + 1 : x1 - reach] = True
    return outer & ~inner


def test_bundled_demo_detects_every_object_of_the_bundled_image(bundled_run: tuple[str, Path]) -> None:
    stdout, _ = bundled_run
    assert "bundled demo checkpoint" in stdout and "COCO-pretrained" in stdout and "hf-rfdetr convert" in stdout
    detections, truth = _detections(stdout), demo_ground_truth()
    assert len(truth) == 6 and {t["label"] for t in truth} == set(class_names(3))
    assert f"{len(detections)} detection(s) above 0.5; wrote out.png" in stdout
    assert all(d["score"] > 0.5 for d in detections)
    unmatched = list(range(len(detections)))
    for obj in truth:
        scores = [(_iou(_corners(obj), _corners(detections[i])), i) for i in unmatched]
        scores = [(iou, i) for iou, i in scores if detections[i]["label"] == obj["label"]]
        best_iou, best = max(scores, default=(0.0, None))
        assert best_iou >= 0.5, (obj, detections)
        unmatched.remove(best)
    assert unmatched == [], [detections[i] for i in unmatched]  # nothing spurious: one detection per object


def test_bundled_demo_draws_outlines_and_captions_where_it_detected(bundled_run: tuple[str, Path]) -> None:
    stdout, output = bundled_run
    detections = _detections(stdout)
    before = np.asarray(Image.open(DEMO_IMAGE).convert("RGB")).astype(int)
    after = np.asarray(Image.open(output)).astype(int)
    assert after.shape == before.shape == (360, 480, 3) and len(detections) == 6
    colors, reach = label_colors(detections), 1  # thickness max(2, round(360 / 240)): edge +- 1 pixel
    assert all(colors[d["label"]] == label_color(d["label"]) for d in detections)
    for detection in detections:
        x0, y0, x1, y1 = _corners(detection)
        color = np.array(colors[detection["label"]])
        for edge in (after[y0 : y1 + 1, x0], after[y0 : y1 + 1, x1], after[y0, x0 : x1 + 1], after[y1, x0 : x1 + 1]):
            assert (edge == color).all(axis=-1).mean() > 0.8, detection  # another box's caption may cross an edge
        inset_x, inset_y = (x1 - x0) // 4, max((y1 - y0) // 4, 24)  # the caption may sit inside at the top
        interior = (slice(y0 + inset_y, y1 - inset_y), slice(x0 + inset_x, x1 - inset_x))
        assert (after[interior] == before[interior]).all(), detection
        assert not (before[y0 : y1 + 1, x0] == color).all(axis=-1).any()  # the colour was not there before
        # The caption: the pixels draw_detections would change for this detection alone, outline excluded.
        alone = np.asarray(draw_detections(Image.new("RGB", (480, 360)), [detection], colors=colors)).astype(int)
        caption = alone.any(axis=-1) & ~_outline_band((360, 480), (x0, y0, x1, y1), reach)
        edges = alone[_outline_band((360, 480), (x0, y0, x1, y1), 0)]
        assert (edges == color).all(axis=-1).mean() > 0.97, (detection, edges[(edges != color).any(axis=-1)])
        text = caption & (alone != color).any(axis=-1)  # glyph pixels, in black or white
        assert caption.sum() > 300 and text.sum() > 40, detection
        rows, columns = np.nonzero(caption)  # at the box's top-left corner (shifted into the image where needed)
        assert abs(rows.min() - y0) < 30 and abs(rows.max() - y0) < 30, detection
        assert columns.min() <= x0 + 1 <= columns.max() and columns.max() - columns.min() > 40, detection
        assert (after[caption] == alone[caption]).all(axis=-1).mean() > 0.9, detection


def test_demo_without_arguments_writes_demo_detections_jpg(
    demo: ModuleType, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert demo.main([]) == 0
    stdout = capsys.readouterr().out
    assert len(_detections(stdout)) == 6 and "wrote demo_detections.jpg" in stdout
    drawn = Image.open(tmp_path / "demo_detections.jpg")
    assert drawn.format == "JPEG" and drawn.size == (480, 360)


def test_demo_with_a_model_and_image(tiny_folder: Path, tmp_path: Path, demo: ModuleType, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "scene.png"
    Image.new("RGB", (200, 120), (30, 30, 30)).save(image)
    assert demo.main(["--model", str(tiny_folder), "--image", str(image), "--output", "o.png"]) == 0
    stdout = capsys.readouterr().out
    assert "bundled" not in stdout
    detections = _detections(stdout)
    assert 0 < len(detections) < 60 and all(d["score"] > 0.5 for d in detections)  # default threshold 0.5
    assert {d["label"] for d in detections} <= {"cat", "dog", "bird"}
    assert [d["score"] for d in detections] == sorted((d["score"] for d in detections), reverse=True)
    drawn = np.asarray(Image.open(tmp_path / "o.png")).astype(int)
    assert drawn.shape == (120, 200, 3)
    x0, y0, x1, y1 = (min(v, limit - 1) for v, limit in zip(_corners(detections[0]), (200, 120, 200, 120)))
    best = label_color(detections[0]["label"])
    assert (drawn[y0 : y1 + 1, x0] == best).all(axis=-1).mean() > 0.5  # the best box's left edge


def test_demo_takes_checkpoint_names(tiny_folder: Path, tmp_path: Path, demo: ModuleType, monkeypatch) -> None:
    """`--model base` as the README shows: the name resolves through `hf_rfdetr.pretrained` (it went to the Hub as a
    repository id)."""
    import hf_rfdetr

    asked: list[str] = []
    monkeypatch.setattr(hf_rfdetr, "pretrained", lambda name: asked.append(name) or str(tiny_folder))
    assert demo.main(["--model", "base", "--output", str(tmp_path / "out.png")]) == 0
    assert asked == ["base"] and (tmp_path / "out.png").is_file()


def test_demo_reports_a_model_it_cannot_load(demo: ModuleType, tmp_path: Path, capsys) -> None:
    if not huggingface_hub.constants.HF_HUB_OFFLINE:
        pytest.skip("needs HF_HUB_OFFLINE=1 before huggingface_hub is imported (conftest sets it)")
    code = demo.main(["--model", "no-such-org/no-such-rfdetr", "--output", str(tmp_path / "out.jpg")])
    assert code == 2
    assert "could not load model 'no-such-org/no-such-rfdetr'" in capsys.readouterr().err
    assert not (tmp_path / "out.jpg").exists()


def test_bundled_checkpoint_files_and_metrics() -> None:
    assert sorted(p.name for p in DEMO_MODEL.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "training_metrics.json",
    ]
    assert (DEMO_MODEL / "model.safetensors").stat().st_size <= 5_000_000
    config = RFDetrConfig.from_pretrained(DEMO_MODEL)
    names = class_names(3)
    assert config.id2label == dict(enumerate(names)) and config.label2id == {n: i for i, n in enumerate(names)}
    assert "auto_map" not in json.loads((DEMO_MODEL / "config.json").read_text())
    report = json.loads((DEMO_MODEL / "training_metrics.json").read_text())
    assert report["command"].startswith("python scripts/train_demo_checkpoint.py")
    assert report["test_metrics"]["map_50"] >= 0.8 and report["weights"] in ("EMA", "final")
    card = (DEMO_MODEL / "README.md").read_text()
    assert f"| mAP@.50 | {report['test_metrics']['map_50']:.4f} |" in card and "synthetic" in card


def test_package_data_ships_every_asset() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["hf_rfdetr"]
    package = ASSETS.parent
    for path in ASSETS.rglob("*"):
        if path.is_file():
            relative = path.relative_to(package).as_posix()
            # setuptools globs: "*" does not cross "/"
            assert any(fnmatch.fnmatch(relative, g) and relative.count("/") == g.count("/") for g in globs), relative


@pytest.mark.slow
def test_training_script_runs_end_to_end_and_redraws_the_same_demo_image(tmp_path: Path) -> None:
    image = tmp_path / "demo.jpg"
    command = [sys.executable, str(TRAIN_SCRIPT), "--output", str(tmp_path / "model"), "--image", str(image)]
    command += ["--epochs", "1", "--num-train", "16", "--num-valid", "4", "--num-test", "4"]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (np.asarray(Image.open(image)) == np.asarray(Image.open(DEMO_IMAGE))).all()
    assert json.loads(image.with_suffix(".json").read_text()) == json.loads(DEMO_IMAGE.with_suffix(".json").read_text())
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == sorted(p.name for p in DEMO_MODEL.iterdir())
    report = json.loads((tmp_path / "model" / "training_metrics.json").read_text())
    assert (
        report["epochs"] == 1
        and report["num_parameters"] == RFDetrForObjectDetection.from_pretrained(tmp_path / "model").num_parameters()
    )
    assert 0.0 <= report["test_metrics"]["map"] <= 1.0 and len(report["validation_curve"]) == 1


def test_demo_reads_a_phone_photo_upright(demo: ModuleType, tmp_path: Path) -> None:
    """A photo stored sideways with EXIF orientation 6 is read as displayed, so its boxes fit what is drawn."""
    upright = Image.open(DEMO_IMAGE).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
    image = demo.read_image(path)
    assert image.size == upright.size and image.getexif().get(0x0112, 1) == 1
