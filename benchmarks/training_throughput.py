"""Training-step throughput (images/s) of hf_rfdetr vs the original rfdetr on the same batch and weights, each in a
process of its own, and the resident memory of a multi-epoch fine-tuning run, epoch by epoch.

    python benchmarks/training_throughput.py [--variants tiny nano base] [--batch 2] [--steps 5] [--rss-epochs 6]

One step = forward in training mode (all Group DETR groups), the loss (matching + IA-BCE + L1 + GIoU on every layer
and the two-stage proposals), backward and an AdamW step over the original's parameter groups. The original's own
step is its `LWDETR` + `SetCriterion` + `get_param_dict` groups (its Lightning loop adds data loading and logging
around the same calls). Each side steps the optimizer its trainer builds: ours what `RFDetrTrainer.create_optimizer`
builds from default `TrainingArguments` (transformers' default `optim="adamw_torch_fused"`: `torch.optim.AdamW(...,
fused=True)`, one fused kernel per parameter group, on the CPU too), the original's what its Lightning module builds
on the CPU (`torch.optim.AdamW(..., fused=False)`: it fuses only for bf16 on CUDA; PyTorch then updates the CPU
parameters one tensor at a time). The two compute the same update (within 3e-7 after 20 steps on the same gradients).

Runners, each in a process of its own, as a training run has its process to itself:
  rfdetr                the original's step, glibc's allocator as it is (the original does not touch it)
  ours                  our step in a process set up as `RFDetrTrainer` sets it when it trains on the CPU: freed
                        memory kept in the process (`hf_rfdetr.optimization.keep_freed_memory`)
  ours, glibc defaults  our step with glibc's allocator as it is: what the allocator setting is worth
  ours bf16             (CPUs with native bf16, `has_native_bf16`) `ours` under `torch.autocast("cpu",
                        torch.bfloat16)`, which is what `fine_tune(..., amp=True)` (the Trainer's bf16 mixed
                        precision) does; the original always trains in float32 on the CPU (its Lightning precision is
                        "32-true" there, bf16 being slow where it is emulated)
The processes of a variant stay alive side by side and step round by round, one step each in a rotating order, after
a warm-up round (interleaved, so that load from elsewhere on the machine hits all alike); each step is timed around
its round trip to the process. The table gives the median images/s of each and the median over rounds of the per-round
ratio ours / rfdetr (> 1: we train faster). In one shared process the runners would share glibc's heap, and the
allocator setting of one would speed up the others. The tiny config has no counterpart in the original; its row shows
our images/s alone.

Measured on a 2-core AMD EPYC (batch 2, 2 threads): with the allocator left as it is, a Nano step faulted about
125,000 pages in (its 64 MB decoder activations are mapped afresh at each step) and ours / rfdetr was 1.07 in
separate processes, against 1.17 with both in one process (which the benchmark measured before).

Then (`--rss-epochs N`, 0 to skip) `hf_rfdetr.fine_tune` trains the tiny config for N epochs on a synthetic COCO folder
(data loading, EMA, evaluation with COCO metrics and checkpoints included) and prints the process's resident memory
at the end of each epoch: it must stay flat after the first epoch (no growth per epoch).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interleave import interleaved_processes_ms  # noqa: E402

from hf_rfdetr import RFDetrForObjectDetection  # noqa: E402
from hf_rfdetr.optimization import has_native_bf16, keep_freed_memory  # noqa: E402
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


#: Key ratios per variant and the memory run, for `--json` (and benchmarks/speed_report.py).
RESULTS: dict[str, dict[str, float]] = {}


def _ours_step(model: RFDetrForObjectDetection, pixel_values, targets):
    with tempfile.TemporaryDirectory() as scratch:  # RFDetrTrainer.create_optimizer's optimizer, default arguments
        optimizer_class, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(
            TrainingArguments(output_dir=scratch, report_to=[]), model
        )
    optimizer_kwargs.pop("lr", None)
    optimizer = optimizer_class(parameter_groups(model, LearningRates()), **optimizer_kwargs)
    model.train()

    def step() -> None:
        loss = model(pixel_values, labels=targets).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def _cell(value: float | None, width: int) -> str:
    """`value` right-aligned with two decimals, or "-" where there is none (the tiny config has no reference)."""
    return f"{'-' if value is None else f'{value:.2f}':>{width}}"


def _mixed_precision(step: Callable[[], None]) -> Callable[[], None]:
    def mixed() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            step()

    return mixed


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


def _rss_per_epoch(epochs: int, folder: Path) -> list[float]:
    """Resident memory (MB) at the end of each epoch of a tiny fine-tuning run on a synthetic COCO folder."""
    import psutil
    from transformers import TrainerCallback

    from hf_rfdetr.synthetic import write_synthetic_coco
    from hf_rfdetr.training import fine_tune

    class EpochMemory(TrainerCallback):
        def __init__(self) -> None:
            self.rss: list[float] = []

        def on_epoch_end(self, args, state, control, **kwargs) -> None:
            self.rss.append(psutil.Process().memory_info().rss / 2**20)

    memory = EpochMemory()
    dataset = write_synthetic_coco(folder / "data", num_train=32, num_valid=8, image_size=(64, 64))
    model_dir = folder / "model"
    RFDetrForObjectDetection(tiny_config()).save_pretrained(model_dir)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # the Trainer's logs
        fine_tune(
            str(model_dir),
            dataset,
            epochs=epochs,
            batch_size=4,
            grad_accum_steps=1,
            output_dir=folder / "run",
            num_workers=0,
            tensorboard=False,
            callbacks=[memory],
            disable_tqdm=True,
        )
    return memory.rss


RUNNERS = ["rfdetr", "ours", "ours, glibc defaults", "ours bf16"]


def load_step(name: str, variant: str, batch: int) -> Callable[[], None] | None:
    """The training step that runner `name` times (None where it cannot run here), with the process set up as that
    runner's trainer sets it."""
    if name == "ours bf16" and not has_native_bf16() or name == "rfdetr" and variant == "tiny":
        return None
    if name in ("ours", "ours bf16"):
        keep_freed_memory()  # as RFDetrTrainer does when it trains on the CPU
    torch.manual_seed(0)
    model = RFDetrForObjectDetection(tiny_config()) if variant == "tiny" else converted_model(variant)
    size = model.config.resolution
    pixel_values = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    targets = _targets(batch, model.config.num_labels)
    if name == "rfdetr":
        del model
        return _original_step(variant, pixel_values, targets)
    step = _ours_step(model, pixel_values, targets)
    return _mixed_precision(step) if name == "ours bf16" else step


