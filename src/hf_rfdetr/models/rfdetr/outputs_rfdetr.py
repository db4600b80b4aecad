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
"""The outputs of RF-DETR's models: `RFDetrModelOutput` (decoder states and two-stage proposals),
`RFDetrObjectDetectionOutput` (logits, boxes, loss) and `RFDetrInstanceSegmentationOutput` (plus masks)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

from .heads_rfdetr import RFDetrMaskFactors


@dataclass
class RFDetrModelOutput(ModelOutput):
    """Outputs of [`RFDetrModel`].

    Args:
        last_hidden_state: (B, Q, d_model) the last decoder layer's output.
        intermediate_hidden_states: (B, L, Q, d_model) every decoder layer's normed output (batch first, as
            in transformers' DETR models: pipelines split every output tensor along dim 0).
        reference_boxes: (B, Q, 4) the decoder's reference boxes, normalised cxcywh.
        enc_logits: (B, G * K, num_labels) two-stage class logits of the selected proposals (G groups).
        enc_pred_boxes: (B, G * K, 4) two-stage boxes of the selected proposals.
        hidden_states: with `output_hidden_states`, the decoder's input queries and every decoder layer's output,
            L + 1 tensors (B, Q, d_model).
        attentions: with `output_attentions`, every decoder layer's self-attention weights (B * G, heads, Q / G,
            Q / G), G query groups (1 at inference).
        cross_attentions: with `output_attentions`, every decoder layer's deformable sampling weights
            (B, Q, heads, levels, points).
        backbone_hidden_states: with `output_hidden_states`, the backbone embeddings and every backbone block's
            output as the blocks see them, windowed: (B * num_windows**2, 1 + tokens per window, C_vit).
        backbone_attentions: with `output_attentions`, every backbone block's attention weights: (B * num_windows**2,
            heads, T, T) for windowed blocks, (B, heads, num_windows**2 * T, num_windows**2 * T) for global ones.
        mask_features: segmentation configs only: (B, d_model, H / p, W / p) the projector's first level map, the
            mask head's spatial input.
        enc_hidden_states: segmentation configs only: (B, G * K, d_model) the normed two-stage memory at the selected
            positions (the proposals' features), the mask head's input for the proposals' masks.
    """

    last_hidden_state: torch.FloatTensor | None = None
    intermediate_hidden_states: torch.FloatTensor | None = None
    reference_boxes: torch.FloatTensor | None = None
    enc_logits: torch.FloatTensor | None = None
    enc_pred_boxes: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    backbone_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    backbone_attentions: tuple[torch.FloatTensor, ...] | None = None
    mask_features: torch.FloatTensor | None = None
    enc_hidden_states: torch.FloatTensor | None = None


@dataclass
class RFDetrObjectDetectionOutput(ModelOutput):
    """Outputs of [`RFDetrForObjectDetection`].

    Args:
        loss: total training loss, when `labels` are given.
        loss_dict: the individual loss terms.
        logits: (B, Q, num_labels) class logits of the last decoder layer (sigmoid gives scores).
        pred_boxes: (B, Q, 4) normalised cxcywh boxes of the last decoder layer.
        auxiliary_outputs: `logits` and `pred_boxes` of the earlier decoder layers (training only).
        enc_logits, enc_pred_boxes: two-stage proposals, see [`RFDetrModelOutput`].
        last_hidden_state, intermediate_hidden_states: decoder states, see [`RFDetrModelOutput`].
        hidden_states, attentions, cross_attentions, backbone_hidden_states, backbone_attentions: when asked for
            with `output_hidden_states` / `output_attentions`, see [`RFDetrModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    loss_dict: dict | None = None
    logits: torch.FloatTensor | None = None
    pred_boxes: torch.FloatTensor | None = None
    auxiliary_outputs: list[dict] | None = None
    enc_logits: torch.FloatTensor | None = None
    enc_pred_boxes: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    intermediate_hidden_states: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    backbone_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    backbone_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class RFDetrInstanceSegmentationOutput(ModelOutput):
    """Outputs of [`RFDetrForInstanceSegmentation`].

    Args:
        loss: total training loss, when `labels` are given.
        loss_dict: the individual loss terms.
        logits: (B, Q, num_labels) class logits of the last decoder layer (sigmoid gives scores).
        pred_boxes: (B, Q, 4) normalised cxcywh boxes of the last decoder layer.
        pred_masks: mask logits of the last decoder layer at (h, w) = (H // r, W // r) of the input, r =
            `config.mask_downsample_ratio` (sigmoid gives probabilities): dense (B, Q, h, w) in eval mode; in training
            mode an `RFDetrMaskFactors` (the dense logits of all Group DETR queries are never built).
        auxiliary_outputs: `logits`, `pred_boxes` and `pred_masks` (`RFDetrMaskFactors`) of the earlier decoder
            layers (in training or when `labels` are given).
        enc_logits, enc_pred_boxes: two-stage proposals, see [`RFDetrModelOutput`].
        enc_pred_masks: the proposals' mask logits as `RFDetrMaskFactors` (in training or when `labels` are given).
        last_hidden_state, intermediate_hidden_states: decoder states, see [`RFDetrModelOutput`].
        hidden_states, attentions, cross_attentions, backbone_hidden_states, backbone_attentions: when asked for
            with `output_hidden_states` / `output_attentions`, see [`RFDetrModelOutput`].
        pixel_mask: the `(B, H, W)` `pixel_mask` the model was given (None without one): it tells
            `RFDetrImageProcessor.post_process_instance_segmentation` which part of the mask logits is image when the
            inputs were padded (`keep_aspect_ratio=True`), so that transformers' own image-segmentation pipeline (which
            passes the model outputs alone) maps masks correctly. Last, so that `to_tuple()` keeps the other outputs'
            positions.
    """

    loss: torch.FloatTensor | None = None
    loss_dict: dict | None = None
    logits: torch.FloatTensor | None = None
    pred_boxes: torch.FloatTensor | None = None
    pred_masks: torch.FloatTensor | RFDetrMaskFactors | None = None
    auxiliary_outputs: list[dict] | None = None
    enc_logits: torch.FloatTensor | None = None
    enc_pred_boxes: torch.FloatTensor | None = None
    enc_pred_masks: RFDetrMaskFactors | None = None
    last_hidden_state: torch.FloatTensor | None = None
    intermediate_hidden_states: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    backbone_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    backbone_attentions: tuple[torch.FloatTensor, ...] | None = None
    pixel_mask: torch.LongTensor | None = None


#: The optional outputs both model classes pass through.
_OPTIONAL_OUTPUTS = ("hidden_states", "attentions", "cross_attentions", "backbone_hidden_states", "backbone_attentions")
