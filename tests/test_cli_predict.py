"""`hf-rfdetr predict`: images, folders and videos in; annotated copies and detections.json out; shell errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hf_rfdetr
from hf_rfdetr import RFDETR
from hf_rfdetr.cli import build_parser, main
from hf_rfdetr.video import iter_frames

from .test_facade import random_image, save_tiny
from .test_video import write_video


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("cli") / "tiny")


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    (folder / "nested").mkdir(parents=True)
    Image.fromarray(random_image(48, 64, seed=1)).save(folder / "a.png")
    Image.fromarray(random_image(70, 40, seed=2)).save(folder / "nested" / "b.jpg")
    Image.fromarray(random_image(32, 32, seed=3)).save(tmp_path / "a.png")  # same name as inputs/a.png
    (folder / "notes.txt").write_text("ignored")
    write_video(folder / "clip.mp4", frames=5)
    return folder


def test_images_folders_and_videos(model_folder: Path, inputs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    arguments = [
        "predict",
        "--model",
        str(model_folder),
        str(inputs),
        str(tmp_path / "a.png"),
        "--output-dir",
        str(out),
    ]
    assert main([*arguments, "--threshold", "0.3", "--batch-size", "2", "--videos", "--no-progress"]) == 0
    report = json.loads((out / "detections.json").read_text())
    assert report["threshold"] == 0.3 and report["model"] == str(model_folder)
    assert [entry["input"] for entry in report["images"]] == [
        str(inputs / "a.png"),
        str(inputs / "nested" / "b.jpg"),
        str(tmp_path / "a.png"),
    ]
    assert [Path(entry["output"]).name for entry in report["images"]] == ["a.png", "b.jpg", "a-1.png"]
    detector = RFDETR(pretrain_weights=model_folder, device="cpu")
    for entry in report["images"]:
        expected = detector.predict(entry["input"], threshold=0.3)
        assert len(entry["detections"]) == len(expected) > 0
        np.testing.assert_allclose([d["box"] for d in entry["detections"]], expected.xyxy, atol=0.01)
        assert [d["label"] for d in entry["detections"]] == list(expected.data["class_name"])
        assert [d["class_id"] for d in entry["detections"]] == expected.class_id.tolist()
        with Image.open(entry["output"]) as annotated, Image.open(entry["input"]) as original:
            assert annotated.size == original.size == (entry["width"], entry["height"])
    (video,) = report["videos"]
    assert video["input"] == str(inputs / "clip.mp4") and video["frames"] == 5 and len(video["detections"]) == 5
    assert len(list(iter_frames(video["output"]))) == 5 and video["output"] == str(out / "clip.mp4")
    first = next(iter_frames(inputs / "clip.mp4"))
    expected = detector.predict(np.ascontiguousarray(first[:, :, ::-1]), threshold=0.3)
    np.testing.assert_allclose([d["box"] for d in video["detections"][0]], expected.xyxy, atol=0.01)
    printed = capsys.readouterr().out
    assert "3 image(s)" in printed and "1 video(s)" in printed and "frames/s" in printed


def test_folders_skip_videos_unless_asked(model_folder: Path, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["predict", "--model", str(model_folder), str(inputs), "--output-dir", str(out), "--no-progress"]) == 0
    report = json.loads((out / "detections.json").read_text())
    assert len(report["images"]) == 2 and report["videos"] == [] and not (out / "clip.mp4").exists()
    assert (
        main(
            [
                "predict",
                "--model",
                str(model_folder),
                str(inputs / "clip.mp4"),
                "--output-dir",
                str(out),
                "--max-frames",
                "2",
            ]
        )
        == 0
    )
    assert json.loads((out / "detections.json").read_text())["videos"][0]["frames"] == 2


def test_optimize_runs_the_fast_path(model_folder: Path, inputs: Path, tmp_path: Path, monkeypatch) -> None:
    seen = []
    optimize = RFDETR.optimize_for_inference

    def record(self, *args, **kwargs) -> None:
        optimize(self, *args, **kwargs)
        seen.append(hf_rfdetr.is_optimized(self.model))

    monkeypatch.setattr(RFDETR, "optimize_for_inference", record)
    out = tmp_path / "out"
    arguments = ["predict", "--model", str(model_folder), str(inputs), "--output-dir", str(out), "--no-progress"]
    assert main([*arguments, "--optimize", "--threshold", "0.0"]) == 0
    assert seen == [True]
    fast = json.loads((out / "detections.json").read_text())["images"]
    assert main([*arguments, "--threshold", "0.0"]) == 0 and seen == [True]  # without the flag: float32
    exact = json.loads((out / "detections.json").read_text())["images"]
    for fast_entry, exact_entry in zip(fast, exact, strict=True):  # threshold 0: the same top-300 detections
        best_fast, best_exact = fast_entry["detections"][0], exact_entry["detections"][0]
        assert abs(best_fast["score"] - best_exact["score"]) < 0.05


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{tmp}/missing.jpg"], "input '.*missing.jpg' does not exist"),
        (["{tmp}/empty"], "found no images"),
        (["{tmp}/a.png", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["{tmp}/a.png", "--model", "{tmp}/no-model"], "pretrain_weights '.*no-model' does not exist"),
    ],
)
def test_errors_are_one_line_and_exit_1(model_folder: Path, tmp_path: Path, capsys, arguments, message) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.jpg").write_text("text")
    Image.fromarray(random_image(32, 32, seed=4)).save(tmp_path / "a.png")
    argv = ["predict", "--model", str(model_folder), "--output-dir", str(tmp_path / "out")]
    argv += [argument.format(tmp=tmp_path) for argument in arguments]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("hf-rfdetr predict: error: ") and "Traceback" not in err
    assert re.search(message, err.splitlines()[-1]), err


def test_unreadable_inputs_are_listed_and_the_rest_processed(model_folder: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.jpg").write_text("text")
    Image.fromarray(random_image(32, 32, seed=4)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    argv = ["predict", "--model", str(model_folder), str(tmp_path / "notes.jpg"), str(tmp_path / "a.png")]
    assert main([*argv, "--output-dir", str(out), "--no-progress"]) == 1
    report = json.loads((out / "detections.json").read_text())
    assert [entry["input"] for entry in report["images"]] == [str(tmp_path / "a.png")] and (out / "a.png").is_file()
    (error,) = report["errors"]
    assert (
        error["input"] == str(tmp_path / "notes.jpg") and "notes.jpg' is not an image Pillow can read" in error["error"]
    )
    captured = capsys.readouterr()
    assert "1 image(s)" in captured.out and "Traceback" not in captured.err
    assert "hf-rfdetr predict: error: could not read 1 of 2 input(s)" in captured.err
    assert "notes.jpg' is not an image Pillow can read" in captured.err.splitlines()[-1]


def test_a_too_small_image_is_listed_and_its_batch_processed(model_folder: Path, tmp_path: Path, capsys) -> None:
    """A readable 1x1 image (under the model's 2x2 minimum) in the middle of a batch: it goes under `errors`, named by
    its file, and the images of its batch are still processed (the whole run stopped at it before)."""
    paths = [tmp_path / "a.png", tmp_path / "dot.png", tmp_path / "c.png"]
    Image.fromarray(random_image(32, 32, seed=4)).save(paths[0])
    Image.new("RGB", (1, 1)).save(paths[1])
    Image.fromarray(random_image(40, 24, seed=5)).save(paths[2])
    out = tmp_path / "out"
    argv = ["predict", "--model", str(model_folder), *map(str, paths), "--output-dir", str(out), "--no-progress"]
    assert main(argv) == 1
    report = json.loads((out / "detections.json").read_text())
    assert [entry["input"] for entry in report["images"]] == [str(paths[0]), str(paths[2])]
    (error,) = report["errors"]
    assert error == {
        "input": str(paths[1]),
        "error": f"{paths[1]}: image of 1x1 pixels is smaller than the minimum 2x2.",
    }
    assert "Traceback" not in capsys.readouterr().err


def test_predict_is_listed_first_in_help() -> None:
    text = build_parser().format_help()
    assert "predict" in text and text.index("predict") < text.index("train")


def test_output_names_differ_ignoring_case(tmp_path: Path) -> None:
    """`a.jpg` and `sub/a.JPG` must not be written to names that are one file on macOS and Windows."""
    from hf_rfdetr.commands.predict import _OutputNames

    names = _OutputNames(tmp_path)
    written = [names.next(Path(p), Path(p).suffix).name for p in ("in/a.jpg", "in/sub/a.JPG", "in/A.jpg", "in/b.jpg")]
    assert written == ["a.jpg", "a-1.JPG", "A-2.jpg", "b.jpg"]
    assert len({name.casefold() for name in written}) == len(written)


def test_outputs_never_overwrite_or_become_inputs(model_folder: Path, tmp_path: Path, monkeypatch) -> None:
    """`predict r_in --output-dir r_in` used to replace r_in/a.png by its annotated copy, and `predict . --output-dir
    predictions` run twice read predictions/*.png back as inputs: now an output whose name is an input's gets the
    next free name, and an output folder inside a searched folder is skipped."""
    folder = tmp_path / "r_in"
    folder.mkdir()
    Image.fromarray(random_image(48, 64, seed=1)).save(folder / "a.png")
    original = (folder / "a.png").read_bytes()
    common = ["--model", str(model_folder), "--threshold", "0", "--no-progress"]
    assert main(["predict", str(folder), "--output-dir", str(folder), *common]) == 0
    assert (folder / "a.png").read_bytes() == original
    report = json.loads((folder / "detections.json").read_text())
    assert [Path(entry["output"]).name for entry in report["images"]] == ["a-1.png"]

    project = tmp_path / "proj"
    project.mkdir()
    Image.fromarray(random_image(48, 64, seed=1)).save(project / "a.png")
    monkeypatch.chdir(project)
    for _ in range(2):
        assert main(["predict", ".", "--output-dir", "predictions", *common]) == 0
        report = json.loads((project / "predictions" / "detections.json").read_text())
        assert [entry["input"] for entry in report["images"]] == ["a.png"]
    assert sorted(p.name for p in (project / "predictions").iterdir()) == ["a.png", "detections.json"]
