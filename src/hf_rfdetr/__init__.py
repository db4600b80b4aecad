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
"""hf_rfdetr: RF-DETR as a Hugging Face transformers model.

Importing the package registers `RFDetrConfig` (model_type "rfdetr"), `RFDetrModel`, `RFDetrForObjectDetection`,
`RFDetrForInstanceSegmentation` and `RFDetrImageProcessor` with transformers' Auto classes and pipeline, and marks them for `trust_remote_code` so that a
saved folder carries the code it needs (`auto_map` + the module files). Each registration runs when transformers'
module it extends is imported (see `hf_rfdetr.registration`), so `import hf_rfdetr` itself imports neither torch nor
transformers.

The public API (the model classes, the `rfdetr`-style facade, video inference, ONNX export and runtime, Hub upload)
is imported on first use, so that `import hf_rfdetr` needs neither their optional dependencies nor their import time.
"""

import importlib
from typing import Any

from . import launch_env, registration  # noqa: F401  (launch_env records the launch environment)
from .models.rfdetr.coco_classes import COCO_CLASSES, COCO_ID2LABEL


def fine_tune(*args, **kwargs):
    """Fine-tune RF-DETR with the original recipe on the HF Trainer; see `hf_rfdetr.training.fine_tune`
    (needs the `train` extra: accelerate, datasets, pycocotools, scipy)."""
    from .training import fine_tune as run

    return run(*args, **kwargs)


#: Public names imported on first access: name -> module (relative to this package).
_LAZY_NAMES: dict[str, str] = {
    "VARIANTS": ".models.rfdetr.configuration_rfdetr",
    "RFDetrConfig": ".models.rfdetr.configuration_rfdetr",
    **dict.fromkeys(
        ["RFDetrForObjectDetection", "RFDetrForInstanceSegmentation", "RFDetrModel", "RFDetrPreTrainedModel"],
        ".models.rfdetr.modeling_rfdetr",
    ),
    "RFDetrImageProcessor": ".models.rfdetr.image_processing_rfdetr",
    **dict.fromkeys(
        [
            "RFDETR",
            "RFDETRNano",
            "RFDETRSmall",
            "RFDETRMedium",
            "RFDETRBase",
            "RFDETRLarge",
            "RFDETRLargeDeprecated",
            "RFDETRSeg",
            "RFDETRSegPreview",
            "RFDETRSegNano",
            "RFDETRSegSmall",
            "RFDETRSegMedium",
            "RFDETRSegLarge",
            "RFDETRSegXLarge",
            "RFDETRSeg2XLarge",
        ],
        ".facade",
    ),
    "pretrained": ".pretrained_weights",
    "process_video": ".video",
    "draw_detections": ".annotate",
    "push_to_hub": ".hub",
    "export_onnx": ".onnx",
    "RFDetrOnnxModel": ".onnx",
    **dict.fromkeys(["optimize", "restore", "is_optimized"], ".optimization"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY_NAMES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY_NAMES])


registration.install()

__all__ = ["COCO_CLASSES", "COCO_ID2LABEL", "fine_tune", *_LAZY_NAMES]
