"""hf_rfdetr: RF-DETR as a Hugging Face transformers model.

Importing the package registers `RFDetrConfig` (model_type "rfdetr"), `RFDetrModel`, `RFDetrForObjectDetection` and
`RFDetrImageProcessor` with transformers' Auto classes, and marks them for `trust_remote_code` so that a saved
folder carries the code it needs (`auto_map` + the module files).

The rest of the public API (the `rfdetr`-style facade, video inference, ONNX export and runtime, Hub upload) is
imported on first use, so that `import hf_rfdetr` needs neither their optional dependencies nor their import time.
"""

import importlib
import importlib.util
from typing import Any

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForObjectDetection
from transformers.models.auto import modeling_auto

from .coco_classes import COCO_CLASSES, COCO_ID2LABEL
from .configuration_rfdetr import VARIANTS, RFDetrConfig
from .image_processing_rfdetr import RFDetrImageProcessor
from .modeling_rfdetr import RFDetrForObjectDetection, RFDetrModel, RFDetrPreTrainedModel


def fine_tune(*args, **kwargs):
    """Fine-tune RF-DETR with the original recipe on the HF Trainer; see `hf_rfdetr.training.fine_tune`
    (needs the `train` extra: accelerate, datasets, pycocotools, scipy)."""
    from .training import fine_tune as run

    return run(*args, **kwargs)


#: Public names imported on first access: name -> module (relative to this package).
_LAZY_NAMES: dict[str, str] = {
    **dict.fromkeys(
        ["RFDETR", "RFDETRNano", "RFDETRSmall", "RFDETRMedium", "RFDETRBase", "RFDETRLarge", "RFDETRLargeDeprecated"],
        ".facade",
    ),
    "pretrained": ".pretrained_weights",
    "process_video": ".video",
    "draw_detections": ".annotate",
    "push_to_hub": ".hub",
    "export_onnx": ".onnx",
    "RFDetrOnnxModel": ".onnx",
    **dict.fromkeys(["optimize", "restore", "is_optimized"], ".optimization"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY_NAMES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY_NAMES])


def _register() -> None:
    AutoConfig.register(RFDetrConfig.model_type, RFDetrConfig, exist_ok=True)
    AutoModel.register(RFDetrConfig, RFDetrModel, exist_ok=True)
    AutoModelForObjectDetection.register(RFDetrConfig, RFDetrForObjectDetection, exist_ok=True)
    # The object-detection pipeline checks the model's class name against this names table only (not registered
    # classes); the onnxruntime runner serves the pipeline too.
    modeling_auto.MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES.setdefault(
        RFDetrConfig.model_type, (RFDetrForObjectDetection.__name__, "RFDetrOnnxModel")
    )
    try:  # transformers 5.x: one class per backend; ours is torch-based and serves both
        AutoImageProcessor.register(
            RFDetrConfig,
            image_processor_classes={"torchvision": RFDetrImageProcessor, "pil": RFDetrImageProcessor},
            exist_ok=True,
        )
    except TypeError:  # transformers 4.57
        AutoImageProcessor.register(RFDetrConfig, slow_image_processor_class=RFDetrImageProcessor, exist_ok=True)
    _register_no_video_processor()
    _register_optimum()
    RFDetrConfig.register_for_auto_class()
    RFDetrModel.register_for_auto_class("AutoModel")
    RFDetrForObjectDetection.register_for_auto_class("AutoModelForObjectDetection")
    RFDetrImageProcessor.register_for_auto_class("AutoImageProcessor")


def _register_no_video_processor() -> None:
    """Tell transformers 5.x that RF-DETR has no video processor.

    Its pipelines also try to load a video processor, which they derive from the `AutoImageProcessor` entry of a
    saved folder's `auto_map`; with no local class registered, that asks the user to trust remote code that does not
    exist. Registering "no class" for our config makes the optional load fail quietly instead.
    """
    try:
        from transformers import AutoVideoProcessor
    except ImportError:  # pragma: no cover - transformers without video processors
        return
    try:
        AutoVideoProcessor.register(RFDetrConfig, video_processor_classes={"torchvision": None}, exist_ok=True)
    except TypeError:  # transformers 4.57 has no per-backend registry and no such lookup in its pipelines
        pass


def _register_optimum() -> None:
    """Register RF-DETR's ONNX config with Optimum's `TasksManager`, when `optimum-onnx` is installed and usable."""
    if importlib.util.find_spec("optimum") is None:
        return
    try:
        from .onnx.optimum import register_optimum
    except Exception:  # no optimum-onnx, or one that refuses this transformers: export_onnx uses torch.onnx then
        return
    register_optimum()


_register()

__all__ = [
    "COCO_CLASSES",
    "COCO_ID2LABEL",
    "VARIANTS",
    "RFDetrConfig",
    "RFDetrForObjectDetection",
    "RFDetrImageProcessor",
    "RFDetrModel",
    "RFDetrPreTrainedModel",
    "fine_tune",
    *_LAZY_NAMES,
]
