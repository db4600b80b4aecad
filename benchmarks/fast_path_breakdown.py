"""Where the CPU fast path's time goes: in-situ ablations of the optimised forward, and its int8 linear kernel.

    OMP_NUM_THREADS=2 python benchmarks/fast_path_breakdown.py [--variants nano base] [--repeats 10] [--threads 2]

Ablations: `hf_rfdetr.optimize(model)` (its defaults: int8 backbone and decoder feed-forward linears on CPUs with VNNI,
with the backbone's attention in bf16 on CPUs with native bf16) on a variant with random weights, timed interleaved
(`interleave.interleaved_ms`) against the same forward with one part changed: the backbone's attention through
`scaled_dot_product_attention` instead (`bf16_attention=False`), the projector's convolutions on NCHW inputs
(`channels_last=False`), and with one part removed: all backbone attention (each attention returns its values), the
global blocks' attention only, the windowed blocks' only, and GELU.
The outputs of an ablated forward are meaningless; only its time is. Printed: the median ms and the median over rounds
of the ratio to the full forward (1 - ratio is that part's share).

Kernels: on the Nano backbone's linear shapes (580 tokens, 384 -> 1152 / 384 / 1536, 1536 -> 384), ms and GOP/s of
the fast path's `quantized::linear_dynamic`, of `torch._int_mm` alone (the int8 GEMM without quantising or
dequantising), of `torch._int_mm` with eager per-token quantise / dequantise ops, and of `F.linear` in bfloat16 and
float32.

Measured on a 2-core AMD EPYC (AVX-512 VNNI and BF16, 2 threads; issue 13's sixth closing note):
- Base: int8 forward 291 ms; attention 35% of it (the 3 global blocks 27%, the 8 windowed blocks 9%), GELU 5%.
- Nano: int8 forward 104 ms; attention 21% (the 4 global blocks 10%, the 8 windowed blocks 9%), GELU 3%.
With bf16 attention (ninth closing note; `--repeats 12`): Base 348 ms, SDPA attention 1.104x that; attention 27%
(global 20%, windowed 8%), GELU 5%. Nano 118 ms, SDPA 1.036x; attention 20% (global 11%, windowed 14%), GELU 5%.
With the projector channels-last (tenth closing note; `--repeats 30`): Base's NCHW projector 1.027x the full forward.
- Kernels: `_int_mm` alone 860-880 GOP/s (this CPU's int8 peak: AVX-512 in two 256-bit halves, 64 int8
  multiply-adds per cycle and core), `linear_dynamic` 640-735, `_int_mm` with eager ops 550-685 (no faster than
  `linear_dynamic`), bf16 400-430 GFLOP/s, float32 about 205.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from interleave import interleaved_ms  # noqa: E402

import hf_rfdetr  # noqa: E402
from hf_rfdetr import RFDetrConfig, RFDetrForObjectDetection, optimization  # noqa: E402
from hf_rfdetr.models.rfdetr import backbone_rfdetr  # noqa: E402
from hf_rfdetr.optimization import keep_freed_memory  # noqa: E402


def ablations(variant: str, repeats: int) -> None:
    model = hf_rfdetr.optimize(RFDetrForObjectDetection(RFDetrConfig.from_variant(variant)).eval())
    size = model.config.resolution
    pixel_values = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    attention = backbone_rfdetr.multi_head_attention
    bf16_attention = optimization.bf16_attention
    mlps = [module for module in model.modules() if isinstance(module, backbone_rfdetr.RFDetrMLP)]

    def without(windowed: bool, global_: bool) -> Callable:
        """`multi_head_attention` skipping the windowed (batch > images) and / or global (batch = images) calls."""

        def run(query, key, value, eager, dropout=0.0):
            is_windowed = query.shape[0] > pixel_values.shape[0]
            if (is_windowed and windowed) or (not is_windowed and global_):
                return value, None
            if query.dtype == torch.bfloat16:  # the fast path's bf16 attention (`optimization.bf16_attention`)
                return bf16_attention(query, key, value), None
            return attention(query, key, value, eager, dropout)

        return run

    def forward(attention_fn: Callable | None = None, gelu: bool = True) -> None:
        attention_fn = attention_fn or without(False, False)  # the full attention, bf16 where the fast path has it
        backbone_rfdetr.multi_head_attention = attention_fn
        optimization.bf16_attention = lambda query, key, value: attention_fn(query, key, value, False)[0]
        activations = [mlp.activation for mlp in mlps]
        if not gelu:
            for mlp in mlps:
                mlp.activation = torch.nn.Identity()
        try:
            model(pixel_values)
        finally:
            backbone_rfdetr.multi_head_attention = attention
            optimization.bf16_attention = bf16_attention
            for mlp, activation in zip(mlps, activations):
                mlp.activation = activation

    fast_attentions = {module: vars(module)["forward"] for module in model.modules() if "forward" in vars(module)}
    fast_attentions = {m: f for m, f in fast_attentions.items() if isinstance(m, backbone_rfdetr.RFDetrSelfAttention)}

    def with_sdpa() -> None:
        """The forward with the backbone's attention through `scaled_dot_product_attention` (bf16_attention=False)."""
        for module in fast_attentions:
            del module.forward
        try:
            model(pixel_values)
        finally:
            for module, fast in fast_attentions.items():
                module.forward = fast

    def with_nchw_projector() -> None:
        """The forward with the projector's convolutions on contiguous NCHW inputs (channels_last=False)."""
        model.model.projector.set_memory_format(torch.contiguous_format)
        try:
            model(pixel_values)
        finally:
            model.model.projector.set_memory_format(torch.channels_last)

    runs = {
        "full": forward,
        "SDPA attention": with_sdpa,
        "NCHW projector": with_nchw_projector,
        "no attention": lambda: forward(without(True, True)),
        "no global attention": lambda: forward(without(False, True)),
        "no windowed attention": lambda: forward(without(True, False)),
        "no GELU": lambda: forward(gelu=False),
    }
    with torch.inference_mode():
        timings = interleaved_ms(runs, repeats)
    print(f"\n{variant}, optimised forward ({model._hf_rfdetr_optimization}):")
    for name, values in timings.items():
        ratio = statistics.median(a / b for a, b in zip(values, timings["full"]))
        print(f"  {name:24s} {statistics.median(values):8.1f} ms   ratio {ratio:.3f}")


