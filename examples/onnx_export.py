"""Export RF-DETR to ONNX and detect objects with onnxruntime, through the same image processor and pipeline.

    python examples/onnx_export.py --model CHECKPOINT [--output rf-detr-onnx] [--image PATH ...] [--quantize] [--fp16]

`--model` is a Hub repository id or a local folder. The export goes through Optimum when `optimum-onnx` can be
imported (`pip install "hf-rfdetr[onnx]"`, transformers 4.57) and through torch.onnx otherwise (`hf-rfdetr[ort]`);
it prints which. `--validate` (on by default) compares onnxruntime with PyTorch. The script then runs the exported
graph on each image with `RFDetrOnnxModel` and the `object-detection` pipeline and prints the detections of both
PyTorch and onnxruntime. The float32 graph agrees with PyTorch to the printed digits. The int8 graph
(`--quantize`, `model_quantized.onnx`) finds the same objects with scores a few hundredths away; the script prints
that comparison (`hf_rfdetr.onnx.quantization.match_detections`: same class, IoU >= 0.7, score within 0.1, for
the detections at least 0.05 above the threshold).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from transformers import pipeline

from hf_rfdetr import RFDetrImageProcessor, RFDetrOnnxModel, export_onnx
from hf_rfdetr.demo_assets import DEMO_IMAGE
from hf_rfdetr.onnx.quantization import match_detections

#: int8 detections must match PyTorch's from threshold + MARGIN up, and may match partners down to threshold - MARGIN.
MARGIN = 0.05


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Hub repository id or local folder")
    parser.add_argument("--output", type=Path, default=Path("rf-detr-onnx"), help="folder to write")
    parser.add_argument("--image", type=Path, nargs="+", default=[DEMO_IMAGE], help="image(s) to detect objects in")
    parser.add_argument("--threshold", type=float, default=0.5, help="keep detections scoring above this")
    parser.add_argument("--quantize", action="store_true", help="also write and run the int8 model_quantized.onnx")
    parser.add_argument("--fp16", action="store_true", help="export the float16 model (for GPUs)")
    parser.add_argument("--no-validate", action="store_true", help="skip the onnxruntime / PyTorch comparison")
    args = parser.parse_args(argv)

    folder = export_onnx(args.model, args.output, quantize=args.quantize, fp16=args.fp16, validate=not args.no_validate)
    report = json.loads((folder / "export_report.json").read_text())
    print(f"exported with {report['backend']} ({report['backend_reason']}): {', '.join(report['files'])}")

    processor = RFDetrImageProcessor.from_pretrained(folder)
    with_torch = pipeline("object-detection", model=args.model, image_processor=processor)
    with_onnx = {
        name: pipeline(
            "object-detection", model=RFDetrOnnxModel.from_pretrained(folder, file_name=name), image_processor=processor
        )
        for name in report["files"]
    }
    for path in args.image:
        image = Image.open(path).convert("RGB")
        print(f"image {path}")
        # Both sides down to threshold - margin, so that a detection just above the threshold on one side finds its
        # partner just below it on the other.
        expected = with_torch(image, threshold=max(args.threshold - MARGIN, 0.0))
        for file_name, detector in with_onnx.items():
            detections = detector(image, threshold=max(args.threshold - MARGIN, 0.0))
            _print_detections(f"onnxruntime {file_name}", detections, args.threshold)
            if file_name == "model_quantized.onnx":
                match = match_detections(expected, detections, threshold=args.threshold, margin=MARGIN)
                print(
                    f"int8 vs PyTorch: {len(match.pairs)} matched (scores from {args.threshold - MARGIN:.2f}), "
                    f"{len(match.missing)} missing, {len(match.extra)} extra, "
                    f"max score difference {match.max_score_drift:.3f}"
                )
                for problem in match.problems():
                    print(f"  {problem}")
        _print_detections("PyTorch", expected, args.threshold)
    return 0


def _print_detections(title: str, detections: list[dict], threshold: float) -> None:
    detections = [detection for detection in detections if detection["score"] > threshold]
    print(f"{title}: {len(detections)} detection(s)")
    for detection in detections:
        print(f"  {detection['label']:>16}  {detection['score']:.3f}  {detection['box']}")


if __name__ == "__main__":
    sys.exit(main())
