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
"""`CocoEvaluator`: the COCO metrics of a Trainer's evaluation (`compute_metrics`), from `RFDetrTrainer`'s per-image
predictions or post-processed detections, or from a plain `transformers.Trainer`'s batch output arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import EvalPrediction

from .metrics import coco_metrics, pack_target_masks, post_process, post_process_segmentation

#: Target fields that are not indexed by object (not cut to the batch's size by the plain Trainer's last batch).
_IMAGE_FIELDS = ("image_id", "orig_size", "size")


class CocoEvaluator:
    """`compute_metrics` for the Trainer: post-processes (logits, pred_boxes) batches like the image processor and
    scores them with pycocotools. Needs `eval_do_concat_batches=False` (detection targets differ in length), which
    `RFDetrTrainer` sets.

    With `RFDetrTrainer` each batch arrives split per image (see `RFDetrTrainer.gather_function`); segmentation
    models' batches are post-processed already by `RFDetrTrainer.prediction_step` (masks RLE-encoded at the original
    size, see `training.metrics`), and the `segm_*` metrics come beside the box ones.

    With a plain `transformers.Trainer` (one process, `eval_do_concat_batches=False`) each batch arrives as the
    model's outputs with their batch dimension, `(logits (B, Q, C), pred_boxes (B, Q, 4), ...)` (`pred_masks` next for
    a segmentation model; outputs that are not arrays, such as `loss_dict` when `ignore_keys` is not given, are
    skipped) and the targets as the data collator gives them. That Trainer (accelerate's `gather_for_metrics`) cuts
    every tensor of the last batch's targets to the batch's size when the evaluation set is not a multiple of the
    batch size; a target that may have lost objects so is refused (`ValueError`) rather than scored: use
    `RFDetrTrainer`, or a `per_device_eval_batch_size` that divides the evaluation set (1 always does)."""

    def __init__(self, id2label: dict[int, str] | None = None, top_k: int = 100) -> None:
        self.id2label, self.top_k = id2label, top_k

    def __call__(self, evaluation: EvalPrediction) -> dict[str, float]:
        """Predictions: per batch a list of per-image `(logits, pred_boxes)`, or of post-processed dicts (`scores`,
        `labels`, `boxes`, packed RLE masks), or (plain Trainer) the batch's output arrays; label_ids: per batch a
        list of target dicts with `class_labels`, normalised cxcywh `boxes` and `orig_size`."""
        if not isinstance(evaluation.predictions, list) or not isinstance(evaluation.label_ids, list):
            raise ValueError(
                "CocoEvaluator needs the evaluation batches kept apart: set TrainingArguments(eval_do_concat_batches="
                "False) (RFDetrTrainer sets it), detection targets differ in length between images"
            )
        batches = [
            (batch, labels, _batch_outputs(batch, labels))
            for batch, labels in zip(evaluation.predictions, evaluation.label_ids)
        ]
        plain = [labels for _, labels, outputs in batches if outputs is not None]
        if plain:  # a plain Trainer's batches: check the last one before scoring anything
            _check_last_batch(plain)
        predictions, targets = [], []
        for batch, labels, outputs in batches:
            labels = [{key: torch.as_tensor(value) for key, value in label.items()} for label in labels]
            if outputs is not None:  # a plain Trainer's (B, ...) outputs
                predictions += self._post_process(outputs, labels)
                targets += [pack_target_masks(label) for label in labels] if len(outputs) > 2 else labels
            elif len(batch) and isinstance(batch[0], dict):  # post-processed by RFDetrTrainer.prediction_step
                predictions += [{key: torch.as_tensor(value) for key, value in image.items()} for image in batch]
                targets += labels
            else:  # per-image (logits, pred_boxes) of RFDetrTrainer.gather_function
                logits = torch.stack([torch.as_tensor(image_logits) for image_logits, _ in batch])
                boxes = torch.stack([torch.as_tensor(image_boxes) for _, image_boxes in batch])
                predictions += self._post_process((logits, boxes), labels)
                targets += labels
        return coco_metrics(predictions, targets, self.id2label)

    def _post_process(self, outputs: tuple, labels: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        """One batch's `(logits, pred_boxes[, pred_masks])` -> per image the top `top_k` detections."""
        sizes = [tuple(int(v) for v in label["orig_size"]) for label in labels]
        tensors = [torch.as_tensor(output) for output in outputs]
        if len(tensors) > 2:
            return post_process_segmentation(*tensors, sizes, top_k=self.top_k)
        return post_process(*tensors, sizes, top_k=self.top_k)


def _batch_outputs(batch: Any, labels: list[dict[str, Any]]) -> tuple | None:
    """A plain Trainer's batch (the model outputs with their batch dimension) as `(logits, pred_boxes)`, or
    `(logits, pred_boxes, pred_masks)` for a segmentation model; None for a batch of `RFDetrTrainer` (a list of
    per-image objects)."""
    if isinstance(batch, list) and all(isinstance(image, (tuple, list, dict)) for image in batch):
        return None
    parts = list(batch) if isinstance(batch, tuple) else [batch]
    arrays = [index for index, part in enumerate(parts) if isinstance(part, (np.ndarray, torch.Tensor))]
    if len(arrays) >= 2:
        logits, boxes = parts[arrays[0]], parts[arrays[1]]
        if logits.ndim == 3 and tuple(boxes.shape) == (*logits.shape[:2], 4) and len(logits) == len(labels):
            masks = parts[arrays[1] + 1] if arrays[1] + 1 < len(parts) else None
            if (
                isinstance(masks, (np.ndarray, torch.Tensor))
                and masks.ndim == 4
                and masks.shape[:2] == logits.shape[:2]
            ):
                return logits, boxes, masks
            return logits, boxes
    shapes = [tuple(parts[index].shape) for index in arrays]
    raise ValueError(
        f"CocoEvaluator cannot read an evaluation batch of {len(labels)} target(s) with output arrays of shapes "
        f"{shapes}: expected logits (B, Q, C) and pred_boxes (B, Q, 4) first, as the model returns them (with "
        "RFDetrTrainer, or transformers' Trainer with eval_do_concat_batches=False)"
    )


def _check_last_batch(batches: list[list[dict[str, Any]]]) -> None:
    """Refuse a plain Trainer's last batch whose targets may have been cut. accelerate's `gather_for_metrics` cuts every
    tensor of the last batch to its first `r` rows (`r` images, when the evaluation set is not a multiple of the batch
    size): an `orig_size` with fewer than 2 values, or objects cut to `r`, which cannot be told apart from targets that
    have exactly `r` objects (the last batch is known to be short when it is shorter than the first)."""
    last = batches[-1]
    size = len(last)
    if len(batches) > 1 and size == len(batches[0]):
        return  # the last batch is full: nothing was cut
    cut = []
    for index, target in enumerate(last):
        sizes = {
            key: len(np.asarray(value)) for key, value in target.items() if key not in _IMAGE_FIELDS and np.ndim(value)
        }
        if ("orig_size" in target and np.size(target["orig_size"]) != 2) or (size > 1 and size in sizes.values()):
            cut.append(index)
    if cut:
        raise ValueError(
            f"CocoEvaluator: the last evaluation batch has {size} image(s) and transformers' Trainer "
            f"(accelerate's gather_for_metrics) cuts every tensor of its targets to their first {size} rows when the "
            f"evaluation set is not a multiple of the batch size; target(s) {cut} of that batch may have lost objects "
            "(or their orig_size), so the mAP would be wrong. Use RFDetrTrainer (it gathers per image), or a "
            "per_device_eval_batch_size that divides the evaluation set (1 always does)."
        )
