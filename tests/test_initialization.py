"""From-scratch initialisation: a fresh model starts as a fresh original rfdetr 1.11.2 model of the same config.

Per parameter, ours is compared with the original's (converted to our names) by distribution: tensors that the
original builds identically under two seeds (zeros, ones, the focal prior bias, the deformable sampling grid) must
be equal exactly; random ones must agree in mean, standard deviation, minimum and maximum within sampling tolerance.
The original's two-stage heads are deep copies of its decoder heads (one per group), and so are ours.
"""

from __future__ import annotations

import logging
import math
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from hf_rfdetr import RFDetrConfig, RFDetrForObjectDetection
from hf_rfdetr.models.rfdetr.modeling_rfdetr import RFDetrForInstanceSegmentation

from .conftest import REFERENCE_CONFIG_CLASSES, tiny_config

#: Our decoder head and the grouped two-stage head that starts as its copy in every group.
COPIES = {
    "class_embed.weight": "model.enc_out_class_embed.weight",
    "class_embed.bias": "model.enc_out_class_embed.bias",
    **{
        f"bbox_embed.layers.{i}.{kind}": f"model.enc_out_bbox_embed.layers.{i}.{kind}"
        for i in range(3)
        for kind in ("weight", "bias")
    },
}


def original_state_dict(variant: str, seed: int) -> dict[str, torch.Tensor]:
    """A freshly built original model's parameters (no weights loaded), converted to our names."""
    logging.getLogger("rf-detr").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    from rfdetr import config as original_configs
    from rfdetr.models import build_model_from_config

    from hf_rfdetr.conversion import convert_original_state_dict

    from .segmentation_reference import SEG_REFERENCE_CONFIG_CLASSES

    names = REFERENCE_CONFIG_CLASSES | SEG_REFERENCE_CONFIG_CLASSES
    torch.manual_seed(seed)
    original = build_model_from_config(getattr(original_configs, names[variant])(device="cpu"))
    return convert_original_state_dict({name: tensor for name, tensor in original.named_parameters()})


def distinct(tensor: torch.Tensor) -> torch.Tensor:
    """Group 0 of a grouped tensor whose groups are copies of one another (their values are one sample), else all."""
    if tensor.ndim > 1 and len(tensor) > 1 and all(torch.equal(group, tensor[0]) for group in tensor[1:]):
        return tensor[0]
    return tensor


def excess_kurtosis(values: torch.Tensor) -> float:
    """The fourth standardised moment minus 3: 0 for a normal distribution, -1.2 for a uniform one."""
    centred = values - values.mean()
    return ((centred**4).mean() / (centred**2).mean() ** 2).item() - 3.0


def mismatches(name: str, ours: torch.Tensor, original: torch.Tensor) -> list[str]:
    """How a random tensor of ours differs in distribution from the original's (empty when it agrees).

    Tolerances shrink with the element count n: the standard deviation within 10% + 5 / sqrt(2 n) of the original's
    (the standard error of a sample std is std / sqrt(2 n)), the mean within 6 standard errors, the minimum and the
    maximum within 2 standard deviations + 2 / sqrt(n) of the original's range (uniform extremes sit at the bound;
    normal ones scatter, and float32 sampling reaches 5.5 standard deviations in 10^5 draws), and the excess kurtosis
    (the family: 0 normal, -1.2 uniform) within 0.3 + 5 standard errors sqrt(24 / n).
    """
    ours, original = distinct(ours).double().flatten(), distinct(original).double().flatten()
    n, std = original.numel(), original.std().item()
    extreme = 2 * std + (original.max() - original.min()).item() * 2 / math.sqrt(n)
    checks = {
        "std": (ours.std().item(), std, std * (0.1 + 5 / math.sqrt(2 * n))),
        "mean": (ours.mean().item(), original.mean().item(), 6 * std / math.sqrt(n) + 1e-9),
        "min": (ours.min().item(), original.min().item(), extreme),
        "max": (ours.max().item(), original.max().item(), extreme),
        "kurtosis": (excess_kurtosis(ours), excess_kurtosis(original), 0.3 + 5 * math.sqrt(24 / n)),
    }
    return [
        f"{name} {what}: ours {value:.5g}, original {expected:.5g} (tolerance {tolerance:.2g})"
        for what, (value, expected, tolerance) in checks.items()
        if abs(value - expected) > tolerance
    ]


