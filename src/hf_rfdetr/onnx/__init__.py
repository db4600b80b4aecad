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
"""ONNX export (Optimum or torch.onnx) and onnxruntime inference for RF-DETR.

- `export_onnx(model, folder)`: writes `folder/model.onnx` (+ config, image processor, report); see `export.py`.
- `RFDetrOnnxModel.from_pretrained(folder)`: runs it with the PyTorch model's outputs; see `runtime.py`.
- `quantization.py`: the int8 export (`FLOAT_MODULES`, the layers kept in float32; `SEGMENTATION_FLOAT_MODULES` adds
  the mask head for a segmentation model) and `match_detections`, which compares two detection lists by class, IoU
  and score tolerance.
- Segmentation models (`RFDetrForInstanceSegmentation`) export a third output, `pred_masks`, and register with Optimum
  for its "image-segmentation" task.
- `hf_rfdetr.onnx.optimum`: the Optimum ONNX config, registered with Optimum's `TasksManager` on `import hf_rfdetr`
  when `optimum-onnx` is installed (it needs transformers < 4.58).
"""

from .export import ExportReport, export_input_size, export_onnx, inference_graph, optimum_status
from .quantization import FLOAT_MODULES, SEGMENTATION_FLOAT_MODULES, DetectionMatch, match_detections
from .runtime import RFDetrOnnxModel
from .validation import compare_outputs

__all__ = [
    "FLOAT_MODULES",
    "DetectionMatch",
    "ExportReport",
    "RFDetrOnnxModel",
    "SEGMENTATION_FLOAT_MODULES",
    "compare_outputs",
    "export_input_size",
    "export_onnx",
    "inference_graph",
    "match_detections",
    "optimum_status",
]
