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
"""Post-processing helpers of [`RFDetrImageProcessor`]: reading and checking the model outputs and target sizes, the
top-k selection of (query, class) pairs, boxes, and instance masks (resize, threshold, id map, COCO RLE).

Mask semantics (those of the original `rfdetr` `PostProcess`, with the defaults): the selected queries' mask logits are
resized bilinearly (`align_corners=False`) straight to the target size FIRST and thresholded SECOND, at the logit of
the probability `mask_threshold` (0.5 is logit 0, the original's `> 0.0`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torchvision.ops import box_convert

# Instances resized per `F.interpolate` call: bounds the float32 peak memory at `MASK_CHUNK * H * W` values (the
# original's `_MASK_CHUNK`).
MASK_CHUNK = 32


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
    """`(B, 2)` float32 `(height, width)` per image; all ones (normalised boxes) when `target_sizes` is None.

    Every size must be a pair of positive integers (an image size in pixels; integral floats are accepted): zero,
    negative, fractional, NaN or infinite sizes raise `ValueError` naming the image, as they would give degenerate or
    NaN boxes and masks. The one check of detection and segmentation post-processing alike."""
    if target_sizes is None:
        return torch.ones((batch_size, 2), dtype=torch.float32, device=device)
    if len(target_sizes) != batch_size:
        raise ValueError(
            f"Got {len(target_sizes)} target sizes for a batch of {batch_size}; pass one (height, width) per image."
        )
    try:
        sizes = torch.as_tensor(
            [[float(v) for v in size] for size in target_sizes]
            if not isinstance(target_sizes, torch.Tensor)
            else target_sizes,
            dtype=torch.float32,
        )
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`target_sizes` must hold one (height, width) pair of positive integers per image, got {target_sizes!r} "
            f"({error})."
        ) from error
    if sizes.shape != (batch_size, 2):
        raise ValueError(f"`target_sizes` must have shape (batch_size, 2), got {tuple(sizes.shape)}.")
    valid = (torch.isfinite(sizes) & (sizes >= 1) & (sizes == sizes.round())).all(dim=1)
    if not bool(valid.all()):
        index = int((~valid).nonzero()[0, 0])
        height, width = sizes[index].tolist()
        raise ValueError(
            f"`target_sizes[{index}]` must be a (height, width) pair of positive integers (the image size in pixels), "
            f"got {(height, width)}."
        )
    return sizes.to(device)


def unit_interval(value: Any, name: str = "threshold") -> float:
    """`value` as a float in `[0, 1]` (a score or fraction threshold of the post-processing); `ValueError` naming
    `name` for anything else: None, text, a bool, NaN, or a number outside the interval. Python, numpy and 0-d torch
    numbers are accepted."""
    number = value.item() if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)) else value
    if isinstance(number, bool) or not isinstance(number, numbers.Real) or not 0.0 <= float(number) <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1] (a number), got {value!r} of type {type(value).__name__}.")
    return float(number)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """`(..., 4)` (cx, cy, w, h) -> (x0, y0, x1, y1); negative w/h count as 0, as in the original."""
    return box_convert(torch.cat((boxes[..., :2], boxes[..., 2:].clamp(min=0.0)), dim=-1), "cxcywh", "xyxy")


def select_top_k(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The original's `_select_topk`: sigmoid scores of `(B, Q, C)` logits, a stable descending sort over the `Q * C`
    (query, class) pairs (ties: lower flattened index first), the first `k`.

    Returns `(scores, labels, queries)`, each `(B, k)`: the probability, the class slot (`index % C`) and the query
    (`index // C`) of each selected pair.
    """
    batch_size, num_queries, num_classes = logits.shape
    probs = logits.float().sigmoid().reshape(batch_size, num_queries * num_classes)
    order = _stable_top_k(probs, k)
    return probs.gather(1, order), order % num_classes, torch.div(order, num_classes, rounding_mode="floor")


def _stable_top_k(probs: torch.Tensor, k: int) -> torch.Tensor:
    """`torch.argsort(probs, dim=1, descending=True, stable=True)[:, :k]` for `(B, N)` `probs`, without sorting all N.

    `topk` finds each row's k-th largest value; every value above it is taken, and of the values equal to it the
    lowest-indexed ones up to k in all; only those k are then sorted (stably, so ties keep index order). A full stable
    sort of Nano's 300 x 91 scores took 2 ms, most of the post-processing. NaN ranks first, as in the full sort.
    """
    k = min(k, probs.shape[1])
    if k == 0:
        return probs.new_empty((probs.shape[0], 0), dtype=torch.long)
    key = probs.nan_to_num(nan=2.0)  # probabilities are at most 1
    kth = key.topk(k, dim=1).values[:, -1:]
    above, tied = key > kth, key == kth
    still_needed = k - above.sum(dim=1, keepdim=True)
    chosen = above | (tied & (tied.cumsum(dim=1) <= still_needed))
    indices = chosen.nonzero()[:, 1].reshape(probs.shape[0], k)  # ascending index order within each row
    return indices.gather(1, torch.argsort(key.gather(1, indices), dim=1, descending=True, stable=True))


