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
"""Post-processing helpers of [`RFDetrImageProcessor`]: reading and checking the model outputs, target sizes and
box conversion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchvision.ops import box_convert


def prediction_tensors(outputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Return `(logits (B, Q, C), pred_boxes (B, Q, 4))` from a model output object or mapping."""
    logits = get_field(outputs, "logits")
    if logits is None:
        logits = get_field(outputs, "pred_logits")
    pred_boxes = get_field(outputs, "pred_boxes")
    if logits is None or pred_boxes is None:
        raise ValueError("`outputs` must provide `logits` (B, Q, C) and `pred_boxes` (B, Q, 4).")
    if logits.ndim != 3 or pred_boxes.ndim != 3 or pred_boxes.shape[-1] != 4:
        raise ValueError(
            f"Expected logits (B, Q, C) and pred_boxes (B, Q, 4), got {tuple(logits.shape)} and "
            f"{tuple(pred_boxes.shape)}."
        )
    if logits.shape[:2] != pred_boxes.shape[:2]:
        raise ValueError(f"logits {tuple(logits.shape)} and pred_boxes {tuple(pred_boxes.shape)} disagree on (B, Q).")
    return logits, pred_boxes


def get_field(outputs: Any, name: str) -> torch.Tensor | None:
    """Attribute `name` of `outputs`, else its mapping entry, else `None`."""
    value = getattr(outputs, name, None)
    if value is None and isinstance(outputs, Mapping):
        value = outputs.get(name)
    return value


def target_size_tensor(
    target_sizes: torch.Tensor | Sequence[Sequence[int]] | None, batch_size: int, device: torch.device
) -> torch.Tensor:
    """`(B, 2)` float32 `(height, width)` per image; all ones (normalised boxes) when `target_sizes` is None."""
    if target_sizes is None:
        return torch.ones((batch_size, 2), dtype=torch.float32, device=device)
    if len(target_sizes) != batch_size:
        raise ValueError(
            f"Got {len(target_sizes)} target sizes for a batch of {batch_size}; pass one (height, width) per image."
        )
    sizes = torch.as_tensor(
        [[float(v) for v in size] for size in target_sizes]
        if not isinstance(target_sizes, torch.Tensor)
        else target_sizes,
        dtype=torch.float32,
    ).to(device)
    if sizes.shape != (batch_size, 2):
        raise ValueError(f"`target_sizes` must have shape (batch_size, 2), got {tuple(sizes.shape)}.")
    return sizes


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """`(..., 4)` (cx, cy, w, h) -> (x0, y0, x1, y1); negative w/h count as 0, as in the original."""
    return box_convert(torch.cat((boxes[..., :2], boxes[..., 2:].clamp(min=0.0)), dim=-1), "cxcywh", "xyxy")
