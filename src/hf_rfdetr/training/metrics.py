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
"""COCO detection and instance segmentation metrics with pycocotools: the one evaluation loop behind the Trainer's
`compute_metrics` (`CocoEvaluator`) and `hf-rfdetr eval` (raw outputs -> `post_process` / `post_process_segmentation`
-> `coco_metrics`).

Segmentation (`pred_masks` in the outputs): each batch is post-processed at once into the top detections with their
masks at the original image size, RLE-encoded (`post_process_segmentation`), and the targets' masks are RLE-encoded at
the original size too (`pack_target_masks`), so that no dense mask of the whole evaluation set is ever held. The mask
ground truth is the annotation's own masks at the original size, crowd regions included as `iscrowd` (as pycocotools
scores against a COCO json), when the evaluation dataset carries them (`with_evaluation_ground_truth`, applied by
`RFDetrTrainer` and `hf-rfdetr eval`); otherwise the targets' masks nearest-resized back to the original size. The
compressed RLE `counts` strings of one image travel as one uint8 tensor (`pack_rles` / `unpack_rles`), since the
Trainer's evaluation loop only moves tensors. `coco_metrics` then adds pycocotools' `segm` metrics (`segm_map`,
`segm_map_50`, ..., per class `segm_map_<label>`) beside the `bbox` ones."""

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
#: Prefix of the mask (`segm`) metrics: `segm_map`, `segm_map_50`, ..., `segm_map_<label>`.
SEGM_PREFIX = "segm_"
#: Key of the packed RLE masks in post-processed predictions and packed targets (see `pack_rles`).
RLE_KEY = "masks_rle"
#: Keys of the annotated masks at the original size that evaluation targets carry (see `with_evaluation_ground_truth`):
#: packed RLE of every object with a segmentation, crowd regions included, their labels and crowd flags.
GT_RLE_KEY, GT_LABELS_KEY, GT_CROWD_KEY = "annotated_masks_rle", "annotated_masks_labels", "annotated_masks_iscrowd"
#: Keys of the annotations' own `area` (the dataset's `objects.area`, in original-image pixels; NaN where an object has
#: none) that evaluation targets carry (see `with_evaluation_ground_truth`): one per box of the target (`GT_AREA_KEY`) and
#: one per annotated mask (`GT_MASK_AREA_KEY`). pycocotools takes the ground truth's small / medium / large ranges
#: from the COCO json's `area`, for `bbox` and `segm` alike, so `coco_metrics` does too when the targets carry it.
GT_AREA_KEY, GT_MASK_AREA_KEY = "annotated_areas", "annotated_masks_area"
#: Separator of the RLE strings in a packed tensor (a space: outside COCO's RLE alphabet, characters 48 to 111).
_RLE_SEPARATOR = b" "


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


def pack_rles(counts: Sequence[str | bytes]) -> torch.Tensor:
    """COCO compressed RLE `counts` strings -> one uint8 tensor (the strings joined by a space; empty for none)."""
    data = b"".join(
        (value.encode("ascii") if isinstance(value, str) else bytes(value)) + _RLE_SEPARATOR for value in counts
    )
    return torch.tensor(list(data), dtype=torch.uint8)


def unpack_rles(packed: torch.Tensor | np.ndarray) -> list[str]:
    """The inverse of `pack_rles` (a tensor or the numpy array the Trainer turns it into)."""
    data = packed.cpu().numpy() if isinstance(packed, torch.Tensor) else np.asarray(packed)
    return [part.decode("ascii") for part in data.astype(np.uint8).tobytes().split(_RLE_SEPARATOR)[:-1]]


def encode_masks(masks: torch.Tensor | np.ndarray) -> list[str]:
    """`(N, H, W)` binary masks -> N compressed RLE `counts` strings (pycocotools)."""
    from pycocotools import mask as mask_utils

    array = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if not len(array):
        return []
    rles = mask_utils.encode(np.asfortranarray(array.astype(np.uint8).transpose(1, 2, 0)))
    return [rle["counts"].decode("ascii") for rle in rles]


