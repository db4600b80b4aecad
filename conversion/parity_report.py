"""Print the parity table: per variant, parameters and max |delta| of logits / boxes between hf_rfdetr and the
original rfdetr on the same perturbed random weights (batch of 2, default resolution, float32, CPU).

    PYTHONPATH=src python conversion/parity_report.py [--variants nano base ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import REFERENCE_CONFIG_CLASSES, converted_model, reference_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(REFERENCE_CONFIG_CLASSES))
    args = parser.parse_args()
    print("| variant | parameters (ours = rfdetr) | max abs delta logits | max abs delta boxes |")
    print("|---|---|---|---|")
    for variant in args.variants:
        reference, ours = reference_model(variant), converted_model(variant)
        count = sum(p.numel() for p in ours.parameters())
        assert count == sum(p.numel() for p in reference.parameters())
        size = ours.config.resolution
        pixel_values = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected, actual = reference(pixel_values), ours(pixel_values)
        logits = (expected["pred_logits"] - actual.logits).abs().max().item()
        boxes = (expected["pred_boxes"] - actual.pred_boxes).abs().max().item()
        print(f"| {variant} | {count:,} | {logits:.1e} | {boxes:.1e} |", flush=True)
        reference_model.cache_clear()


if __name__ == "__main__":
    main()
