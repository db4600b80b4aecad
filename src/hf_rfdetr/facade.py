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
"""The `rfdetr` front door: `RFDETRBase().predict(image)` and friends, on top of the Hugging Face classes.

For people switching from the original package, these classes keep its names and calls:

    >>> from hf_rfdetr import RFDETRBase
    >>> model = RFDETRBase(pretrain_weights="rf-detr-base.pth")  # or a Hub id, or a saved folder
    >>> detections = model.predict("photo.jpg", threshold=0.5)  # supervision.Detections
    >>> model.train(dataset_dir="dataset", epochs=10, batch_size=4, grad_accum_steps=4, lr=1e-4, output_dir="out")
    >>> model.export()  # ONNX, to ./output

Each object wraps a regular `RFDetrForObjectDetection` (`.model`) and `RFDetrImageProcessor` (`.processor`);
nothing here changes the model, and everything the facade does can be done with those two directly.

The segmentation models keep the original's names too (`RFDETRSegPreview`, `RFDETRSegNano`, `RFDETRSegSmall`,
`RFDETRSegMedium`, `RFDETRSegLarge`, `RFDETRSegXLarge`, `RFDETRSeg2XLarge`): they wrap an
`RFDetrForInstanceSegmentation`, and `predict` adds `mask` `(N, H, W)` bool to the detections, as the original does:

    >>> from hf_rfdetr import RFDETRSegNano
    >>> detections = RFDETRSegNano().predict("photo.jpg", threshold=0.5)  # the COCO Seg Nano checkpoint
    >>> detections.mask.shape  # (N, height, width)

Any class loads a segmentation folder or checkpoint as segmentation (the weights decide); a segmentation class
given a detector's weights loads the detector and warns that `predict` returns no masks.

`pretrain_weights` is a checkpoint name ("base", "rf-detr-base.pth", ...: `hf_rfdetr.pretrained`), a Hub repository
id, a local folder saved with `save_pretrained` (or holding transformers' own `rf_detr` model, converted on load), or
an original `rfdetr` checkpoint file (`.pth` / `.pt`, converted in memory with `hf_rfdetr.conversion`). Without it,
as in the original, the variant's COCO checkpoint is used: the original's file name for the variant
(`rf-detr-base.pth`, ...) when that file is in the current folder, else the original's published checkpoint,
downloaded once (md5-checked), converted and cached as safetensors (`hf_rfdetr.pretrained_weights`).
`pretrain_weights=None` builds a randomly initialised model, as the original's does.
"""

from __future__ import annotations

import inspect
import operator
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from .facade_export import export_options
from .facade_loading import ORIGINAL_WEIGHTS, RFDetrModelClass, default_device, load_pretrained, requested_labels
from .models.rfdetr.configuration_rfdetr import RFDetrConfig
from .models.rfdetr.image_io import load_image, to_chw
from .models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor
from .models.rfdetr.modeling_rfdetr import RFDetrForInstanceSegmentation, model_class_for
from .verbosity import quiet_loading

if TYPE_CHECKING:
    import supervision as sv

__all__ = [
    "RFDETR",
    "RFDETRBase",
    "RFDETRLarge",
    "RFDETRLargeDeprecated",
    "RFDETRMedium",
    "RFDETRNano",
    "RFDETRSeg",
    "RFDETRSeg2XLarge",
    "RFDETRSegLarge",
    "RFDETRSegMedium",
    "RFDETRSegNano",
    "RFDETRSegPreview",
    "RFDETRSegSmall",
    "RFDETRSegXLarge",
    "RFDETRSmall",
    "ImageInput",
]

#: What `predict` accepts for one image (a list of them is a batch).
ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor


class _VariantCheckpoint:
    """The default of `pretrain_weights`: the variant's COCO checkpoint (as the original's `pretrain_weights` default)."""

    def __repr__(self) -> str:
        return "<the variant's COCO checkpoint>"


VARIANT_CHECKPOINT = _VariantCheckpoint()


