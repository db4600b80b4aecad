"""Our from-scratch initialisation next to the original rfdetr's, per parameter group, where they differ.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/init_vs_original.py [--variant nano]   # needs rfdetr (env 1)

Builds a fresh original LWDETR (`rfdetr.models.build_model_from_config`, no weights loaded) and a fresh
`RFDetrForObjectDetection` of the same variant, converts the original's state dict to our names
(`hf_rfdetr.conversion.convert_original_state_dict`), and prints, for every parameter group (layer indices folded)
whose standard deviation differs by more than 15% or whose mean differs, both statistics. A measurement script, not
a test: it shows where a model trained from scratch here starts differently from one trained with the original. Since
our initialisation follows the original's (tests/test_initialization.py checks every parameter), it lists no group.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import warnings
from collections import defaultdict

import torch


def statistics(tensor: torch.Tensor) -> tuple[float, float]:
    tensor = tensor.float()
    return (tensor.std().item() if tensor.numel() > 1 else 0.0), tensor.mean().item()


def differs(ours: tuple[float, float], original: tuple[float, float]) -> bool:
    (std, mean), (std_original, mean_original) = ours, original
    if max(std, std_original) < 1e-8:
        return abs(mean - mean_original) > 1e-6
    return abs(std - std_original) > 0.15 * std_original or abs(mean - mean_original) > 0.05 + 0.1 * abs(mean_original)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="nano", help="a variant name of RFDetrConfig.from_variant")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("rf-detr").setLevel(logging.ERROR)
    from rfdetr import config as original_configs
    from rfdetr.models import build_model_from_config

    from hf_rfdetr import RFDetrConfig, RFDetrForObjectDetection
    from hf_rfdetr.conversion import convert_original_state_dict

    sys.path.insert(0, "tests")
    from conftest import REFERENCE_CONFIG_CLASSES

    torch.manual_seed(0)
    original_config = getattr(original_configs, REFERENCE_CONFIG_CLASSES[args.variant])(device="cpu")
    original = convert_original_state_dict(build_model_from_config(original_config).state_dict())
    torch.manual_seed(0)
    ours = RFDetrForObjectDetection(RFDetrConfig.from_variant(args.variant)).state_dict()
    groups: dict[str, list[tuple[tuple[float, float], tuple[float, float]]]] = defaultdict(list)
    for name, tensor in ours.items():
        if name in original and tensor.is_floating_point() and tensor.ndim > 0:
            groups[re.sub(r"\.\d+\.", ".N.", name)].append((statistics(tensor), statistics(original[name])))
    print(f"{'parameter group':64s} {'ours std / mean':>20s} {'original std / mean':>22s}")
    for group, pairs in groups.items():
        ours_mean = tuple(sum(pair[0][i] for pair in pairs) / len(pairs) for i in range(2))
        original_mean = tuple(sum(pair[1][i] for pair in pairs) / len(pairs) for i in range(2))
        if differs(ours_mean, original_mean):
            print(
                f"{group:64s} {ours_mean[0]:10.4f} / {ours_mean[1]:+.3f} "
                f"{original_mean[0]:12.4f} / {original_mean[1]:+.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
