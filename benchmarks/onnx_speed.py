"""ONNX Runtime CPU latency of hf_rfdetr's export vs PyTorch and vs the rfdetr package's own export; int8 drift.

    OMP_NUM_THREADS=2 python benchmarks/onnx_speed.py [--variants nano base] [--repeats 20] [--warmup 3]
        [--threads 2] [--top-k 10] [--keep DIR] [--spinning]

For each variant, at batch 1 and the variant's native resolution, on the CPU, with the same weights everywhere (the
original `rfdetr` model built offline with random, perturbed, seeded weights, as in tests/conftest.py, and loaded
into ours with `load_original_state_dict`), it times:

- PyTorch (ours): `RFDetrForObjectDetection` in eval mode under `torch.inference_mode`;
- ORT ours fp32: `hf_rfdetr.export_onnx(model, folder, quantize=True)` -> `model.onnx`;
- ORT rfdetr fp32: the rfdetr package's own `RFDETR.export(format="onnx")` on an `RFDETRNano` / `RFDETRBase` ...
  facade that loads the same weights from a local checkpoint (no download);
- ORT ours int8: the same export's `model_quantized.onnx` (onnxruntime dynamic int8 quantisation).

All four use `--threads` intra-op threads (`torch.set_num_threads`, ORT `SessionOptions.intra_op_num_threads`; one
inter-op thread); set OMP_NUM_THREADS to the same value. After `--warmup` rounds, the four are run round-robin
`--repeats` times, so that load from other processes hits them alike, and the median milliseconds are printed with the
ratios `ours ORT / PyTorch`, `ours ORT / rfdetr ORT` and `int8 / fp32` (< 1 means the numerator is faster). The ORT
timings are `InferenceSession.run` on a NumPy array, nothing around it, with ORT's default session settings otherwise
(all graph optimisations) except thread spinning, which is off (`session.intra_op.allow_spinning = 0`) for every
session here. With spinning on, a session's pool threads keep spinning after its run returns, while the next runner
of the round works on the same cores: on 2 cores that inflated everything timed after an ORT run (Nano, one
interleaved run: PyTorch 313 vs 238 ms, ORT int8 169 vs 101 ms, int8 / fp32 0.71 vs 0.51). A session used alone
gains a few percent from spinning (Nano fp32 173 vs 181 ms, int8 87 vs 95 ms, run back to back), so
`RFDetrOnnxModel` keeps ORT's default; `--spinning` turns it on here too.

The rfdetr export: rfdetr 1.11.2's `RFDETR.export(format="onnx")` prepares the graph (`prepare_export_graph`: DINOv2
position embeddings frozen to the export shape, one sanity forward pass) and writes it with `torch.onnx.export`
(TorchScript exporter, opset 17, static batch 1 unless `dynamic_batch=True`) as `<output_dir>/rfdetr-<variant>.onnx`,
input `input`, outputs `dets` (normalised cx, cy, w, h: our `pred_boxes`) and `labels` (class logits: our `logits`).
That path has no simplification step; its `onnx_simplify` helper (onnx_graphsurgeon, polygraphy, onnxsim, none of
which is installed here) is not called. Older rfdetr versions whose `export` takes `simplify` are called with
`simplify=False`. The export is called with its defaults (static batch 1); ours has a dynamic batch axis.

Agreement, printed under each table for each ORT graph against its own PyTorch model, ours PyTorch against rfdetr
PyTorch (that the race is between equal models), ours ORT against rfdetr ORT, and int8 against fp32:

- raw max |delta| of the logits, query by query. Misleading for DETR: the two-stage selection takes the top-300
  encoder proposals with `topk`, and two proposals whose scores are nearly tied can come out in either order under
  float noise; since query i adds the learned query embedding i to the i-th proposal, a flip changes those two
  queries' outputs by O(1) (and the others, through self-attention, by ~1e-3). On the demo image Nano's 219th and
  220th proposals score 7e-7 apart: ours ORT vs PyTorch shows such a flip (raw ~1) where rfdetr's graph happens not to.
  Hence also:
- max |delta| of the top-100 sorted sigmoid scores over all (query, class) pairs, blind to query order;
- the fraction of the reference's top-k post-processed detections (`RFDetrImageProcessor.post_process_object_detection`)
  that the candidate also returns among its top 100 with the same label and IoU >= 0.9 (and, looser, IoU >= 0.5).

With random weights the scores are low and nearly flat (the top 100 lie within a few hundredths), so their ranking
is decided by tiny differences and score-based agreement is a weak, pessimistic proxy: trained weights separate the
top detections by much larger margins.

The input is the package's demo image (`hf_rfdetr.demo_assets.DEMO_IMAGE`) through `RFDetrImageProcessor` at the
variant's resolution. Not a standard-normal tensor: on one (seed 0), Base's two-stage query selection in PyTorch and in
ORT diverges (raw max |dlogits| 1.3, for rfdetr's graph and ours alike), while on real pixels the graphs match PyTorch
to 1e-5.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.conftest's reference builders

from interleave import interleaved_ms  # noqa: E402

from hf_rfdetr import RFDetrForObjectDetection, RFDetrImageProcessor, RFDetrOnnxModel, export_onnx  # noqa: E402
from hf_rfdetr.demo_assets import DEMO_IMAGE  # noqa: E402
from tests.conftest import converted_model, reference_model  # noqa: E402

#: The rfdetr facade class per variant name of ours.
FACADE_CLASSES = {
    "nano": "RFDETRNano",
    "small": "RFDETRSmall",
    "medium": "RFDETRMedium",
    "base": "RFDETRBase",
    "large": "RFDETRLarge",
}
QUANTIZED_FILE = "model_quantized.onnx"
IOU_MATCH = 0.9
#: A looser match, printed beside it: how far the boxes moved when they did not match at 0.9.
IOU_LOOSE = 0.5
TOP_SCORES = 100

#: (logits (1, Q, C), boxes (1, Q, 4)) as float32 CPU tensors.
Outputs = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Graphs:
    """The ONNX files of one variant and what rfdetr's export wrote."""

    ours_folder: Path
    rfdetr_file: Path
    rfdetr_input: str
    rfdetr_outputs: list[str]
    ours_backend: str