def scale_boxes(pred_boxes: torch.Tensor, queries: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """The selected queries' `(B, Q, 4)` normalised cxcywh boxes as `(B, K, 4)` xyxy scaled by the `(B, 2)` `(height,
    width)` sizes and clamped to `[0, width]` / `[0, height]`."""
    boxes = cxcywh_to_xyxy(pred_boxes.float()).gather(1, queries.unsqueeze(-1).expand(-1, -1, 4))
    scale = sizes[:, [1, 0, 1, 0]].unsqueeze(1)
    return torch.minimum((boxes * scale).clamp_min(0.0), scale)


def mask_logit_tensor(outputs: Any, logits: torch.Tensor) -> torch.Tensor:
    """`outputs.pred_masks` as dense `(B, Q, h, w)` mask logits, checked against `logits` `(B, Q, C)`; factored masks
    (an object with `.dense()`, e.g. `RFDetrMaskFactors`) are made dense."""
    masks = get_field(outputs, "pred_masks")
    if masks is None:
        raise ValueError(
            "`outputs.pred_masks` is missing: post_process_instance_segmentation needs the mask logits (B, Q, h, w) of "
            "a segmentation model (`RFDetrForInstanceSegmentation`, config `segmentation_head=True`); for a detection "
            "model use post_process_object_detection."
        )
    if not isinstance(masks, torch.Tensor) and callable(getattr(masks, "dense", None)):
        masks = masks.dense()
    batch_size, num_queries = int(logits.shape[0]), int(logits.shape[1])
    if not isinstance(masks, torch.Tensor) or masks.ndim != 4 or tuple(masks.shape[:2]) != (batch_size, num_queries):
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(
            f"`outputs.pred_masks` must be mask logits of shape (B, Q, h, w) = ({batch_size}, {num_queries}, h, w), "
            f"matching `logits` {tuple(logits.shape)}; got {shape}."
        )
    return masks


def mask_sizes(
    target_sizes: torch.Tensor | Sequence[Sequence[int]] | None, batch_size: int, head_size: tuple[int, int]
) -> list[tuple[int, int]]:
    """Per image `(height, width)` of the output masks: `target_sizes` (positive integers), or the mask-head
    resolution `head_size` when it is None."""
    if target_sizes is None:
        return [head_size] * batch_size
    sizes = target_size_tensor(target_sizes, batch_size, torch.device("cpu")).tolist()  # checked there
    return [(int(height), int(width)) for height, width in sizes]


def image_regions(pixel_mask: torch.Tensor | None, batch_size: int) -> list[tuple[float, float] | None]:
    """Per image, the fractions `(height, width)` of the padded canvas that are image (the top-left block of ones of a
    `(B, H, W)` `pixel_mask`), or None where the image fills the canvas (or no mask is given)."""
    if pixel_mask is None:
        return [None] * batch_size
    if not isinstance(pixel_mask, torch.Tensor) or pixel_mask.ndim != 3 or int(pixel_mask.shape[0]) != batch_size:
        shape = tuple(pixel_mask.shape) if isinstance(pixel_mask, torch.Tensor) else type(pixel_mask).__name__
        raise ValueError(f"`pixel_mask` must be the processor's (B, H, W) mask with B = {batch_size}, got {shape}.")
    canvas_height, canvas_width = int(pixel_mask.shape[1]), int(pixel_mask.shape[2])
    regions: list[tuple[float, float] | None] = []
    for index, mask in enumerate(pixel_mask.bool()):
        height, width = int(mask[:, 0].sum()), int(mask[0, :].sum())
        if height == 0 or width == 0:
            raise ValueError(f"`pixel_mask[{index}]` marks no image pixel (its top-left pixel must be image).")
        full = height == canvas_height and width == canvas_width
        regions.append(None if full else (height / canvas_height, width / canvas_width))
    return regions


def probability_to_logit(probability: float, name: str = "mask_threshold") -> float:
    """The logit of a probability threshold in `[0, 1]` (`0.5 -> 0.0` exactly; 0 and 1 give -inf and +inf)."""
    if isinstance(probability, bool) or not isinstance(probability, numbers.Real) or not 0.0 <= probability <= 1.0:
        raise ValueError(
            f"`{name}` is a probability in [0, 1] (0.5, the default, is the original's mask logit > 0), got "
            f"{probability!r}."
        )
    probability = float(probability)
    if probability in (0.0, 1.0):
        return math.inf if probability == 1.0 else -math.inf
    return math.log(probability) - math.log1p(-probability)


def binary_masks(
    mask_logits: torch.Tensor,
    size: tuple[int, int],
    logit_threshold: float,
    region: tuple[float, float] | None = None,
) -> torch.Tensor:
    """`(K, h, w)` mask logits -> `(K, *size)` bool masks: resized FIRST (bilinear, `align_corners=False`), compared
    `> logit_threshold` SECOND, `MASK_CHUNK` instances at a time.

    `region` (fractions of the canvas that are image, see `image_regions`) maps only that top-left part of the logits
    onto `size`; None resizes the whole grid exactly as the original (`F.interpolate(..., size=size)`).
    """
    count = int(mask_logits.shape[0])
    masks = torch.empty((count, *size), dtype=torch.bool, device=mask_logits.device)
    for start in range(0, count, MASK_CHUNK):
        chunk = mask_logits[start : start + MASK_CHUNK, None].float()
        if region is None:
            resized = F.interpolate(chunk, size=size, mode="bilinear", align_corners=False)
        else:
            resized = _resize_region(chunk, size, region)
        torch.gt(resized[:, 0], logit_threshold, out=masks[start : start + MASK_CHUNK])
    return masks


def _resize_region(chunk: torch.Tensor, size: tuple[int, int], region: tuple[float, float]) -> torch.Tensor:
    """Bilinear resize of the top-left `region` fractions of `(K, 1, h, w)` logits to `size`, with the sampling
    positions of `F.interpolate(align_corners=False)` (pixel centres, edges clamped) via `grid_sample`."""
    height, width = size
    ys = (torch.arange(height, dtype=torch.float32, device=chunk.device) + 0.5) * (2.0 * region[0] / height) - 1.0
    xs = (torch.arange(width, dtype=torch.float32, device=chunk.device) + 0.5) * (2.0 * region[1] / width) - 1.0
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2) as (x, y)
    grid = grid.unsqueeze(0).expand(chunk.shape[0], -1, -1, -1)
    return F.grid_sample(chunk, grid, mode="bilinear", padding_mode="border", align_corners=False)


