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
"""COCO detection metrics with pycocotools: the one evaluation loop behind the Trainer's `compute_metrics`
(`CocoEvaluator`) and `hf-rfdetr eval` (raw outputs -> `post_process` -> `coco_metrics`)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_convert

_STATS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large")
_RECALLS = ("mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")


def _absolute_xywh(boxes: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Normalised cxcywh (N, 4) -> absolute xywh in an image of (height, width), float32.

    The conversion runs in float64 (exact for float32 inputs), so that the width stays the target's `w` rather than
    `(cx + w/2) - (cx - w/2)` rounded to float32."""
    height, width = size
    boxes = boxes.detach().float().cpu() * torch.tensor([width, height, width, height])
    return box_convert(boxes.double(), "cxcywh", "xywh").float().numpy()


def post_process(
    logits: torch.Tensor, pred_boxes: torch.Tensor, sizes: Sequence[tuple[int, int]], top_k: int = 100
) -> list[dict[str, torch.Tensor]]:
    """Raw outputs (B, Q, C) and normalised cxcywh (B, Q, 4) -> per image the `top_k` best `scores`, `labels` and
    absolute xyxy `boxes` in an image of `sizes[i]` (height, width), as `RFDetrImageProcessor` post-processes them
    (no score threshold, so that COCO sees the whole precision-recall curve)."""
    from ..models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor

    outputs = SimpleNamespace(logits=logits.float().cpu(), pred_boxes=pred_boxes.float().cpu())
    return RFDetrImageProcessor().post_process_object_detection(outputs, 0.0, list(sizes), top_k=top_k)


def coco_results(
    prediction: dict[str, torch.Tensor], image_id: int, category_ids: dict[int, Any] | None = None
) -> list[dict[str, Any]]:
    """One image's detections in COCO results format (`bbox` absolute xywh, widths exact in float64), labels mapped
    by `category_ids`."""
    boxes = box_convert(prediction["boxes"].detach().float().cpu().double(), "xyxy", "xywh").tolist()
    return [
        {
            "image_id": image_id,
            "category_id": category_ids[int(label)] if category_ids is not None else int(label),
            "bbox": box,
            "score": float(score),
        }
        for score, label, box in zip(prediction["scores"].tolist(), prediction["labels"].tolist(), boxes)
    ]


def coco_metrics(
    predictions: list[dict[str, torch.Tensor]],
    targets: list[dict[str, torch.Tensor]],
    id2label: dict[int, str] | None = None,
) -> dict[str, float]:
    """COCO mAP of detections against ground truth, as pycocotools computes it (100 detections per image).

    Args:
        predictions: per image `scores` (K,), `labels` (K,), `boxes` (K, 4) absolute xyxy in the original image.
        targets: per image `class_labels` (N,), `boxes` (N, 4) normalised cxcywh and `orig_size` (height, width).
            Ground-truth areas are box areas in the original image.
        id2label: adds per-class AP as `map_<label>`.

    Returns:
        map, map_50, map_75, map_small, map_medium, map_large, mar_1, mar_10, mar_100, mar_small, mar_medium,
        mar_large (and per-class AP), -1 where COCO has nothing to measure.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    images, annotations, detections = [], [], []
    for image_id, (prediction, target) in enumerate(zip(predictions, targets)):
        height, width = (int(v) for v in target["orig_size"])
        images.append({"id": image_id, "height": height, "width": width})
        for label, box in zip(target["class_labels"].tolist(), _absolute_xywh(target["boxes"], (height, width))):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": box.tolist(),
                    "area": float(box[2] * box[3]),
                    "iscrowd": 0,
                }
            )
        detections += coco_results(prediction, image_id)
    categories = sorted(
        set(id2label or {}) | {a["category_id"] for a in annotations} | {d["category_id"] for d in detections}
    )
    ground_truth = COCO()
    ground_truth.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in categories]}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        if not detections or not annotations:
            return {name: (0.0 if annotations else -1.0) for name in _STATS + _RECALLS}
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    metrics = {name: float(value) for name, value in zip(_STATS + _RECALLS, evaluation.stats)}
    if id2label:
        precision = evaluation.eval["precision"]  # (iou thresholds, recall, categories, areas, max detections)
        for index, category in enumerate(evaluation.params.catIds):
            if category in id2label:
                values = precision[:, :, index, 0, -1]
                values = values[values > -1]
                metrics[f"map_{id2label[category]}"] = float(values.mean()) if values.size else -1.0
    return metrics