def post_process_segmentation(
    logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    pred_masks: torch.Tensor,
    sizes: Sequence[tuple[int, int]],
    top_k: int = 100,
) -> list[dict[str, torch.Tensor]]:
    """Raw segmentation outputs of one batch -> per image the `top_k` best `scores`, `labels`, absolute xyxy `boxes`
    and their masks at `sizes[i]` (height, width), as `post_process_instance_segmentation` computes them (mask
    probability > 0.5), RLE-encoded and packed (`RLE_KEY`, see `pack_rles`); no score threshold."""
    from ..models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor

    outputs = SimpleNamespace(
        logits=logits.float().cpu(), pred_boxes=pred_boxes.float().cpu(), pred_masks=pred_masks.float().cpu()
    )
    results = RFDetrImageProcessor().post_process_instance_segmentation(
        outputs, 0.0, list(sizes), top_k=top_k, return_coco_annotation=True
    )
    return [
        {
            "scores": result["scores"],
            "labels": result["labels"],
            "boxes": result["boxes"],
            RLE_KEY: pack_rles([rle["counts"] for rle in result["segmentation"]]),
        }
        for result in results
    ]


class EvaluationGroundTruth:
    """Wraps an evaluation transform (`DetectionTransform`, for `datasets.Dataset.with_transform`): each target also
    gets the annotations' own `area` of its boxes (`GT_AREA_KEY`, see `annotated_box_areas`) and, with masks, the
    annotated masks of its image at the original size (`GT_RLE_KEY`, `GT_LABELS_KEY`, `GT_CROWD_KEY`,
    `GT_MASK_AREA_KEY`): every object with a `segmentation`, crowd regions too, as pycocotools reads a COCO json."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        output = self.transform(batch)
        for target, objects in zip(output["labels"], batch["objects"]):
            height, width = (int(v) for v in target["orig_size"])
            target.update(annotated_box_areas(objects, target, height, width))
            if getattr(self.transform, "masks", False):
                target.update(annotated_masks(objects, height, width))
        return output


def _given_area(value: Any) -> float:
    """An object's `area` as a float, NaN when it has none (missing, not finite or not positive)."""
    try:
        area = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return area if np.isfinite(area) and area > 0 else float("nan")


def annotated_box_areas(objects: Any, target: dict[str, Any], height: int, width: int) -> dict[str, torch.Tensor]:
    """One row's `objects` -> the `area` of each box of its evaluation `target` (`GT_AREA_KEY`, float32, NaN where an
    object has none): the non-crowd objects whose box, clipped to the image, kept an area, as `DetectionTransform`
    keeps them. Nothing when the dataset has no `area` or the boxes cannot be matched one to one. The target's own
    `area` (box areas in `pixel_values` pixels, for the loss) is left as it is."""
    from .data import object_columns
    from .transforms import source_boxes

    columns = object_columns(objects)
    areas, bboxes = columns.get("area"), columns.get("bbox") or []
    if not areas or len(areas) != len(bboxes):
        return {}
    crowd = columns.get("iscrowd") or [0] * len(bboxes)
    non_crowd = [index for index in range(len(bboxes)) if not crowd[index]]
    boxes, _ = source_boxes(objects, height, width)
    kept_box = ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).tolist()
    kept = [index for index, keep in zip(non_crowd, kept_box) if keep]
    if len(kept) != len(target["class_labels"]):
        return {}
    return {GT_AREA_KEY: torch.tensor([_given_area(areas[index]) for index in kept], dtype=torch.float32)}


