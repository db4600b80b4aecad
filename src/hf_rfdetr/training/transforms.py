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
"""On-the-fly training and evaluation transforms of the original RF-DETR recipe, and the batch collator.

The defaults reproduce `rfdetr` 1.11.2 (`TrainConfig`: `square_resize_div_64=True`, `multi_scale="per-batch"`,
`expanded_scales=True`, `scale_jitter=True`, torchvision augmentation backend):

- training (`rfdetr/datasets/coco.py`, `make_coco_transforms_square_div_64` -> `_build_torchvision_pipeline` ->
  `_build_train_resize_transforms`, classes in `rfdetr/datasets/_torchvision.py`): with probability 0.5 a square
  resize to the largest multi-scale size `S`, otherwise resize the short side to one of 400/500/600, take a random
  square crop of side 384..600 (clipped to the image) and resize it to `S x S`; then a horizontal flip with
  probability 0.5, `ToImage`, `ToDtype(float32, scale=True)` and ImageNet normalisation. Every resize is bilinear with
  antialiasing on the PIL image. Boxes are clipped by the crop and those left without area are dropped.
- per-batch multi-scale (`rfdetr/training/module_model.py`, `on_train_batch_start`): the collated batch is resized
  with `F.interpolate(mode="bilinear", align_corners=False)` to one scale drawn from `multi_scale_scales` (the original
  draws it with `random.Random(global_step)`; `RFDetrDataCollator` owns a seeded `torch.Generator`).
- evaluation (`_build_torchvision_pipeline`, non-train branch): square resize to `resolution` (bilinear, antialiased
  PIL resize) and the same normalisation. `RFDetrImageProcessor` instead follows `predict` (float tensor resize
  without antialiasing), so the two differ slightly whenever the image is resized.

The RNG draws follow the original one for one (same `torch` calls in the same order), so with the same
`torch.manual_seed` a training sample equals the original's.

Segmentation (`config.segmentation_head`, or `masks=True`): each object's mask (`objects.segmentation`, see
`hf_rfdetr.training.masks`) is decoded at the image's size and travels through the same torchvision v2 ops as a
`tv_tensors.Mask`, as in the original (`rfdetr/datasets/_torchvision.py`, `_apply_to_masks`): nearest-neighbour
resizes, the same crop window and flip; objects whose box leaves the crop are removed with their masks. Boxes stay
the transformed annotation boxes (not recomputed from the masks), as in the original. The per-batch multi-scale
resize nearest-resizes the masks to the batch size too (the original leaves the targets' masks at the
pre-multi-scale size; its loss samples them at normalised coordinates, so only the field of view matters).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import torch
import torch.nn.functional as nnf
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from ..models.rfdetr.configuration_rfdetr import RFDetrConfig
from ..models.rfdetr.image_io import load_image
from ..models.rfdetr.image_processing_rfdetr import IMAGENET_MEAN, IMAGENET_STD
from .data import DatasetError, object_columns
from .hub_data import refuse_streaming
from .masks import MASKS_HOW_TO, MaskError, decode_masks, is_missing, segmentation_to_rle

logger = logging.getLogger(__name__)

#: Short-side sizes of the crop branch (`RandomResize([400, 500, 600])` in the original).
SHORT_SIDE_SIZES = (400, 500, 600)
#: Side range of the square crop (`RandomSizedCrop((384, 600), ...)` in the original).
CROP_SIDES = (384, 600)
#: Key the training transform adds to each target; `RFDetrDataCollator` rescales only batches marked with it.
MULTI_SCALE_KEY = "multi_scale"
#: Keys of the crowd regions (`iscrowd=1`) that evaluation targets carry for the metrics only (see `crowd_regions`):
#: absolute xywh boxes in the original image, float32 `(M, 4)`, and their classes `(M,)`. The loss never reads them.
CROWD_BOXES_KEY, CROWD_LABELS_KEY = "crowd_boxes", "crowd_class_labels"
_BILINEAR = InterpolationMode.BILINEAR


def multi_scale_scales(resolution: int, block_size: int, expanded: bool = True) -> list[int]:
    """Square training sizes of per-batch multi-scale, as `rfdetr.datasets.coco.compute_multi_scale_scales`.

    `(resolution // block_size + k) * block_size` for `k` in `-5..5` (`expanded`, the training default) or `-3..4`,
    keeping sizes of at least two blocks. E.g. 384 / block 32 -> 224..544; 560 / block 56 -> 280..840.
    """
    base = resolution // block_size
    offsets = range(-5, 6) if expanded else range(-3, 5)
    return [(base + k) * block_size for k in offsets if base + k >= 2]


def training_scales(config: RFDetrConfig, expanded: bool = True) -> list[int]:
    """`multi_scale_scales` for a config (`resolution`, `block_size = patch_size * num_windows`)."""
    return multi_scale_scales(config.resolution, config.block_size, expanded)


# ----------------------------------------------------------------------------------------------------------------------
# torchvision v2 building blocks
# ----------------------------------------------------------------------------------------------------------------------


def _spatial_size(flat_inputs: list[Any]) -> tuple[int, int]:
    """`(height, width)` of the image among a v2 transform's inputs."""
    for item in flat_inputs:
        if isinstance(item, (Image.Image, tv_tensors.Image)):
            height, width = F.get_size(item)
            return int(height), int(width)
    raise TypeError("The transform needs a PIL image or a tv_tensors.Image among its inputs.")


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Output `(height, width)` with the short side `size` and the long side rounded (as the original RandomResize)."""
    if min(height, width) == size:
        return height, width
    if width < height:
        return int(round(size * height / width)), size
    return size, int(round(size * width / height))


class RandomSelect(v2.Transform):
    """Apply `first` with probability `p`, else `second`: one `torch.rand(())` draw, as DETR's `RandomSelect`."""

    def __init__(self, first: v2.Transform, second: v2.Transform, p: float = 0.5) -> None:
        super().__init__()
        self.first, self.second, self.p = first, second, p

    def forward(self, *inputs: Any) -> Any:
        return self.first(*inputs) if torch.rand(()) < self.p else self.second(*inputs)


