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
  segmentation (a layer given as (logits, boxes, RFDetrMaskFactors)):
  matcher: + mask_ce_cost * sigmoid CE + mask_dice_cost * dice, both on h * w // mask_point_sample_ratio uniform
           points shared by the whole batch (predictions bilinear, targets nearest)
  loss_mask_ce, loss_mask_dice: on the matched queries only, at max(h, h * w // ratio) points per mask chosen by
           uncertainty (3x oversampling, 75% most uncertain + 25% uniform; PointRend / Mask2Former)
All terms are divided by the number of target boxes x groups (averaged over processes when distributed).

Randomness: the mask points are drawn with `torch.rand`, from `generator` when one is given, else from the global
RNG of the predictions' device, in the original's order (rfdetr 1.11.2 `SetCriterion.forward`): first one
(1, P, 2) draw per layer for the matcher, every layer in `layers` order, then per layer for the loss a (N, 3P, 2)
draw and a (N, P - int(0.75 P), 2) draw (none for a layer without matches). Seeding the same RNG before both
criteria therefore gives the same points.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou, generalized_box_iou_loss

from .configuration_rfdetr import RFDetrConfig
from .heads_rfdetr import RFDetrMaskFactors

_FOCAL_GAMMA = 2.0
_OVERSAMPLE_RATIO = 3
_IMPORTANCE_SAMPLE_RATIO = 0.75


def _xyxy(boxes: torch.Tensor) -> torch.Tensor:
    return box_convert(boxes, "cxcywh", "xyxy")


def _elementwise_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of matched pairs of xyxy boxes: (N, 4), (N, 4) -> (N,)."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    size = (torch.min(boxes1[:, 2:], boxes2[:, 2:]) - torch.max(boxes1[:, :2], boxes2[:, :2])).clamp(min=0)
    intersection = size[:, 0] * size[:, 1]
    return intersection / (area1 + area2 - intersection).clamp(min=1e-7)


def point_sample(inputs: torch.Tensor, coords: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample (N, C, H, W) maps at points (N, P, 2) given as (x, y) in [0, 1] -> (N, C, P).

    detectron2's / the original's `point_sample`: `grid_sample` with align_corners=False and border padding.
    """
    grid = (2.0 * coords.unsqueeze(2) - 1.0).to(inputs.dtype)
    return F.grid_sample(inputs, grid, mode=mode, padding_mode="border", align_corners=False).squeeze(3)


def _random_points(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform (x, y) points in [0, 1): shape + (2,), from `generator` or the device's global RNG."""
    return torch.rand(*shape, 2, device=device, generator=generator)


#: How far outside [0, 1] a normalised box coordinate may be (rounding of a box that touches the image border).
_BOX_TOLERANCE = 1e-4


def check_labels(
    labels: list[dict[str, torch.Tensor]],
    batch_size: int,
    num_labels: int,
    mask_size: tuple[int, int] | None = None,
) -> None:
    """Raise `ValueError` naming the image and field when training targets are malformed.

    With `mask_size` (the padded input's (H, W), for segmentation) every image also needs `masks` (N, H, W).
    """
    if not isinstance(labels, (list, tuple)) or len(labels) != batch_size:
        raise ValueError(f"labels must be a list of {batch_size} dicts (one per image); got {type(labels).__name__}")
    for index, target in enumerate(labels):
        if "class_labels" not in target or "boxes" not in target:
            raise ValueError(f"labels[{index}] needs 'class_labels' and 'boxes'; got keys {sorted(target)}")
        boxes, classes = target["boxes"], target["class_labels"]
        if not isinstance(boxes, torch.Tensor) or not isinstance(classes, torch.Tensor):
            raise ValueError(
                f"labels[{index}]: boxes and class_labels must be torch tensors; got {type(boxes).__name__} and "
                f"{type(classes).__name__} (the image processor's `annotations=` makes them)"
            )
        if not boxes.is_floating_point() or classes.is_floating_point() or classes.dtype == torch.bool:
            raise ValueError(
                f"labels[{index}]: boxes must be floating point and class_labels integer class ids; got {boxes.dtype} "
                f"and {classes.dtype}"
            )
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
        outside = ~torch.isfinite(boxes) | (boxes < -_BOX_TOLERANCE) | (boxes > 1 + _BOX_TOLERANCE)
        if bool(outside.any()):
            raise ValueError(
                f"labels[{index}]: boxes must be normalised cxcywh in [0, 1] (divide pixel boxes by the image's width "
                f"and height); got {boxes[outside.any(dim=-1)][:3].tolist()}"
            )
        if mask_size is not None:
            _check_masks(target, index, tuple(mask_size))


def _check_masks(target: dict[str, torch.Tensor], index: int, mask_size: tuple[int, ...]) -> None:
    """Raise `ValueError` unless `target["masks"]` is (N, H, W) with N = len(boxes) and (H, W) = `mask_size`."""
    masks = target.get("masks")
    expected = (len(target["boxes"]), *mask_size)
    if not torch.is_tensor(masks) or tuple(masks.shape) != expected:
        found = tuple(masks.shape) if torch.is_tensor(masks) else type(masks).__name__
        raise ValueError(
            f"labels[{index}]['masks'] must be a (N, H, W) tensor with one mask per box at the padded input size, "
            f"i.e. {expected}; got {found}"
        )


class RFDetrHungarianMatcher(nn.Module):
    """One-to-one assignment of predictions to targets, per image and per query group."""

    def __init__(
        self,
        class_cost: float,
        bbox_cost: float,
        giou_cost: float,
        focal_alpha: float,
        mask_ce_cost: float = 0.0,
        mask_dice_cost: float = 0.0,
        mask_point_sample_ratio: int = 16,
    ) -> None:
        super().__init__()
        self.class_cost, self.bbox_cost, self.giou_cost, self.focal_alpha = (
            class_cost,
            bbox_cost,
            giou_cost,
            focal_alpha,
        )
        self.mask_ce_cost, self.mask_dice_cost = mask_ce_cost, mask_dice_cost
        self.mask_point_sample_ratio = mask_point_sample_ratio

    @torch.no_grad()
    def forward(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        targets: list[dict[str, torch.Tensor]],
        num_groups: int,
        mask_factors: RFDetrMaskFactors | None = None,
        target_masks: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """logits (B, G * Q, C), boxes (B, G * Q, 4) -> per image (query indices, target indices), groups
        concatenated (query indices count across groups).

        Segmentation: `mask_factors` (the layer's mask logits) and `target_masks` (T, 1, H, W) float, every image's
        masks concatenated; the mask costs are added (one random point draw, see the module docstring).
        """
        batch_size, num_queries = logits.shape[:2]
        target_classes = torch.cat([t["class_labels"] for t in targets])
        target_boxes = torch.cat([t["boxes"] for t in targets]).to(boxes.dtype)
        flat_logits, flat_boxes = logits.flatten(0, 1), boxes.flatten(0, 1)
        target_logits = flat_logits[:, target_classes]
        probabilities = target_logits.sigmoid()
        negative = (1 - self.focal_alpha) * probabilities**_FOCAL_GAMMA * -F.logsigmoid(-target_logits)
        positive = self.focal_alpha * (1 - probabilities) ** _FOCAL_GAMMA * -F.logsigmoid(target_logits)
        cost = (
            self.bbox_cost * torch.cdist(flat_boxes.float(), target_boxes.float(), p=1)  # no bf16 cdist on CPU
            + self.class_cost * (positive - negative)
            - self.giou_cost * generalized_box_iou(_xyxy(flat_boxes), _xyxy(target_boxes))
        )
        if mask_factors is not None:
            if target_masks is None:
                raise ValueError("the mask matching cost needs target_masks (T, 1, H, W)")
            mask_ce, mask_dice = self.mask_costs(mask_factors, target_masks, generator)
            cost = cost + self.mask_ce_cost * mask_ce + self.mask_dice_cost * mask_dice
        cost = cost.view(batch_size, num_queries, -1).float().cpu()
        if not torch.isfinite(cost).all():
            raise ValueError("non-finite matching cost: the predictions or target boxes contain NaN or inf")
        return self._assign(cost, [len(t["boxes"]) for t in targets], num_groups)

    def mask_costs(
        self, factors: RFDetrMaskFactors, target_masks: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairwise (B * Q, T) sigmoid-CE and dice costs at h * w // ratio uniform points shared by the batch.

        The factor map is sampled and then contracted with the queries (exact: the logits are linear in it), so
        no dense (B, Q, h, w) logits are built. Targets (T, 1, H, W) float are read nearest at the same points.
        """
        spatial = factors.spatial_features
        num_points = max(1, spatial.shape[-2] * spatial.shape[-1] // self.mask_point_sample_ratio)
        coords = _random_points((1, num_points), spatial.device, generator)
        features = point_sample(spatial, coords.expand(len(spatial), -1, -1))  # (B, C, P)
        logits = torch.einsum("bcp,bnc->bnp", features, factors.query_features) + factors.bias
        logits = logits.flatten(0, 1)
        if len(target_masks) == 0:
            empty = logits.new_zeros(len(logits), 0)
            return empty, empty
        labels = point_sample(target_masks, coords.expand(len(target_masks), -1, -1), mode="nearest").squeeze(1)
        labels = labels.to(logits.dtype)
        positive = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
        negative = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
        cost_ce = (
            torch.einsum("nc,mc->nm", positive, labels) + torch.einsum("nc,mc->nm", negative, 1 - labels)
        ) / num_points
        probabilities = logits.sigmoid()
        numerator = 2 * torch.einsum("nc,mc->nm", probabilities, labels)
        denominator = probabilities.sum(-1)[:, None] + labels.sum(-1)[None, :]
        return cost_ce, 1 - (numerator + 1) / (denominator + 1)

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


Layer = tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, RFDetrMaskFactors]


class RFDetrLoss(nn.Module):
    """The original RF-DETR set criterion: IA-BCE + L1 + GIoU on every layer and the two-stage proposals, plus the
    mask sigmoid-CE and dice losses for segmentation."""

    def __init__(self, config: RFDetrConfig) -> None:
        super().__init__()
        self.matcher = RFDetrHungarianMatcher(
            config.class_cost,
            config.bbox_cost,
            config.giou_cost,
            config.focal_alpha,
            mask_ce_cost=config.mask_ce_cost,
            mask_dice_cost=config.mask_dice_cost,
            mask_point_sample_ratio=config.mask_point_sample_ratio,
        )
        self.focal_alpha = config.focal_alpha
        self.mask_point_sample_ratio = config.mask_point_sample_ratio
        self.weights = {
            "loss_ce": config.class_loss_coefficient,
            "loss_bbox": config.bbox_loss_coefficient,
            "loss_giou": config.giou_loss_coefficient,
            "loss_mask_ce": config.mask_ce_loss_coefficient,
            "loss_mask_dice": config.mask_dice_loss_coefficient,
        }

    def forward(
        self,
        layers: dict[str, Layer],
        targets: list[dict[str, torch.Tensor]],
        num_groups: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """layers: suffix ("" for the last layer, "_0".. for earlier layers, "_enc") -> (logits, boxes), or
        (logits, boxes, RFDetrMaskFactors) for segmentation, whose targets then carry `masks` (N, H, W) bool at the
        padded input size. `generator`: where the mask points are drawn from (default: the global RNG).

        Every layer is matched first, then the losses are computed (the original's order of random draws).
        Returns the weighted total and every term (`loss_ce`, `loss_bbox`, `loss_giou`, with masks also
        `loss_mask_ce`, `loss_mask_dice`, plus the suffixed ones).
        """
        segmentation = any(len(layer) == 3 for layer in layers.values())
        device = next(iter(layers.values()))[0].device
        target_masks = self.target_masks(targets).to(device) if segmentation else None
        targets = [{"class_labels": t["class_labels"], "boxes": t["boxes"]} for t in targets]
        num_boxes = self.num_boxes(targets, num_groups, device)
        all_matches = {
            suffix: self.matcher(
                layer[0],
                layer[1],
                targets,
                num_groups,
                mask_factors=layer[2] if len(layer) == 3 else None,
                target_masks=target_masks,
                generator=generator,
            )
            for suffix, layer in layers.items()
        }
        total, loss_dict = 0.0, {}
        for suffix, layer in layers.items():
            matches = all_matches[suffix]
            losses = self.layer_losses(layer[0], layer[1], targets, matches, num_boxes)
            if len(layer) == 3:
                losses.update(self.mask_losses(layer[2], target_masks, targets, matches, num_boxes, generator))
            for name, value in losses.items():
                loss_dict[name + suffix] = value
                total = total + self.weights[name] * value
        return total, loss_dict

    @staticmethod
    def target_masks(targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Every image's `masks` (N, H, W) concatenated as (T, 1, H, W) float32 (validated)."""
        first = targets[0].get("masks")
        size = tuple(first.shape[-2:]) if torch.is_tensor(first) and first.ndim == 3 else ("H", "W")
        for index, target in enumerate(targets):
            _check_masks(target, index, size)
        return torch.cat([t["masks"] for t in targets]).unsqueeze(1).float()

    @staticmethod
    def num_boxes(targets: list[dict[str, torch.Tensor]], num_groups: int, device: torch.device) -> torch.Tensor:
        """Target boxes x groups, averaged over processes, at least 1."""
        count = torch.tensor(float(sum(len(t["boxes"]) for t in targets) * num_groups), device=device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(count)
            count = count / torch.distributed.get_world_size()
        return count.clamp(min=1.0)

    @staticmethod
    def _match_indices(
        matches: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(image index, query index) of every match, images in order."""
        image_index = torch.cat([torch.full_like(rows, i) for i, (rows, _) in enumerate(matches)]).to(device)
        return image_index, torch.cat([rows for rows, _ in matches]).to(device)

    def layer_losses(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        targets: list[dict[str, torch.Tensor]],
        matches: list[tuple[torch.Tensor, torch.Tensor]],
        num_boxes: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """IA-BCE, L1 and GIoU of one layer given its matches."""
        image_index, query_index = self._match_indices(matches, logits.device)
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

    def mask_losses(
        self,
        factors: RFDetrMaskFactors,
        target_masks: torch.Tensor,
        targets: list[dict[str, torch.Tensor]],
        matches: list[tuple[torch.Tensor, torch.Tensor]],
        num_boxes: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Sigmoid CE and dice of the matched queries' masks at uncertainty-chosen points.

        Without any match the terms are 0, still connected to the mask factors (so DDP sees their gradient).
        """
        image_index, query_index = self._match_indices(matches, factors.query_features.device)
        if image_index.numel() == 0:
            zero = (factors.spatial_features.sum() + factors.query_features.sum() + factors.bias.sum()) * 0.0
            return {"loss_mask_ce": zero, "loss_mask_dice": zero}
        predicted = _matched_mask_logits(factors, image_index, query_index).unsqueeze(1)  # (N, 1, h, w)
        height, width = predicted.shape[-2:]
        num_points = max(height, height * width // self.mask_point_sample_ratio)
        with torch.no_grad():
            coords = _uncertain_points(predicted, num_points, generator)
        point_logits = point_sample(predicted, coords).squeeze(1)
        with torch.no_grad():
            offsets = np.cumsum([0] + [len(t["boxes"]) for t in targets[:-1]])
            target_index = torch.cat([columns + int(o) for o, (_, columns) in zip(offsets, matches)])
            labels = _sample_matched_targets(target_masks, target_index.to(coords.device), coords)
        labels = labels.to(point_logits.dtype)
        loss_ce = F.binary_cross_entropy_with_logits(point_logits, labels, reduction="none").mean(1).sum()
        probabilities = point_logits.sigmoid()
        numerator = 2 * (probabilities * labels).sum(-1)
        loss_dice = (1 - (numerator + 1) / (probabilities.sum(-1) + labels.sum(-1) + 1)).sum()
        return {"loss_mask_ce": loss_ce / num_boxes, "loss_mask_dice": loss_dice / num_boxes}


def _matched_mask_logits(
    factors: RFDetrMaskFactors, image_index: torch.Tensor, query_index: torch.Tensor
) -> torch.Tensor:
    """Full (N, h, w) mask logits of the matched queries only, all images in one batched contraction.

    Matches are grouped by image (as the matcher returns them); each image's matched query features are packed
    into a (B, max matches, C) tensor, so only B * max matches maps are built, never all Group DETR queries.
    """
    spatial, queries = factors.spatial_features, factors.query_features
    counts = torch.bincount(image_index, minlength=len(spatial))
    slot = torch.arange(len(image_index), device=image_index.device) - (counts.cumsum(0) - counts)[image_index]
    packed = queries.new_zeros(len(spatial), int(counts.max()), queries.shape[-1])
    packed = packed.index_put((image_index, slot), queries[image_index, query_index])
    return torch.einsum("bchw,bnc->bnhw", spatial, packed)[image_index, slot] + factors.bias


def _uncertain_points(logits: torch.Tensor, num_points: int, generator: torch.Generator | None) -> torch.Tensor:
    """(N, 1, h, w) logits -> (N, P, 2) points: of 3P uniform candidates the int(0.75 P) with the logit closest to 0
    (uncertainty -|logit|), then P - int(0.75 P) fresh uniform points (detectron2's
    `get_uncertain_point_coords_with_randomness`)."""
    candidates = _random_points((len(logits), num_points * _OVERSAMPLE_RATIO), logits.device, generator)
    uncertainty = -point_sample(logits, candidates).abs()[:, 0]
    num_uncertain = int(_IMPORTANCE_SAMPLE_RATIO * num_points)
    chosen = uncertainty.topk(num_uncertain, dim=1).indices
    coords = candidates.gather(1, chosen.unsqueeze(-1).expand(-1, -1, 2))
    if num_points > num_uncertain:
        extra = _random_points((len(logits), num_points - num_uncertain), logits.device, generator)
        coords = torch.cat([coords, extra], dim=1)
    return coords


def _sample_matched_targets(
    target_masks: torch.Tensor, target_index: torch.Tensor, coords: torch.Tensor
) -> torch.Tensor:
    """Target masks (T, 1, H, W) read nearest at each match's own points: coords (N, P, 2) -> (N, P).

    The points are grouped by target (a target is matched once per Group DETR group), so every mask is sampled from
    the one float copy of the batch's masks instead of one full-size copy per match.
    """
    num_targets, num_points = len(target_masks), coords.shape[1]
    counts = torch.bincount(target_index, minlength=num_targets)
    order = torch.argsort(target_index, stable=True)
    rank = torch.empty_like(target_index)
    rank[order] = torch.arange(len(order), device=order.device) - (counts.cumsum(0) - counts)[target_index[order]]
    grid = coords.new_full((num_targets, int(counts.max()), num_points, 2), 0.5)
    grid[target_index, rank] = coords
    sampled = point_sample(target_masks.to(coords.dtype), grid.flatten(1, 2), mode="nearest")
    return sampled.view(grid.shape[:3])[target_index, rank]
