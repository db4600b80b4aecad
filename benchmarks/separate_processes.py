"""CPU speed as users get it: each model in a process of its own, against both references on the same weights.

    python benchmarks/separate_processes.py [--variants nano base] [--repeats 10] [--threads 2]

`cpu_fast_path.py` races every model in one process, interleaved call by call. Its allocator then serves all of
them: glibc's heap stays large, so no model pays the page faults that a lone model pays at each forward, and a setting
one model makes (`hf_rfdetr.optimize` keeps freed memory, `hf_rfdetr.optimization.keep_freed_memory`) speeds up the
others too. Here each runner gets a process of its own, the way an application runs one model:

  rfdetr predict       the original 1.11.2, `RFDETRNano(pretrain_weights=...).predict(image)` (unoptimised default)
  ours predict         `hf_rfdetr.RFDETRNano(checkpoint).predict(image)`, float32
  fast predict         the same after `optimize_for_inference()` with its defaults
  rfdetr forward       the original's LWDETR module on random pixels at the model's resolution
  transformers forward transformers' own `RfDetrForObjectDetection` (transformers 5.x; skipped when absent)
  fp32 forward         ours, float32 eager
  optimized forward    ours after `hf_rfdetr.optimize(model)` with its defaults
  optimized, glibc defaults
                       the same with `tune_allocator=False` (glibc's allocator left as it is: the cost of its page
                       faults)

`predict` runs on the demo image resized to 640x480, threshold 0.5. Every runner loads the same random (perturbed)
weights of `tests.conftest.reference_model(variant)`. All runner processes of a variant stay alive side by side, idle
between calls, and are called round by round, one call each in a rotating order, after warm-up rounds (interleaved as
in `cpu_fast_path.py`, so that load from elsewhere on the machine hits all alike: on a shared VM a process can run 30%
slower for seconds at a time); each call is timed around its round trip to the process (the pipe adds well under a
millisecond). The table gives the median milliseconds and the median over rounds of the ratio to the round's
reference (rfdetr's predict for the predicts, the faster of rfdetr's and transformers' forwards for the forwards), and
the optimized forward over the machine's bf16 matmul floor: against the best of the bf16 2048^3 matmuls timed at the
start, and per round, where a worker times one such matmul each round (as `cpu_fast_path.py` does in one process). That
worker, idle between rounds, timed about 20% slower than the same matmul in a busy process, so the per-round ratio
reads low; the first is the key ratio (`speed_report.py`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for the tests' reference builders

from cpu_fast_path import (  # noqa: E402
    FACADES,
    floor_matmul,
    floor_ms,
    forward_gflop,
    matmul_gflops,
    transformers_reference,
)
from interleave import interleaved_processes_ms  # noqa: E402

PREDICTS = ["rfdetr predict", "ours predict", "fast predict"]
FORWARDS = ["rfdetr forward", "transformers forward", "fp32 forward", "optimized forward", "optimized, glibc defaults"]
FLOOR = "bf16 matmul"  # the floor's matmul, raced in its own process (`cpu_fast_path.floor_ms`)


def load_runner(name: str, variant: str, checkpoint: Path):
    """The callable that `name` times, built from the original's checkpoint file."""
    from PIL import Image

    import hf_rfdetr
    from hf_rfdetr.demo_assets import DEMO_IMAGE

    if name == FLOOR:
        return floor_matmul(torch.bfloat16)
    facade = FACADES[variant]
    if name.endswith("predict"):
        image = Image.open(DEMO_IMAGE).convert("RGB").resize((640, 480))
        if name == "rfdetr predict":
            import rfdetr

            model = getattr(rfdetr, facade)(pretrain_weights=str(checkpoint), device="cpu")
        else:
            model = getattr(hf_rfdetr, facade)(checkpoint, device="cpu")
            if name == "fast predict":
                model.optimize_for_inference()
        return lambda: model.predict(image, threshold=0.5)
    if name == "rfdetr forward":
        from tests.conftest import reference_model

        module = reference_model(variant)
    elif name == "transformers forward":
        module = transformers_reference(variant)
        if module is None:
            return None
    else:
        module = getattr(hf_rfdetr, facade)(checkpoint, device="cpu").model.eval()
        if name.startswith("optimized"):
            hf_rfdetr.optimize(module, tune_allocator=name == "optimized forward")
    size = hf_rfdetr.RFDetrConfig.from_variant(variant).resolution
    pixel_values = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    return lambda: module(pixel_values)


