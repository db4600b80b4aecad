"""Why transformers' eager-vs-SDPA `_sdpa_kernels` cases fail in float16 / bfloat16 for RF-DETR: the two-stage top-k.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/two_stage_ties.py [--dtype bf16]
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/two_stage_ties.py --transformers   # transformers' rf_detr

Builds the model exactly as transformers' `_test_eager_matches_sdpa_inference` does (the mixin tester's config from
`tests/transformers_common/test_common_mixins.py`, `set_seed(42)`, `set_config_for_less_flaky_test`, saved and loaded
in the dtype, an eager copy, 7 images), runs both paths with SDPA's fused kernels enabled and prints, per image and
model class: whether the two-stage selection (the top-k proposal indices, in order) is the same, the decoder's largest
difference next to the mixin's tolerance, and the proposal scores' range and number of distinct values.

Our from-scratch initialisation is the original rfdetr's (tests/test_initialization.py): with it the fresh proposal
scores collapse to a few values that no 1-ulp rounding reorders, as with transformers' rf_detr. (Before it matched the
original, Kaiming-normal projector convolutions and Xavier heads with zero biases spread the scores over ~0.5, with
many exact bfloat16 ties that the fused kernel's rounding reordered.) A measurement script, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import tempfile
import unittest
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

ROOT = Path(__file__).resolve().parents[1]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
ATOL = {torch.bfloat16: 1e-2, torch.float16: 5e-3, torch.float32: 1e-6}


@contextlib.contextmanager
def recorded_topk_inputs(store: list[torch.Tensor]):
    """Record the input of every `topk` call (tensor method and function) inside the block, as (images, positions)."""
    method, function = torch.Tensor.topk, torch.topk

    def record(tensor, *args, **kwargs):
        store.append(tensor.detach().float().reshape(-1, tensor.shape[-1]))  # (groups x) batch, positions
        return method(tensor, *args, **kwargs)

    torch.Tensor.topk, torch.topk = record, record
    try:
        yield
    finally:
        torch.Tensor.topk, torch.topk = method, function


def model_classes(use_transformers: bool) -> tuple[type, tuple[type, ...]]:
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    if use_transformers:
        from transformers_mixins_reference import reference_test_classes

        test_class = reference_test_classes()[0]
        return test_class.model_tester_class, test_class.all_model_classes
    from tests.transformers_common.test_common_mixins import RFDetrModelTest

    return RFDetrModelTest.model_tester_class, RFDetrModelTest.all_model_classes


def compare(model_class: type, tester_class: type, dtype: torch.dtype) -> None:
    from transformers import set_seed
    from transformers.testing_utils import set_config_for_less_flaky_test, set_model_for_less_flaky_test

    torch.manual_seed(0)
    tester = tester_class(unittest.TestCase())
    set_seed(42)
    config, inputs = tester.prepare_config_and_inputs_for_common()
    set_config_for_less_flaky_test(config)
    model = model_class(config)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        sdpa = model_class.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa").eval()
    eager = copy.deepcopy(sdpa)
    eager.set_attn_implementation("eager")
    for each in (eager, sdpa):
        set_model_for_less_flaky_test(each)
    pixel_values = inputs["pixel_values"].to(dtype)
    pixel_values = torch.cat((pixel_values, torch.rand(7 - len(pixel_values), *pixel_values.shape[1:], dtype=dtype)))
    scores: dict[str, list[torch.Tensor]] = {"eager": [], "sdpa": []}
    outputs = {}
    backends = [SDPBackend.MATH, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    for name, each in (("eager", eager), ("sdpa", sdpa)):
        with torch.no_grad(), sdpa_kernel(backends), recorded_topk_inputs(scores[name]):
            outputs[name] = each(pixel_values=pixel_values, output_hidden_states=True)
    key = "decoder_hidden_states" if "decoder_hidden_states" in outputs["eager"] else "hidden_states"
    last_eager, last_sdpa = (outputs[name][key][-1].float() for name in ("eager", "sdpa"))
    magnitude = float(torch.max(last_eager.abs().amax(), last_sdpa.abs().amax()))
    atol = max(ATOL[dtype], magnitude * 3e-2) if dtype == torch.bfloat16 else ATOL[dtype]
    k = config.num_queries
    print(f"{model_class.__name__} ({dtype}): decoder tolerance atol {atol:.3g} + rtol {ATOL[dtype]}")
    matched = 0
    for image in range(len(pixel_values)):
        score_eager, score_sdpa = scores["eager"][0][image], scores["sdpa"][0][image]
        same = torch.equal(score_eager.topk(k).indices, score_sdpa.topk(k).indices)
        close = torch.allclose(last_eager[image], last_sdpa[image], atol=atol, rtol=ATOL[dtype])
        matched += close
        difference = (last_eager[image] - last_sdpa[image]).abs().max().item()
        print(
            f"  image {image}: same selection {same!s:5} decoder max |diff| {difference:.4f} "
            f"({'within' if close else 'OUTSIDE'} tolerance); scores {score_eager.min():.4f}..{score_eager.max():.4f}, "
            f"{score_eager.unique().numel()} distinct of {score_eager.numel()}"
        )
    print(f"  {matched} of {len(pixel_values)} images within tolerance (the mixin needs 80%)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--transformers", action="store_true", help="transformers' own rf_detr (5.x)")
    args = parser.parse_args(argv)
    tester_class, classes = model_classes(args.transformers)
    for model_class in classes:
        compare(model_class, tester_class, DTYPES[args.dtype])
    return 0


if __name__ == "__main__":
    sys.exit(main())