def annotated_masks(objects: Any, height: int, width: int) -> dict[str, torch.Tensor]:
    """One row's `objects` -> the packed RLE masks at `(height, width)` of the objects with a `segmentation`, their
    labels, crowd flags and `area` (NaN where an object has none) (see `EvaluationGroundTruth`)."""
    from .data import object_columns
    from .masks import is_missing, segmentation_to_rle

    columns = object_columns(objects)
    segmentations = columns.get("segmentation") or []
    crowd = columns.get("iscrowd") or [0] * len(segmentations)
    areas = columns.get("area") or [None] * len(segmentations)
    kept = [index for index, segmentation in enumerate(segmentations) if not is_missing(segmentation)]
    return {
        GT_RLE_KEY: pack_rles([segmentation_to_rle(segmentations[index], height, width) for index in kept]),
        GT_LABELS_KEY: torch.tensor([int(columns["category"][index]) for index in kept], dtype=torch.int64),
        GT_CROWD_KEY: torch.tensor([int(bool(crowd[index])) for index in kept], dtype=torch.int64),
        GT_MASK_AREA_KEY: torch.tensor([_given_area(areas[index]) for index in kept], dtype=torch.float32),
    }


def with_evaluation_ground_truth(dataset: Any) -> Any:
    """`dataset` with `EvaluationGroundTruth` around its evaluation transform (a split of `apply_transforms` that is not the
    training one: the annotations' `area`, and for a segmentation model the annotated masks); any other dataset is
    returned as it is."""
    import datasets

    from .transforms import DetectionTransform

    if not isinstance(dataset, datasets.Dataset) or dataset.format.get("type") != "custom":
        return dataset
    transform = dataset.format["format_kwargs"].get("transform")
    if not isinstance(transform, DetectionTransform) or transform.multi_scale:
        return dataset
    return dataset.with_transform(
        EvaluationGroundTruth(transform),
        columns=dataset.format["columns"],
        output_all_columns=dataset.format["output_all_columns"],
    )


def pack_target_masks(target: dict[str, Any]) -> dict[str, Any]:
    """A target with its `masks` `(N, S, S)` (at the network input) replaced by their RLE at `orig_size`
    (nearest-neighbour resize back, as the original's evaluation callback does), packed under `RLE_KEY`; when the
    target carries the annotated masks (`GT_RLE_KEY`) the dense masks are only dropped."""
    if "masks" not in target:
        return target
    target = dict(target)
    masks = torch.as_tensor(target.pop("masks"))
    if GT_RLE_KEY in target:
        return target
    height, width = (int(v) for v in target["orig_size"])
    if len(masks) and tuple(masks.shape[-2:]) != (height, width):
        resized = torch.nn.functional.interpolate(masks[None].float(), size=(height, width), mode="nearest")[0] > 0.5
    else:
        resized = masks.bool()
    target[RLE_KEY] = pack_rles(encode_masks(resized))
    return target


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


def coco_segment_results(
    prediction: dict[str, Any], image_id: int, category_ids: dict[int, Any] | None = None
) -> list[dict[str, Any]]:
    """One image's masks in COCO results format (`segmentation` as a compressed RLE at the original size, packed in
    `prediction[RLE_KEY]`), labels mapped by `category_ids`."""
    height, width = (int(v) for v in prediction["size"])
    counts = unpack_rles(prediction[RLE_KEY])
    labels, scores = torch.as_tensor(prediction["labels"]).tolist(), torch.as_tensor(prediction["scores"]).tolist()
    if len(counts) != len(labels):
        raise ValueError(f"image {image_id}: {len(counts)} masks for {len(labels)} detections")
    return [
        {
            "image_id": image_id,
            "category_id": category_ids[int(label)] if category_ids is not None else int(label),
            "segmentation": {"size": [height, width], "counts": text},
            "score": float(score),
        }
        for score, label, text in zip(scores, labels, counts)
    ]


