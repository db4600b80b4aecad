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
"""New labels for a trained RF-DETR: its class heads keep their trained rows, as the original starts a fine-tune.

The original (`LWDETR.reinitialize_detection_head`) gives a checkpoint a new class count by tiling its trained class
rows (more classes) or truncating them (fewer), in `class_embed` and in every group's two-stage `enc_out_class_embed`:
a COCO checkpoint fine-tuned on K classes starts from its first K rows, never from random ones. `relabel` does the
same, and where the checkpoint knows every new label by name it takes that label's row instead, so that a dataset
listing the checkpoint's classes in another order (or a subset of them) does not start with its names swapped.

    >>> model = AutoModelForObjectDetection.from_pretrained(folder)  # the checkpoint's own labels
    >>> relabel(model, {0: "dog", 1: "cat"})  # rows of "dog" and "cat" if the checkpoint has them, else rows 0, 1

transformers' `from_pretrained(..., id2label=..., ignore_mismatched_sizes=True)` draws new class heads instead (its
convention for a new head); `fine_tune`, the facade's `num_classes` / `class_names` and `.train()` use `relabel`.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

__all__ = ["class_head_rows", "relabel"]

logger = logging.getLogger(__name__)


def class_head_rows(old: dict[int, str], new: dict[int, str]) -> tuple[list[int], bool]:
    """For each new label id `0..len(new)-1`, the class-head row of `old` it starts from, and whether they were matched
    by name: the row of the same name when every new name is among the old ones, else row `id % len(old)` (the
    original's tiling and truncation)."""
    rows_by_name = {name: index for index, name in old.items()}
    names = [new[index] for index in range(len(new))]
    if all(name in rows_by_name for name in names):
        return [rows_by_name[name] for name in names], True
    return [index % len(old) for index in range(len(new))], False


def relabel(model: nn.Module, id2label: dict[int, str]) -> nn.Module:
    """Give `model` (an `RFDetrForObjectDetection` or `RFDetrForInstanceSegmentation`) the labels `id2label`
    (ids `0..K-1`), in place, its class heads `class_embed` (K, d_model) and `model.enc_out_class_embed`
    (groups, K, d_model) made of its trained rows by `class_head_rows`. Labels equal to the model's change nothing.

    Returns:
        `model`.
    """
    id2label = {int(index): str(name) for index, name in id2label.items()}
    if sorted(id2label) != list(range(len(id2label))) or not id2label:
        raise ValueError(f"id2label must map the ids 0..K-1 to names, got {id2label}")
    old = {int(index): str(name) for index, name in model.config.id2label.items()}
    if old == id2label:
        return model
    rows, by_name = class_head_rows(old, id2label)
    logger.info(
        "class heads for %d labels from the model's %d: %s",
        len(id2label),
        len(old),
        "rows matched by label name" if by_name else f"rows {rows} by position (tiled / truncated, as the original)",
    )
    index = torch.tensor(rows, device=model.class_embed.weight.device)
    _take_rows(model.class_embed, index, dim=0)
    _take_rows(model.model.enc_out_class_embed, index, dim=1)
    model.config.num_labels = len(id2label)
    model.config.id2label = id2label
    model.config.label2id = {name: index for index, name in id2label.items()}
    return model


def _take_rows(layer: nn.Module, index: torch.Tensor, dim: int) -> None:
    """Replace the output rows of `layer` (an nn.Linear, dim 0, or a grouped linear, dim 1) by those at `index`,
    keeping the module (its initialisation tags) and each parameter's `requires_grad`."""
    for name in ("weight", "bias"):
        parameter = getattr(layer, name)
        rows = parameter.detach().index_select(dim, index)
        setattr(layer, name, nn.Parameter(rows.clone(), requires_grad=parameter.requires_grad))
    if isinstance(layer, nn.Linear):
        layer.out_features = len(index)