class RandomShortSideResize(v2.Transform):
    """Resize (bilinear, antialiased) so that the short side is one of `sizes`, chosen uniformly."""

    def __init__(self, sizes: Sequence[int] = SHORT_SIDE_SIZES) -> None:
        super().__init__()
        self.sizes = [int(size) for size in sizes]

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _spatial_size(flat_inputs)
        index = int(torch.randint(len(self.sizes), ()).item()) if len(self.sizes) > 1 else 0
        return {"size": short_side_size(height, width, self.sizes[index])}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.resize(inpt, list(params["size"]), interpolation=_BILINEAR, antialias=True)


class RandomSquareCrop(v2.Transform):
    """Crop a random square of side uniform in `[min_side, max_side]` (clipped to the image's short side).

    The DETR "sized crop" of the original `RandomSizedCrop` (before its resize). Boxes are clipped to the crop by
    torchvision; boxes left without area are dropped later by `DetectionTransform`.
    """

    def __init__(self, min_side: int = CROP_SIDES[0], max_side: int = CROP_SIDES[1]) -> None:
        super().__init__()
        self.min_side, self.max_side = int(min_side), int(max_side)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _spatial_size(flat_inputs)
        high = min(self.max_side, height, width)
        low = min(self.min_side, high)
        side = int(torch.randint(low, high + 1, ()).item()) if high > low else high
        top = int(torch.randint(0, height - side + 1, ()).item()) if height > side else 0
        left = int(torch.randint(0, width - side + 1, ()).item()) if width > side else 0
        return {"top": top, "left": left, "height": side, "width": side}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.crop(inpt, **params)


