"""The original `rfdetr` Seg models (random, perturbed weights, built offline) and ours with the same weights; shared by
tests/test_segmentation_model.py and benchmarks/segmentation_parity.py."""

from __future__ import annotations

import functools
import logging
import warnings

import torch

from hf_rfdetr import RFDetrConfig
from hf_rfdetr.models.rfdetr.modeling_rfdetr import RFDetrForInstanceSegmentation

#: The original's config class per Seg variant name of ours.
SEG_REFERENCE_CONFIG_CLASSES = {
    "seg-preview": "RFDETRSegPreviewConfig",
    "seg-nano": "RFDETRSegNanoConfig",
    "seg-small": "RFDETRSegSmallConfig",
    "seg-medium": "RFDETRSegMediumConfig",
    "seg-large": "RFDETRSegLargeConfig",
    "seg-xlarge": "RFDETRSegXLargeConfig",
    "seg-2xlarge": "RFDETRSeg2XLargeConfig",
}
#: Parameter counts of the original Seg models (rfdetr 1.11.2, 91 class slots), measured with
#: `build_model_from_config(Config(device="cpu"))`.
SEG_PARAMETER_COUNTS = {
    "seg-nano": 33_577_475,
    "seg-small": 33_711_107,
    "seg-preview": 34_153_555,
    "seg-medium": 35_694_259,
    "seg-large": 35_873_971,
    "seg-xlarge": 38_113_635,
    "seg-2xlarge": 38_648_163,
}


def perturb_(module: torch.nn.Module, seed: int, scale: float = 0.02) -> torch.nn.Module:
    """Add noise to every parameter so that zero-initialised weights and unit norms influence the output (the same
    recipe as tests/conftest.py)."""
    generator = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    return module


def reference_config(variant: str, resolution: int | None = None):
    """The original's config object of a Seg variant (optionally at another resolution)."""
    from rfdetr import config as reference_configs

    config_class = getattr(reference_configs, SEG_REFERENCE_CONFIG_CLASSES[variant])
    return config_class(device="cpu", **({"resolution": resolution} if resolution else {}))


@functools.lru_cache(maxsize=2)
def reference_seg_model(variant: str, resolution: int | None = None, seed: int = 0) -> torch.nn.Module:
    """The original `rfdetr` Seg LWDETR, built offline with random, perturbed weights (eval mode)."""
    logging.getLogger("rf-detr").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    from rfdetr.models import build_model_from_config

    torch.manual_seed(seed)
    return perturb_(build_model_from_config(reference_config(variant, resolution)), seed).eval()


def converted_seg_model(variant: str, resolution: int | None = None, seed: int = 0) -> RFDetrForInstanceSegmentation:
    """Our segmentation model with the weights of `reference_seg_model(variant, resolution, seed)`."""
    from hf_rfdetr.conversion import load_original_state_dict

    config = RFDetrConfig.from_variant(variant, **({"resolution": resolution} if resolution else {}))
    model = RFDetrForInstanceSegmentation(config).eval()
    load_original_state_dict(model, reference_seg_model(variant, resolution, seed).state_dict())
    return model
