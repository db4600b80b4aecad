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
"""Image processor for RF-DETR: pre-processing of images (and COCO annotations) and post-processing of detections.

The size forms, resize and padding live in `image_sizing`, COCO annotations become targets in `coco_targets`, the
post-processing helpers live in `post_processing`; files are read, and images converted to normalised float tensors,
by `image_io`. All are imported relatively, so a saved folder carries them for `trust_remote_code`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.processing_utils import ImagesKwargs
from transformers.utils import logging

from .coco_targets import prepare_targets
from .image_io import check_channels, normalize, to_float_chw
from .image_sizing import (
    canvas_size,
    check_pad_size,
    check_square_size,
    is_squash,
    output_size,
    pad_batch,
    pad_size_dict,
    positive_int,
    resize,
    size_dict,
)
from .post_processing import (
    binary_masks,
    coco_rle,
    image_regions,
    mask_logit_tensor,
    mask_sizes,
    prediction_tensors,
    probability_to_logit,
    scale_boxes,
    segment_map,
    select_top_k,
    target_size_tensor,
    unit_interval,
)

logger = logging.get_logger(__name__)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
_OPTION_NAMES = (
    "do_resize",
    "size",
    "keep_aspect_ratio",
    "size_divisor",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
    "do_convert_rgb",
    "do_pad",
    "pad_size",
)
# Keys a saved `preprocessor_config.json` carries besides the options (`ImageProcessingMixin` bookkeeping).
_BOOKKEEPING_KEYS = {
    "image_processor_type",
    "processor_class",
    "feature_extractor_type",
    "auto_map",
    "_processor_class",
}


#: Arguments of `from_pretrained` that transformers (e.g. its pipelines) forwards to `from_dict` with the options.
_LOADING_KEYS = {
    "cache_dir",
    "code_revision",
    "device_map",
    "dtype",
    "force_download",
    "local_files_only",
    "proxies",
    "revision",
    "subfolder",
    "token",
    "torch_dtype",
    "trust_remote_code",
    "use_auth_token",
}


class RFDetrImageProcessorKwargs(ImagesKwargs, total=False):
    """Keyword arguments of [`RFDetrImageProcessor`] (its constructor and `preprocess` overrides), on top of
    transformers' standard `ImagesKwargs` (of which it uses `do_convert_rgb` and `input_data_format`)."""

    do_resize: bool
    size: dict[str, int]
    keep_aspect_ratio: bool
    do_pad: bool
    pad_size: dict[str, int] | None
    size_divisor: int
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    image_mean: list[float]
    image_std: list[float]
    num_top_queries: int