def coco_metrics(
    predictions: list[dict[str, torch.Tensor]],
    targets: list[dict[str, torch.Tensor]],
    id2label: dict[int, str] | None = None,
) -> dict[str, float]:
    """COCO mAP of detections (and masks) against ground truth, as pycocotools computes it (100 detections per image).

    Args:
        predictions: per image `scores` (K,), `labels` (K,), `boxes` (K, 4) absolute xyxy in the original image; for
            segmentation also the K masks at the original size, packed RLE under `RLE_KEY` (`post_process_segmentation`).
        targets: per image `class_labels` (N,), `boxes` (N, 4) normalised cxcywh and `orig_size` (height, width);
            for segmentation also the N masks, packed RLE at the original size under `RLE_KEY` (`pack_target_masks`)
            or `masks` (N, S, S) at the network input. Ground-truth areas (pycocotools' small / medium / large) are
            the annotations' own `area` when the targets carry it (`GT_AREA_KEY`, `GT_MASK_AREA_KEY`, added by
            `with_evaluation_ground_truth`), as pycocotools reads it from a COCO json for both `bbox` and `segm`; else box
            areas in the original image, and mask areas for the masks. Crowd regions (`crowd_boxes` absolute xywh and `crowd_class_labels`, which the
            evaluation transform adds) are box ground truth with `iscrowd=1`: pycocotools ignores the detections
            matched to them, as when it reads the COCO json.
        id2label: adds per-class AP as `map_<label>` (and `segm_map_<label>`).

    Returns:
        map, map_50, map_75, map_small, map_medium, map_large, mar_1, mar_10, mar_100, mar_small, mar_medium,
        mar_large (and per-class AP), -1 where COCO has nothing to measure; when the predictions carry masks, the
        same for the masks (pycocotools' `segm`) with the prefix `segm_`.

    Raises:
        ValueError: different numbers of predictions and targets, or predictions with masks for targets without.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    segmentation = any(RLE_KEY in prediction for prediction in predictions)
    images, annotations, detections = [], [], []
    mask_annotations, segments = [], []
    for image_id, (prediction, target) in enumerate(zip(predictions, targets)):
        height, width = (int(v) for v in target["orig_size"])
        images.append({"id": image_id, "height": height, "width": width})
        labels = torch.as_tensor(target["class_labels"]).tolist()
        boxes = _absolute_xywh(torch.as_tensor(target["boxes"]), (height, width))
        for label, box, area in zip(labels, boxes, _given_areas(target, GT_AREA_KEY, len(labels))):
            area = float(box[2] * box[3]) if area is None else area
            annotations.append(_annotation(len(annotations) + 1, image_id, label, area, bbox=box))
        for label, box in _crowd_boxes(target):  # ignored regions: detections on them are not false positives
            annotations.append(_annotation(len(annotations) + 1, image_id, label, box[2] * box[3], bbox=box, crowd=1))
        detections += coco_results(prediction, image_id)
        if segmentation:
            for label, text, crowd, area in _target_rles(target, image_id, labels):
                rle = {"size": [height, width], "counts": text}
                area = _mask_area(rle) if area is None else area
                mask_annotations.append(_annotation(len(mask_annotations) + 1, image_id, label, area, segmentation=rle))
                mask_annotations[-1]["iscrowd"] = crowd
            segments += coco_segment_results({**prediction, "size": (height, width)}, image_id)
    categories = sorted(
        set(id2label or {}) | {a["category_id"] for a in annotations} | {d["category_id"] for d in detections}
    )
    metrics = _evaluate(images, annotations, detections, categories, "bbox", id2label)
    if segmentation:
        metrics |= _evaluate(images, mask_annotations, segments, categories, "segm", id2label, SEGM_PREFIX)
    return metrics


def _annotation(
    annotation_id: int,
    image_id: int,
    label: int,
    area: float,
    bbox: Any = None,
    segmentation: Any = None,
    crowd: int = 0,
) -> dict[str, Any]:
    annotation = {"id": annotation_id, "image_id": image_id, "category_id": int(label), "area": area, "iscrowd": crowd}
    if bbox is not None:
        annotation["bbox"] = [float(v) for v in bbox]
    if segmentation is not None:
        annotation["segmentation"] = segmentation
    return annotation


def _crowd_boxes(target: dict[str, Any]) -> list[tuple[int, list[float]]]:
    """The target's crowd regions (`transforms.CROWD_BOXES_KEY`, absolute xywh) as (label, box); none when absent."""
    from .transforms import CROWD_BOXES_KEY, CROWD_LABELS_KEY

    if CROWD_BOXES_KEY not in target:
        return []
    boxes = torch.as_tensor(target[CROWD_BOXES_KEY]).double().reshape(-1, 4).tolist()
    return [(int(label), box) for label, box in zip(torch.as_tensor(target[CROWD_LABELS_KEY]).tolist(), boxes)]


