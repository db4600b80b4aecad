"""hf_rfdetr: RF-DETR as a Hugging Face transformers model."""

from .coco_classes import COCO_CLASSES, COCO_ID2LABEL
from .configuration_rfdetr import VARIANTS, RFDetrConfig
from .modeling_rfdetr import RFDetrForObjectDetection, RFDetrModel, RFDetrPreTrainedModel

__all__ = [
    "COCO_CLASSES",
    "COCO_ID2LABEL",
    "VARIANTS",
    "RFDetrConfig",
    "RFDetrForObjectDetection",
    "RFDetrModel",
    "RFDetrPreTrainedModel",
]
