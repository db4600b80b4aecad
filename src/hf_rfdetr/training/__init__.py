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
"""Fine-tuning RF-DETR with the Hugging Face Trainer: the original recipe's optimizer groups, EMA and COCO metrics."""

from ..extras import require

require("train", "hf_rfdetr.training (fine-tuning, COCO evaluation)")

from .data import DatasetError, id2label_from_dataset, load_coco_folder  # noqa: E402 (after the extra check)
from .data_checks import check_training_data  # noqa: E402
from .ema import RFDetrEMACallback  # noqa: E402 (after the extra check)
from .evaluator import CocoEvaluator  # noqa: E402 (after the extra check)
from .fine_tune import fine_tune  # noqa: E402 (after the extra check)
from .hub_data import prepare_dataset  # noqa: E402 (after the extra check)
from .metrics import coco_metrics  # noqa: E402 (after the extra check)
from .optim import LearningRates, parameter_groups, parameter_settings  # noqa: E402 (after the extra check)
from .trainer import RFDetrTrainer  # noqa: E402
from .transforms import RFDetrDataCollator, apply_transforms, build_transforms, training_scales  # noqa: E402 (after the extra check)

__all__ = [
    "CocoEvaluator",
    "DatasetError",
    "RFDetrDataCollator",
    "apply_transforms",
    "build_transforms",
    "check_training_data",
    "id2label_from_dataset",
    "load_coco_folder",
    "prepare_dataset",
    "training_scales",
    "LearningRates",
    "RFDetrEMACallback",
    "RFDetrTrainer",
    "coco_metrics",
    "fine_tune",
    "parameter_groups",
    "parameter_settings",
]