# -- exports --------------------------------------------------------------------------------------------------------
def _export_ours(model: RFDetrForObjectDetection, folder: Path) -> str:
    """export_onnx with int8; returns the backend it used (torch.onnx or Optimum)."""
    export_onnx(model, folder, quantize=True)
    return json.loads((folder / "export_report.json").read_text())["backend"]


def _export_rfdetr(variant: str, reference: torch.nn.Module, folder: Path) -> Path:
    """rfdetr's own `RFDETR.export(format="onnx")` on a facade holding `reference`'s weights (local checkpoint)."""
    import rfdetr

    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "same_weights.pth"
    torch.save({"model": reference.state_dict()}, checkpoint)
    facade = getattr(rfdetr, FACADE_CLASSES[variant])(pretrain_weights=str(checkpoint), device="cpu")
    loaded = facade.model.model.state_dict()
    if not all(torch.equal(loaded[name], value) for name, value in reference.state_dict().items()):
        raise RuntimeError(f"rfdetr's {FACADE_CLASSES[variant]} did not load the reference weights unchanged")
    extra = {"simplify": False} if "simplify" in inspect.signature(facade.export).parameters else {}
    path = facade.export(output_dir=str(folder), format="onnx", opset_version=17, verbose=False, **extra)
    checkpoint.unlink()
    return Path(path)


def _export_both(variant: str, ours: RFDetrForObjectDetection, reference: torch.nn.Module, folder: Path) -> Graphs:
    import onnxruntime

    ours_backend = _export_ours(ours, folder / "ours")
    rfdetr_file = _export_rfdetr(variant, reference, folder / "rfdetr")
    session = onnxruntime.InferenceSession(str(rfdetr_file), providers=["CPUExecutionProvider"])
    return Graphs(
        ours_folder=folder / "ours",
        rfdetr_file=rfdetr_file,
        rfdetr_input=session.get_inputs()[0].name,
        rfdetr_outputs=[output.name for output in session.get_outputs()],
        ours_backend=ours_backend,
    )


# -- runners --------------------------------------------------------------------------------------------------------
def _session_options(threads: int, spinning: bool):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


def _rfdetr_session(graphs: Graphs, threads: int, spinning: bool):
    import onnxruntime

    return onnxruntime.InferenceSession(
        str(graphs.rfdetr_file), sess_options=_session_options(threads, spinning), providers=["CPUExecutionProvider"]
    )


def _rfdetr_outputs(session, graphs: Graphs, array: np.ndarray) -> Outputs:
    """rfdetr's `dets` -> boxes, `labels` -> logits (named after what they hold in its graph)."""
    named = dict(zip(graphs.rfdetr_outputs, session.run(None, {graphs.rfdetr_input: array})))
    return torch.from_numpy(named["labels"]).float(), torch.from_numpy(named["dets"]).float()


