"""Fine-tuning RF-DETR with the Hugging Face Trainer: the original recipe's optimizer groups, EMA and COCO metrics."""

from .ema import RFDetrEMACallback
from .optim import LearningRates, parameter_groups, parameter_settings

__all__ = ["LearningRates", "RFDetrEMACallback", "parameter_groups", "parameter_settings"]