def _to_normalised_tensor(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    """PIL -> `(3, H, W)` float32 in `[0, 1]` -> `(x - mean) / std`."""
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def train_pipeline(
    scale: int,
    *,
    scale_jitter: bool = True,
    hflip_prob: float = 0.5,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """The original training augmentation for `(PIL image, BoundingBoxes)` -> `(normalised (3, S, S), boxes)`.

    `scale_jitter=False` keeps only the direct square resize (the original `scale_jitter=False`); `hflip_prob=0`
    removes the flip (the original `aug_config={}`).
    """
    resize = v2.Resize((scale, scale), interpolation=_BILINEAR, antialias=True)
    steps: list[v2.Transform] = [resize]
    if scale_jitter:
        crop_branch = v2.Compose([RandomShortSideResize(SHORT_SIDE_SIZES), RandomSquareCrop(*CROP_SIDES), resize])
        steps = [RandomSelect(resize, crop_branch, p=0.5)]
    if hflip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip_prob))
    return v2.Compose([*steps, *_to_normalised_tensor(image_mean, image_std)])


def eval_pipeline(
    resolution: int, *, image_mean: Sequence[float] = IMAGENET_MEAN, image_std: Sequence[float] = IMAGENET_STD
) -> v2.Compose:
    """The original evaluation transform: square bilinear antialiased resize to `resolution`, normalisation."""
    resize = v2.Resize((resolution, resolution), interpolation=_BILINEAR, antialias=True)
    return v2.Compose([resize, *_to_normalised_tensor(image_mean, image_std)])


# ----------------------------------------------------------------------------------------------------------------------
# Dataset rows -> model inputs
# ----------------------------------------------------------------------------------------------------------------------


def decode_image(value: Any, image_id: Any = None) -> Image.Image:
    """An RGB PIL image from a decoded image, a `{"path", "bytes"}` dict (`datasets.Image(decode=False)`) or a path.

    Read as viewers show it, by `hf_rfdetr.models.rfdetr.image_io.load_image`: EXIF orientation applied (COCO boxes are drawn on
    the displayed image), 16-bit data scaled to 8 bits, `MAX_IMAGE_PIXELS` enforced. Raises `DatasetError` naming
    the file on failure.
    """
    if isinstance(value, Image.Image):
        path, source = None, value
    elif isinstance(value, Mapping):
        path, data = value.get("path"), value.get("bytes")
        source = data if data else path
    elif isinstance(value, (str, os.PathLike)):
        path, source = value, value
    else:
        raise DatasetError(f"image_id {image_id}: unsupported image value of type {type(value).__name__}.")
    if source is None:
        raise DatasetError(f"image_id {image_id}: the image has neither a path nor bytes.")
    try:
        return load_image(source, name=repr(str(path)) if path else "(embedded bytes)")
    except (OSError, ValueError) as error:
        raise DatasetError(
            f"Cannot decode image {path or '(embedded bytes)'} (image_id {image_id}): {error}"
        ) from error


def source_boxes(objects: Any, height: int, width: int) -> tuple[tv_tensors.BoundingBoxes, torch.Tensor]:
    """Non-crowd boxes of one row's `objects` as XYXY `BoundingBoxes` clipped to the image, and their classes."""
    columns = object_columns(objects)
    bboxes, categories = columns.get("bbox", []), columns.get("category", [])
    crowd = columns.get("iscrowd") or [0] * len(bboxes)
    keep = [index for index in range(len(bboxes)) if not crowd[index]]
    xywh = torch.tensor([bboxes[i] for i in keep], dtype=torch.float32).reshape(-1, 4)
    boxes = tv_tensors.BoundingBoxes(xywh, format=tv_tensors.BoundingBoxFormat.XYWH, canvas_size=(height, width))
    boxes = F.clamp_bounding_boxes(F.convert_bounding_box_format(boxes, new_format=tv_tensors.BoundingBoxFormat.XYXY))
    return boxes, torch.tensor([int(categories[i]) for i in keep], dtype=torch.int64)