class RFDetrImageProcessor(BaseImageProcessor):
    r"""Image processor for RF-DETR object detection.

    Pre-processing follows the original `rfdetr` `RFDETR.predict` path exactly (default, `keep_aspect_ratio=False`):
    the image is converted to an RGB `(3, H, W)` float32 tensor in `[0, 1]` (uint8 divided by 255), resized on that
    float tensor with `torchvision` bilinear interpolation and `antialias=False` to `size` (the aspect ratio is
    squashed, as in `predict`), then normalised with `image_mean` / `image_std`. This is the inference resize of
    `predict`, not the antialiased resize of the original training augmentations.

    `size` takes every form transformers' detection processors (DETR, RT-DETR) take:
    - `{"height": h, "width": w}` (the default, `resolution` square): the squash resize above; both sides must be
      multiples of `size_divisor`. With `keep_aspect_ratio=True` it means `{"max_height": m, "max_width": m}` with
      `m = max(h, w)`.
    - `{"max_height": mh, "max_width": mw}`: keep the aspect ratio, scale so that the image fits in `mh x mw`
      (transformers' `get_image_size_for_max_height_width`).
    - `{"shortest_edge": s, "longest_edge": l}`: keep the aspect ratio, shorter side to `s` unless the longer
      side would exceed `l` (transformers' `get_size_with_aspect_ratio`).
    With `do_pad=True` (default) every image is zero-padded bottom/right, after normalisation, to `pad_size` when
    given, else to the largest image of the batch, rounded up to a multiple of `size_divisor` (the model needs
    it); `pixel_mask` marks the real pixels. `pad_size` must be a multiple of `size_divisor` and hold every image.

    Boxes (annotation `labels` in, `pred_boxes` out) are normalised to the image region, not the padded canvas:
    given `pixel_mask`, the model normalises its proposals and sampling points by the unpadded extent (valid
    ratios, as Deformable DETR), so `post_process_object_detection` with the original image sizes maps boxes back
    to original pixels. Dropping `pixel_mask` on padded inputs makes the model's frame the padded canvas: pass it.

    Post-processing ([`~RFDetrImageProcessor.post_process_object_detection`]) follows the original `PostProcess`:
    sigmoid scores, top-k over all (query, class) pairs with a stable descending sort, boxes scaled and clamped to the
    target size, then a strict `score > threshold` filter as in `predict`.
    [`~RFDetrImageProcessor.post_process_instance_segmentation`] adds the masks of a segmentation model (resized to the
    target size first, thresholded second, as the original) and transformers' `segmentation` / `segments_info`.

    Args:
        do_resize (`bool`, defaults to `True`): resize the images.
        size (`dict[str, int]`, defaults to `{"height": 560, "width": 560}`): resize target, in one of the forms
            above (an int or a `(height, width)` pair means `{"height", "width"}`).
        keep_aspect_ratio (`bool`, defaults to `False`): with a `{"height", "width"}` size, fit the image in
            `max(height, width)` keeping its aspect ratio (and pad) instead of squashing.
        size_divisor (`int`, defaults to 56): block size `patch_size * num_windows` of the backbone; the network
            input height and width must be multiples of it.
        do_rescale (`bool`, defaults to `True`): scale uint8 images by `rescale_factor` (float images are taken as
            already in `[0, 1]` and checked).
        rescale_factor (`float`, defaults to `1/255`): scale of uint8 images.
        do_normalize (`bool`, defaults to `True`): normalise with `image_mean` and `image_std`.
        image_mean (`list[float]`, defaults to the ImageNet mean): per-channel mean (a number: the same for every
            channel); one value per channel of the images (3, or the images' own count with `do_convert_rgb=False`).
        image_std (`list[float]`, defaults to the ImageNet std): per-channel standard deviation, as `image_mean`.
        do_pad (`bool`, defaults to `True`): pad the batch (see above). With `False` every image of the batch must
            come out of the resize with the same size, a multiple of `size_divisor`.
        pad_size (`dict[str, int]`, *optional*): `{"height": h, "width": w}` to pad every image to.
        num_top_queries (`int`, defaults to 300): default number of (query, class) pairs kept by post-processing (the
            original's `num_select`; `from_config` sets `num_queries` for a segmentation config).
        do_convert_rgb (`bool`, defaults to `True`): turn gray images into RGB (replicated) and drop an alpha
            channel. With `False` the images keep their own channels (1, 3 or 4; all images of a call alike), as
            transformers' processors do; the model itself takes 3 (RGB).
    """

    model_input_names = ["pixel_values", "pixel_mask"]
    valid_kwargs = RFDetrImageProcessorKwargs

    def __init__(
        self,
        do_resize: bool = True,
        size: dict[str, int] | int | Sequence[int] | None = None,
        keep_aspect_ratio: bool = False,
        size_divisor: int = 56,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        do_pad: bool = True,
        pad_size: dict[str, int] | None = None,
        num_top_queries: int = 300,
        do_convert_rgb: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**_known_kwargs(kwargs))
        self.do_convert_rgb = bool(do_convert_rgb)
        self.do_resize = bool(do_resize)
        self.size = size_dict({"height": 560, "width": 560} if size is None else size)
        self.do_pad = bool(do_pad)
        self.pad_size = None if pad_size is None else pad_size_dict(pad_size)
        self.keep_aspect_ratio = bool(keep_aspect_ratio)
        self.size_divisor = positive_int(size_divisor, "size_divisor")
        self.do_rescale = bool(do_rescale)
        self.rescale_factor = float(rescale_factor)
        self.do_normalize = bool(do_normalize)
        self.image_mean = _channel_floats(IMAGENET_MEAN if image_mean is None else image_mean, "image_mean")
        self.image_std = _channel_floats(IMAGENET_STD if image_std is None else image_std, "image_std")
        self.num_top_queries = positive_int(num_top_queries, "num_top_queries")

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> RFDetrImageProcessor:
        """Build the processor matching an `RFDetrConfig`-like object.

        Uses `config.resolution` for a square `size`, `config.patch_size * config.num_windows` for `size_divisor` and,
        when present, `config.num_select` / `config.num_top_queries` for `num_top_queries`; a segmentation config
        (`segmentation_head=True`) otherwise selects `config.num_queries`, the original Seg variants' `num_select`
        (detection keeps 300, the original's default). `kwargs` override.
        """
        options: dict[str, Any] = {
            "size": {"height": int(config.resolution), "width": int(config.resolution)},
            "size_divisor": int(config.patch_size) * int(getattr(config, "num_windows", 1)),
        }
        if getattr(config, "segmentation_head", False):
            options["num_top_queries"] = int(config.num_queries)
        for name in ("num_select", "num_top_queries"):
            if getattr(config, name, None) is not None:
                options["num_top_queries"] = int(getattr(config, name))
        options.update(kwargs)
        return cls(**options)

    @classmethod
    def from_dict(cls, image_processor_dict: dict[str, Any], **kwargs: Any) -> Any:
        """As transformers' `from_dict` (used by `from_pretrained`), but a keyword argument that is no option of this
        processor is reported with a `UserWarning` instead of being dropped silently. Loading arguments that
        transformers forwards here (`revision`, `dtype`, ... from its pipelines) are not options and pass quietly."""
        return_unused_kwargs = kwargs.pop("return_unused_kwargs", False)
        options = {*_OPTION_NAMES, "num_top_queries"}
        unknown = {key: kwargs.pop(key) for key in list(kwargs) if key not in options and not key.startswith("_")}
        ignored = sorted(set(unknown) - _LOADING_KEYS)
        if ignored:
            warnings.warn(
                f"{cls.__name__}: ignored unknown argument(s) {ignored}; its options are {sorted(options)}.",
                UserWarning,
                stacklevel=2,
            )
        processor = super().from_dict(image_processor_dict, **kwargs)
        return (processor, unknown) if return_unused_kwargs else processor

    def __call__(
        self,
        images: Any,
        annotations: dict[str, Any] | list[dict[str, Any]] | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Same as [`~RFDetrImageProcessor.preprocess`]."""
        return self.preprocess(images, annotations=annotations, return_tensors=return_tensors, **kwargs)

    def preprocess(
        self,
        images: Any,
        annotations: dict[str, Any] | list[dict[str, Any]] | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Turn one image or a list of images (and optional COCO annotations) into model inputs.

        Args:
            images: a file path (read with EXIF orientation applied and 16-bit data scaled, see
                `hf_rfdetr.models.rfdetr.image_io`), a PIL image (any mode: EXIF orientation applied, converted to
                8-bit RGB; a PIL image still carrying an orientation other than 1 is logged with a warning, as its
                `.size` is then not the displayed frame the boxes come out in: pass
                `PIL.ImageOps.exif_transpose(image)` or transformers' `load_image(...)` and use its size), a
                numpy array `(H, W)` / `(H, W, C)` or a torch tensor `(H, W)` / `(C, H, W)` with `C` in {1, 3, 4}
                (gray is replicated, alpha dropped; the other layout only where it is the one possible reading, an
                ambiguous numpy shape is refused), uint8, uint16, bool or float in `[0, 1]`; or a list of those
                (sizes may differ).
            annotations: for training, one COCO-style dict per image: `{"image_id": int, "annotations": [{"bbox":
                [x, y, w, h], "category_id": int, "iscrowd": 0 | 1, ...}, ...]}` with boxes in original-image pixels
                (a call whose kept boxes all end within the first pixel of images of 16 pixels or more, boxes
                normalised to [0, 1] by mistake, warns once: they would train as sub-pixel boxes).
            return_tensors: `None` or `"pt"` (torch tensors) or `"np"` (numpy arrays).
            **kwargs: per-call overrides of the constructor options (`do_resize`, `size`, `keep_aspect_ratio`,
                `size_divisor`, `do_rescale`, `rescale_factor`, `do_normalize`, `image_mean`, `image_std`,
                `do_convert_rgb`), `input_data_format` (`"channels_first"` or `"channels_last"`: the layout of
                numpy / torch inputs; guessed from the shape when not given), and `device` (a torch device: each
                image is moved there as read, still uint8, and converted, resized and normalised there; the outputs
                live there. Default: where the input tensors are, the CPU for files, PIL images and arrays).

        Returns:
            `BatchFeature` with `pixel_values` `(B, 3, H, W)` float32 (`(B, C, H, W)` with `do_convert_rgb=False`)
            and `pixel_mask` `(B, H, W)` int64 (1 on image pixels, 0 on padding), plus `labels` (a list of
            `B` dicts of tensors) when `annotations` is given: `class_labels` `(N,)` int64, `boxes` `(N, 4)` float32
            normalised `(cx, cy, w, h)`, `image_id` `(1,)`, `area` `(N,)` float32 (box area in `pixel_values` pixels), `iscrowd` `(N,)` int64, `orig_size` and `size`
            `(2,)` int64 `(height, width)` of the input image and of `pixel_values`.

        Raises:
            ValueError: on an invalid image (rank, channels, ambiguous layout, dtype, empty or smaller than 2x2, NaN or
                infinite values, float values outside `[0, 1]`), an unreadable or too large file
                (`hf_rfdetr.models.rfdetr.image_io.ImageReadError`, naming it), an inconsistent `size` / `size_divisor`, non-finite
                `rescale_factor` / `image_mean` / `image_std` (or ones that make the float32 pixel values overflow),
                or malformed annotations (including an `iscrowd` other than 0 or 1).
            FileNotFoundError: a path that does not exist.
        """
        device = kwargs.pop("device", None)
        options = self._resolve_options(kwargs)
        options["device"] = None if device is None else torch.device(device)
        image_list = list(images) if isinstance(images, (list, tuple)) else [images]
        if not image_list:
            raise ValueError("`images` is empty: expected an image or a non-empty list of images.")
        tensors = [to_float_chw(image, index, options) for index, image in enumerate(image_list)]
        check_channels(tensors, options)
        orig_sizes = [(int(t.shape[1]), int(t.shape[2])) for t in tensors]
        pixel_values, pixel_mask = self._resize_normalize_batch(tensors, options)
        if not torch.isfinite(pixel_values).all():
            raise ValueError(
                "Pixel values are not finite after rescaling and normalisation in float32: check the image values, "
                f"`rescale_factor`={options['rescale_factor']!r}, `image_mean`={options['image_mean']} and "
                f"`image_std`={options['image_std']}."
            )
        data: dict[str, Any] = {"pixel_values": pixel_values, "pixel_mask": pixel_mask}
        if annotations is not None:
            data["labels"] = prepare_targets(annotations, orig_sizes, pixel_mask)
            _warn_if_normalised(data["labels"])
        return _to_batch_feature(data, return_tensors)

    def _resolve_options(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Merge per-call overrides into the stored options and validate them."""
        overrides = dict(overrides)
        channels_first = _channels_first(overrides.pop("input_data_format", None))
        unknown = sorted(set(overrides) - set(_OPTION_NAMES))
        if unknown:
            raise TypeError(
                f"Unexpected preprocess argument(s) {unknown}; valid overrides are "
                f"{[*_OPTION_NAMES, 'input_data_format', 'device']}."
            )
        options = {name: overrides.get(name, getattr(self, name)) for name in _OPTION_NAMES}
        options["channels_first"] = channels_first
        options["size"] = size_dict(options["size"])
        options["size_divisor"] = positive_int(options["size_divisor"], "size_divisor")
        options["pad_size"] = None if options["pad_size"] is None else pad_size_dict(options["pad_size"])
        if options["pad_size"] is not None:
            check_pad_size(options["pad_size"], options["size_divisor"])
        options["image_mean"] = _channel_floats(options["image_mean"], "image_mean")
        options["image_std"] = _channel_floats(options["image_std"], "image_std")
        if not (math.isfinite(float(options["rescale_factor"])) and float(options["rescale_factor"]) > 0):
            raise ValueError(f"`rescale_factor` must be a finite positive number, got {options['rescale_factor']!r}.")
        for name in ("image_mean", "image_std"):
            if not all(math.isfinite(value) for value in options[name]):
                raise ValueError(f"`{name}` must be finite numbers, got {options[name]}.")
        if any(value == 0 for value in options["image_std"]):
            raise ValueError(f"`image_std` must not contain zeros, got {options['image_std']}.")
        if options["do_resize"] and is_squash(options):
            check_square_size(options["size"], options["size_divisor"])
        return options

    def _resize_normalize_batch(
        self, images: list[torch.Tensor], options: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Resize, normalise and batch `(C, H_i, W_i)` images into `(B, C, H, W)` values and a `(B, H, W)` mask."""
        if options["do_resize"]:
            images = [resize(image, output_size(image.shape[1], image.shape[2], options)) for image in images]
        images = [normalize(image, options) for image in images]
        return pad_batch(images, canvas_size(images, options))

    def post_process_object_detection(
        self,
        outputs: Any,
        threshold: float = 0.5,
        target_sizes: torch.Tensor | Sequence[Sequence[int]] | None = None,
        top_k: int | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Convert raw model outputs into per-image detections, like the original `rfdetr` `PostProcess` + `predict`.

        Args:
            outputs: model output with `logits` `(B, Q, C)` and `pred_boxes` `(B, Q, 4)` (normalised cx, cy, w, h),
                as attributes or mapping keys (`pred_logits` is accepted for `logits`).
            threshold: a score in `[0, 1]`; keep detections with `score > threshold` (strict, as `predict`).
            target_sizes: `(B, 2)` tensor or list of `(height, width)` per image, positive integers (the sizes of
                the images as the processor read them: for a PIL image with an EXIF orientation, its displayed size,
                see `preprocess`); boxes are scaled to it and clamped to `[0, width]` / `[0, height]`. `None` keeps
                normalised boxes (clamped to `[0, 1]`).
            top_k: number of (query, class) pairs selected before thresholding; defaults to `num_top_queries`.

        Returns:
            One dict per image with `scores` `(K,)` float, `labels` `(K,)` int64 and `boxes` `(K, 4)` absolute
            `(x0, y0, x1, y1)`, sorted by descending score (ties: lower flattened query*C+class index first).

        Raises:
            ValueError: `threshold` not a number in `[0, 1]`, `target_sizes` not one pair of positive integers per
                image, or outputs of the wrong shape.
        """
        threshold = unit_interval(threshold, "threshold")
        logits, pred_boxes = prediction_tensors(outputs)
        sizes = target_size_tensor(target_sizes, int(logits.shape[0]), pred_boxes.device)
        scores, labels, queries = select_top_k(logits, self._top_k(top_k, logits))
        boxes = scale_boxes(pred_boxes, queries, sizes)
        keep = scores > threshold
        return [{"scores": s[m], "labels": lab[m], "boxes": b[m]} for s, lab, b, m in zip(scores, labels, boxes, keep)]

    def post_process_instance_segmentation(
        self,
        outputs: Any,
        threshold: float = 0.5,
        target_sizes: torch.Tensor | Sequence[Sequence[int]] | None = None,
        mask_threshold: float = 0.5,
        top_k: int | None = None,
        return_binary_maps: bool = False,
        return_coco_annotation: bool = False,
        overlap_mask_area_threshold: float = 0.0,
        pixel_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Convert the outputs of an RF-DETR segmentation model into per-image instances, like the original `rfdetr`
        `PostProcess` + `predict` (with the defaults, the same scores, labels, boxes and masks).

        Selection is that of [`~RFDetrImageProcessor.post_process_object_detection`] (top `top_k` (query, class) pairs
        by sigmoid score, stable sort, then `score > threshold`). For the kept instances only, the query's mask logits
        are resized bilinearly (`align_corners=False`) straight to the target size FIRST and thresholded SECOND at
        `mask_threshold`, a probability (0.5 = logit 0, the original's rule; transformers' rf_detr compares its
        `mask_threshold` to logits instead), `MASK_CHUNK` instances per resize.

        Args:
            outputs: model output with `logits` `(B, Q, C)`, `pred_boxes` `(B, Q, 4)` and `pred_masks` `(B, Q, h, w)`
                mask logits (attributes or mapping keys).
            threshold: a score in `[0, 1]`; keep instances with `score > threshold` (strict, as `predict`).
            target_sizes: `(B, 2)` tensor or list of `(height, width)` per image (the original image sizes, as the
                processor read them: displayed sizes for EXIF-oriented PIL images, see `preprocess`): boxes are
                scaled to it and masks resized to it. `None` keeps normalised boxes and masks at the mask-head
                resolution `(h, w)`.
            mask_threshold: probability in `[0, 1]`; a pixel is in the mask when its resized logit is above
                `log(p / (1 - p))`. `transformers`' image-segmentation pipeline passes 0.5.
            top_k: number of (query, class) pairs selected before thresholding; defaults to `num_top_queries` (the
                original's `num_select`: `num_queries` for the Seg variants, see `from_config`).
            return_binary_maps: `segmentation` is the `(N, H, W)` bool stack of every instance (the same tensor as
                `masks`, no overlap resolution, empty masks kept) and `segments_info` lists all N with ids 1..N; this
                skips the id map (about half the time at 1080p with 100 instances).
            return_coco_annotation: `segmentation` is a list of N COCO RLE dicts (`pycocotools.mask.encode`, `counts` as
                text), one per instance; `segments_info` as with `return_binary_maps`. Needs `pycocotools`.
            overlap_mask_area_threshold: for the id map only: an instance keeps its segment when the pixels it owns
                (not covered by a higher-scoring instance) are more than this fraction of its mask (0: any pixel, as
                transformers' rf_detr; the pipeline passes 0.5, as for Mask2Former). Its other pixels stay -1.
            pixel_mask: the processor's `(B, H, W)` `pixel_mask` when the inputs were padded (`keep_aspect_ratio=True`
                or aspect-preserving sizes): only each image's region of the mask logits is resized to its target
                size. Not needed for the default squash resize (no padding). Needs `target_sizes`. When None, the
                `pixel_mask` the outputs carry, if any and if `target_sizes` is given (`RFDetrForInstanceSegmentation`
                returns the one it was given, so transformers' image-segmentation pipeline gets it too).
            **kwargs: other arguments of transformers' segmentation post-processors; ignored with a warning.

        Returns:
            One dict per image, instances sorted by descending score: `scores` `(N,)`, `labels` `(N,)` int64, `boxes`
            `(N, 4)` absolute xyxy (as `post_process_object_detection`), `masks` `(N, H, W)` bool (the original's
            `predict` masks), and for `transformers`' pipeline `segmentation` (an `(H, W)` int32 id map, -1 where no
            segment, painted in score order; see `return_binary_maps` / `return_coco_annotation`) with
            `segments_info`, a list of `{"id", "label_id", "score"}`.

        Raises:
            ValueError: `pred_masks` missing or not `(B, Q, h, w)`, `target_sizes` not one positive `(height, width)`
                per image, a threshold that is not a number in `[0, 1]`, both `return_binary_maps` and `return_coco_annotation`, or a bad
                `pixel_mask`.
        """
        if kwargs:
            warnings.warn(
                f"post_process_instance_segmentation: ignored argument(s) {sorted(kwargs)}.", UserWarning, stacklevel=2
            )
        threshold = unit_interval(threshold, "threshold")
        if pixel_mask is None and target_sizes is not None:  # without target sizes the masks stay on the canvas
            pixel_mask = (
                outputs.get("pixel_mask") if isinstance(outputs, Mapping) else getattr(outputs, "pixel_mask", None)
            )
        _check_segmentation_options(
            return_binary_maps, return_coco_annotation, overlap_mask_area_threshold, pixel_mask, target_sizes
        )
        logit_threshold = probability_to_logit(mask_threshold)
        logits, pred_boxes = prediction_tensors(outputs)
        mask_logits = mask_logit_tensor(outputs, logits)
        batch_size = int(logits.shape[0])
        sizes = mask_sizes(target_sizes, batch_size, (int(mask_logits.shape[2]), int(mask_logits.shape[3])))
        regions = image_regions(pixel_mask, batch_size)
        box_sizes = target_size_tensor(target_sizes, batch_size, pred_boxes.device)
        scores, labels, queries = select_top_k(logits, self._top_k(top_k, logits))
        boxes = scale_boxes(pred_boxes, queries, box_sizes)
        results = []
        for index in range(batch_size):
            kept = (scores[index] > threshold).nonzero().flatten()
            masks = binary_masks(
                mask_logits[index].index_select(0, queries[index, kept]), sizes[index], logit_threshold, regions[index]
            )
            instances = {"scores": scores[index, kept], "labels": labels[index, kept], "boxes": boxes[index, kept]}
            results.append(
                _instance_result(
                    {**instances, "masks": masks},
                    overlap_mask_area_threshold,
                    return_binary_maps,
                    return_coco_annotation,
                )
            )
        return results

    def _top_k(self, top_k: int | None, logits: torch.Tensor) -> int:
        """Number of (query, class) pairs to select: `top_k` or `num_top_queries`, at most `Q * C`."""
        k = self.num_top_queries if top_k is None else int(top_k)
        if k < 0:
            raise ValueError(f"`top_k` must be non-negative, got {top_k}.")
        return min(k, int(logits.shape[1]) * int(logits.shape[2]))


# ----------------------------------------------------------------------------------------------------------------------
# Option helpers
# ----------------------------------------------------------------------------------------------------------------------


#: Images at least this many pixels on each side whose boxes all end within their first pixel warn (as
#: `hf_rfdetr.training.data_checks.NORMALISED_MIN_IMAGE_SIDE` refuses such a training split).
_NORMALISED_MIN_IMAGE_SIDE = 16
_NORMALISED_BOXES_WARNING = (
    "Every annotation box of this call ends within the first pixel of its image (x + width <= 1 and y + height <= 1) "
    f"although the images are at least {_NORMALISED_MIN_IMAGE_SIDE} pixels wide and high: the boxes look normalised "
    "to [0, 1] (as YOLO labels are) and train as sub-pixel boxes. COCO 'bbox' values are absolute pixels of the "
    "original image, [x, y, width, height]: multiply x and width by the image's width, y and height by its height."
)


def _warn_if_normalised(labels: list[dict[str, torch.Tensor]]) -> None:
    """Warn (once per process: the message is constant) when the kept boxes of one call, at least one, all end within
    `[0, 1] x [0, 1]` pixels of images at least `_NORMALISED_MIN_IMAGE_SIDE` pixels on each side."""
    found = False
    for target in labels:
        boxes = target["boxes"].double()
        if not len(boxes):
            continue
        height, width = (int(v) for v in target["orig_size"])
        right = (boxes[:, 0] + boxes[:, 2] / 2) * width
        bottom = (boxes[:, 1] + boxes[:, 3] / 2) * height
        beyond = bool((right > 1 + 1e-3).any() or (bottom > 1 + 1e-3).any())  # 1e-3: float32 rounding
        if beyond or min(height, width) < _NORMALISED_MIN_IMAGE_SIDE:
            return
        found = True
    if found:
        warnings.warn(_NORMALISED_BOXES_WARNING, UserWarning, stacklevel=4)


def _known_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The bookkeeping entries of a saved config among the constructor's extra `kwargs`; warn about the rest, which
    this processor does not use (they are dropped, not set as attributes)."""
    unknown = sorted(set(kwargs) - _BOOKKEEPING_KEYS)
    if unknown:
        warnings.warn(
            f"RFDetrImageProcessor: ignored unknown argument(s) {unknown}; its options are "
            f"{[*_OPTION_NAMES, 'num_top_queries']}.",
            UserWarning,
            stacklevel=3,
        )
    return {key: value for key, value in kwargs.items() if key in _BOOKKEEPING_KEYS}


def _channels_first(input_data_format: Any) -> bool | None:
    """`input_data_format` ("channels_first" / "channels_last", or transformers' `ChannelDimension`) -> whether
    arrays and tensors are `(C, H, W)`; `None` (not given) leaves the layout to `hf_rfdetr.models.rfdetr.image_io.to_chw`'s rule."""
    if input_data_format is None:
        return None
    value = getattr(input_data_format, "value", input_data_format)
    if value not in ("channels_first", "channels_last"):
        raise ValueError(f"`input_data_format` must be 'channels_first' or 'channels_last', got {input_data_format!r}.")
    return value == "channels_first"


def _channel_floats(values: Any, name: str) -> list[float]:
    """Return a per-channel statistic as a list of floats; a number becomes 3 equal values (RGB). The count is
    checked against the images' channels by `image_io.check_channels`."""
    if isinstance(values, (int, float, np.integer, np.floating)):
        values = [values] * 3
    values = [float(v) for v in values]
    if not values:
        raise ValueError(f"`{name}` must have one value per channel (3 for RGB), got {values}.")
    return values


def _to_batch_feature(data: dict[str, Any], return_tensors: str | None) -> BatchFeature:
    """Wrap the outputs in a `BatchFeature` (converted by it for `return_tensors="np"`), as transformers' DETR
    processors do: each image's `labels` dict is converted on its own."""
    if return_tensors not in (None, "pt", "np"):
        raise ValueError(f"`return_tensors` must be None, 'pt' or 'np', got {return_tensors!r}.")
    labels = data.pop("labels", None)
    batch = BatchFeature(data=data, tensor_type=return_tensors)
    if labels is not None:
        batch["labels"] = [dict(BatchFeature(label, tensor_type=return_tensors)) for label in labels]
    return batch


# ----------------------------------------------------------------------------------------------------------------------
# Instance segmentation results
# ----------------------------------------------------------------------------------------------------------------------


def _check_segmentation_options(
    binary_maps: bool, coco_annotation: bool, overlap_mask_area_threshold: float, pixel_mask: Any, target_sizes: Any
) -> None:
    """Raise `ValueError` on inconsistent `post_process_instance_segmentation` options."""
    if binary_maps and coco_annotation:
        raise ValueError("`return_binary_maps` and `return_coco_annotation` cannot both be True.")
    unit_interval(overlap_mask_area_threshold, "overlap_mask_area_threshold")
    if pixel_mask is not None and target_sizes is None:
        raise ValueError("`pixel_mask` maps masks to `target_sizes`: pass the original (height, width) sizes too.")


def _instance_result(
    instances: dict[str, torch.Tensor], overlap_mask_area_threshold: float, binary_maps: bool, coco_annotation: bool
) -> dict[str, Any]:
    """Add transformers' `segmentation` and `segments_info` to one image's `scores` / `labels` / `boxes` / `masks`."""
    masks, scores, labels = instances["masks"], instances["scores"].tolist(), instances["labels"].tolist()
    if binary_maps or coco_annotation:
        segmentation: Any = coco_rle(masks) if coco_annotation else masks
        kept = list(range(len(scores)))
    else:
        segmentation, kept_tensor = segment_map(masks, float(overlap_mask_area_threshold))
        kept = kept_tensor.tolist()
    segments_info = [
        {"id": number, "label_id": int(labels[index]), "score": float(scores[index])}
        for number, index in enumerate(kept, start=1)
    ]
    return {**instances, "segmentation": segmentation, "segments_info": segments_info}
