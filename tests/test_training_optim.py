"""Optimizer parameter groups equal the original recipe's (rfdetr `get_param_dict`)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from hf_rfdetr.conversion import convert_original_state_dict
from hf_rfdetr.training import LearningRates, parameter_groups, parameter_settings

from .conftest import converted_model, reference_model


def _original_get_param_dict():
    """`rfdetr.training.param_groups.get_param_dict`, loaded without `rfdetr.training`'s package import (which needs
    pytorch_lightning, part of the original's heavy `train` extra)."""
    import importlib.util
    from pathlib import Path

    import rfdetr

    path = Path(rfdetr.__file__).parent / "training" / "param_groups.py"
    spec = importlib.util.spec_from_file_location("_rfdetr_param_groups", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_param_dict


@pytest.mark.reference
@pytest.mark.parametrize("variant", ["nano", "base"])
def test_learning_rates_and_weight_decay_equal_the_original(variant: str) -> None:
    get_param_dict = _original_get_param_dict()
    rates = LearningRates(lr=2e-4, lr_encoder=3e-4, weight_decay=5e-4, lr_vit_layer_decay=0.8, lr_component_decay=0.7)
    reference, ours = reference_model(variant), converted_model(variant)
    args = SimpleNamespace(**vars(rates), out_feature_indexes=ours.config.out_feature_indexes)
    original = {}
    for group in get_param_dict(args, reference):
        for parameter in group["params"]:
            original[id(parameter)] = (group["lr"], group.get("weight_decay", rates.weight_decay))
    # Carry each original parameter's setting through the weight conversion, as a tensor filled with it.
    names = dict(reference.named_parameters())
    lr_by_name = convert_original_state_dict({n: torch.full_like(p, original[id(p)][0]) for n, p in names.items()})
    wd_by_name = convert_original_state_dict({n: torch.full_like(p, original[id(p)][1]) for n, p in names.items()})
    settings = parameter_settings(ours, rates)
    assert set(settings) == {n for n, p in ours.named_parameters() if p.requires_grad}
    for name, (lr, weight_decay) in settings.items():
        assert torch.allclose(lr_by_name[name], torch.tensor(lr), rtol=1e-6), name
        assert torch.allclose(wd_by_name[name], torch.tensor(weight_decay), rtol=1e-6), name
    layer_rates = {round(lr, 12) for lr, _ in settings.values()}
    assert len(layer_rates) > 10  # layer-wise decay really spreads the encoder's rates


def test_groups_merge_identical_settings() -> None:
    from hf_rfdetr import RFDetrForObjectDetection

    from .conftest import tiny_config

    model = RFDetrForObjectDetection(tiny_config())
    groups = parameter_groups(model, LearningRates())
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)
    assert len({(g["lr"], g["weight_decay"]) for g in groups}) == len(groups)
    optimizer = torch.optim.AdamW(groups)
    assert len(optimizer.param_groups) == len(groups) < 20