def _given_areas(target: dict[str, Any], key: str, count: int) -> list[float | None]:
    """The annotations' own areas under `key` of a target (None where an object has none, or for all `count` objects
    when the target does not carry them, or not one per object)."""
    if key not in target:
        return [None] * count
    values = torch.as_tensor(target[key]).double().reshape(-1).tolist()
    if len(values) != count:
        return [None] * count
    return [value if np.isfinite(value) and value > 0 else None for value in values]


def _mask_area(rle: dict[str, Any]) -> float:
    from pycocotools import mask as mask_utils

    return float(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode("ascii")}))


def _target_rles(target: dict[str, Any], image_id: int, labels: list[int]) -> list[tuple[int, str, int, float | None]]:
    """The target's mask ground truth at its original size as (label, RLE string, iscrowd, annotated area or None):
    the annotated masks when the target carries them (`GT_RLE_KEY`), else its own masks (packed, or encoded here from
    `masks`), with the boxes' annotated areas (`GT_AREA_KEY`) when the target carries them."""
    if GT_RLE_KEY in target:
        counts = unpack_rles(target[GT_RLE_KEY])
        classes = torch.as_tensor(target[GT_LABELS_KEY]).tolist()
        crowd = torch.as_tensor(target[GT_CROWD_KEY]).tolist()
        areas = _given_areas(target, GT_MASK_AREA_KEY, len(counts))
        return [(int(label), text, int(flag), area) for label, text, flag, area in zip(classes, counts, crowd, areas)]
    if RLE_KEY not in target:
        if "masks" not in target:
            from .masks import MASKS_HOW_TO

            raise ValueError(
                f"target {image_id} has no masks, but the predictions do (a segmentation model): evaluate it on "
                f"targets with 'masks' ({MASKS_HOW_TO})"
            )
        target = pack_target_masks(target)
    counts = unpack_rles(target[RLE_KEY])
    if len(counts) != len(labels):
        raise ValueError(f"target {image_id}: {len(counts)} masks for {len(labels)} boxes")
    areas = _given_areas(target, GT_AREA_KEY, len(labels))
    return [(int(label), text, 0, area) for label, text, area in zip(labels, counts, areas)]


def _evaluate(
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    results: list[dict[str, Any]],
    categories: list[int],
    iou_type: str,
    id2label: dict[int, str] | None,
    prefix: str = "",
) -> dict[str, float]:
    """pycocotools' COCOeval of `results` against `annotations` (`iou_type` "bbox" or "segm"), named with `prefix`."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ground_truth = COCO()
    ground_truth.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in categories]}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        if not results or not annotations:
            counted = any(not annotation["iscrowd"] for annotation in annotations)
            return {prefix + name: (0.0 if counted else -1.0) for name in _STATS + _RECALLS}
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), iouType=iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    metrics = {prefix + name: float(value) for name, value in zip(_STATS + _RECALLS, evaluation.stats)}
    if id2label:
        precision = evaluation.eval["precision"]  # (iou thresholds, recall, categories, areas, max detections)
        for index, category in enumerate(evaluation.params.catIds):
            if category in id2label:
                values = precision[:, :, index, 0, -1]
                values = values[values > -1]
                metrics[f"{prefix}map_{id2label[category]}"] = float(values.mean()) if values.size else -1.0
    return metrics
