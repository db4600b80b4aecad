"""ONNX parity of the RF-DETR Seg variants: onnxruntime (CPU, float32) against PyTorch, absolute and relative.

    OMP_NUM_THREADS=1 python benchmarks/segmentation_onnx_parity.py [--variants seg-nano ...] [--backend auto|torch|optimum]
        [--scale 0.02]

Builds each variant with perturbed random weights (no checkpoint offline: `--scale` is the standard deviation of the
noise added to every parameter, so that zero-initialised heads count), exports it with `hf_rfdetr.export_onnx` at its
own resolution, and runs batch 1 and batch 3 of random images through onnxruntime and PyTorch. Printed per variant,
batch and output (`logits`, `pred_boxes`, `pred_masks`): max |ORT - PyTorch|, the largest |PyTorch| value, their ratio
(relative), the two-stage `proposal_score_gap` (a gap below 1e-5 means near-tied proposals, which two correct
runtimes may rank differently; see `hf_rfdetr.onnx.compare_outputs`), and the float32 noise floor: max |PyTorch
float32 - PyTorch float64| and max |ORT - PyTorch float64| (the same model in double precision).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch

from hf_rfdetr import RFDetrConfig, RFDetrForInstanceSegmentation, RFDetrOnnxModel, export_onnx
from hf_rfdetr.onnx import compare_outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["seg-nano"])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--scale", type=float, default=0.02)
    args = parser.parse_args()
    print(
        f"{'variant':12s} {'batch':>5s} {'output':10s} {'max |d|':>9s} {'max |x|':>8s} {'relative':>9s} {'gap':>8s} "
        f"{'pt32-pt64':>9s} {'ort-pt64':>9s}"
    )
    for variant in args.variants:
        torch.manual_seed(0)
        model = RFDetrForInstanceSegmentation(RFDetrConfig.from_variant(variant)).eval()
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn(parameter.shape, generator=generator) * args.scale)
        size = model.config.resolution
        double = copy.deepcopy(model).double()
        with tempfile.TemporaryDirectory() as scratch:
            folder = export_onnx(model, Path(scratch), backend=args.backend)
            onnx_model = RFDetrOnnxModel.from_pretrained(folder)
            for batch in (1, 3):
                pixel_values = torch.randn(batch, 3, size, size, generator=generator)
                with torch.no_grad():
                    expected = model(pixel_values=pixel_values)
                    exact = double(pixel_values=pixel_values.double())
                actual = onnx_model(pixel_values=pixel_values)
                comparison = compare_outputs(expected, actual)
                for name in ("logits", "pred_boxes", "pred_masks"):
                    largest = expected[name].abs().max().item()
                    floor = (expected[name].double() - exact[name]).abs().max().item()
                    ours = (actual[name].double() - exact[name]).abs().max().item()
                    print(
                        f"{variant:12s} {batch:5d} {name:10s} {comparison[name]:9.2e} {largest:8.2f} "
                        f"{comparison[name] / largest:9.2e} {comparison['proposal_score_gap']:8.1e} "
                        f"{floor:9.2e} {ours:9.2e}"
                    )


if __name__ == "__main__":
    sys.exit(main())
