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
"""Checkpoints of transformers' own RF-DETR (`RfDetrForObjectDetection` / `RfDetrForInstanceSegmentation`,
model_type "rf_detr") -> this package.

transformers (5.x) ships a port of RF-DETR with its own config and weight names. This module maps both onto
`RFDetrConfig` / `RFDetrForObjectDetection` (`RFDetrForInstanceSegmentation` for transformers' segmentation models,
whose detection weights sit one `model.` level deeper and whose mask head has other names):

* `config_from_transformers(rf_config)`: transformers' `RfDetrConfig` (+ its `RfDetrDinov2Config` backbone) ->
  `RFDetrConfig`, raising `ValueError` naming the field when the checkpoint uses something this port cannot express.
* `convert_transformers_state_dict(state_dict, config)`: transformers' weight names -> ours (fused backbone `qkv`,
  decoder self-attention `qk_proj` + `v_proj`, the per-group two-stage heads stacked on a leading group dimension).
* `load_transformers_model(model)`: an instantiated transformers model -> our model with the same weights.
* `verify_against_transformers(ours, theirs)`: both models on the same deterministic images, raising on a mismatch.
* `convert_transformers_checkpoint(folder_or_repo, output_dir, verify)`: a transformers folder / Hub repository ->
  our folder (weights, config, image processor).

The implementation lives in `hf_rfdetr.transformers_checkpoints`, one module per stage: `config_mapping`, `weights`,
`verification` (with the numerical notes on transformers' model) and `checkpoint`; this module gathers their public
names. Their loggers are children of `hf_rfdetr.transformers_checkpoints`.
"""

from __future__ import annotations

from .transformers_checkpoints.checkpoint import convert_transformers_checkpoint
from .transformers_checkpoints.config_mapping import (
    TRANSFORMERS_DECODER_LAYER_NORM_EPS,
    TRANSFORMERS_PROJECTOR_OUTPUT_EPS,
    config_from_transformers,
)
from .transformers_checkpoints.verification import verification_pixel_values, verify_against_transformers
from .transformers_checkpoints.weights import (
    convert_transformers_state_dict,
    load_transformers_model,
    load_transformers_state_dict,
)

__all__ = [
    "TRANSFORMERS_DECODER_LAYER_NORM_EPS",
    "TRANSFORMERS_PROJECTOR_OUTPUT_EPS",
    "config_from_transformers",
    "convert_transformers_checkpoint",
    "convert_transformers_state_dict",
    "load_transformers_model",
    "load_transformers_state_dict",
    "verification_pixel_values",
    "verify_against_transformers",
]
