"""ONNX export (Optimum or torch.onnx) and onnxruntime inference for RF-DETR.

- `export_onnx(model, folder)`: writes `folder/model.onnx` (+ config, image processor, report); see `export.py`.
- `RFDetrOnnxModel.from_pretrained(folder)`: runs it with the PyTorch model's outputs; see `runtime.py`.
- `hf_rfdetr.onnx.optimum`: the Optimum ONNX config, registered with Optimum's `TasksManager` on `import hf_rfdetr`
  when `optimum-onnx` is installed (it needs transformers < 4.58).
"""

from .export import ExportReport, compare_outputs, export_input_size, export_onnx, inference_graph, optimum_status
from .runtime import RFDetrOnnxModel

__all__ = [
    "ExportReport",
    "RFDetrOnnxModel",
    "compare_outputs",
    "export_input_size",
    "export_onnx",
    "inference_graph",
    "optimum_status",
]
