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
"""Optimizer parameter groups of the original recipe.

- DINOv2 encoder: lr = lr_encoder * lr_vit_layer_decay ** (L + 1 - layer_id) * lr_component_decay ** 2, where
  L = out_feature_indexes[-1] + 1, layer_id = 0 for the embeddings, i + 1 for block i, L + 1 otherwise; no weight
  decay for biases, norms and embeddings.
- decoder: lr * lr_component_decay.
- everything else (projector, two-stage heads, queries, class and box heads): lr.
Parameters with identical settings share a group (one fused optimizer launch per group).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from ..models.rfdetr.configuration_rfdetr import RFDetrConfig

_NO_DECAY = ("gamma", "pos_embed", "rel_pos", "bias", "norm", "embeddings")
_BLOCK = re.compile(r"\.layers\.(\d+)\.")


@dataclass(frozen=True)
class LearningRates:
    """The learning-rate knobs of the original `TrainConfig` (its defaults)."""

    lr: float = 1e-4
    lr_encoder: float = 1.5e-4
    weight_decay: float = 1e-4
    lr_vit_layer_decay: float = 0.8
    lr_component_decay: float = 0.7


def _encoder_settings(name: str, config: RFDetrConfig, rates: LearningRates) -> tuple[float, float]:
    num_layers = config.out_feature_indexes[-1] + 1
    layer_id = num_layers + 1
    if "embeddings" in name:
        layer_id = 0
    elif match := _BLOCK.search(name):
        layer_id = int(match.group(1)) + 1
    lr = rates.lr_encoder * rates.lr_vit_layer_decay ** (num_layers + 1 - layer_id) * rates.lr_component_decay**2
    weight_decay = 0.0 if any(token in name for token in _NO_DECAY) else rates.weight_decay
    return lr, weight_decay


def parameter_settings(model: nn.Module, rates: LearningRates) -> dict[str, tuple[float, float]]:
    """name -> (lr, weight_decay) for every trainable parameter of an `RFDetrForObjectDetection`."""
    config = model.config
    settings = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if ".backbone." in f".{name}":
            settings[name] = _encoder_settings(name, config, rates)
        elif ".decoder." in f".{name}":
            settings[name] = (rates.lr * rates.lr_component_decay, rates.weight_decay)
        else:
            settings[name] = (rates.lr, rates.weight_decay)
    return settings


def parameter_groups(model: nn.Module, rates: LearningRates) -> list[dict]:
    """Optimizer groups: parameters sharing (lr, weight_decay) are grouped together."""
    parameters = dict(model.named_parameters())
    groups: dict[tuple[float, float], list] = {}
    for name, key in parameter_settings(model, rates).items():
        groups.setdefault(key, []).append(parameters[name])
    return [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()]