def segment_map(masks: torch.Tensor, overlap_mask_area_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' `(H, W)` int32 segment-id map of `(N, H, W)` bool masks sorted by descending score.

    Each pixel belongs to the first (highest-scoring) instance that covers it; an instance keeps a segment when it owns
    some pixels and more than `overlap_mask_area_threshold` of its mask area (0: any pixel, as transformers' rf_detr;
    Mask2Former's rule otherwise). Kept segments get ids 1, 2, ... in score order; background and the pixels of
    dropped instances are -1. Returns the map and the `(S,)` indices of the kept instances.
    """
    count, height, width = masks.shape
    owner = _first_cover(masks)  # (H, W): index of the highest-scoring instance covering the pixel, `count` if none
    covered = owner < count
    owned = torch.bincount(owner[covered], minlength=count)
    keep = owned > 0
    if overlap_mask_area_threshold > 0:
        keep &= owned > overlap_mask_area_threshold * masks.flatten(1).sum(dim=1)
    ids = torch.where(keep, keep.cumsum(0), -1).to(torch.int32)
    segmentation = torch.full((height, width), -1, dtype=torch.int32, device=masks.device)
    segmentation[covered] = ids[owner[covered]]
    return segmentation, keep.nonzero().flatten()


def _first_cover(masks: torch.Tensor) -> torch.Tensor:
    """For `(N, H, W)` bool masks, the `(H, W)` int64 index of the first mask covering each pixel (`N` where none),
    `MASK_CHUNK` masks at a time: within a chunk the first cover is the largest of the masks times descending ranks."""
    count = int(masks.shape[0])
    owner = torch.full(masks.shape[1:], count, dtype=torch.int64, device=masks.device)
    for start in range(0, count, MASK_CHUNK):
        chunk = masks[start : start + MASK_CHUNK]
        ranks = torch.arange(chunk.shape[0], 0, -1, dtype=torch.int16, device=masks.device)
        best = (chunk.to(torch.int16) * ranks[:, None, None]).amax(dim=0)  # 0 where the chunk covers nothing
        first = (start + chunk.shape[0]) - best.to(torch.int64)
        owner = torch.where((owner == count) & (best > 0), first, owner)
    return owner


def coco_rle(masks: torch.Tensor) -> list[dict[str, Any]]:
    """COCO run-length encodings (`pycocotools.mask.encode` of Fortran-order uint8) of `(N, H, W)` bool masks, one dict
    `{"size": [H, W], "counts": str}` per instance (`counts` decoded to text, ready for a COCO results json)."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError as error:  # pragma: no cover - pycocotools is in the `train` extra
        raise ImportError(
            "return_coco_annotation=True needs pycocotools (`pip install pycocotools`, or hf_rfdetr's `train` extra)."
        ) from error
    if masks.shape[0] == 0:
        return []
    array = masks.detach().cpu().permute(1, 2, 0).numpy().astype("uint8", order="F")
    rles = mask_utils.encode(array)
    return [{"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")} for rle in rles]