def _ours_outputs(model: RFDetrOnnxModel, array: np.ndarray) -> Outputs:
    outputs = model(pixel_values=array)
    return outputs.logits, outputs.pred_boxes


# -- agreement ------------------------------------------------------------------------------------------------------
def _top_score_delta(a: Outputs, b: Outputs) -> float:
    """Max |delta| of the top-100 sorted sigmoid scores over all (query, class) pairs: blind to query order."""
    top = [outputs[0].sigmoid().flatten().topk(TOP_SCORES).values for outputs in (a, b)]
    return (top[0] - top[1]).abs().max().item()


def _detection_agreement(
    processor: RFDetrImageProcessor, expected: Outputs, actual: Outputs, top_k: int, iou_match: float
) -> float:
    """Fraction of `expected`'s top-k detections that `actual` returns among its top 100, same label, IoU >= iou_match."""
    from torchvision.ops import box_iou

    def detections(outputs: Outputs, k: int) -> dict[str, torch.Tensor]:
        logits, boxes = outputs
        return processor.post_process_object_detection(
            {"logits": logits, "pred_boxes": boxes}, threshold=0.0, target_sizes=None, top_k=k
        )[0]

    reference, candidates = detections(expected, top_k), detections(actual, TOP_SCORES)
    iou = box_iou(reference["boxes"], candidates["boxes"])
    iou[reference["labels"][:, None] != candidates["labels"][None, :]] = 0.0
    taken = torch.zeros(len(candidates["labels"]), dtype=torch.bool)
    matched = 0
    for row in iou:  # greedy, in expected's score order
        row = row.masked_fill(taken, 0.0)
        best = int(row.argmax())
        if row[best] >= iou_match:
            taken[best] = True
            matched += 1
    return matched / max(len(reference["labels"]), 1)


# -- one variant ----------------------------------------------------------------------------------------------------
def _demo_pixel_values(processor: RFDetrImageProcessor) -> torch.Tensor:
    with Image.open(DEMO_IMAGE) as image:
        return processor(images=image.convert("RGB"), return_tensors="pt").pixel_values


def _benchmark(variant: str, folder: Path, args: argparse.Namespace) -> None:
    reference, ours = reference_model(variant), converted_model(variant)
    started = time.perf_counter()
    graphs = _export_both(variant, ours, reference, folder)
    export_s = time.perf_counter() - started

    processor = RFDetrImageProcessor.from_config(ours.config)
    pixel_values = _demo_pixel_values(processor)
    array = pixel_values.numpy()
    fp32 = RFDetrOnnxModel.from_pretrained(
        graphs.ours_folder, session_options=_session_options(args.threads, args.spinning)
    )
    int8 = RFDetrOnnxModel.from_pretrained(
        graphs.ours_folder, file_name=QUANTIZED_FILE, session_options=_session_options(args.threads, args.spinning)
    )
    rfdetr_session = _rfdetr_session(graphs, args.threads, args.spinning)

    def pytorch() -> object:
        with torch.inference_mode():
            return ours(pixel_values)

    runners = {
        "PyTorch (ours)": pytorch,
        "ORT ours fp32": lambda: fp32.session.run(None, {"pixel_values": array}),
        "ORT rfdetr-export fp32": lambda: rfdetr_session.run(None, {graphs.rfdetr_input: array}),
        "ORT ours int8": lambda: int8.session.run(None, {"pixel_values": array}),
    }
    timings = interleaved_ms(runners, args.repeats, args.warmup)
    ms = {name: statistics.median(values) for name, values in timings.items()}
    _print_latency(variant, tuple(pixel_values.shape[2:]), graphs, export_s, ms, args)

    with torch.inference_mode():
        ours_pytorch, reference_pytorch = ours(pixel_values), reference(pixel_values)
    outputs: dict[str, Outputs] = {
        "ours PyTorch": (ours_pytorch.logits, ours_pytorch.pred_boxes),
        "rfdetr PyTorch": (reference_pytorch["pred_logits"], reference_pytorch["pred_boxes"]),
        "ours ORT fp32": _ours_outputs(fp32, array),
        "rfdetr ORT fp32": _rfdetr_outputs(rfdetr_session, graphs, array),
        "ours ORT int8": _ours_outputs(int8, array),
    }
    _print_agreement(processor, outputs, args.top_k)


#: Key ratios per variant, for `--json` (and benchmarks/speed_report.py).
RESULTS: dict[str, dict[str, float]] = {}


