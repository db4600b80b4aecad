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
"""COCO-style annotations -> the training targets `RFDetrImageProcessor` returns as `labels`.

One dict per image, `{"image_id": int, "annotations": [{"bbox": [x, y, w, h], "category_id": int, "iscrowd": 0}, ...]}`,
becomes `class_labels` (N,), `boxes` (N, 4) normalised (cx, cy, w, h) of the image, `area` (N,) in resized-image pixels,
`iscrowd`, `image_id`, `orig_size` and `size`. Boxes are clipped to the image; crowd and empty boxes are dropped, with
a warning that counts them; malformed objects raise a `ValueError` that names the image and the object.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_convert
from transformers.utils import logging

logger = logging.get_logger(__name__)


def prepare_targets(
    annotations: Any, orig_sizes: list[tuple[int, int]], pixel_mask: torch.Tensor
) -> list[dict[str, torch.Tensor]]:
    """Build one training target per image from COCO-style `annotations` (one dict per image)."""
    annotation_list = [annotations] if isinstance(annotations, Mapping) else list(annotations)
    if len(annotation_list) != len(orig_sizes):
        raise ValueError(
            f"Got {len(annotation_list)} annotation dict(s) for {len(orig_sizes)} image(s); pass exactly one "
            "{'image_id': ..., 'annotations': [...]} per image."
        )
    padded_size = (int(pixel_mask.shape[1]), int(pixel_mask.shape[2]))
    return [
        _prepare_target(annotation, index, orig_size, _unpadded_size(pixel_mask[index]), padded_size)
        for index, (annotation, orig_size) in enumerate(zip(annotation_list, orig_sizes))
    ]


def _unpadded_size(mask: torch.Tensor) -> tuple[int, int]:
    """`(h, w)` of the image region of a `(H, W)` pixel mask (the top-left block of ones)."""
    return int(mask[:, 0].sum()), int(mask[0, :].sum())


def _prepare_target(
    annotation: Any,
    index: int,
    orig_size: tuple[int, int],
    resized_size: tuple[int, int],
    padded_size: tuple[int, int],
) -> dict[str, torch.Tensor]:
    """Convert one image's COCO annotation dict into tensors (boxes normalised cx, cy, w, h of the image)."""
    image_id, objects = _image_annotation_fields(annotation, index)
    parsed = [_parse_object(obj, image_id, j) for j, obj in enumerate(objects)]
    kept = [(bbox, category_id) for bbox, category_id, is_crowd in parsed if not is_crowd]
    xyxy = box_convert(torch.tensor([bbox for bbox, _ in kept], dtype=torch.float64).reshape(-1, 4), "xywh", "xyxy")
    height, width = orig_size
    limits = torch.tensor([width, height, width, height], dtype=torch.float64)
    clipped = torch.minimum(xyxy.clamp_min(0.0), limits)
    valid = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    counts = {
        "crowd": len(parsed) - len(kept),
        "degenerate": int((~valid).sum()),
        "clipped": int(((clipped != xyxy).any(-1) & valid).sum()),
    }
    _report_counts(image_id, counts)
    classes = torch.tensor([category_id for _, category_id in kept], dtype=torch.int64)
    return _target_tensors(image_id, clipped[valid], classes[valid], orig_size, resized_size, padded_size)


def _image_annotation_fields(annotation: Any, index: int) -> tuple[int, list[Any]]:
    """Return `(image_id, objects)` of one image's annotation dict, validating its structure."""
    if not isinstance(annotation, Mapping) or "image_id" not in annotation or "annotations" not in annotation:
        raise ValueError(
            f"Annotation for image {index} must be a dict with 'image_id' and 'annotations' keys, got "
            f"{type(annotation).__name__} {list(annotation) if isinstance(annotation, Mapping) else ''}."
        )
    objects = annotation["annotations"]
    if not isinstance(objects, (list, tuple)):
        raise ValueError(f"image_id {annotation['image_id']}: 'annotations' must be a list of object dicts.")
    return int(annotation["image_id"]), list(objects)


def _parse_object(obj: Any, image_id: int, j: int) -> tuple[tuple[float, float, float, float], int, bool]:
    """Validate one COCO object; return its `(x, y, w, h)` bbox, category id and crowd flag."""
    where = f"image_id {image_id}, annotation {j}"
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: expected a dict, got {type(obj).__name__}.")
    for key in ("bbox", "category_id"):
        if key not in obj:
            raise ValueError(f"{where}: missing '{key}'.")
    bbox = obj["bbox"]
    if (
        not isinstance(bbox, (list, tuple, np.ndarray, torch.Tensor))
        or len(bbox) != 4
        or not all(_is_number(v) for v in bbox)
    ):
        raise ValueError(f"{where}: 'bbox' must be 4 finite numbers [x, y, width, height], got {bbox!r}.")
    category_id = obj["category_id"]
    if not _is_number(category_id) or float(category_id) != int(category_id):
        raise ValueError(f"{where}: 'category_id' must be an integer, got {category_id!r}.")
    is_crowd = obj.get("iscrowd", 0)
    if not isinstance(is_crowd, (bool, np.bool_)) and (not _is_number(is_crowd) or float(is_crowd) not in (0.0, 1.0)):
        raise ValueError(f"{where}: 'iscrowd' must be the integer 0 or 1, got {is_crowd!r}.")
    x, y, w, h = (float(v) for v in bbox)
    return (x, y, w, h), int(category_id), bool(is_crowd)


def _is_number(value: Any) -> bool:
    """True for a finite real number (Python, numpy or 0-d torch scalar), False for bools and anything else."""
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(float(value))


def _report_counts(image_id: int, counts: dict[str, int]) -> None:
    """Log a warning with the number of dropped / clipped boxes of one image, if any."""
    if any(counts.values()):
        logger.warning(
            f"image_id {image_id}: dropped {counts['crowd']} crowd annotation(s) (iscrowd=1), dropped "
            f"{counts['degenerate']} box(es) with zero width or height after clipping, clipped "
            f"{counts['clipped']} box(es) to the image."
        )


def _target_tensors(
    image_id: int,
    xyxy: torch.Tensor,
    classes: torch.Tensor,
    orig_size: tuple[int, int],
    resized_size: tuple[int, int],
    padded_size: tuple[int, int],
) -> dict[str, torch.Tensor]:
    """Assemble the target dict from `(N, 4)` float64 clipped pixel boxes; boxes `(N, 4)` cxcywh normalised by the
    image size (the model's frame, see the class docstring), `area` in resized-image pixels."""
    height, width = orig_size
    cxcywh = box_convert(xyxy, "xyxy", "cxcywh") / torch.tensor([width, height, width, height], dtype=torch.float64)
    area = cxcywh[:, 2] * resized_size[1] * cxcywh[:, 3] * resized_size[0]
    return {
        "class_labels": classes,
        "boxes": cxcywh.to(torch.float32),
        "image_id": torch.tensor([image_id], dtype=torch.int64),
        "area": area.to(torch.float32),
        "iscrowd": torch.zeros(len(classes), dtype=torch.int64),
        "orig_size": torch.tensor(orig_size, dtype=torch.int64),
        "size": torch.tensor(padded_size, dtype=torch.int64),
    }
