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
"""The RF-DETR model, one module per stage, in the order the data flows:

`configuration_rfdetr` (the config and its named variants) -> `backbone_rfdetr` (windowed DINOv2) ->
`projector_rfdetr` (multi-scale projector) -> `decoder_rfdetr` (two-stage query selection, deformable decoder) ->
`heads_rfdetr` (class, box and mask heads) -> `modeling_rfdetr` (the `PreTrainedModel` classes, detection and
instance segmentation, initialised as the original by `initialization_rfdetr`) -> `loss_rfdetr` (matcher and
criterion, with the mask costs and losses); `image_processing_rfdetr` prepares inputs and post-processes, with
`image_io` (the image reader), `image_sizing` (size forms, resize, padding), `coco_targets` (COCO annotations to
training targets) and `post_processing` (top-k selection, boxes, masks).

The folder imports nothing from the rest of `hf_rfdetr` at import time: it is what a saved folder carries for
`trust_remote_code`. The public names are re-exported lazily by `hf_rfdetr` itself.
"""