def worker(name: str, variant: str, batch: int) -> None:
    """Serve one runner: print "ready" (or "absent"), then for each line on stdin take one step and print "done"."""
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    step = load_step(name, variant, batch)
    print("absent" if step is None else "ready", flush=True)
    for _ in sys.stdin:
        step()
        print("done", flush=True)


def race(variant: str, batch: int, rounds: int) -> dict[str, list[float]]:
    """Per runner present here, the milliseconds of each timed step, one step per round."""
    commands = {
        name: [sys.executable, __file__, "--worker", name, "--variants", variant, "--batch", str(batch)]
        for name in RUNNERS
    }
    return interleaved_processes_ms(commands, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["tiny", "nano", "base"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="interleaved rounds (one step of each per round)")
    parser.add_argument("--rss-epochs", type=int, default=6, help="epochs of the memory run (0: skip it)")
    parser.add_argument("--json", type=Path, help="also write the key ratios to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.variants[0], args.batch)
        return
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    print(f"threads={torch.get_num_threads()} batch={args.batch} torch={torch.__version__}, {args.steps} rounds")
    print(f"{'variant':<10}{'runner':<22}{'images/s':>10}{'/ rfdetr':>10}")
    for variant in args.variants:
        timings = race(variant, args.batch, args.steps)
        for name, values in timings.items():
            ratio = None
            if "rfdetr" in timings and name != "rfdetr":
                ratio = statistics.median(theirs / mine for mine, theirs in zip(values, timings["rfdetr"]))
                RESULTS.setdefault(variant, {})[f"training images/s {name} / rfdetr"] = ratio
            images_per_second = 1000 * args.batch / statistics.median(values)
            print(f"{variant:<10}{name:<22}{_cell(images_per_second, 10)}{_cell(ratio, 10)}")
    if args.rss_epochs:
        with tempfile.TemporaryDirectory() as scratch:
            rss = _rss_per_epoch(args.rss_epochs, Path(scratch))
        print(
            "\nfine_tune, tiny config, resident memory at the end of each epoch (MB): "
            + ", ".join(f"{m:.0f}" for m in rss)
        )
        if len(rss) > 1:
            print(f"growth from epoch 2 to {len(rss)}: {rss[-1] - rss[1]:+.0f} MB")
            RESULTS["fine_tune"] = {f"RSS growth epoch 2 to {len(rss)}, MB": rss[-1] - rss[1]}
    if args.json:
        args.json.write_text(json.dumps(RESULTS, indent=2))


if __name__ == "__main__":
    main()
