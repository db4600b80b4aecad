"""examples/onnx_export.py runs end to end on the bundled demo checkpoint: the ONNX detections equal PyTorch's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hf_rfdetr.demo_assets import DEMO_MODEL

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "onnx_export.py"


def _detections(lines: list[str], header: str) -> list[str]:
    start = next(index for index, line in enumerate(lines) if line.startswith(header))
    count = int(lines[start].split(": ")[1].split()[0])
    return lines[start + 1 : start + 1 + count]


def test_onnx_example_detects_what_pytorch_detects(tmp_path: Path) -> None:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(EXAMPLE), "--model", str(DEMO_MODEL), "--output", str(tmp_path / "onnx")]
    result = subprocess.run([*command, "--quantize"], capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("exported with ") and "model.onnx, model_quantized.onnx" in lines[0]
    pytorch = _detections(lines, "PyTorch: ")
    assert len(pytorch) == 6  # the six shapes of the bundled scene
    assert _detections(lines, "onnxruntime model.onnx: ") == pytorch
    quantized = _detections(lines, "onnxruntime model_quantized.onnx: ")
    print("\n".join(quantized))
    assert sorted(line.split()[0] for line in quantized) == sorted(line.split()[0] for line in pytorch)
    assert (tmp_path / "onnx" / "model.onnx").is_file() and (tmp_path / "onnx" / "model_quantized.onnx").is_file()
