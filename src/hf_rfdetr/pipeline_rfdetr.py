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
"""The object-detection and image-segmentation pipelines, reading images for RF-DETR models with
`hf_rfdetr.models.rfdetr.image_io.load_image`.

transformers' `ObjectDetectionPipeline` decodes files itself (`transformers.image_utils.load_image`) before the
image processor sees them: it applies the EXIF orientation, but Pillow's `convert("RGB")` clips 16-bit images to a
white frame, decoding errors come out as Pillow's raw message without the file name, and `detector([])` raises
`IndexError`. `import hf_rfdetr` makes `pipeline("object-detection", ...)` build this subclass; for RF-DETR models it
reads images with the package's one image reader (what the processor, the facade, the CLI and training use), and it
returns `[]` for an empty list. For every other model it behaves exactly as transformers' pipeline.
`ImageSegmentationPipeline` reads images the same way as the detection pipeline (transformers' `load_image`), so
`pipeline("image-segmentation", ...)` builds `RFDetrImageSegmentationPipeline`, the same treatment for RF-DETR Seg
models (`RFDetrForInstanceSegmentation`; the masks come from `post_process_instance_segmentation`, which reads the
padding's `pixel_mask` from the model outputs, as in transformers' own pipeline).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.image_segmentation import ImageSegmentationPipeline
from transformers.pipelines.object_detection import ObjectDetectionPipeline

from .models.rfdetr.configuration_rfdetr import RFDetrConfig
from .models.rfdetr.image_io import ImageReadError, load_image

__all__ = ["RFDetrImageSegmentationPipeline", "RFDetrObjectDetectionPipeline", "register_pipeline"]

_TASK = "object-detection"
_SEGMENTATION_TASK = "image-segmentation"


class _RFDetrImageReading:
    """For RF-DETR models: files, URLs and PIL images are read as a viewer shows them (EXIF orientation, 16-bit data
    scaled to 8 bits), files over `hf_rfdetr.models.rfdetr.image_io.MAX_IMAGE_PIXELS` are refused, decoding errors
    name the file, and an empty list gives an empty list. Other models get transformers' behaviour unchanged."""

    def _is_rfdetr(self) -> bool:
        return getattr(getattr(self.model, "config", None), "model_type", None) == RFDetrConfig.model_type

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        inputs = args[0] if args else kwargs.get("inputs", kwargs.get("images"))
        if self._is_rfdetr() and isinstance(inputs, (list, tuple)) and len(inputs) == 0:
            return []
        return super().__call__(*args, **kwargs)

    def get_iterator(self, inputs: Any, num_workers: int, batch_size: int, *args: Any, **kwargs: Any) -> Any:
        """transformers' iterator; for RF-DETR with `batch_size > 1` its batches are padded to a common size first.

        transformers' collate function concatenates `pixel_values` as they are, which fails when the processor pads
        each image to its own size (`keep_aspect_ratio=True` with images of different shapes)."""
        iterator = super().get_iterator(inputs, num_workers, batch_size, *args, **kwargs)
        if self._is_rfdetr() and batch_size > 1:
            loader = iterator
            while loader is not None and not isinstance(loader, DataLoader):
                loader = getattr(loader, "loader", None)
            if loader is not None:
                loader.collate_fn = _padded_to_a_common_size(loader.collate_fn)
        return iterator


class RFDetrObjectDetectionPipeline(_RFDetrImageReading, ObjectDetectionPipeline):
    """`ObjectDetectionPipeline` reading images with `hf_rfdetr.models.rfdetr.image_io.load_image` for RF-DETR models
    (see `_RFDetrImageReading`)."""

    def preprocess(self, image: Any, timeout: float | None = None) -> Any:
        if self._is_rfdetr():
            image = _read(image, timeout)
        return super().preprocess(image, timeout=timeout)


class RFDetrImageSegmentationPipeline(_RFDetrImageReading, ImageSegmentationPipeline):
    """`ImageSegmentationPipeline` reading images with `hf_rfdetr.models.rfdetr.image_io.load_image` for RF-DETR Seg
    models (see `_RFDetrImageReading`); its post-processing is transformers' (the processor's
    `post_process_instance_segmentation` with the pipeline's `threshold`, `mask_threshold` and
    `overlap_mask_area_threshold`)."""

    def preprocess(self, image: Any, subtask: str | None = None, timeout: float | None = None) -> Any:
        if self._is_rfdetr():
            image = _read(image, timeout)
        return super().preprocess(image, subtask=subtask, timeout=timeout)


def _read(image: Any, timeout: float | None) -> Any:
    """`load_image` for the sources it reads (paths, URLs, base64 strings as transformers takes them, bytes, PIL
    images); anything else is left to transformers (which refuses it)."""
    from PIL import Image

    if isinstance(image, str) and not image.startswith(("http://", "https://")) and not os.path.isfile(image):
        data = _base64_bytes(image)
        if data is not None:
            try:
                return load_image(data, name="base64 image")
            except ImageReadError:
                if image.startswith("data:image/"):
                    raise
                shown = image if len(image) <= 80 else f"{image[:77]}..."
                raise FileNotFoundError(f"{shown!r}: no such file, nor a base64-encoded image") from None
    if isinstance(image, str | os.PathLike | bytes | Image.Image):
        return load_image(image, timeout=timeout)
    return image


def _padded_to_a_common_size(collate: Callable[[list], Any]) -> Callable[[list], Any]:
    """`collate` after padding every item's `pixel_values` (1, C, H, W) and `pixel_mask` (1, H, W) at the bottom and
    right with zeros to the batch's largest height and width, as the processor pads a batch."""

    def padded(items: list) -> Any:
        sizes = [tuple(item["pixel_values"].shape[-2:]) for item in items]
        height, width = max(size[0] for size in sizes), max(size[1] for size in sizes)
        if all(size == (height, width) for size in sizes):
            return collate(items)
        items = [dict(item) for item in items]
        for item, (item_height, item_width) in zip(items, sizes):
            padding = (0, width - item_width, 0, height - item_height)
            mask = item.get("pixel_mask")
            if mask is None:
                mask = torch.ones((1, item_height, item_width), dtype=torch.long)
            item["pixel_values"] = F.pad(item["pixel_values"], padding)
            item["pixel_mask"] = F.pad(mask, padding)
        return collate(items)

    return padded


def _base64_bytes(text: str) -> bytes | None:
    """The bytes of a base64 string (optionally a `data:image/...;base64,` URL), or None if it is not one."""
    if text.startswith("data:image/"):
        text = text.split(",", 1)[-1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def register_pipeline() -> None:
    """Make `pipeline("object-detection", ...)` build `RFDetrObjectDetectionPipeline` and
    `pipeline("image-segmentation", ...)` `RFDetrImageSegmentationPipeline` (same for non-RF-DETR models)."""
    PIPELINE_REGISTRY.supported_tasks[_TASK]["impl"] = RFDetrObjectDetectionPipeline
    PIPELINE_REGISTRY.supported_tasks[_SEGMENTATION_TASK]["impl"] = RFDetrImageSegmentationPipeline
