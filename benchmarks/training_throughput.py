"""Training-step throughput (images/s) of hf_rfdetr vs the original rfdetr on the same batch and weights.

    python benchmarks/training_throughput.py [--variants nano base] [--batch 2] [--steps 3] [--device cpu]

One step = forward in training mode (all Group DETR groups), the loss (matching + IA-BCE + L1 + GIoU on every layer
and the two-stage proposals), backward and an AdamW step over the original's parameter groups. The original's own
step is its `LWDETR` + `SetCriterion` + `get_param_dict` groups (its Lightning loop adds data loading and logging
around the same calls). The tiny config has no counterpart in the original; its row shows our images/s alone.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_rfdetr import RFDetrForObjectDetection  # noqa: E402
from hf_rfdetr.training import LearningRates, parameter_groups  # noqa: E402
from tests.conftest import REFERENCE_CONFIG_CLASSES, converted_model, reference_model, tiny_config  # noqa: E402
from tests.test_training_optim import _original_get_param_dict  # noqa: E402


def _targets(batch: int, num_labels: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    targets = []
    for _ in range(batch):
        count = 6
        boxes = torch.cat([torch.rand(count, 2, generator=generator) * 0.6 + 0.2, torch.rand(count, 2) * 0.2 + 0.05], 1)
        targets.append({"class_labels": torch.randint(0, num_labels, (count,), generator=generator), "boxes": boxes})
    return targets


def _images_per_second(step, batch: int, steps: int) -> float:
    step()  # warm-up
    timings = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        timings.append(time.perf_counter() - start)
    return batch / statistics.median(timings)


def _ours_step(model: RFDetrForObjectDetection, pixel_values, targets):
    optimizer = torch.optim.AdamW(parameter_groups(model, LearningRates()))
    model.train()

    def step() -> None:
        loss = model(pixel_values, labels=targets).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def _original_step(variant: str, pixel_values, targets):
    from rfdetr import config as reference_configs
    from rfdetr.config import TrainConfig
    from rfdetr.models.lwdetr import build_criterion_from_config

    model = reference_model(variant)
    criterion, _ = build_criterion_from_config(
        getattr(reference_configs, REFERENCE_CONFIG_CLASSES[variant])(device="cpu"),
        TrainConfig(dataset_dir=".", output_dir="."),
    )
    rates = LearningRates()
    args = argparse.Namespace(**vars(rates), out_feature_indexes=converted_model(variant).config.out_feature_indexes)
    optimizer = torch.optim.AdamW(_original_get_param_dict()(args, model), lr=rates.lr, weight_decay=rates.weight_decay)
    original_targets = [{"labels": t["class_labels"], "boxes": t["boxes"]} for t in targets]
    model.train(), criterion.train()

    def step() -> None:
        losses = criterion(model(pixel_values), original_targets)
        loss = sum(losses[k] * criterion.weight_dict[k] for k in losses if k in criterion.weight_dict)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["tiny", "nano", "base"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    print(f"threads={torch.get_num_threads()} batch={args.batch} torch={torch.__version__}")
    print(f"{'variant':<10}{'rfdetr img/s':>14}{'ours img/s':>12}{'ratio':>8}")
    for variant in args.variants:
        torch.manual_seed(0)
        model = RFDetrForObjectDetection(tiny_config()) if variant == "tiny" else converted_model(variant)
        size = model.config.resolution
        pixel_values = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(1))
        targets = _targets(args.batch, model.config.num_labels)
        ours = _images_per_second(_ours_step(model, pixel_values, targets), args.batch, args.steps)
        if variant == "tiny":
            print(f"{variant:<10}{'-':>14}{ours:>12.2f}{'-':>8}")
            continue
        original = _images_per_second(_original_step(variant, pixel_values, targets), args.batch, args.steps)
        print(f"{variant:<10}{original:>14.2f}{ours:>12.2f}{ours / original:>8.2f}")


if __name__ == "__main__":
    main()
