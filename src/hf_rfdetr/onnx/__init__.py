"""ONNX export (Optimum or torch.onnx) and onnxruntime inference for RF-DETR.

- `export_onnx(model, folder)`: writes `folder/model.onnx` (+ config, image processor, report); see `export.py`.
- `RFDetrOnnxModel.from_pretrained(folder)`: runs it with the PyTorch model's outputs; see `runtime.py`.
- `quantization.py`: the int8 export (`FLOAT_MODULES`, the layers kept in float32) and `match_detections`, which
  compares two detection lists by class, IoU and score tolerance.
- `hf_rfdetr.onnx.optimum`: the Optimum ONNX config, registered with Optimum's `TasksManager` on `import hf_rfdetr`
  when `optimum-onnx` is installed (it needs transformers < 4.58).
"""

from .export import ExportReport, compare_outputs, export_input_size, export_onnx, inference_graph, optimum_status
from .quantization import FLOAT_MODULES, DetectionMatch, match_detections
from .runtime import RFDetrOnnxModel

__all__ = [
    "FLOAT_MODULES",
    "DetectionMatch",
    "ExportReport",
    "RFDetrOnnxModel",
    "compare_outputs",
    "export_input_size",
    "export_onnx",
    "inference_graph",
    "match_detections",
    "optimum_status",
]
