"""CPU (or GPU) inference latency of hf_rfdetr vs the original rfdetr package, same weights, same run.

    python benchmarks/inference_speed.py [--variants nano base] [--batch 1] [--repeats 10] [--device cpu]

Prints median milliseconds per forward pass and the ratio reference / ours (> 1 means we are faster). Also checks
that both produce the same logits, so the race is between equal models.
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.conftest's reference builders

from tests.conftest import converted_model, reference_model  # noqa: E402


def _median_ms(forward, pixel_values: torch.Tensor, repeats: int, device: torch.device) -> float:
    timings = []
    with torch.inference_mode():
        for index in range(repeats + 2):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            forward(pixel_values)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if index >= 2:  # warm-up
                timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["nano", "base"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    device = torch.device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} torch={torch.__version__}")
    print(f"{'variant':<14}{'rfdetr ms':>11}{'ours ms':>10}{'ratio':>8}{'max |dlogits|':>15}")
    for variant in args.variants:
        reference, ours = reference_model(variant).to(device), converted_model(variant).to(device)
        size = ours.config.resolution
        pixel_values = torch.randn(args.batch, 3, size, size, device=device)
        with torch.inference_mode():
            delta = (reference(pixel_values)["pred_logits"] - ours(pixel_values).logits).abs().max().item()
        reference_ms = _median_ms(reference, pixel_values, args.repeats, device)
        ours_ms = _median_ms(ours, pixel_values, args.repeats, device)
        print(f"{variant:<14}{reference_ms:>11.1f}{ours_ms:>10.1f}{reference_ms / ours_ms:>8.2f}{delta:>15.1e}")


if __name__ == "__main__":
    main()
