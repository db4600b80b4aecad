# Copyright 2026 The hf_rfdetr Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""`hf-rfdetr export`: ONNX export through Optimum (transformers < 4.58) or torch.onnx, checked in onnxruntime."""

from __future__ import annotations

import argparse
import json

ORDER = 40


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model to ONNX (model.onnx + config + image processor) and optionally validate it",
        description="Export RF-DETR to ONNX with a dynamic batch size: pixel_values -> logits, pred_boxes. Optimum "
        "runs when it can be imported (pip install 'hf-rfdetr[onnx]', which pins transformers 4.57), torch.onnx otherwise "
        "(pip install 'hf-rfdetr[ort]', any transformers); "
        "the output says which. Run the result with hf_rfdetr.RFDetrOnnxModel.from_pretrained(OUTPUT); its README.md "
        "(model card) says how.",
    )
    parser.add_argument("model", help="Hub repository id or local folder of the model")
    parser.add_argument("output", help="folder to write")
    parser.add_argument("--resolution", type=int, help="input size, a multiple of the block size (default: model's)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, at least 16 (default: 17)")
    parser.add_argument("--fp16", action="store_true", help="convert the graph to float16 (for GPUs)")
    parser.add_argument(
        "--quantize",
        action="store_true",
        help="also write model_quantized.onnx (int8 for CPUs; heads and sampling layers stay float32)",
    )
    parser.add_argument("--validate", action="store_true", help="compare onnxruntime with PyTorch (batch 1 and 3)")
    parser.add_argument("--atol", type=float, default=1e-4, help="float32 tolerance of --validate (default: 1e-4)")
    parser.add_argument("--backend", choices=("auto", "optimum", "torch"), default="auto", help="exporter to use")
    parser.add_argument("--device", default="cpu", help="device to trace on (default: cpu)")
    parser.set_defaults(run_command=run)


def run(args: argparse.Namespace) -> int:
    from ..extras import require

    require("ort", "hf-rfdetr export", ("onnx", "onnxruntime") if args.validate or args.quantize else ("onnx",))
    from ..onnx import export_onnx
    from ..onnx.export import REPORT_FILE
    from ..onnx.model_card import ONNX_GENERATED_MARKER

    folder = export_onnx(
        args.model,
        args.output,
        resolution=args.resolution,
        opset=args.opset,
        fp16=args.fp16,
        quantize=args.quantize,
        validate=args.validate,
        atol=args.atol,
        backend=args.backend,
        device=args.device,
    )
    report = json.loads((folder / REPORT_FILE).read_text())
    height, width = report["input_size"]
    card = folder / "README.md"
    written = report["files"] + (
        ["README.md (model card)"] if card.is_file() and ONNX_GENERATED_MARKER in card.read_text() else []
    )
    print(f"exported with {report['backend']} ({report['backend_reason']}), opset {report['opset']}")
    print(f"input pixel_values (batch, 3, {height}, {width}); wrote {', '.join(written)} to {folder}")
    for file_name, differences in report["validation"].items():
        worst = ", ".join(f"{name} {value:.1e}" for name, value in differences.items())
        print(f"validated {file_name}: max |onnxruntime - PyTorch|: {worst}")
    return 0