def crowd_regions(objects: Any) -> dict[str, torch.Tensor]:
    """The crowd objects (`iscrowd=1`) of one row's `objects`, as the annotation gives them (`CROWD_BOXES_KEY`:
    absolute xywh, float32 (the evaluation loop moves targets to the device; MPS has no float64); `CROWD_LABELS_KEY`:
    classes): the ground truth that COCO evaluation ignores detections
    on, as pycocotools does reading the COCO json. Not for the loss (crowd objects are not trained on)."""
    columns = object_columns(objects)
    bboxes, categories = columns.get("bbox") or [], columns.get("category") or []
    crowd = columns.get("iscrowd") or [0] * len(bboxes)
    kept = [index for index in range(len(bboxes)) if crowd[index]]
    return {
        CROWD_BOXES_KEY: torch.tensor([bboxes[i] for i in kept], dtype=torch.float32).reshape(-1, 4),
        CROWD_LABELS_KEY: torch.tensor([int(categories[i]) for i in kept], dtype=torch.int64),
    }


def source_masks(objects: Any, height: int, width: int, image_id: Any = None) -> tv_tensors.Mask:
    """`(N, height, width)` bool masks of one row's non-crowd objects, in the order of `source_boxes`.

    `objects.segmentation` holds per object a compressed RLE `counts` string at the image's size (what
    `load_coco_folder(..., masks=True)` stores), COCO polygons or an RLE dict (a Hub dataset's own field).

    Raises:
        DatasetError: naming the image and the object when the field is absent, an object has no segmentation, or a
            segmentation is malformed or of another size than the image.
    """
    columns = object_columns(objects)
    count = len(columns.get("bbox") or [])
    crowd = columns.get("iscrowd") or [0] * count
    segmentations = columns.get("segmentation")
    if segmentations is None and count:
        raise DatasetError(
            f"image_id {image_id}: the objects have no 'segmentation' field, which a segmentation model trains on: "
            f"{MASKS_HOW_TO}."
        )
    counts = []
    for index in range(count):
        if crowd[index]:
            continue
        counts.append(_object_rle(segmentations[index], height, width, f"image_id {image_id}, object {index}"))
    return tv_tensors.Mask(torch.from_numpy(decode_masks(counts, height, width)))


def _object_rle(segmentation: Any, height: int, width: int, where: str) -> str:
    """One object's segmentation as checked compressed RLE counts at `(height, width)`; raises `DatasetError`."""
    if is_missing(segmentation):
        raise DatasetError(f"{where}: no segmentation; a segmentation model needs a mask for every non-crowd object.")
    try:
        return segmentation_to_rle(segmentation, height, width)
    except MaskError as error:
        raise DatasetError(f"{where}: invalid segmentation for a {width}x{height} image: {error}.") from error