@pytest.mark.reference
@pytest.mark.parametrize(
    ("variant", "model_class"), [("nano", RFDetrForObjectDetection), ("seg-nano", RFDetrForInstanceSegmentation)]
)
def test_fresh_model_is_initialised_as_the_original(variant: str, model_class: type) -> None:
    original, other_seed = original_state_dict(variant, seed=0), original_state_dict(variant, seed=1)
    torch.manual_seed(0)
    ours = dict(model_class(RFDetrConfig.from_variant(variant)).named_parameters())
    assert sorted(ours) == sorted(original)
    problems, deterministic = [], 0
    for name, tensor in ours.items():
        assert tensor.shape == original[name].shape, name
        if torch.equal(original[name], other_seed[name]):  # the same under any seed: must be equal
            deterministic += 1
            if not torch.equal(tensor, original[name]):
                problems.append(f"{name}: differs from the original's deterministic initialisation")
        else:
            problems += mismatches(name, tensor, original[name])
    assert not problems, "\n".join(problems)
    # zeros and ones of norms, biases and box deltas, the prior bias, the sampling grid: a good share of all tensors.
    assert deterministic > len(ours) // 3
    for head, two_stage in COPIES.items():  # the copies hold in the original as in ours
        for state in (original, ours):
            for group in state[two_stage]:
                assert torch.equal(group, state[head]), (head, two_stage)


def test_fresh_model_has_the_deterministic_parts_of_the_original() -> None:
    """Both environments: the prior bias, zeroed deltas, the deformable sampling grid, and the decoder heads equal to
    every group of the two-stage heads (the original deep-copies them)."""
    torch.manual_seed(0)
    model = RFDetrForObjectDetection(tiny_config())
    state = model.state_dict()
    prior = -math.log((1 - 0.01) / 0.01)
    assert torch.equal(state["class_embed.bias"], torch.full((3,), prior))
    assert torch.count_nonzero(state["bbox_embed.layers.2.weight"]) == 0
    assert torch.count_nonzero(state["model.refpoint_embed.weight"]) == 0
    attention = model.model.decoder.layers[0].cross_attn
    offsets = attention.sampling_offsets.bias.detach().view(4, attention.n_levels, attention.n_points, 2)
    assert torch.equal(offsets[0, 0, :, 0], torch.arange(1.0, attention.n_points + 1))  # head 0: along x, 1, 2, ..
    # head 1 of 4: 90 degrees (cos(pi / 2) is -4e-8 in float32), scaled to the unit box
    torch.testing.assert_close(offsets[1, 0, 0], torch.tensor([0.0, 1.0]), atol=1e-7, rtol=0)
    for head, two_stage in COPIES.items():
        assert state[two_stage].shape[0] == 3
        for group in state[two_stage]:
            assert torch.equal(group, state[head]), (head, two_stage)
    assert state["bbox_embed.layers.0.bias"].abs().max() > 0  # PyTorch's default bias, not zeros
    # the two-stage projection: independent per group (separate Linear layers in the original)
    assert not torch.equal(state["model.enc_output.weight"][0], state["model.enc_output.weight"][1])


def test_weights_missing_from_a_checkpoint_are_initialised_as_the_original(tmp_path) -> None:
    """transformers initialises only the missing tensors, per module: the box heads missing from a checkpoint start
    again as zero-delta copies of one another, and every loaded tensor is kept."""
    torch.manual_seed(0)
    saved = RFDetrForObjectDetection(tiny_config())
    with torch.no_grad():
        for parameter in saved.parameters():
            parameter.add_(torch.randn_like(parameter))  # a "trained" model: no copies, no zeros left
    saved.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    missing = [name for name in weights if "bbox_embed" in name]
    save_file({name: tensor for name, tensor in weights.items() if name not in missing}, tmp_path / "model.safetensors")
    loaded = RFDetrForObjectDetection.from_pretrained(tmp_path).state_dict()
    for name, tensor in weights.items():
        if name not in missing:
            assert torch.equal(loaded[name], tensor), name
    for head, two_stage in COPIES.items():
        if "bbox_embed" in head:
            assert not torch.equal(loaded[head], weights[head]), head
            for group in loaded[two_stage]:
                assert torch.equal(group, loaded[head]), (head, two_stage)
    assert torch.count_nonzero(loaded["bbox_embed.layers.2.weight"]) == 0
