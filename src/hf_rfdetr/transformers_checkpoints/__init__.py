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
"""Checkpoints of transformers' own RF-DETR (model_type "rf_detr") -> this package, one module per stage:

1. `config_mapping`: transformers' `RfDetrConfig` -> `RFDetrConfig` (`config_from_transformers`).
2. `weights`: transformers' state dict -> ours, loaded into our model (`convert_transformers_state_dict`,
   `load_transformers_state_dict`, `load_transformers_model`).
3. `verification`: our converted model vs transformers' on the same images (`verify_against_transformers`).
4. `checkpoint`: a transformers folder / Hub repository -> our folder (`convert_transformers_checkpoint`), through
   stages 1-3.

Import the public names from `hf_rfdetr.conversion_transformers`; this package holds their implementation.
"""
