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
"""RF-DETR in Optimum's ONNX exporter (`optimum-onnx`, transformers < 4.58).

`register_optimum()` (called by `import hf_rfdetr` when `optimum.exporters.onnx` is installed) registers
`RFDetrOnnxConfig` for model_type "rfdetr" and the tasks "object-detection" (`RFDetrForObjectDetection`: logits,
pred_boxes) and "image-segmentation" (`RFDetrForInstanceSegmentation`: logits, pred_boxes, pred_masks; Optimum has no
"instance-segmentation" task, and loads the model for "image-segmentation" through the first of
AutoModelForImageSegmentation / ...SemanticSegmentation / ...InstanceSegmentation whose names table lists "rfdetr")
with Optimum's `TasksManager`. After that, in the same Python process,
`optimum.exporters.onnx.main_export(folder, output, task="object-detection")` (or `task="image-segmentation"` for a
Seg folder) exports a saved RF-DETR like any model Optimum knows.

Optimum has no plugin mechanism for third-party model types (its `onnx_export_from_model` refuses an unknown
model_type without `custom_onnx_configs`, and `optimum-cli` imports no other package), so the command line goes
through our entry point, which registers the config and then runs Optimum's own CLI unchanged:

    python -m hf_rfdetr.onnx.optimum_cli export onnx --model FOLDER --task object-detection OUTPUT
    python -m hf_rfdetr.onnx.optimum_cli export onnx --model SEG_FOLDER --task image-segmentation OUTPUT
"""

from __future__ import annotations

from typing import Any

from optimum.exporters.onnx.config import VisionOnnxConfig
from optimum.exporters.onnx.model_patcher import ModelPatcher
from optimum.exporters.tasks import TasksManager
from optimum.utils import NormalizedVisionConfig

from ..models.rfdetr.configuration_rfdetr import RFDetrConfig
from .export import (
    DEFAULT_OPSET,
    DETECTION_TASK,
    INPUTS,
    MASK_OUTPUTS,
    OUTPUTS,
    SEGMENTATION_TASK,
    inference_graph,
)

TASK = DETECTION_TASK
#: The Optimum tasks RF-DETR is registered for.
TASKS = (DETECTION_TASK, SEGMENTATION_TASK)


class RFDetrModelPatcher(ModelPatcher):
    """Optimum's patcher plus ours: eval mode and the position embedding precomputed for the export size."""

    def __enter__(self) -> None:
        resolution = self._model.config.resolution
        self._inference_graph = inference_graph(self._model, resolution, resolution)
        self._inference_graph.__enter__()
        super().__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        super().__exit__(*exc_info)
        self._inference_graph.__exit__(*exc_info)


class RFDetrOnnxConfig(VisionOnnxConfig):
    """pixel_values (batch, 3, resolution, resolution) -> logits, pred_boxes (+ pred_masks for "image-segmentation");
    dynamic batch."""

    NORMALIZED_CONFIG_CLASS = NormalizedVisionConfig.with_args(image_size="resolution", allow_new=True)
    DEFAULT_ONNX_OPSET = DEFAULT_OPSET
    ATOL_FOR_VALIDATION = 1e-4
    _MODEL_PATCHER = RFDetrModelPatcher

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        return {name: dict(axes) for name, axes in INPUTS.items()}

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        if self.task == SEGMENTATION_TASK and not getattr(self._config, "segmentation_head", False):
            raise ValueError(
                f"task {SEGMENTATION_TASK!r} needs a segmentation model (config.segmentation_head=True, e.g. "
                f"RFDetrConfig.from_variant('seg-nano')); export this detector with task {DETECTION_TASK!r}"
            )
        outputs = {**OUTPUTS, **(MASK_OUTPUTS if self.task == SEGMENTATION_TASK else {})}
        return {name: dict(axes) for name, axes in outputs.items()}


def register_optimum() -> None:
    """Register `RFDetrOnnxConfig` with Optimum's `TasksManager` for `TASKS` (idempotent).

    Optimum also tells a model's library from its class's module name ("transformers..." -> transformers), which
    fails for classes that live in `hf_rfdetr`: they are transformers models, and are reported as such.
    """
    register = TasksManager.create_register("onnx", overwrite_existing=True)
    register(RFDetrConfig.model_type, *TASKS, library_name="transformers")(RFDetrOnnxConfig)
    infer_library = TasksManager._infer_library_from_model_or_model_class
    if not getattr(infer_library, "knows_hf_rfdetr", False):
        TasksManager._infer_library_from_model_or_model_class = _library_of_hf_rfdetr_classes(infer_library)


def _library_of_hf_rfdetr_classes(infer_library: Any) -> classmethod:
    def infer(cls: type, model: Any = None, model_class: type | None = None) -> str:
        target = model_class if model_class is not None else type(model)
        if target.__module__.split(".")[0] == __name__.split(".")[0]:
            return "transformers"
        return infer_library(model=model, model_class=model_class)

    infer.knows_hf_rfdetr = True
    return classmethod(infer)
