"""What a newcomer meets with `pip install hf-rfdetr`: a cheap import, `--help` without torch, missing extras named
before any work, and no progress bars unless asked. Each runs in a fresh interpreter (sys.modules is the evidence,
not a clock)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from .conftest import tiny_config

HEAVY = ("torch", "transformers", "torchvision", "supervision", "datasets", "accelerate", "onnx", "onnxruntime", "cv2")


def _python(script: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_import_hf_rfdetr_imports_nothing_heavy_and_still_registers() -> None:
    result = _python(
        f"""
        import sys, json
        import hf_rfdetr
        print(json.dumps(sorted(name for name in {HEAVY!r} if name in sys.modules)))
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection
        config = AutoConfig.for_model("rfdetr")
        print(type(config).__module__, type(AutoModelForObjectDetection.from_config(config)).__name__)
        print(hf_rfdetr.RFDetrConfig is type(config), hf_rfdetr.RFDetrImageProcessor.__name__)
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded, registered, lazy = result.stdout.splitlines()
    assert json.loads(loaded) == []  # hf_rfdetr.registration waits for transformers' auto modules
    assert registered == "hf_rfdetr.models.rfdetr.configuration_rfdetr RFDetrForObjectDetection"
    assert lazy == "True RFDetrImageProcessor"


def test_registration_runs_when_transformers_was_imported_first() -> None:
    result = _python(
        """
        from transformers import AutoModelForObjectDetection, pipeline
        import hf_rfdetr
        from transformers.models.auto.modeling_auto import MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES
        print(MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES["rfdetr"][0])
        from transformers.pipelines import PIPELINE_REGISTRY
        print(PIPELINE_REGISTRY.supported_tasks["object-detection"]["impl"].__name__)
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["RFDetrForObjectDetection", "RFDetrObjectDetectionPipeline"]


def test_importing_another_transformers_model_after_hf_rfdetr() -> None:
    # DETR's modeling imports transformers.modeling_layers, which imports the Auto modules half-way through: the
    # registration must wait for it (it imports modeling_layers itself), then still register everything.
    result = _python(
        """
        import hf_rfdetr
        from transformers import DetrForObjectDetection
        from transformers import AutoConfig, AutoModelForObjectDetection
        print(DetrForObjectDetection.__name__, type(AutoModelForObjectDetection.from_config(AutoConfig.for_model("rfdetr"))).__name__)
        from transformers.pipelines import PIPELINE_REGISTRY
        print(PIPELINE_REGISTRY.supported_tasks["object-detection"]["impl"].__name__)
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [
        "DetrForObjectDetection",
        "RFDetrForObjectDetection",
        "RFDetrObjectDetectionPipeline",
    ]


@pytest.mark.parametrize("argv", [["--help"], ["predict", "--help"], ["train", "--help"], ["export", "--help"]])
def test_help_does_not_import_torch(argv: list[str]) -> None:
    result = _python(
        f"""
        import sys
        from hf_rfdetr.cli import main
        try:
            main({argv!r})
        except SystemExit as exit:
            assert exit.code == 0, exit.code
        print("LOADED", sorted(name for name in {HEAVY!r} if name in sys.modules))
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage: hf-rfdetr" in result.stdout and "--verbose" in result.stdout
    assert result.stdout.splitlines()[-1] == "LOADED []"


def test_train_help_states_each_default_once() -> None:
    result = _python("from hf_rfdetr.cli import main; main(['train', '--help'])")
    assert "(default: the model's)" in " ".join(result.stdout.split())
    assert "(default: None)" not in result.stdout


@pytest.mark.parametrize(
    ("missing", "argv", "extra"),
    [
        ("datasets", ["train", "--dataset-dir", "data", "--output-dir", "out"], "train"),
        ("pycocotools", ["eval", "--model", "m", "--dataset-dir", "data", "--output-json", "out/m.json"], "train"),
        ("onnx", ["export", "model", "out"], "ort"),
        ("onnxruntime", ["export", "model", "out", "--validate"], "ort"),
    ],
)
def test_a_missing_extra_is_named_before_anything_is_written(
    missing: str, argv: list[str], extra: str, tmp_path: Path
) -> None:
    """A default install (the optional package hidden: `sys.modules[name] = None` makes it unimportable)."""
    (tmp_path / "data").mkdir()
    result = _python(
        f"""
        import sys
        sys.modules[{missing!r}] = None
        from hf_rfdetr.cli import main
        sys.exit(main({argv!r}))
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"needs {missing}" in result.stderr and f'pip install "hf-rfdetr[{extra}]"' in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no output folder, no file


def test_the_library_names_the_extra_too() -> None:
    result = _python(
        """
        import sys
        sys.modules["datasets"] = None
        import hf_rfdetr
        try:
            hf_rfdetr.fine_tune("nano", "data")
        except ModuleNotFoundError as error:
            print(type(error).__name__, error.name, error)
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("MissingExtraError datasets ") and 'pip install "hf-rfdetr[train]"' in result.stdout


def test_quiet_loading_restores_the_global_setting() -> None:
    from transformers.utils import logging

    from hf_rfdetr.verbosity import quiet_loading

    assert logging.is_progress_bar_enabled()
    with quiet_loading():
        assert not logging.is_progress_bar_enabled()
    assert logging.is_progress_bar_enabled()
    with quiet_loading(verbose=True):
        assert logging.is_progress_bar_enabled()


def test_predict_prints_no_progress_bar_or_model_list(tmp_path: Path) -> None:
    from hf_rfdetr import RFDetrForObjectDetection, RFDetrImageProcessor

    model_dir = tmp_path / "model"
    RFDetrForObjectDetection(tiny_config()).save_pretrained(model_dir)
    RFDetrImageProcessor.from_config(tiny_config()).save_pretrained(model_dir)
    Image.new("RGB", (40, 30), (50, 60, 70)).save(tmp_path / "a.png")
    argv = ["predict", "--model", str(model_dir), str(tmp_path / "a.png"), "--no-progress"]
    script = "import sys; from hf_rfdetr.cli import main; sys.exit(main({!r}))"
    quiet = _python(script.format([*argv, "--output-dir", str(tmp_path / "q")]))
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "Loading weights" not in quiet.stderr and "Supported models are" not in quiet.stderr
    assert json.loads((tmp_path / "q" / "detections.json").read_text())  # it did run
    verbose = _python(script.format([*argv, "--output-dir", str(tmp_path / "v"), "--verbose"]))
    assert verbose.returncode == 0, verbose.stderr[-3000:]
