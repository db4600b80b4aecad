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
"""Training loss of RF-DETR: Hungarian matching per Group DETR group and the original's set criterion.

Per prediction layer (the last decoder layer, every earlier layer, and the two-stage proposals):
  matcher: cost = class_cost * focal cost + bbox_cost * L1 + giou_cost * (-GIoU), solved per image and group
  loss_ce: IoU-aware BCE (the original's `ia_bce_loss`): matched (query, class) pairs are pulled towards
           t = clamp(p^alpha * IoU^(1-alpha), 0.01), every other logit towards 0 with weight p^2
  loss_bbox: L1 on normalised cxcywh; loss_giou: 1 - GIoU
All terms are divided by the number of target boxes x groups (averaged over processes when distributed).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou, generalized_box_iou_loss

from .configuration_rfdetr import RFDetrConfig

_FOCAL_GAMMA = 2.0


def _xyxy(boxes: torch.Tensor) -> torch.Tensor:
    return box_convert(boxes, "cxcywh", "xyxy")


def _elementwise_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of matched pairs of xyxy boxes: (N, 4), (N, 4) -> (N,)."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    size = (torch.min(boxes1[:, 2:], boxes2[:, 2:]) - torch.max(boxes1[:, :2], boxes2[:, :2])).clamp(min=0)
    intersection = size[:, 0] * size[:, 1]
    return intersection / (area1 + area2 - intersection).clamp(min=1e-7)


def check_labels(labels: list[dict[str, torch.Tensor]], batch_size: int, num_labels: int) -> None:
    """Raise `ValueError` naming the image and field when training targets are malformed."""
    if not isinstance(labels, (list, tuple)) or len(labels) != batch_size:
        raise ValueError(f"labels must be a list of {batch_size} dicts (one per image); got {type(labels).__name__}")
    for index, target in enumerate(labels):
        if "class_labels" not in target or "boxes" not in target:
            raise ValueError(f"labels[{index}] needs 'class_labels' and 'boxes'; got keys {sorted(target)}")
        boxes, classes = target["boxes"], target["class_labels"]
        if boxes.ndim != 2 or boxes.shape[-1] != 4 or classes.ndim != 1 or len(classes) != len(boxes):
            raise ValueError(
                f"labels[{index}]: boxes must be (N, 4) normalised cxcywh and class_labels (N,); got "
                f"{tuple(boxes.shape)} and {tuple(classes.shape)}"
            )
        if len(classes) and (int(classes.min()) < 0 or int(classes.max()) >= num_labels):
            raise ValueError(
                f"labels[{index}]: class_labels must be in [0, {num_labels}) (config.num_labels); got "
                f"{sorted(set(classes.tolist()))}"
            )


class RFDetrHungarianMatcher(nn.Module):
    """One-to-one assignment of predictions to targets, per image and per query group."""

    def __init__(self, class_cost: float, bbox_cost: float, giou_cost: float, focal_alpha: float) -> None:
        super().__init__()
        self.class_cost, self.bbox_cost, self.giou_cost, self.focal_alpha = (
            class_cost,
            bbox_cost,
            giou_cost,
            focal_alpha,
        )

    @torch.no_grad()
    def forward(
        self, logits: torch.Tensor, boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]], num_groups: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """logits (B, G * Q, C), boxes (B, G * Q, 4) -> per image (query indices, target indices), groups
        concatenated (query indices count across groups)."""
        batch_size, num_queries = logits.shape[:2]
        target_classes = torch.cat([t["class_labels"] for t in targets])
        target_boxes = torch.cat([t["boxes"] for t in targets]).to(boxes.dtype)
        flat_logits, flat_boxes = logits.flatten(0, 1), boxes.flatten(0, 1)
        target_logits = flat_logits[:, target_classes]
        probabilities = target_logits.sigmoid()
        negative = (1 - self.focal_alpha) * probabilities**_FOCAL_GAMMA * -F.logsigmoid(-target_logits)
        positive = self.focal_alpha * (1 - probabilities) ** _FOCAL_GAMMA * -F.logsigmoid(target_logits)
        cost = (
            self.bbox_cost * torch.cdist(flat_boxes, target_boxes, p=1)
            + self.class_cost * (positive - negative)
            - self.giou_cost * generalized_box_iou(_xyxy(flat_boxes), _xyxy(target_boxes))
        )
        cost = cost.view(batch_size, num_queries, -1).float().cpu()
        if not torch.isfinite(cost).all():
            raise ValueError("non-finite matching cost: the predictions or target boxes contain NaN or inf")
        return self._assign(cost, [len(t["boxes"]) for t in targets], num_groups)

    @staticmethod
    def _assign(cost: torch.Tensor, sizes: list[int], num_groups: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        from scipy.optimize import linear_sum_assignment  # training-only dependency (the `train` extra)

        per_group = cost.shape[1] // num_groups
        matches = []
        for image, block in enumerate(cost.split(sizes, dim=-1)):
            rows, columns = [], []
            for group in range(num_groups):
                row, column = linear_sum_assignment(block[image, group * per_group : (group + 1) * per_group].numpy())
                rows.append(row + group * per_group)
                columns.append(column)
            matches.append((torch.as_tensor(np.concatenate(rows)), torch.as_tensor(np.concatenate(columns))))
        return matches


class RFDetrLoss(nn.Module):
    """The original RF-DETR set criterion: IA-BCE + L1 + GIoU on every layer and the two-stage proposals."""

    def __init__(self, config: RFDetrConfig) -> None:
        super().__init__()
        self.matcher = RFDetrHungarianMatcher(config.class_cost, config.bbox_cost, config.giou_cost, config.focal_alpha)
        self.focal_alpha = config.focal_alpha
        self.weights = {
            "loss_ce": config.class_loss_coefficient,
            "loss_bbox": config.bbox_loss_coefficient,
            "loss_giou": config.giou_loss_coefficient,
        }

    def forward(
        self,
        layers: dict[str, tuple[torch.Tensor, torch.Tensor]],
        targets: list[dict[str, torch.Tensor]],
        num_groups: int,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """layers: suffix ("" for the last layer, "_0".. for earlier layers, "_enc") -> (logits, boxes).

        Returns the weighted total and every term (`loss_ce`, `loss_bbox`, `loss_giou` plus the suffixed ones).
        """
        targets = [{"class_labels": t["class_labels"], "boxes": t["boxes"]} for t in targets]
        num_boxes = self.num_boxes(targets, num_groups, next(iter(layers.values()))[0].device)
        total, loss_dict = 0.0, {}
        for suffix, (logits, boxes) in layers.items():
            matches = self.matcher(logits, boxes, targets, num_groups)
            for name, value in self.layer_losses(logits, boxes, targets, matches, num_boxes).items():
                loss_dict[name + suffix] = value
                total = total + self.weights[name] * value
        return total, loss_dict

    @staticmethod
    def num_boxes(targets: list[dict[str, torch.Tensor]], num_groups: int, device: torch.device) -> torch.Tensor:
        """Target boxes x groups, averaged over processes, at least 1."""
        count = torch.tensor(float(sum(len(t["boxes"]) for t in targets) * num_groups), device=device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(count)
            count = count / torch.distributed.get_world_size()
        return count.clamp(min=1.0)

    def layer_losses(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        targets: list[dict[str, torch.Tensor]],
        matches: list[tuple[torch.Tensor, torch.Tensor]],
        num_boxes: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """IA-BCE, L1 and GIoU of one layer given its matches."""
        image_index = torch.cat([torch.full_like(rows, i) for i, (rows, _) in enumerate(matches)]).to(logits.device)
        query_index = torch.cat([rows for rows, _ in matches]).to(logits.device)
        matched_classes = torch.cat([t["class_labels"][columns] for t, (_, columns) in zip(targets, matches)])
        matched_boxes = torch.cat([t["boxes"][columns] for t, (_, columns) in zip(targets, matches)]).to(boxes.dtype)
        predicted_boxes = boxes[image_index, query_index]

        iou = _elementwise_iou(_xyxy(predicted_boxes.detach()), _xyxy(matched_boxes))
        probabilities = logits.sigmoid()
        position = (image_index, query_index, matched_classes)
        quality = (probabilities[position].pow(self.focal_alpha) * iou.pow(1 - self.focal_alpha)).clamp(min=0.01)
        quality = quality.detach().to(logits.dtype)
        positive_weights = torch.zeros_like(logits).index_put(position, quality)
        negative_weights = (probabilities**_FOCAL_GAMMA).index_put(position, 1 - quality)
        loss_ce = negative_weights * logits - F.logsigmoid(logits) * (positive_weights + negative_weights)
        return {
            "loss_ce": loss_ce.sum() / num_boxes,
            "loss_bbox": F.l1_loss(predicted_boxes, matched_boxes, reduction="sum") / num_boxes,
            "loss_giou": generalized_box_iou_loss(_xyxy(predicted_boxes), _xyxy(matched_boxes), reduction="sum")
            / num_boxes,
        }
