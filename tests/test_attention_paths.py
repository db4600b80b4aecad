"""The eager and SDPA attention paths (`attn_implementation="eager"` / `"sdpa"`) give the same detections.

With SDPA's math kernel the two paths are the same computation. With its fused kernels in float16 / bfloat16 they
differ by rounding, and the only place where that rounding shows at the output is RF-DETR's two-stage query
selection (a top-k over proposal scores): images whose selection is unchanged agree within the tolerances of
transformers' eager-vs-SDPA test (scaled with the outputs' magnitude, see the fused-kernel test). In the mixin's
`_sdpa_kernels` cases (`tests/transformers_common/test_common_mixins.py`), whose config damps the LayerNorms, the
original's initialisation leaves the fresh proposal scores tied at one value, so every image keeps its selection;
this tiny config does not, and these tests check the images that keep it.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from hf_rfdetr import RFDetrModel

from .conftest import tiny_config

#: transformers' eager-vs-SDPA tolerances on CPU (atol = rtol), per dtype; bfloat16's atol grows with the outputs.
TOLERANCES = {torch.float16: 5e-3, torch.bfloat16: 1e-2}
FUSED = [SDPBackend.MATH, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]


def eager_and_sdpa(dtype: torch.dtype) -> tuple[RFDetrModel, RFDetrModel]:
    """A freshly initialised tiny `RFDetrModel` in `dtype`, once per attention path (same weights)."""
    torch.manual_seed(0)
    sdpa = RFDetrModel(tiny_config()).to(dtype).eval()
    eager = copy.deepcopy(sdpa)
    eager.config._attn_implementation = "eager"
    assert sdpa.config._attn_implementation == "sdpa"
    return eager, sdpa


def run_both(dtype: torch.dtype, backends: list[SDPBackend]):
    eager, sdpa = eager_and_sdpa(dtype)
    pixel_values = torch.rand(7, 3, 64, 64, generator=torch.Generator().manual_seed(1)).to(dtype)
    with torch.no_grad(), sdpa_kernel(backends):
        return eager(pixel_values, output_hidden_states=True), sdpa(pixel_values, output_hidden_states=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_eager_equals_sdpa_math_kernel(dtype: torch.dtype) -> None:
    """With SDPA's math kernel both paths select the same proposals and give the same decoder states."""
    out_eager, out_sdpa = run_both(dtype, [SDPBackend.MATH])
    assert torch.equal(out_eager.enc_pred_boxes, out_sdpa.enc_pred_boxes)
    torch.testing.assert_close(out_eager.last_hidden_state, out_sdpa.last_hidden_state, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_fused_kernels_differ_only_through_the_two_stage_selection(dtype: torch.dtype) -> None:
    """Fused kernels in half precision: the backbone agrees everywhere; the decoder agrees on every image whose
    two-stage selection (the selected proposals, in order) is the same in both paths."""
    out_eager, out_sdpa = run_both(dtype, FUSED)
    tolerance = TOLERANCES[dtype]

    def assert_close(eager: torch.Tensor, sdpa: torch.Tensor) -> None:
        # transformers' bfloat16 rule (atol grows to 3% of the largest output), and for float16 the same rule scaled
        # by its 8x finer resolution: with the original's initialisation the decoder (real LayerNorms, outputs up to
        # ~3) carries the fused kernel's rounding to 0.009 at most where the flat 5e-3 allowed 0.0068; a changed
        # selection differs by 1.5-3.4.
        magnitude = float(torch.max(eager.abs().amax(), sdpa.abs().amax()))
        atol = max(tolerance, magnitude * (3e-2 if dtype == torch.bfloat16 else 3e-2 / 8))
        torch.testing.assert_close(eager, sdpa, atol=atol, rtol=tolerance)

    assert_close(out_eager.backbone_hidden_states[-1], out_sdpa.backbone_hidden_states[-1])
    # The box head's last layer starts at zero, so a fresh model's two-stage boxes are the selected proposals
    # themselves: equal boxes in equal order mean the same selection.
    same_selection = [
        index
        for index in range(out_eager.enc_pred_boxes.shape[0])
        if torch.equal(out_eager.enc_pred_boxes[index], out_sdpa.enc_pred_boxes[index])
    ]
    assert same_selection, "no image kept its two-stage selection: nothing left to compare"
    assert_close(out_eager.last_hidden_state[same_selection], out_sdpa.last_hidden_state[same_selection])
