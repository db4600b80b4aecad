"""Every speed comparison of issue 13 in one run, against both references on the same weights, and the goals table.

    OMP_NUM_THREADS=2 python benchmarks/speed_report.py [--variants nano base] [--repeats 10] [--quick]

Runs, one after the other, each in its own process (same thread count, so that one's memory and threads do not
bend the next one's numbers), printing their tables as they come:

1. `cpu_fast_path.py`: the forward (rfdetr, transformers' rf_detr, ours float32, `hf_rfdetr.optimize` and other
   precisions) against the faster reference and the machine's matmul floors; `predict` end to end against rfdetr's;
   the drift of each fast setting against float32 on the demo checkpoint.
2. `separate_processes.py`: the same predicts and forwards with each model alone in a fresh process (as an
   application runs one model): no model evicts another's weights from the caches, and each pays its own allocator's
   page faults (`optimize` keeps freed memory in its process; in one process that speeds up every model alike).
3. `onnx_speed.py`: onnxruntime on the CPU, our export (float32, int8) against rfdetr's own ONNX export.
4. `training_throughput.py`: training steps interleaved with rfdetr's, each side in a process of its own (float32,
   with and without the allocator setting `RFDetrTrainer` makes on the CPU, and bf16 mixed precision where the CPU has
   native bf16), and the resident memory per epoch of a fine_tune run.
5. `gpu_speed.py`, where CUDA is available: float16 / bfloat16, batch 1 and 32, eager, torch.compile, CUDA graphs,
   onnxruntime CUDA / TensorRT, and the video loop's CPU use.

Then the goals of issue 13 with the measured values (each benchmark's docstring says how it measures), the CPU ones
both ways: in one process, interleaved call by call, and in separate processes. Measure on a
quiet machine: the races are interleaved and report median ratios, but a busy machine still widens the spread.
`--quick` uses fewer repeats and skips the drift table and the memory run (a check that everything runs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (benchmark, key in its JSON, goal text, test on the value).
GOALS = [
    ("cpu", "fast predict / rfdetr predict", "optimized predict <= 0.5x rfdetr's (one process)", 0.5, "<="),
    ("solo", "fast predict / rfdetr predict", "optimized predict <= 0.5x rfdetr's (separate processes)", 0.5, "<="),
    ("cpu", "optimized forward / bf16 floor", "optimized forward <= 1.5x bf16 floor (one process)", 1.5, "<="),
    ("solo", "optimized forward / bf16 floor", "optimized forward <= 1.5x bf16 floor (separate processes)", 1.5, "<="),
    ("cpu", "fp32 forward / faster reference", "float32 eager <= 0.85x faster ref (one process)", 0.85, "<="),
    ("solo", "fp32 forward / faster reference", "float32 eager <= 0.85x faster ref (separate processes)", 0.85, "<="),
    ("cpu", "fast predict / fast forward", "predict <= forward + 10%", 1.1, "<="),
    ("cpu", "process RSS after optimize / before", "resident memory after optimize <= 1.1x before", 1.1, "<="),
    ("training", "training images/s ours / rfdetr", "training images/s >= 1.2x rfdetr (float32)", 1.2, ">="),
    (
        "training",
        "training images/s ours bf16 / rfdetr",
        "... with fine_tune(amp=True), bf16 mixed precision",
        1.2,
        ">=",
    ),
    ("onnx", "ORT fp32 ours / rfdetr export", "ORT float32 <= 0.8x rfdetr's own ONNX", 0.8, "<="),
]


def run(script: str, arguments: list[str], json_path: Path) -> dict:
    """Run `benchmarks/<script>` with `arguments` and `--json json_path`; its output streams through."""
    command = [sys.executable, str(HERE / script), *arguments, "--json", str(json_path)]
    print(f"\n{'=' * 100}\n$ {' '.join(command[1:])}\n{'=' * 100}", flush=True)
    subprocess.run(command, check=True)
    return json.loads(json_path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["nano", "base"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no drift table, no memory run")
    args = parser.parse_args()
    repeats = str(3 if args.quick else args.repeats)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        cpu = ["--variants", *args.variants, "--repeats", repeats] + (["--no-drift"] if args.quick else [])
        results["cpu"] = run("cpu_fast_path.py", cpu, folder / "cpu.json")
        results["solo"] = run(
            "separate_processes.py", ["--variants", *args.variants, "--repeats", repeats], folder / "solo.json"
        )
        results["onnx"] = run(
            "onnx_speed.py", ["--variants", *args.variants, "--repeats", repeats], folder / "onnx.json"
        )
        training = ["--variants", *args.variants, "--steps", "2" if args.quick else "5"]
        training += ["--rss-epochs", "0" if args.quick else "6"]
        results["training"] = run("training_throughput.py", training, folder / "training.json")
        import torch

        if torch.cuda.is_available():
            gpu = ["--repeats", repeats, "--variants", *args.variants]
            subprocess.run([sys.executable, str(HERE / "gpu_speed.py"), *gpu], check=True)
        else:
            print("\nno CUDA device: gpu_speed.py skipped (run it where one is at hand)")
    print(f"\n{'=' * 100}\nissue 13 goals, measured in this run ({os.cpu_count()} CPUs visible)\n{'=' * 100}")
    print(f"{'goal':<58}" + "".join(f"{variant:>10}" for variant in args.variants) + "   met")
    for source, key, text, bound, sense in GOALS:
        values = [results[source].get(variant, {}).get(key) for variant in args.variants]
        cells = "".join(f"{'-':>10}" if value is None else f"{value:>10.2f}" for value in values)
        measured = [value for value in values if value is not None]
        met = all(value <= bound if sense == "<=" else value >= bound for value in measured) if measured else None
        print(f"{text:<58}{cells}   {'-' if met is None else 'yes' if met else 'NO'}")
    memory = results["training"].get("fine_tune")
    if memory:
        (key, growth), *_ = memory.items()
        print(f"{'fine_tune resident memory per epoch: ' + key:<58}{growth:>10.0f}   {'yes' if growth < 50 else 'NO'}")


if __name__ == "__main__":
    main()
