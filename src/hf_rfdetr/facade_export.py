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
"""The original rfdetr `export(...)` keywords as `export_onnx`'s, for the facade's `RFDETR.export`: each is taken,
accepted and unused, or refused by name saying what to do instead."""

from __future__ import annotations

from typing import Any

#: The original `export(...)` options without an equivalent in `export_onnx`, with what to do instead.
_ORIGINAL_EXPORT_OPTIONS = {
    "simplify": "the graph is exported as it is; run onnxsim on model.onnx to simplify it",
    "backbone_only": "the whole model is exported",
    "force": "the export always runs",
    "infer_dir": "validate=True checks the exported model against PyTorch (on a bundled demo image) instead",
    "format": "only format='onnx' is exported; convert model.onnx with your target's tools",
    "quantization": "it is the original's TFLite quantisation (ignored for ONNX there); for an int8 ONNX model pass "
    "quantize=True (model_quantized.onnx, dynamic int8 for CPUs)",
    "calibration_data": "it feeds the original's TFLite export; quantize=True is dynamic int8 and needs no data",
    "soc": "it targets ExecuTorch's Qualcomm backend; only ONNX is exported",
    "output_name": "the file is always output_dir/model.onnx (with its config and processor); rename it afterwards",
    "patch_size": "it must be the model's patch size",
    "notes": "hf_rfdetr writes no ONNX metadata; add it to model.onnx afterwards (graph = onnx.load(path); "
    "onnx.helper.set_model_props(graph, {'rfdetr_notes': text}); onnx.save(graph, path))",
    "coreml_precision": "it sets the original's format='coreml' precision; only ONNX is exported here (fp16=True for "
    "a float16 graph)",
    "coreai_precision": "it sets the original's format='coreai' precision; only ONNX is exported here (fp16=True for "
    "a float16 graph)",
    "openvino_precision": "it sets the original's format='openvino' precision; only ONNX is exported here (fp16=True "
    "for a float16 graph; OpenVINO reads model.onnx)",
}
#: The original `export` options that are only refused when set to something other than their default (a value
#: that does nothing for an ONNX export there): name -> the accepted value.
_ORIGINAL_EXPORT_DEFAULTS: dict[str, Any] = {
    "format": "onnx",
    "infer_dir": None,
    "backbone_only": False,
    "quantization": None,
    "calibration_data": None,
    "soc": None,
    "backend": None,
    "notes": None,
    "coreml_precision": None,
    "coreai_precision": None,
    "openvino_precision": None,
    "output_name": None,
    "patch_size": None,
}
#: The original `export` options accepted with any value and unused: the graph's batch axis is always dynamic
#: (any batch size, unbounded), and the export logs what it does (verbose).
_ORIGINAL_EXPORT_UNUSED = ("batch_size", "dynamic_batch", "max_batch_size", "verbose", "max_images")
#: The original's `backend=` values: ExecuTorch backends (ours names the ONNX exporter: "auto", "torch", "optimum").
_EXECUTORCH_BACKENDS = ("xnnpack", "coreml", "qnn")


def export_options(options: dict[str, Any], patch_size: int | None = None) -> dict[str, Any]:
    """The facade's `export` keywords as `export_onnx`'s: the original's `opset_version` -> `opset`, `shape` ->
    `resolution`, `_ORIGINAL_EXPORT_UNUSED` (`batch_size`, `dynamic_batch`, ...) dropped (the batch axis is always
    dynamic), its `_ORIGINAL_EXPORT_DEFAULTS` (`format="onnx"`, `infer_dir=None`, `notes=None`, ...) and a
    `patch_size` equal to the model's (`patch_size` here) dropped; other values of the original's options raise
    `ValueError` naming the option and what to do instead, an ExecuTorch `backend` too; unknown names stay for
    `export_onnx` (a `TypeError`)."""
    options = dict(options)
    for name, default in _ORIGINAL_EXPORT_DEFAULTS.items():
        if name in options and _is_default(options[name], default):
            del options[name]
    accepted = options.get("patch_size")
    if accepted is not None and not isinstance(accepted, bool) and accepted == patch_size:
        del options["patch_size"]
    backend = options.get("backend")
    if isinstance(backend, str) and backend.lower() in _EXECUTORCH_BACKENDS:
        raise ValueError(
            f"export(backend={backend!r}) is an ExecuTorch backend of the original rfdetr (format='executorch'); "
            "hf_rfdetr exports ONNX only, and its backend= names the ONNX exporter: 'auto', 'torch' or 'optimum'"
        )
    for original, ours in (("opset_version", "opset"), ("shape", "resolution")):
        if original in options:
            if ours in options:
                raise TypeError(f"export() got both {original}= (the original's name) and {ours}=; pass one")
            value = options.pop(original)
            if original == "shape" and value is not None and not isinstance(value, int):
                value = tuple(int(side) for side in value)  # (height, width), as the original's
            options[ours] = value
    for ignored in _ORIGINAL_EXPORT_UNUSED:
        options.pop(ignored, None)
    for name in options:
        if name in _ORIGINAL_EXPORT_OPTIONS:
            raise ValueError(
                f"export({name}=...) is an option of the original rfdetr that hf_rfdetr does not take: "
                f"{_ORIGINAL_EXPORT_OPTIONS[name]}{f' ({patch_size})' if name == 'patch_size' else ''}"
            )
    return options


def _is_default(value: Any, default: Any) -> bool:
    """Whether `value` is the original's `default` for an export option: the same object for None and booleans (so
    that neither 0 nor an array compares equal), else an equal value of the same type."""
    if default is None or isinstance(default, bool):
        return value is default
    return isinstance(value, type(default)) and value == default
