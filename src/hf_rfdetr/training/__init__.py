"""Fine-tuning RF-DETR with the Hugging Face Trainer: the original recipe's optimizer groups, EMA and COCO metrics."""

from .ema import RFDetrEMACallback
from .metrics import coco_metrics
from .optim import LearningRates, parameter_groups, parameter_settings
from .trainer import CocoEvaluator, RFDetrTrainer

__all__ = [
    "CocoEvaluator",
    "LearningRates",
    "RFDetrEMACallback",
    "RFDetrTrainer",
    "coco_metrics",
    "parameter_groups",
    "parameter_settings",
]
