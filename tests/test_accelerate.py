"""`accelerate launch` with two CPU processes (gloo): both ranks train the same model on half the batch each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_rfdetr import RFDetrForObjectDetection, RFDetrImageProcessor

from .accelerate_worker import fingerprint
from .conftest import tiny_config
from .synthetic_coco import write_synthetic_coco


@pytest.mark.slow
def test_two_process_training(tmp_path: Path) -> None:
    dataset = write_synthetic_coco(tmp_path / "shapes", num_train=16, num_valid=4, image_size=(64, 64))
    torch.manual_seed(0)
    RFDetrForObjectDetection(tiny_config()).save_pretrained(tmp_path / "tiny")
    RFDetrImageProcessor.from_config(tiny_config()).save_pretrained(tmp_path / "tiny")
    output = tmp_path / "run"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += [
        str(Path(__file__).with_name("accelerate_worker.py")),
        str(dataset),
        str(tmp_path / "tiny"),
        str(output),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((output / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # 16 images, 2 per process and step: a global batch of 4 split over the two ranks -> 4 steps an epoch, 8 in all.
    assert [r["global_step"] for r in ranks] == [8, 8] and ranks[0]["samples_per_step"] == 4
    assert ranks[0]["weights"] == ranks[1]["weights"]  # gradients were averaged: both ranks hold the same model
    saved = load_file(output / "model.safetensors")
    assert fingerprint(saved) == ranks[0]["weights"]  # what rank 0 evaluated is what was saved
    assert ranks[0]["eval_map"] is not None
    # The loss terms are averaged over both ranks as `loss` is: the same on each rank, their weighted sum the loss
    config = tiny_config()
    coefficients = {
        "loss_ce": config.class_loss_coefficient,
        "loss_bbox": config.bbox_loss_coefficient,
        "loss_giou": config.giou_loss_coefficient,
    }
    terms = [f"{name}{suffix}" for suffix in ("", "_aux") for name in coefficients]
    logs = [r["train_logs"] for r in ranks]
    assert len(logs[0]) == 2 and logs[0] == logs[1]  # one line per epoch, the same on both ranks
    evaluations = [r["evaluation_losses"] for r in ranks]
    assert evaluations[0] == evaluations[1]
    for entry, prefix in [(line, "") for line in logs[0]] + [(evaluations[0], "eval_")]:
        total = sum(coefficients[name.removesuffix("_aux")] * entry[prefix + name] for name in terms)
        assert total == pytest.approx(entry[f"{prefix}loss"], rel=1e-4, abs=1e-4), entry