def _median_ms(run: Callable, repeats: int = 40) -> float:
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def kernels() -> None:
    print("\nint8 / bf16 / fp32 linear kernels on Nano's backbone shapes: ms (GOP/s)")
    for tokens, inputs, outputs in [(580, 384, 1152), (580, 384, 384), (580, 384, 1536), (580, 1536, 384)]:
        print(f"  {tokens}x{inputs}->{outputs}: {_kernel_row(tokens, inputs, outputs)}")


def _kernel_row(tokens: int, inputs: int, outputs: int) -> str:
    hidden = torch.randn(tokens, inputs)
    weight, bias = torch.randn(outputs, inputs) * 0.05, torch.randn(outputs)
    scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12)
    zero_points = torch.zeros(outputs, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.quantize_per_channel(weight, scales.double(), zero_points, 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(quantized, bias)
    weight_int8 = torch.round(weight / scales[:, None]).to(torch.int8).t().contiguous()
    activations_int8 = torch.randint(-127, 128, (tokens, inputs), dtype=torch.int8)
    bf16 = hidden.bfloat16(), weight.bfloat16(), bias.bfloat16()

    def int_mm_with_ops() -> torch.Tensor:
        row_scales = hidden.abs().amax(dim=1, keepdim=True).div_(127)
        accumulated = torch._int_mm((hidden / row_scales).round_().to(torch.int8), weight_int8)
        return accumulated.float().mul_(row_scales * scales).add_(bias)

    runs = {
        "linear_dynamic": lambda: torch.ops.quantized.linear_dynamic(hidden, packed, False),
        "_int_mm alone": lambda: torch._int_mm(activations_int8, weight_int8),
        "_int_mm + eager ops": int_mm_with_ops,
        "bf16 F.linear": lambda: F.linear(*bf16),
        "fp32 F.linear": lambda: F.linear(hidden, weight, bias),
    }
    operations = 2 * tokens * inputs * outputs
    cells = []
    for name, run in runs.items():
        milliseconds = _median_ms(run)
        cells.append(f"{name} {milliseconds:.3f} ({operations / milliseconds / 1e6:.0f})")
    return ", ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["nano", "base"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    for variant in args.variants:
        ablations(variant, args.repeats)
    kernels()


if __name__ == "__main__":
    main()