class DetectionTransform:
    """Callable for `datasets.Dataset.with_transform`: Hub-layout rows -> `pixel_values` and `labels`.

    Each row gives `pixel_values` `(3, S, S)` float32 and `labels` = {`class_labels` `(N,)` int64, `boxes` `(N, 4)`
    float32 normalised cxcywh, `image_id` `(1,)`, `area` `(N,)` (box area in `pixel_values` pixels), `iscrowd` `(N,)`,
    `orig_size` and `size` `(2,)` int64 `(height, width)`}; crowd objects and boxes without area are left out. With
    `multi_scale=True` (training) the targets also carry `MULTI_SCALE_KEY: True` for `RFDetrDataCollator`. With
    `masks=True` they also carry `masks` `(N, S, S)` bool, one per kept box (`(0, S, S)` for an image without
    objects), transformed with the image (see the module docstring). With `crowd=True` (evaluation) they also carry
    the crowd regions for the metrics (`crowd_regions`: `CROWD_BOXES_KEY`, `CROWD_LABELS_KEY`).

    Args:
        pipeline: a torchvision v2 transform `(PIL image, BoundingBoxes[, Mask])` -> the same, transformed.
        multi_scale: mark the targets for per-batch multi-scale.
        masks: decode `objects.segmentation` and add `masks` to the targets (instance segmentation).
        crowd: add the crowd regions, which `coco_metrics` scores as `iscrowd` ground truth.
    """

    def __init__(
        self, pipeline: v2.Transform, *, multi_scale: bool = False, masks: bool = False, crowd: bool = False
    ) -> None:
        self.pipeline = pipeline
        self.multi_scale = multi_scale
        self.masks = masks
        self.crowd = crowd

    def __call__(self, batch: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
        image_ids = batch.get("image_id") or [None] * len(batch["image"])
        outputs = [self.transform_example(*row) for row in zip(batch["image"], batch["objects"], image_ids)]
        return {"pixel_values": [pixels for pixels, _ in outputs], "labels": [labels for _, labels in outputs]}

    def transform_example(
        self, image: Any, objects: Any, image_id: int | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """One image (PIL, `{"path", "bytes"}` or path) and its `objects` -> `(pixel_values, labels)`."""
        picture = decode_image(image, image_id)
        width, height = picture.size
        boxes, classes = source_boxes(objects, height, width)
        if self.masks:
            pixels, boxes, masks = self.pipeline(picture, boxes, source_masks(objects, height, width, image_id))
            masks = masks.as_subclass(torch.Tensor)
        else:
            (pixels, boxes), masks = self.pipeline(picture, boxes), None
        labels = _targets(boxes.as_subclass(torch.Tensor), classes, image_id, (height, width), pixels.shape[-2:], masks)
        if self.multi_scale:
            labels[MULTI_SCALE_KEY] = True
        if self.crowd:
            labels.update(crowd_regions(objects))
        return pixels.as_subclass(torch.Tensor), labels


def _targets(
    boxes_xyxy: torch.Tensor,
    classes: torch.Tensor,
    image_id: int | None,
    orig_size: tuple[int, int],
    size: Sequence[int],
    masks: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Target dict with the boxes that kept an area, normalised cxcywh (and their `masks`, when given)."""
    keep = (boxes_xyxy[:, 2] > boxes_xyxy[:, 0]) & (boxes_xyxy[:, 3] > boxes_xyxy[:, 1])
    height, width = int(size[0]), int(size[1])
    cxcywh = F.convert_bounding_box_format(
        boxes_xyxy[keep], old_format=tv_tensors.BoundingBoxFormat.XYXY, new_format=tv_tensors.BoundingBoxFormat.CXCYWH
    )
    target = {
        "class_labels": classes[keep],
        "boxes": cxcywh / torch.tensor([width, height, width, height], dtype=torch.float32),
        "image_id": torch.tensor([-1 if image_id is None else int(image_id)], dtype=torch.int64),
        "area": cxcywh[:, 2] * cxcywh[:, 3],
        "iscrowd": torch.zeros(int(keep.sum()), dtype=torch.int64),
        "orig_size": torch.tensor(orig_size, dtype=torch.int64),
        "size": torch.tensor([height, width], dtype=torch.int64),
    }
    if masks is not None:
        target["masks"] = masks[keep].to(torch.bool)
    return target


def build_transforms(
    config: RFDetrConfig,
    train: bool,
    *,
    multi_scale: bool = True,
    expanded_scales: bool = True,
    scale_jitter: bool = True,
    hflip_prob: float = 0.5,
    masks: bool | None = None,
) -> DetectionTransform:
    """The original's transform for a config: training at the largest multi-scale size, or evaluation.

    Args:
        config: gives `resolution` and `block_size`.
        train: training augmentation (else the evaluation resize, with the crowd regions in the targets).
        multi_scale: per-batch multi-scale training (the default of the original): samples come out at
            `max(training_scales(config))` and `RFDetrDataCollator` resizes each batch to a random scale. `False`
            trains at `resolution`.
        expanded_scales, scale_jitter, hflip_prob: as the original's `TrainConfig` (see `train_pipeline`).
        masks: add instance `masks` to the targets; default `config.segmentation_head` (the original's
            `include_masks = args.segmentation_head`).
    """
    with_masks = bool(getattr(config, "segmentation_head", False)) if masks is None else masks
    if not train:
        return DetectionTransform(eval_pipeline(config.resolution), masks=with_masks, crowd=True)
    scale = max(training_scales(config, expanded_scales)) if multi_scale else config.resolution
    pipeline = train_pipeline(scale, scale_jitter=scale_jitter, hflip_prob=hflip_prob)
    return DetectionTransform(pipeline, multi_scale=multi_scale, masks=with_masks)


def apply_transforms(
    dataset_dict: datasets.DatasetDict | Mapping[str, datasets.Dataset],
    config: RFDetrConfig,
    *,
    train_split: str = "train",
    **options: Any,
) -> datasets.DatasetDict:
    """Every split with its transform set (`with_transform`): `train_split` trains, the others evaluate.

    The `image` column is switched to `datasets.Image(decode=False)` so that `decode_image` reads the file itself and
    names it in any decoding error. `options` go to `build_transforms` (training split only, except `masks`, which
    applies to every split). A streaming `IterableDataset(Dict)` is refused (`DatasetError`), saying what to do.
    """
    refuse_streaming(dataset_dict)
    result = {}
    masks = options.get("masks")
    for name, split in dataset_dict.items():
        train = name == train_split
        transform = (
            build_transforms(config, train, **options) if train else build_transforms(config, False, masks=masks)
        )
        result[name] = _undecoded(split).with_transform(transform)
    return datasets.DatasetDict(result)


def _undecoded(dataset: datasets.Dataset) -> datasets.Dataset:
    """The dataset with its `image` column left encoded (`{"path", "bytes"}`)."""
    feature = dataset.features.get("image")
    if isinstance(feature, datasets.Image) and feature.decode:
        return dataset.cast_column("image", datasets.Image(decode=False))
    return dataset


# ----------------------------------------------------------------------------------------------------------------------
# Collator
# ----------------------------------------------------------------------------------------------------------------------


class RFDetrDataCollator:
    """Batch transformed samples: stack `pixel_values`, keep `labels` a list of dicts, per-batch multi-scale.

    When `scales` is given, a batch whose targets all carry `MULTI_SCALE_KEY` (made by the training transform) is
    resized to one random scale from `scales` (bilinear, `align_corners=False`, no antialiasing, as the original's
    `on_train_batch_start`); normalised boxes are unchanged by a square resize, `size` and `area` are updated, and
    `masks` (segmentation) are nearest-resized to the new size.
    Evaluation batches are left alone, so one collator serves `Trainer` for both. The marker is removed from the
    targets.

    Scales are drawn from a `torch.Generator` seeded with `seed`, so runs are reproducible. In a DataLoader worker the
    generator is seeded with `seed + worker_info.seed` (the worker seed torch derives from the main process RNG), so
    workers and epochs draw different sequences that are still reproducible under a fixed global seed. `state_dict()` /
    `load_state_dict()` carry the generators' states through `RFDetrTrainer` checkpoints, so a resumed run draws the
    scales the uninterrupted run would have drawn.

    Returns (`__call__`): `{"pixel_values": (B, 3, S, S) float32, "labels": list of B dicts}`; with segmentation
    each dict's `masks` is `(N, S, S)` bool (`(0, S, S)` for an image without objects).
    """

    def __init__(self, scales: Sequence[int] | None = None, seed: int = 0) -> None:
        if scales is not None and (not scales or any(int(scale) <= 0 for scale in scales)):
            raise ValueError(f"scales must be a non-empty list of positive sizes or None, got {scales!r}")
        self.scales = [int(scale) for scale in scales] if scales is not None else None
        self.seed = int(seed)
        self._generators: dict[int | None, torch.Generator] = {}
        self._warned = False

    @classmethod
    def from_config(
        cls, config: RFDetrConfig, *, multi_scale: bool = True, expanded_scales: bool = True, seed: int = 0
    ) -> RFDetrDataCollator:
        """The collator matching `build_transforms(config, ..., multi_scale, expanded_scales)`."""
        return cls(training_scales(config, expanded_scales) if multi_scale else None, seed=seed)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        pixel_values = _stack([feature["pixel_values"] for feature in features])
        labels = [dict(feature["labels"]) for feature in features]
        marked = [bool(target.pop(MULTI_SCALE_KEY, False)) for target in labels]
        if marked and all(marked):
            if self.scales:
                pixel_values = _rescale(pixel_values, labels, self.draw_scale())
            elif not self._warned:
                self._warned = True
                logger.warning("Multi-scale training samples but the collator has no scales: batches stay at max size.")
        return {"pixel_values": pixel_values, "labels": labels}

    def draw_scale(self) -> int:
        """The next random scale from `scales`."""
        if not self.scales:
            raise ValueError("This collator has no scales.")
        index = int(torch.randint(len(self.scales), (), generator=self._generator()).item())
        return self.scales[index]

    def _generator(self) -> torch.Generator:
        worker = torch.utils.data.get_worker_info()
        key = None if worker is None else worker.seed
        if key not in self._generators:
            seed = self.seed if worker is None else (self.seed + worker.seed) % (2**63)
            self._generators[key] = torch.Generator().manual_seed(seed)
        return self._generators[key]

    def state_dict(self) -> dict[str, Any]:
        """The random state (`seed` and the generators' states, keyed by worker seed or None for the main process),
        saved in every checkpoint by `RFDetrTrainer` so that a resumed run draws the scales it would have drawn."""
        return {"seed": self.seed, "generators": {key: gen.get_state() for key, gen in self._generators.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        generators = {}
        for key, generator_state in state["generators"].items():
            generators[key] = torch.Generator()
            generators[key].set_state(torch.as_tensor(generator_state, dtype=torch.uint8))
        self.seed, self._generators = int(state["seed"]), generators

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # bytes, not tensors: worker processes started with "spawn" would receive tensors through shared memory
        state["_generators"] = {
            key: bytes(generator.get_state().tolist()) for key, generator in self._generators.items()
        }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        generators = {}
        for key, generator_state in state.pop("_generators").items():
            generators[key] = torch.Generator()
            generators[key].set_state(torch.tensor(list(generator_state), dtype=torch.uint8))
        self.__dict__.update(state, _generators=generators)


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    """`(B, 3, H, W)` from equally sized `(3, H, W)` images; raises naming the sizes otherwise."""
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) != 1:
        raise ValueError(f"All pixel_values of a batch must have one shape; got {sorted(shapes)}.")
    return torch.stack(images)


def _rescale(pixel_values: torch.Tensor, labels: list[dict[str, Any]], scale: int) -> torch.Tensor:
    """Resize a `(B, 3, H, W)` batch to `(B, 3, scale, scale)` and update the targets' `size` and `area`."""
    height, width = pixel_values.shape[-2:]
    if (height, width) == (scale, scale):
        return pixel_values
    resized = nnf.interpolate(pixel_values, size=(scale, scale), mode="bilinear", align_corners=False)
    for target in labels:
        target["size"] = torch.tensor([scale, scale], dtype=torch.int64)
        if "area" in target:
            target["area"] = target["area"] * (scale / height) * (scale / width)
        if "masks" in target:
            target["masks"] = F.resize(tv_tensors.Mask(target["masks"]), [scale, scale]).as_subclass(torch.Tensor)
    return resized


__all__ = [
    "CROP_SIDES",
    "CROWD_BOXES_KEY",
    "CROWD_LABELS_KEY",
    "MULTI_SCALE_KEY",
    "SHORT_SIDE_SIZES",
    "DetectionTransform",
    "RFDetrDataCollator",
    "RandomSelect",
    "RandomShortSideResize",
    "RandomSquareCrop",
    "apply_transforms",
    "build_transforms",
    "crowd_regions",
    "decode_image",
    "eval_pipeline",
    "multi_scale_scales",
    "source_boxes",
    "source_masks",
    "train_pipeline",
    "training_scales",
]