class RFDETR:
    """An RF-DETR detector with the original package's interface (`predict`, `train`, `export`).

    Args:
        pretrain_weights: a checkpoint name (`hf_rfdetr.pretrained_weights.CHECKPOINTS`: "base", "rf-detr-base.pth",
            ...), a Hub repository id, a local folder written by `save_pretrained` (or by `hf-rfdetr convert` /
            `fine_tune`; a folder or repository of transformers' own `rf_detr` model is converted on load), or an
            original `rfdetr` checkpoint (`.pth`, converted in memory). Default: the variant's COCO checkpoint (its
            original file in the current folder, else downloaded once and cached). `None`: random weights.
        resolution: input size in pixels (square), a multiple of `patch_size * num_windows` (56 for Base, 32 for the
            others); default the model's. Position embeddings are interpolated for a new resolution.
        num_classes: number of classes. With `pretrain_weights`, the class heads keep the checkpoint's rows: tiled or
            truncated to this count, as the original does (`hf_rfdetr.class_heads.relabel`); without weights, the
            model gets exactly this many labels.
        class_names: names of the classes (their count sets `num_classes`); default the checkpoint's names. Names the
            checkpoint knows start from their own class-head rows.
        device: "cpu", "cuda", "cuda:1", ... (default: CUDA when available, else CPU).
        config: an `RFDetrConfig` to build a randomly initialised model from (instead of the class's variant).
        gradient_checkpointing: (keyword) enable gradient checkpointing on the model, with or without weights (less
            memory in training, as the original's option); `train` then uses it unless told otherwise.
        **overrides: other `RFDetrConfig` fields for a randomly initialised model (e.g. `num_queries=100`): they
            describe the architecture, so they are refused with `pretrain_weights` (the weights fix it).

    Attributes:
        model: the `RFDetrForObjectDetection`, or `RFDetrForInstanceSegmentation` for a segmentation model (the
            `RFDETRSeg*` classes, or weights with a mask head), in eval mode, on `device`.
        processor: the `RFDetrImageProcessor` matching it.
    """

    #: Named variant built when no weights are given (see `RFDetrConfig.from_variant`).
    variant: str = "base"

    def __init__(
        self,
        pretrain_weights: str | os.PathLike | None | _VariantCheckpoint = VARIANT_CHECKPOINT,
        *,
        resolution: int | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        device: str | torch.device | None = None,
        config: RFDetrConfig | None = None,
        **overrides: Any,
    ) -> None:
        id2label = requested_labels(num_classes, class_names)
        gradient_checkpointing = bool(overrides.pop("gradient_checkpointing", False))  # not an architecture option
        self.device = torch.device(device) if device is not None else default_device()
        if pretrain_weights is VARIANT_CHECKPOINT:  # the COCO checkpoint, unless a new architecture is described
            pretrain_weights = None if config is not None or overrides else self._variant_checkpoint()
        if pretrain_weights is not None:
            if config is not None or overrides:
                given = "config" if config is not None else ", ".join(sorted(overrides))
                raise ValueError(
                    f"{given} describe(s) the architecture, which pretrain_weights={str(pretrain_weights)!r} fixes: "
                    "load the weights without it, or pass pretrain_weights=None for a randomly initialised model "
                    "with it"
                )
            with quiet_loading():  # no "Loading weights" bar for each model (the global setting is restored)
                model, processor = load_pretrained(pretrain_weights, id2label)
            if isinstance(self, RFDETRSeg) and not getattr(model.config, "segmentation_head", False):
                warnings.warn(
                    f"{type(self).__name__}: pretrain_weights={str(pretrain_weights)!r} hold a detection model (no "
                    "mask head), which the weights decide: predict returns boxes without masks. Load a segmentation "
                    "checkpoint or folder for masks (RFDETRSegNano() loads the COCO Seg Nano one)",
                    UserWarning,
                    stacklevel=2,
                )
        else:
            model, processor = self._random_model(config, id2label, overrides)
        if resolution is not None and resolution != model.config.resolution:
            model.config.resolution = int(resolution)
            model.config.validate()
            processor.size = {"height": int(resolution), "width": int(resolution)}
        if gradient_checkpointing:
            # transformers v5 renamed it (the old name warns that it is deprecated)
            getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
        self.model: RFDetrModelClass = model.to(self.device).eval()
        self.processor: RFDetrImageProcessor = processor
        self._optimized: torch.nn.Module | None = None
        #: Where the weights came from (a checkpoint name, Hub id, folder or file; None: random), for model cards.
        self._source: str | None = None if pretrain_weights is None else str(pretrain_weights)
        self._autocast: torch.dtype | None = None

    def _variant_checkpoint(self) -> str:
        """The original's file for the variant in the current folder (as the original reads it), else its name."""
        default = Path(ORIGINAL_WEIGHTS.get(self.variant, ""))
        return str(default) if default.suffix and default.is_file() else self.variant

    def _random_model(
        self, config: RFDetrConfig | None, id2label: dict[int, str] | None, overrides: dict[str, Any]
    ) -> tuple[RFDetrModelClass, RFDetrImageProcessor]:
        """A randomly initialised model of `config` or of the class's variant (with `overrides` and labels)."""
        labels = {"id2label": id2label, "label2id": {name: i for i, name in id2label.items()}} if id2label else {}
        if config is None:
            reason = (
                f"{', '.join(sorted(overrides))} describe(s) a new architecture"
                if overrides
                else "pretrain_weights=None"
            )
            config = RFDetrConfig.from_variant(self.variant, **labels, **overrides)
            file = ORIGINAL_WEIGHTS.get(self.variant, "an original .pth")
            warnings.warn(
                f"{type(self).__name__}(): {reason}, so the COCO checkpoint ({file}) is not loaded and the model has "
                "RANDOM weights: its detections are meaningless until you train it with .train(...). Leave "
                "pretrain_weights out for the COCO weights, or pass a checkpoint name, Hub id, folder or .pth.",
                UserWarning,
                stacklevel=3,
            )
        elif labels:
            config = RFDetrConfig.from_dict({**config.to_dict(), **labels})
        return model_class_for(config)(config), RFDetrImageProcessor.from_config(config)

    # ------------------------------------------------------------------------------------------------------------------
    # Properties
    # ------------------------------------------------------------------------------------------------------------------

    @property
    def class_names(self) -> list[str]:
        """The label names in logit-slot order (`class_id` indexes this list; COCO models: "N/A" for unused ids)."""
        id2label = self.model.config.id2label
        return [id2label[i] for i in range(self.model.config.num_labels)]

    @property
    def is_segmentation(self) -> bool:
        """True for a segmentation model (a mask head: `predict` returns `mask` too)."""
        return isinstance(self.model, RFDetrForInstanceSegmentation)

    @property
    def resolution(self) -> int:
        """Input size in pixels (square) that images are resized to."""
        return int(self.model.config.resolution)

    # ------------------------------------------------------------------------------------------------------------------
    # Inference
    # ------------------------------------------------------------------------------------------------------------------

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        threshold: float = 0.5,
        shape: tuple[int, int] | None = None,
        patch_size: int | None = None,
        include_source_image: bool = True,
        **kwargs: Any,
    ) -> sv.Detections | list[sv.Detections]:
        """Detect objects in one image or a list of images (a list runs as one batch, in one forward pass).

        Args:
            images: a file path, an http(s) URL, a PIL image, a numpy array `(H, W, 3)` RGB, a torch tensor
                `(3, H, W)`, or a list of these (sizes may differ). Files and PIL images are read as a viewer shows
                them (EXIF orientation applied, 16-bit data scaled to 8 bits); arrays and tensors may be uint8,
                uint16, bool or float in `[0, 1]`, grey or RGBA too, by the rule of `hf_rfdetr.models.rfdetr.image_io.to_chw`
                (the processor's). For OpenCV / supervision frames (BGR) pass `frame[:, :, ::-1]`.
            threshold: keep detections whose score is above this.
            shape: `(height, width)` to resize the images to for this call only (the stored processor is not
                changed), as the original's; both must be positive multiples of `patch_size * num_windows`
                (`model.config.block_size`). Default: the processor's size (`resolution` square).
            patch_size: the original's check of the backbone patch size: must equal `model.config.patch_size`.
            include_source_image: put the image as read, a uint8 RGB `(H, W, 3)` numpy array, in
                `detections.metadata["source_image"]` (each image's in its own Detections for a list), as the
                original does (files and PIL images with their EXIF orientation applied, float arrays / tensors
                scaled by 255 and truncated). `False`: no `source_image`.
            **kwargs: accepted and ignored, as the original does, with a warning naming them.

        Returns:
            `supervision.Detections` for one image, a list of them (one per image) for a list: `xyxy` `(N, 4)` in
            pixels of the original image, `confidence` `(N,)`, `class_id` `(N,)` (the model's label index; COCO
            category id for COCO checkpoints, so `COCO_CLASSES[class_id]` names it), `data["class_name"]` `(N,)` and
            `data["source_shape"]` `(N, 2)` int64 (the image's `(height, width)` on every row, as the original).
            Sorted by descending confidence. These are `processor.post_process_object_detection`'s results.
            A segmentation model (`is_segmentation`) adds `mask` `(N, H, W)` bool at the original image size, as the
            original's `predict`: `processor.post_process_instance_segmentation`'s masks (the mask logits resized
            bilinearly to the image size, then `> 0`).

        Raises:
            FileNotFoundError: a path that does not exist. OSError: a URL that cannot be fetched (offline).
            ValueError: an array / tensor of the wrong shape, dtype or range, an unreadable or too large file
                (`hf_rfdetr.models.rfdetr.image_io.ImageReadError`, naming it), an empty list, a `shape` that is
                not two positive multiples of `model.config.block_size`, a `patch_size` other than the model's.
            TypeError: an input of another type.
        """
        if kwargs:
            warnings.warn(f"predict() ignores {sorted(kwargs)}, as the original does", UserWarning, stacklevel=2)
        size = self._predict_size(shape, patch_size)
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        if not items:
            raise ValueError("predict() got an empty list of images")
        loaded = [_load_input(item, index) for index, item in enumerate(items)]
        sizes = [_height_width(image) for image in loaded]
        inputs = self.processor(loaded, return_tensors="pt", device=self.device, **size)
        outputs = self._forward(inputs)
        if self.is_segmentation:  # the id map is skipped: predict returns the stack of masks
            results = self.processor.post_process_instance_segmentation(
                outputs,
                threshold=threshold,
                target_sizes=sizes,
                return_binary_maps=True,
                pixel_mask=inputs["pixel_mask"],
            )
        else:
            results = self.processor.post_process_object_detection(outputs, threshold=threshold, target_sizes=sizes)
        detections = [self._detections(result) for result in results]
        for detection, image, (height, width) in zip(detections, loaded, sizes):
            detection.data["source_shape"] = np.tile(np.array([height, width], dtype=np.int64), (len(detection), 1))
            if include_source_image:
                detection.metadata["source_image"] = _source_image(image)
        return detections[0] if single else detections

    def _predict_size(self, shape: tuple[int, int] | None, patch_size: int | None) -> dict[str, Any]:
        """The processor's per-call `size` for `predict(shape=..., patch_size=...)` (empty: the stored size), after the
        original's checks: `patch_size` is the model's, both sides positive multiples of `config.block_size`."""
        config = self.model.config
        if patch_size is not None and (isinstance(patch_size, bool) or patch_size != config.patch_size):
            raise ValueError(
                f"predict(patch_size={patch_size!r}) does not match the model's patch_size={config.patch_size}; "
                "patch size is an architectural parameter: omit patch_size"
            )
        if shape is None:
            return {}
        block = config.block_size
        try:
            height, width = (operator.index(side) for side in shape if not isinstance(side, bool))
        except (TypeError, ValueError):
            height = width = 0  # not two integers: refused below
        if height <= 0 or width <= 0 or height % block or width % block:
            raise ValueError(
                f"predict(shape={shape!r}): shape must be (height, width), two positive multiples of {block} "
                f"(patch_size={config.patch_size} * num_windows={config.num_windows})"
            )
        return {"size": {"height": height, "width": width}}

    def _forward(self, inputs: Any) -> Any:
        """Run the (optimised, if any) model on processor outputs; returns the model output."""
        pixel_values = inputs["pixel_values"].to(self.device)
        pixel_mask = inputs["pixel_mask"].to(self.device)
        if bool(pixel_mask.all()):  # no padding (one image, or same-size images): skip the masked code paths
            pixel_mask = None
        autocast = torch.autocast(self.device.type, dtype=self._autocast, enabled=self._autocast is not None)
        with torch.inference_mode(), autocast:
            if self._optimized is not None:
                return self._optimized(pixel_values, pixel_mask)
            return self.model(pixel_values=pixel_values, pixel_mask=pixel_mask)

    def _detections(self, result: dict[str, torch.Tensor]) -> sv.Detections:
        """One post-processed result (`scores`, `labels`, `boxes`, and `masks` for segmentation) as
        `supervision.Detections`."""
        import supervision as sv

        class_id = result["labels"].cpu().numpy().astype(int)
        names = self.model.config.id2label
        masks = result.get("masks")
        return sv.Detections(
            xyxy=result["boxes"].float().cpu().numpy().reshape(-1, 4),
            confidence=result["scores"].float().cpu().numpy(),
            class_id=class_id,
            mask=None if masks is None else masks.cpu().numpy().astype(bool),
            data={"class_name": np.array([names[int(i)] for i in class_id], dtype=str)},
        )

    def optimize_for_inference(
        self,
        compile: bool = False,
        batch_size: int = 1,
        dtype: torch.dtype | str = "auto",
        backbone_only: bool = True,
        quantize: bool | str = "auto",
        tune_allocator: bool = True,
        bf16_attention: bool | str = "auto",
        channels_last: bool | str = "auto",
    ) -> None:
        """Make `predict` faster, in place, with `hf_rfdetr.optimize` (nothing is copied).

        By default the backbone, about 85% of the CPU time, runs its linear layers in int8 on CPUs with int8 dot
        products (AVX512-VNNI, AVX-VNNI), with its attention in bf16 where the CPU also has native bf16
        (`bf16_attention`), else in bfloat16 on CPUs with native bf16 (AVX512-BF16, AMX) and on CUDA; the rest of
        the model stays float32, so the detections stay close to those of float32 (scores within 0.004 on the demo
        checkpoint; a detection changes on 3 of 32 rotated, mirrored and cropped copies of it, where near-tied
        proposals swap). Elsewhere it stays float32 (emulated bf16 is slower). `dtype` may name the precision instead
        (torch.bfloat16, torch.float16, torch.float32 or their names; int8 then only with `quantize=True`);
        `backbone_only=False` autocasts the whole forward (a few percent faster, scores move by up to 0.1).
        `tune_allocator` keeps freed memory in the process on Linux (glibc), so that each `predict` does not
        page-fault its working set back in (`hf_rfdetr.optimization.keep_freed_memory`, a process-wide setting).
        `channels_last` runs the projector's convolutions on channels-last inputs (on the CPU by default).

        `compile=True` also runs it through `torch.compile`. It is off by default (the original's default is on): on
        CPU compiling takes 5-30 s and was no faster than eager, in float32 or with the int8 backbone. The original traces the model with TorchScript
        for a fixed `batch_size`; `torch.compile` specialises on the shapes it sees instead (`batch_size` is accepted
        for compatibility and unused). `remove_optimized_model()` goes back to float32 eager execution, exactly. For
        deployment outside PyTorch use `export()` (ONNX).

        Raises:
            ValueError: a dtype other than "auto", float32, bfloat16 or float16; int8 where it cannot run.
        """
        from .optimization import optimize

        del batch_size
        self.remove_optimized_model()
        optimize(
            self.model,
            dtype=dtype,
            backbone_only=backbone_only,
            quantize=quantize,
            tune_allocator=tune_allocator,
            bf16_attention=bf16_attention,
            channels_last=channels_last,
        )
        forward = _PixelsOnly(self.model)
        self._optimized = torch.compile(forward) if compile else forward

    def inference(
        self,
        compile: bool = True,
        batch_size: int = 1,
        dtype: torch.dtype | str = torch.float32,
        *,
        inplace: bool = False,
        compile_backend: str = "torchscript",
    ) -> None:
        """The original 1.11's optimisation call, as `optimize_for_inference(compile=compile, dtype=dtype)`.

        `dtype` (a torch dtype or its name: float32, bfloat16, float16) is the precision of the backbone's linear
        layers, the rest of the model stays float32 (`optimize_for_inference`); with the default float32 nothing is
        quantised. `compile=True` runs the forward through `torch.compile` for either `compile_backend`
        ("torchscript", the original's default, or "inductor": ours does not trace with TorchScript). `batch_size` is
        accepted and has no effect: the eager path takes any batch, and `torch.compile` specialises on the shapes it
        sees. Our optimisation always works on the loaded model in place, without a copy, and is undone exactly by
        `remove_optimized_model()`; `inplace` is accepted either way (nothing is cleared, `export` keeps working).

        Raises:
            ValueError: an unknown `compile_backend`, or a dtype `optimize_for_inference` refuses.
        """
        if compile_backend not in ("torchscript", "inductor"):
            raise ValueError(f"compile_backend must be 'torchscript' or 'inductor', got {compile_backend!r}")
        del inplace
        self.optimize_for_inference(compile=compile, batch_size=batch_size, dtype=dtype)

    @property
    def is_optimized_inplace(self) -> bool:
        """Always False: the original's flag for a destructive `inference(inplace=True)` (the base model cleared,
        `remove_optimized_model` a no-op). Ours never clears the model; `remove_optimized_model` always restores it."""
        return False

    def remove_optimized_model(self) -> None:
        """Undo `optimize_for_inference`: float32, eager execution."""
        from .optimization import restore

        restore(self.model)
        self._optimized = None
        self._autocast = None

    # ------------------------------------------------------------------------------------------------------------------
    # Training, export, saving
    # ------------------------------------------------------------------------------------------------------------------

    def train(self, dataset_dir: str | os.PathLike | None = None, **kwargs: Any) -> Any:
        """Fine-tune on a COCO folder with the original recipe: `hf_rfdetr.fine_tune` with this model as the start.

        Takes `fine_tune`'s keyword arguments, which follow the original `model.train(...)`: `epochs`, `batch_size`,
        `grad_accum_steps`, `lr`, `lr_encoder`, `resolution`, `weight_decay`, `device` (default: this object's),
        `use_ema`, `gradient_checkpointing`, `checkpoint_interval`, `resume`, `tensorboard`, `wandb`, `project`,
        `run`, `early_stopping`, `early_stopping_patience`, `early_stopping_min_delta`, `early_stopping_use_ema`,
        `warmup_epochs`, `lr_drop`, `seed`, `num_workers`, `amp`, `output_dir` (default "output"), or `dataset=` (a
        `datasets.DatasetDict`) instead of `dataset_dir`. Options of the original without an equivalent
        (`class_names`, `ema_decay`, ...) and unknown names are refused before anything is loaded, naming what to
        use instead.

        The class heads start from the model's rows for the dataset's labels (`hf_rfdetr.class_heads.relabel`: rows of
        the same names, else tiled / truncated by position, as the original). Afterwards
        this object holds the model `fine_tune` saved in `output_dir`: the regular (non-EMA) weights at the end of
        training, or the best checkpoint by validation mAP with `early_stopping` (as the original 1.11 keeps its
        trained module). The EMA weights are saved in `output_dir/ema`; load them with
        `RFDETR(pretrain_weights="OUTPUT_DIR/ema")`. Returns the `transformers.Trainer`.
        """
        from .training import fine_tune
        from .training.options import check_epochs, check_training_numbers, check_training_options

        if "epochs" in kwargs:
            check_epochs(kwargs["epochs"])
        check_training_numbers(kwargs)  # batch_size=0, lr=-1, ...: before the model is saved and the data read
        known = set(inspect.signature(fine_tune).parameters) - {"model", "dataset_dir", "training_arguments"}
        check_training_options({name: value for name, value in kwargs.items() if name not in known})  # before loading
        kwargs.setdefault("device", None if self.device.type == "cuda" else self.device.type)
        kwargs.setdefault("gradient_checkpointing", self.model.is_gradient_checkpointing)
        self.remove_optimized_model()
        with tempfile.TemporaryDirectory(prefix="rfdetr-start-") as start:
            self.model.save_pretrained(start)  # a folder: fine_tune relabels the class heads for the dataset
            # the model cards name where the weights came from, not this temporary folder
            trainer = fine_tune(start, dataset_dir, model_name=self._source, **kwargs)
        output_dir = Path(kwargs.get("output_dir", "output"))
        self._source = str(output_dir)
        self.model = trainer.model.to(self.device).eval()
        self.processor = RFDetrImageProcessor.from_pretrained(output_dir)
        return trainer

    def export(self, output_dir: str | os.PathLike = "output", **kwargs: Any) -> Path:
        """Export to ONNX in `output_dir` (default "output", as the original): `hf_rfdetr.export_onnx(self.model,
        output_dir, image_processor=self.processor, **kwargs)` (options: `opset`, `fp16`, `quantize`, `validate`,
        ...; needs the `onnx` extra). Every keyword of the original's `export` is taken or refused by name: its
        `opset_version=` and `shape=(height, width)` are taken as `opset=` and `resolution=`; its `batch_size=`,
        `dynamic_batch=`, `max_batch_size=`, `verbose=` and `max_images=` are accepted and unused (the batch size of
        the graph is always dynamic, unbounded); its defaults `format="onnx"`, `infer_dir=None`, `backbone_only=False`,
        `quantization=None`, `calibration_data=None`, `soc=None`, `backend=None`, `notes=None`,
        `coreml_precision=None`, `coreai_precision=None`, `openvino_precision=None`, `output_name=None` and a
        `patch_size` of None or equal to the model's are accepted; other values of these and its older options
        (`simplify`, ...) raise `ValueError`, naming the option and what to do instead (`quantization="int8"`, the
        original's TFLite setting: `quantize=True` for an int8 ONNX model). `fp16=` is `export_onnx`'s (a float16
        graph), not the original's TensorRT-only setting. `backend=` is the ONNX exporter here ("auto", "torch",
        "optimum"); the original's ExecuTorch backends ("xnnpack", "coreml", "qnn") are refused saying so. A keyword
        neither knows is a `TypeError`. Returns the folder holding `model.onnx`."""
        try:
            from .onnx import export_onnx
        except ImportError as error:
            raise ImportError(f"ONNX export needs the onnx extra: pip install 'hf-rfdetr[onnx]' ({error})") from error
        self.remove_optimized_model()
        options = export_options(kwargs, patch_size=self.model.config.patch_size)
        options.setdefault("source", self._source)  # the card names what the user gave, not the cached COCO folder
        return export_onnx(self.model, output_dir, image_processor=self.processor, **options)

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Save the model and its image processor to `folder` (loadable with `pretrain_weights=folder`, the Auto
        classes and the `object-detection` pipeline, or `image-segmentation` for a segmentation model). Returns the
        folder."""
        self.model.save_pretrained(folder)
        self.processor.save_pretrained(folder)
        return Path(folder)

    def __repr__(self) -> str:
        config = self.model.config
        return (
            f"{type(self).__name__}(variant={config.variant!r}, resolution={config.resolution}, "
            f"num_labels={config.num_labels}, device={str(self.device)!r})"
        )


class RFDETRNano(RFDETR):
    """RF-DETR Nano (384 px); see `RFDETR`."""

    variant = "nano"


class RFDETRSmall(RFDETR):
    """RF-DETR Small (512 px); see `RFDETR`."""

    variant = "small"


class RFDETRMedium(RFDETR):
    """RF-DETR Medium (576 px); see `RFDETR`."""

    variant = "medium"


class RFDETRBase(RFDETR):
    """RF-DETR Base (560 px, DINOv2 patch 14); see `RFDETR`."""

    variant = "base"


class RFDETRLarge(RFDETR):
    """RF-DETR Large (704 px; the original's `RFDETRLarge` since 1.4); see `RFDETR`."""

    variant = "large"


class RFDETRLargeDeprecated(RFDETR):
    """RF-DETR Large before 1.4 (DINOv2-B, 560 px; the original's `RFDETRLargeDeprecated`); see `RFDETR`."""

    variant = "large-legacy"


class RFDETRSeg(RFDETR):
    """Base of the RF-DETR Seg models (the original's `RFDETRSeg`): `predict` returns `supervision.Detections` with
    `mask` `(N, H, W)` bool at the original image size. Without `pretrain_weights`, the variant's COCO segmentation
    checkpoint is loaded (`hf_rfdetr.pretrained_weights.CHECKPOINTS`; `RFDETRSeg` itself: Seg Small's). Custom resolutions are multiples of 24
    (12 for `RFDETRSegNano`); see `RFDETR`."""

    variant = "seg-small"


class RFDETRSegPreview(RFDETRSeg):
    """RF-DETR Seg Preview (432 px; deprecated in the original since 1.7); see `RFDETRSeg`."""

    variant = "seg-preview"


class RFDETRSegNano(RFDETRSeg):
    """RF-DETR Seg Nano (312 px, one window); see `RFDETRSeg`."""

    variant = "seg-nano"


class RFDETRSegSmall(RFDETRSeg):
    """RF-DETR Seg Small (384 px); see `RFDETRSeg`."""

    variant = "seg-small"


class RFDETRSegMedium(RFDETRSeg):
    """RF-DETR Seg Medium (432 px); see `RFDETRSeg`."""

    variant = "seg-medium"


class RFDETRSegLarge(RFDETRSeg):
    """RF-DETR Seg Large (504 px); see `RFDETRSeg`."""

    variant = "seg-large"


class RFDETRSegXLarge(RFDETRSeg):
    """RF-DETR Seg XLarge (624 px); see `RFDETRSeg`."""

    variant = "seg-xlarge"


class RFDETRSeg2XLarge(RFDETRSeg):
    """RF-DETR Seg 2XLarge (768 px); see `RFDETRSeg`."""

    variant = "seg-2xlarge"


class _PixelsOnly(torch.nn.Module):
    """`model(pixel_values, pixel_mask)` returning `logits`, `pred_boxes` (and `pred_masks` for segmentation): a
    tensor-only forward to compile."""

    def __init__(self, model: RFDetrModelClass) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        outputs = self.model(pixel_values=pixel_values, pixel_mask=pixel_mask)
        tensors = {"logits": outputs.logits, "pred_boxes": outputs.pred_boxes}
        if getattr(outputs, "pred_masks", None) is not None:
            tensors["pred_masks"] = outputs.pred_masks
        return tensors


# ----------------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------------


def _load_input(image: Any, index: int) -> Image.Image | torch.Tensor:
    """One `predict` input as the processor will read it: files through `hf_rfdetr.models.rfdetr.image_io.load_image` (EXIF
    orientation, 16-bit scaling, pixel limit, errors naming the file), arrays / tensors / PIL images through
    `hf_rfdetr.models.rfdetr.image_io.to_chw` (one layout and dtype rule, shared with the processor)."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, name=f"image {index}: {os.fspath(image)!r}")
    return to_chw(image, f"image {index}")


def _source_image(image: Image.Image | torch.Tensor) -> np.ndarray:
    """A loaded `predict` input as the original's `source_image`: uint8 RGB `(H, W, 3)` (floats x 255, truncated)."""
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"))
    if image.dtype != torch.uint8:
        image = (image.float() * 255).clamp(0, 255).to(torch.uint8)
    return image.permute(1, 2, 0).contiguous().numpy().copy()


def _height_width(image: Image.Image | torch.Tensor) -> tuple[int, int]:
    if isinstance(image, Image.Image):
        return image.height, image.width
    return int(image.shape[1]), int(image.shape[2])
