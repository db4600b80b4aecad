"""Fine-tuning RF-DETR with the Hugging Face Trainer: the original recipe's optimizer groups, EMA and COCO metrics."""

from .optim import LearningRates, parameter_groups, parameter_settings

__all__ = ["LearningRates", "parameter_groups", "parameter_settings"]
