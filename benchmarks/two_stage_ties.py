"""Why transformers' eager-vs-SDPA `_sdpa_kernels` cases fail in float16 / bfloat16 for RF-DETR: the two-stage top-k.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/two_stage_ties.py [--dtype bf16] [--init ours|original]
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/two_stage_ties.py --transformers   # transformers' rf_detr

Builds the model exactly as transformers' `_test_eager_matches_sdpa_inference` does (the mixin tester's config from
`tests/transformers_common/test_common_mixins.py`, `set_seed(42)`, `set_config_for_less_flaky_test`, saved and loaded
in the dtype, an eager copy, 7 images), runs both paths with SDPA's fused kernels enabled and prints, per image and
model class: whether the two-stage selection (the top-k proposal indices, in order) is the same, the decoder's largest
difference next to the mixin's tolerance, and the proposal scores' range and number of distinct values.

`--init original` replaces our initialisation with the original rfdetr's from-scratch one where they differ (PyTorch's
defaults for the projector convolutions and the head layers, with their uniform biases; DINOv2's std-0.02 patch
embedding; the decoder's Linear biases uniform), to show what it does to the scores. A measurement script, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import sys
import tempfile
import unittest
from pathlib import Path

import torch
from torch import nn
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


def original_initialisation_(model: nn.Module) -> None:
    """Re-initialise, in place, the parameters where our initialisation differs from the original rfdetr's."""
    from hf_rfdetr import RFDetrModel
    from hf_rfdetr.models.rfdetr.heads_rfdetr import RFDetrGroupedLinear

    base = model if isinstance(model, RFDetrModel) else model.model
    heads = [base.enc_output, base.enc_out_class_embed, *base.enc_out_bbox_embed.layers]
    class_heads, box_outputs = [base.enc_out_class_embed], [base.enc_out_bbox_embed.layers[-1]]
    if not isinstance(model, RFDetrModel):
        heads += [model.class_embed, *model.bbox_embed.layers]
        class_heads.append(model.class_embed)
        box_outputs.append(model.bbox_embed.layers[-1])
    with torch.no_grad():
        patch = base.backbone.embeddings.patch_embeddings.projection
        nn.init.trunc_normal_(patch.weight, std=0.02)
        patch.bias.zero_()
        for module in base.projector.modules():
            if isinstance(module, nn.Conv2d):
                module.reset_parameters()
        for head in heads:
            if isinstance(head, RFDetrGroupedLinear):
                bound = 1 / math.sqrt(head.weight.shape[-1])
                head.weight.uniform_(-bound, bound)
                head.bias.uniform_(-bound, bound)
            else:
                head.reset_parameters()
        for head in class_heads:
            head.bias.fill_(-math.log(99))
        for layer in box_outputs:
            layer.weight.zero_()
            layer.bias.zero_()
        for name, module in base.decoder.named_modules():
            skip = ("sampling_offsets", "attention_weights", "value_proj", "output_proj", "self_attn")
            if isinstance(module, nn.Linear) and module.bias is not None and not any(s in name for s in skip):
                bound = 1 / math.sqrt(module.weight.shape[-1])
                module.bias.uniform_(-bound, bound)


def model_classes(use_transformers: bool) -> tuple[type, tuple[type, ...]]:
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    if use_transformers:
        from transformers import RfDetrForObjectDetection, RfDetrModel
        from transformers_mixins_reference import reference_test_classes

        return reference_test_classes()[0].model_tester_class, (RfDetrModel, RfDetrForObjectDetection)
    from tests.transformers_common.test_common_mixins import RFDetrModelTest

    return RFDetrModelTest.model_tester_class, RFDetrModelTest.all_model_classes


def compare(model_class: type, tester_class: type, dtype: torch.dtype, init: str) -> None:
    from transformers import set_seed
    from transformers.testing_utils import set_config_for_less_flaky_test, set_model_for_less_flaky_test

    torch.manual_seed(0)
    tester = tester_class(unittest.TestCase())
    set_seed(42)
    config, inputs = tester.prepare_config_and_inputs_for_common()
    set_config_for_less_flaky_test(config)
    model = model_class(config)
    if init == "original":
        original_initialisation_(model)
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
    print(f"{model_class.__name__} ({dtype}, init {init}): decoder tolerance atol {atol:.3g} + rtol {ATOL[dtype]}")
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
    parser.add_argument("--init", choices=("ours", "original"), default="ours")
    parser.add_argument("--transformers", action="store_true", help="transformers' own rf_detr (5.x)")
    args = parser.parse_args(argv)
    if args.transformers and args.init != "ours":
        parser.error("--init original applies to our model only")
    tester_class, classes = model_classes(args.transformers)
    for model_class in classes:
        compare(model_class, tester_class, DTYPES[args.dtype], args.init)
    return 0


if __name__ == "__main__":
    sys.exit(main())