def _print_latency(
    variant: str,
    size: tuple[int, ...],
    graphs: Graphs,
    export_s: float,
    ms: dict[str, float],
    args: argparse.Namespace,
) -> None:
    pytorch, ours, rfdetr, int8 = ms.values()
    print(f"\n== {variant}: {size[0]}x{size[1]}, batch 1, {args.threads} threads, median of {args.repeats} ==")
    print(
        f"   exports ({export_s:.0f} s): ours {graphs.ours_folder.name}/model.onnx via {graphs.ours_backend}, "
        f"+ {QUANTIZED_FILE}; rfdetr {graphs.rfdetr_file.name} "
        f"({graphs.rfdetr_input} -> {', '.join(graphs.rfdetr_outputs)})"
    )
    print(f"   {'runtime':<26}{'ms':>9}")
    for name, value in ms.items():
        print(f"   {name:<26}{value:>9.1f}")
    ratios = {"ours ORT / PyTorch": ours / pytorch, "ours ORT / rfdetr ORT": ours / rfdetr, "int8 / fp32": int8 / ours}
    print("   " + "   ".join(f"{name} {value:.2f}" for name, value in ratios.items()))
    RESULTS[variant] = {"ORT fp32 ours / rfdetr export": ours / rfdetr, "ORT int8 / ORT fp32 (ours)": int8 / ours}


#: (candidate, reference) pairs compared under each latency table.
PAIRS = (
    ("ours ORT fp32", "ours PyTorch"),
    ("rfdetr ORT fp32", "rfdetr PyTorch"),
    ("ours PyTorch", "rfdetr PyTorch"),
    ("ours ORT fp32", "rfdetr ORT fp32"),
    ("ours ORT int8", "ours ORT fp32"),
)


def _print_agreement(processor: RFDetrImageProcessor, outputs: dict[str, Outputs], top_k: int) -> None:
    matched = f"top-{top_k} matched, IoU>={IOU_MATCH} / {IOU_LOOSE}"
    print(
        f"   {'agreement (same input)':<37}{'raw max|dlogits|':>17}{f'top-{TOP_SCORES} scores max|d|':>24}   {matched}"
    )
    for actual, expected in PAIRS:
        pair = outputs[expected], outputs[actual]
        raw = (pair[0][0] - pair[1][0]).abs().max().item()
        strict, loose = (_detection_agreement(processor, *pair, top_k, iou) for iou in (IOU_MATCH, IOU_LOOSE))
        print(
            f"   {actual:>15} vs {expected:<16}{raw:>17.1e}{_top_score_delta(*pair):>24.1e}   "
            f"{strict:>4.0%} / {loose:.0%}"
        )
    top = outputs["ours ORT fp32"][0].sigmoid().flatten().topk(TOP_SCORES).values
    print(f"   (random weights: the fp32 top-{TOP_SCORES} scores span only {top[-1]:.3f} .. {top[0]:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["nano", "base"], choices=sorted(FACADE_CLASSES))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=10, help="detections compared per graph pair")
    parser.add_argument(
        "--spinning", action="store_true", help="ORT's thread spinning on (default off: it skews interleaved runs)"
    )
    parser.add_argument("--keep", type=Path, help="write the exports here and keep them (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the key ratios to this JSON file")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.set_num_threads(args.threads)
    _print_header(args)
    with tempfile.TemporaryDirectory(prefix="onnx_speed_") as scratch:
        root = args.keep or Path(scratch)
        for variant in args.variants:
            _benchmark(variant, root / variant, args)
    if args.json:
        args.json.write_text(json.dumps(RESULTS, indent=2))


def _print_header(args: argparse.Namespace) -> None:
    from importlib.metadata import version

    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"cpu, threads={args.threads} (torch {torch.get_num_threads()}, OMP_NUM_THREADS={omp}), batch 1, "
        f"warm-up {args.warmup}, repeats {args.repeats}, ORT spinning {'on' if args.spinning else 'off'}; torch {torch.__version__}, onnxruntime "
        f"{version('onnxruntime')}, rfdetr {version('rfdetr')}"
    )
    if os.environ.get("OMP_NUM_THREADS") not in (None, str(args.threads)):
        print(f"warning: OMP_NUM_THREADS={omp} differs from --threads {args.threads}")
    print("rfdetr export: RFDETR.export(format='onnx') = torch.onnx.export, no simplification (see the docstring)")


if __name__ == "__main__":
    main()
