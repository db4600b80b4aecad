"""Shared test helpers: tiny configs and reference models from the original `rfdetr` package (random weights)."""

from __future__ import annotations

import functools
import logging
import os
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from hf_rfdetr import RFDetrConfig, RFDetrForObjectDetection  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`pytest -n N`), each worker process takes its share of the cores for torch's intra-op
    threads, so that N workers do not contend for the same cores (an OMP_NUM_THREADS the user set is kept)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A test that changes torch's thread count (`torch.set_num_threads`) changes it for itself only."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


#: The original's config class per variant name of ours.
REFERENCE_CONFIG_CLASSES = {
    "nano": "RFDETRNanoConfig",
    "small": "RFDETRSmallConfig",
    "medium": "RFDETRMediumConfig",
    "base": "RFDETRBaseConfig",
    "large": "RFDETRLargeConfig",
    "large-legacy": "RFDETRLargeDeprecatedConfig",
}


def tiny_config(**overrides) -> RFDetrConfig:
    """A few-thousand-parameter RF-DETR (64 px, 2 windows, 2 taps, 2 decoder layers, 3 groups) for fast tests."""
    values = dict(
        backbone_hidden_size=32,
        backbone_num_attention_heads=2,
        backbone_num_hidden_layers=4,
        out_feature_indexes=[2, 4],
        patch_size=8,
        num_windows=2,
        resolution=64,
        positional_encoding_size=8,
        d_model=32,
        decoder_self_attention_heads=2,
        decoder_cross_attention_heads=4,
        decoder_ffn_dim=64,
        num_queries=20,
        group_detr=3,
        id2label={0: "cat", 1: "dog", 2: "bird"},
    )
    values.update(overrides)
    return RFDetrConfig(**values)


def perturb_(module: torch.nn.Module, seed: int, scale: float = 0.02) -> torch.nn.Module:
    """Add noise to every parameter so that zero-initialised heads and unit norms influence the output."""
    generator = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    return module


@functools.lru_cache(maxsize=4)
def reference_model(variant: str, resolution: int | None = None, seed: int = 0):
    """The original `rfdetr` LWDETR for a variant, built offline with random, perturbed weights (eval mode)."""
    logging.getLogger("rf-detr").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    from rfdetr import config as reference_configs
    from rfdetr.models import build_model_from_config

    config_class = getattr(reference_configs, REFERENCE_CONFIG_CLASSES[variant])
    kwargs = {"device": "cpu"} | ({"resolution": resolution} if resolution else {})
    torch.manual_seed(seed)
    return perturb_(build_model_from_config(config_class(**kwargs)), seed).eval()


def converted_model(variant: str, resolution: int | None = None, seed: int = 0) -> RFDetrForObjectDetection:
    """Our model with the weights of `reference_model(variant, resolution, seed)`."""
    from hf_rfdetr.conversion import load_original_state_dict

    config = RFDetrConfig.from_variant(variant, **({"resolution": resolution} if resolution else {}))
    model = RFDetrForObjectDetection(config).eval()
    load_original_state_dict(model, reference_model(variant, resolution, seed).state_dict())
    return model


@pytest.fixture
def tiny_model() -> RFDetrForObjectDetection:
    torch.manual_seed(0)
    return perturb_(RFDetrForObjectDetection(tiny_config()), seed=0).eval()
