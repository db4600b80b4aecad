"""Export RF-DETR to ONNX and detect objects with onnxruntime, through the same image processor and pipeline.

    python examples/onnx_export.py --model CHECKPOINT [--output rf-detr-onnx] [--image PATH] [--quantize] [--fp16]

`--model` is a Hub repository id or a local folder. The export goes through Optimum when `optimum-onnx` can be
imported (`pip install "hf-rfdetr[onnx]"`, transformers 4.57) and through torch.onnx otherwise (`hf-rfdetr[ort]`);
it prints which. `--validate` (on by default) compares onnxruntime with PyTorch. The script then runs the exported
graph on the image with `RFDetrOnnxModel` and the `object-detection` pipeline and prints the detections of both
PyTorch and onnxruntime, which agree.
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Hub repository id or local folder")
    parser.add_argument("--output", type=Path, default=Path("rf-detr-onnx"), help="folder to write")
    parser.add_argument("--image", type=Path, default=DEMO_IMAGE, help="image to detect objects in")
    parser.add_argument("--threshold", type=float, default=0.5, help="keep detections scoring above this")
    parser.add_argument("--quantize", action="store_true", help="also write and run the int8 model_quantized.onnx")
    parser.add_argument("--fp16", action="store_true", help="export the float16 model (for GPUs)")
    parser.add_argument("--no-validate", action="store_true", help="skip the onnxruntime / PyTorch comparison")
    args = parser.parse_args(argv)

    folder = export_onnx(args.model, args.output, quantize=args.quantize, fp16=args.fp16, validate=not args.no_validate)
    report = json.loads((folder / "export_report.json").read_text())
    print(f"exported with {report['backend']} ({report['backend_reason']}): {', '.join(report['files'])}")

    image = Image.open(args.image).convert("RGB")
    processor = RFDetrImageProcessor.from_pretrained(folder)
    with_torch = pipeline("object-detection", model=args.model, image_processor=processor)
    for file_name in report["files"]:
        onnx_model = RFDetrOnnxModel.from_pretrained(folder, file_name=file_name)
        detections = pipeline("object-detection", model=onnx_model, image_processor=processor)(
            image, threshold=args.threshold
        )
        print(f"onnxruntime {file_name}: {len(detections)} detection(s)")
        for detection in detections:
            print(f"  {detection['label']:>16}  {detection['score']:.3f}  {detection['box']}")
    detections = with_torch(image, threshold=args.threshold)
    print(f"PyTorch: {len(detections)} detection(s)")
    for detection in detections:
        print(f"  {detection['label']:>16}  {detection['score']:.3f}  {detection['box']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