def worker(name: str, variant: str, checkpoint: Path) -> None:
    """Serve one runner: print "ready" (or "absent" where it cannot run here), then for each line on stdin make one
    call and print "done", until stdin closes."""
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    run = load_runner(name, variant, checkpoint)
    print("absent" if run is None else "ready", flush=True)
    with torch.inference_mode():
        for _ in sys.stdin:
            run()
            print("done", flush=True)


def race(variant: str, checkpoint: Path, repeats: int, warmup: int = 3) -> dict[str, list[float]]:
    """Per runner, the milliseconds of each timed call, one call per round (runners absent here are left out), timed
    from here: the pipe's round trip (well under a millisecond) is included."""
    commands = {
        name: [sys.executable, __file__, "--worker", name, "--variants", variant, "--checkpoint", str(checkpoint)]
        for name in [*PREDICTS, *FORWARDS, FLOOR]
    }
    return interleaved_processes_ms(commands, repeats, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["nano", "base"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path, help="also write the key ratios to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the workers
        torch.set_num_threads(args.threads)
    if args.worker:
        worker(args.worker, args.variants[0], args.checkpoint)
        return
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from tests.conftest import converted_model, reference_model

    bf16_gflops = matmul_gflops(torch.bfloat16)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; bf16 matmul {bf16_gflops:.0f} GFLOP/s")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for variant in args.variants:
            checkpoint = Path(scratch) / f"{variant}.pth"
            torch.save({"model": reference_model(variant).state_dict()}, checkpoint)
            ours = converted_model(variant)
            size = ours.config.resolution
            gflop = forward_gflop(ours, torch.randn(1, 3, size, size))
            del ours
            timings = race(variant, checkpoint, args.repeats)
            results[variant] = report(variant, timings, floor_ms(gflop, timings.pop(FLOOR)), gflop / bf16_gflops * 1e3)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(variant: str, timings: dict[str, list[float]], floor: list[float], best_floor: float) -> dict[str, float]:
    """Print the table; return the key ratios (the names speed_report.py reads). `floor`: each round's bf16 floor;
    `best_floor`: the floor at the best of the matmuls timed at the start."""
    rounds = len(timings["rfdetr predict"])
    references = [name for name in ("rfdetr forward", "transformers forward") if name in timings]
    faster = [min(timings[name][i] for name in references) for i in range(rounds)]
    print(
        f"\n{variant}: each runner in a process of its own, {rounds} rounds; bf16 floor {statistics.median(floor):.0f} ms"
        " (median of the rounds' matmuls)"
    )
    print(f"{'runner':<26}{'median ms':>10}{'/ reference':>13}")
    ratios: dict[str, float] = {}
    for name, values in timings.items():
        reference = timings["rfdetr predict"] if name in PREDICTS else faster
        ratios[name] = statistics.median(value / base for value, base in zip(values, reference))
        print(f"{name:<26}{statistics.median(values):>10.1f}{ratios[name]:>13.2f}")
    # The matmul worker, idle between rounds like the others, times about 20% slower than the same matmul in a busy
    # process, which flatters the per-round ratio; the key ratio is the stricter one, against the start's best matmul.
    per_round = statistics.median(value / base for value, base in zip(timings["optimized forward"], floor))
    optimized_floor = statistics.median(timings["optimized forward"]) / best_floor
    print(
        f"optimized forward / bf16 floor: {optimized_floor:.2f} against the start's best matmul ({per_round:.2f} per "
        "round)"
    )
    return {
        "fast predict / rfdetr predict": ratios["fast predict"],
        "ours predict / rfdetr predict": ratios["ours predict"],
        "fp32 forward / faster reference": ratios["fp32 forward"],
        "optimized forward / faster reference": ratios["optimized forward"],
        "optimized forward / bf16 floor": optimized_floor,
    }


if __name__ == "__main__":
    main()
