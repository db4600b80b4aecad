"""`hf_rfdetr.optimize`: the in-place fast inference path. Its drift against float32 on the bundled demo checkpoint
(per-query logits and boxes, detections matched by class, IoU and score), that it copies nothing, that `restore`
undoes it exactly, and that `dtype="auto"` follows the CPU. No timings here: speed lives in
`benchmarks/cpu_fast_path.py`."""

from __future__ import annotations

import copy
import statistics
from typing import NamedTuple

import pytest
import torch
from PIL import Image, ImageOps

import hf_rfdetr
from hf_rfdetr import RFDetrForInstanceSegmentation, RFDetrForObjectDetection, RFDetrImageProcessor, optimization
from hf_rfdetr.demo_assets import DEMO_IMAGE, DEMO_MODEL
from hf_rfdetr.models.rfdetr import backbone_rfdetr
from hf_rfdetr.onnx.quantization import match_detections

from .conftest import perturb_, tiny_config
from .page_faults import FRESH_PAGES, glibc_only, page_faults

# Measured on an AMD EPYC with AVX512-BF16 and VNNI, against float32, on the demo image and its mirrored, flipped and
# rotated copies (benchmarks/cpu_fast_path.py): the bfloat16 backbone within 0.005 in the logits, 2e-4 in the boxes and
# 0.001 in the scores; the int8 backbone linears within 0.006, 1e-4 and 0.0014 (0.013 / 0.0023 with 7-bit activations,
# as without VNNI), and with the decoder's feed-forward layers int8 too within 0.019, 3e-4 and 0.004 (0.050, 5e-4 and
# 0.007 with 7-bit activations); all keep every detection at thresholds 0.3 and 0.5. The bounds leave room for other
# CPUs' kernels.
LOGIT_TOLERANCE = 0.1
BOX_TOLERANCE = 2e-3
# Detections: same class, IoU >= 0.9, score within 0.02; a detection within MARGIN of the threshold may pair with one
# just across it.
SCORE_TOLERANCE = 0.02
IOU_THRESHOLD = 0.9
MARGIN = 0.02


@pytest.fixture(scope="module")
def demo() -> tuple[RFDetrForObjectDetection, RFDetrImageProcessor]:
    return RFDetrForObjectDetection.from_pretrained(DEMO_MODEL).eval(), RFDetrImageProcessor.from_pretrained(DEMO_MODEL)


def _image(copy: str) -> Image.Image:
    image = Image.open(DEMO_IMAGE).convert("RGB")
    copies = {
        "scene": image,
        "mirrored": ImageOps.mirror(image),
        "flipped": ImageOps.flip(image),
        "rotated": image.transpose(Image.Transpose.ROTATE_90),
    }
    return copies[copy]


def _forward(model: torch.nn.Module, pixel_values: torch.Tensor):
    with torch.inference_mode():
        return model(pixel_values)


def _detections(processor, outputs, image: Image.Image, threshold: float) -> list[dict]:
    """Pipeline-format detections down to `threshold - MARGIN`."""
    result = processor.post_process_object_detection(
        outputs, threshold=threshold - MARGIN, target_sizes=[(image.height, image.width)]
    )[0]
    return [
        {"score": float(score), "label": int(label), "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), box.tolist()))}
        for score, label, box in zip(result["scores"], result["labels"], result["boxes"])
    ]


# Forced settings: they run on any x86 CPU, also where "auto" picks another path ("int8, bf16 attention" is the default
# on a CPU with VNNI and native bf16).
FAST_PATHS = {
    "bfloat16": {"dtype": torch.bfloat16, "quantize": False, "bf16_attention": False},
    "int8": {"dtype": "float32", "quantize": True, "bf16_attention": False},
    "int8, bf16 attention": {"dtype": "float32", "quantize": True, "bf16_attention": True},
}


class Drift(NamedTuple):
    """A fast path against float32 on one image: the largest per-query errors, and the detections at thresholds 0.3
    and 0.5 that went missing, appeared or drifted (`match_detections`), with how many float32 ones were compared."""

    logit_error: float
    box_error: float
    changed: list
    compared: int


def _drift(model, processor, image: Image.Image, settings: dict) -> Drift:
    pixel_values = processor(image, return_tensors="pt")["pixel_values"]
    expected = _forward(model, pixel_values)
    hf_rfdetr.optimize(model, **settings)
    try:
        actual = _forward(model, pixel_values)
    finally:
        hf_rfdetr.restore(model)
    assert actual.logits.dtype == actual.pred_boxes.dtype == torch.float32
    changed, compared = [], 0
    for threshold in (0.3, 0.5):
        before = _detections(processor, expected, image, threshold)
        match = match_detections(
            before,
            _detections(processor, actual, image, threshold),
            threshold=threshold,
            margin=MARGIN,
            iou_threshold=IOU_THRESHOLD,
            score_tolerance=SCORE_TOLERANCE,
        )
        changed += [*match.missing, *match.extra, *match.drifted]
        compared += sum(detection["score"] >= threshold + MARGIN for detection in before)
    return Drift(
        (actual.logits - expected.logits).abs().max().item(),
        (actual.pred_boxes - expected.pred_boxes).abs().max().item(),
        changed,
        compared,
    )


# bf16 attention is measured, and used by default, with 8-bit activations only (CPUs with VNNI): with the 7-bit ones
# fbgemm needs elsewhere it changed 5 of the 32 census copies (the scene among them) instead of 3.
eight_bit_only = pytest.mark.skipif(
    not optimization.has_int8_dot_products(), reason="bf16 attention pairs with 8-bit int8 activations (VNNI) only"
)


def _fast_path_params(*copies: str) -> list:
    """(copy, path) pytest params, or paths alone without copies; bf16 attention's marked `eight_bit_only`."""
    cases = [(*copies_, path) for copies_ in ([(copy,) for copy in copies] or [()]) for path in sorted(FAST_PATHS)]
    return [pytest.param(*case, marks=[eight_bit_only] if "attention" in case[-1] else []) for case in cases]


# The rotated copy's two-stage selection sits on a near tie that bf16 attention tips (a proposal scored 0.20 in float32
# comes out at 0.39), as int8 alone tips a cropped copy: `test_drift_census` bounds how often that happens.
PER_COPY = [
    param
    for param in _fast_path_params("scene", "mirrored", "flipped", "rotated")
    if param.values != ("rotated", "int8, bf16 attention")
]


@pytest.mark.parametrize(("copy", "path"), PER_COPY)
def test_fast_backbone_keeps_the_float32_detections(demo, copy: str, path: str) -> None:
    drift = _drift(*demo, _image(copy), FAST_PATHS[path])
    assert 0 < drift.logit_error <= LOGIT_TOLERANCE, f"per-query logit error {drift.logit_error}"  # > 0: it ran
    assert drift.box_error <= BOX_TOLERANCE, f"per-query box error {drift.box_error}"
    assert not drift.changed, drift.changed
    assert drift.compared  # the check compared something


def _census_copies() -> list[Image.Image]:
    """32 copies of the demo image: rotated by 0, 90, 180 and 270 degrees, each as is and mirrored, each whole and
    cropped to 90%, 80% and 70% of its width and height (from the top left)."""
    image = Image.open(DEMO_IMAGE).convert("RGB")
    copies = []
    for angle in (0, 90, 180, 270):
        for mirrored in (False, True):
            turned = image.rotate(angle, expand=True)
            turned = ImageOps.mirror(turned) if mirrored else turned
            for fraction in (1.0, 0.9, 0.8, 0.7):
                copies.append(turned.crop((0, 0, int(turned.width * fraction), int(turned.height * fraction))))
    return copies


# Measured on an AMD EPYC (VNNI, AVX512-BF16), of the 32 census copies: int8 changed detections in 3 (and reordered
# the two-stage proposals of 7: a per-query logit error above 0.1), int8 with bf16 attention in 3 (7), the bf16
# backbone in 1 (2); the median per-query logit error was 0.019, 0.019 and 0.004. With 7-bit activations (as without
# VNNI, simulated), int8 changed 3 with a median of 0.032.
CENSUS_MAX_CHANGED = 4
CENSUS_MEDIAN_LOGIT_ERROR = {"8-bit": 0.03, "7-bit": 0.05}


@pytest.mark.parametrize("path", _fast_path_params())
def test_drift_census(demo, path: str) -> None:
    """How often a fast path changes the float32 detections, over 32 rotated, mirrored and cropped copies."""
    drifts = [_drift(*demo, image, FAST_PATHS[path]) for image in _census_copies()]
    changed = [index for index, drift in enumerate(drifts) if drift.changed]
    median_logit_error = statistics.median(drift.logit_error for drift in drifts)
    print(f"{path}: detections changed in copies {changed}, median per-query logit error {median_logit_error:.4f}")
    assert len(changed) <= CENSUS_MAX_CHANGED, [drifts[index].changed for index in changed]
    bits = "7-bit" if FAST_PATHS[path]["quantize"] and not optimization.has_int8_dot_products() else "8-bit"
    assert 0 < median_logit_error <= CENSUS_MEDIAN_LOGIT_ERROR[bits]
    assert sum(drift.compared for drift in drifts) >= len(drifts)  # detections were compared


def test_autocast_covers_the_backbone_only(demo) -> None:
    """Backbone matrix products run in bf16; the projector and everything after it see float32."""
    model, processor = demo
    seen = {}
    hooks = [
        model.model.backbone.layers[0].mlp.fc1.register_forward_hook(lambda m, i, o: seen.update(backbone=o.dtype)),
        model.model.projector.register_forward_pre_hook(lambda m, i: seen.update(projector={t.dtype for t in i[0]})),
        model.class_embed.register_forward_hook(lambda m, i, o: seen.update(head=o.dtype)),
    ]
    hf_rfdetr.optimize(model, dtype="bfloat16")
    try:
        _forward(model, processor(_image("scene"), return_tensors="pt")["pixel_values"])
    finally:
        hf_rfdetr.restore(model)
        for hook in hooks:
            hook.remove()
    assert seen == {"backbone": torch.bfloat16, "projector": {torch.float32}, "head": torch.float32}


def test_auto_follows_the_cpu(monkeypatch) -> None:
    model = RFDetrForObjectDetection(tiny_config()).eval()
    int8, native = optimization.has_int8_dot_products(), optimization.has_native_bf16()
    hf_rfdetr.optimize(model)
    settings = model._hf_rfdetr_optimization
    assert settings.int8 == int8
    assert settings.dtype == (torch.bfloat16 if native and not int8 else torch.float32)
    assert settings.bf16_attention == (int8 and native)  # with the int8 path only (see the census in optimization)
    monkeypatch.setattr(optimization, "has_int8_dot_products", lambda: False)  # no VNNI: the bf16 rule
    hf_rfdetr.optimize(model)
    assert not model._hf_rfdetr_optimization.int8
    assert model._hf_rfdetr_optimization.dtype == (torch.bfloat16 if native else torch.float32)
    monkeypatch.setattr(optimization, "has_int8_dot_products", lambda: True)
    hf_rfdetr.optimize(model, dtype="bfloat16")  # a dtype named: int8 only when asked for
    assert not model._hf_rfdetr_optimization.int8 and model._hf_rfdetr_optimization.dtype == torch.bfloat16
    hf_rfdetr.restore(model)
    monkeypatch.setattr(optimization, "has_native_bf16", lambda: False)  # emulated bf16 is slower: float32
    assert optimization.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    monkeypatch.setattr(optimization, "has_native_bf16", lambda: True)
    assert optimization.resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="floating-point torch dtype"):
        hf_rfdetr.optimize(model, dtype="int8")
    with pytest.raises(ValueError, match="quantize must be"):
        hf_rfdetr.optimize(model, quantize="int4")
    with pytest.raises(ValueError, match="bf16_attention must be"):
        hf_rfdetr.optimize(model, bf16_attention="yes")
    with pytest.raises(ValueError, match="channels_last must be"):
        hf_rfdetr.optimize(model, channels_last="yes")
    assert hf_rfdetr.optimize(model)._hf_rfdetr_optimization.channels_last  # on the CPU
    with pytest.raises(ValueError, match=r"a \.projector module\); got Linear\. Pass channels_last=False"):
        hf_rfdetr.optimize(torch.nn.Linear(2, 2), quantize=False, dtype="float32", bf16_attention=False)
    assert hf_rfdetr.optimize(model, quantize=True, dtype="float32")._hf_rfdetr_optimization.bf16_attention
    assert not hf_rfdetr.optimize(model, quantize=True, bf16_attention=False)._hf_rfdetr_optimization.bf16_attention
    monkeypatch.setattr(optimization, "has_int8_dot_products", lambda: False)  # 7-bit activations: SDPA stays
    assert not hf_rfdetr.optimize(model, quantize=True, dtype="float32")._hf_rfdetr_optimization.bf16_attention
    monkeypatch.setattr(optimization, "has_int8_dot_products", lambda: True)
    monkeypatch.setattr(optimization, "has_native_bf16", lambda: False)  # emulated bf16: SDPA stays
    assert not hf_rfdetr.optimize(model, quantize=True, dtype="float32")._hf_rfdetr_optimization.bf16_attention
    hf_rfdetr.restore(model)


def test_float32_changes_nothing_and_restore_is_exact() -> None:
    torch.manual_seed(0)
    model = perturb_(RFDetrForObjectDetection(tiny_config()), seed=0).eval()
    pixel_values = torch.randn(2, 3, 64, 64)
    expected = _forward(model, pixel_values)
    hf_rfdetr.optimize(model, dtype="float32", channels_last=False)
    assert hf_rfdetr.is_optimized(model)
    assert torch.equal(_forward(model, pixel_values).logits, expected.logits)
    hf_rfdetr.optimize(model, dtype="bfloat16", backbone_only=False)  # the whole forward: it runs, outputs differ
    low = _forward(model, pixel_values)
    assert low.logits.dtype == low.pred_boxes.dtype == torch.float32  # cast back for post-processing
    assert low.logits.shape == expected.logits.shape and not torch.equal(low.logits, expected.logits)
    assert hf_rfdetr.restore(model) is model and not hf_rfdetr.is_optimized(model)
    restored = _forward(model, pixel_values)
    assert torch.equal(restored.logits, expected.logits) and torch.equal(restored.pred_boxes, expected.pred_boxes)
    assert "forward" not in vars(model) and "forward" not in vars(model.model.backbone)


def test_a_deep_copy_of_an_optimized_model_runs_its_own_weights() -> None:
    model = hf_rfdetr.optimize(RFDetrForObjectDetection(tiny_config()).eval(), dtype="bfloat16")
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in twin.model.backbone.parameters():
            parameter.add_(0.5)
    pixel_values = torch.randn(1, 3, 64, 64)
    assert hf_rfdetr.is_optimized(twin)
    assert not torch.equal(_forward(twin, pixel_values).logits, _forward(model, pixel_values).logits)


def _storage_bytes(model: torch.nn.Module) -> tuple[int, set[int]]:
    """Bytes of the distinct storages behind the parameters and buffers, and their addresses."""
    storages = {
        tensor.untyped_storage().data_ptr(): tensor.untyped_storage().nbytes()
        for tensor in [*model.parameters(), *model.buffers()]
    }
    return sum(storages.values()), set(storages)


def test_optimize_copies_nothing(demo) -> None:
    """Resident weights after `optimize` are those before (the original deep-copies the model, rfdetr #1080)."""
    model, _ = demo
    size, addresses = _storage_bytes(model)
    dtypes = {name: tensor.dtype for name, tensor in model.state_dict().items()}
    try:
        assert hf_rfdetr.optimize(model, dtype="bfloat16") is model
        assert _storage_bytes(model) == (size, addresses)  # same storages, same bytes: 1.0x
        assert {name: tensor.dtype for name, tensor in model.state_dict().items()} == dtypes
    finally:
        hf_rfdetr.restore(model)


def test_compile_option_and_one_query_group(monkeypatch) -> None:
    model = RFDetrForObjectDetection(tiny_config()).eval()
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda function: compiled.append(function) or function)
    hf_rfdetr.optimize(model, dtype="float32", compile=True)
    assert len(compiled) == 1 and model._hf_rfdetr_optimization.compiled
    outputs = _forward(model, torch.randn(1, 3, 64, 64))
    hf_rfdetr.restore(model)
    assert "forward" not in vars(model)
    # Eval mode runs one Group DETR group: the inference graph has num_queries queries, not num_queries * group_detr.
    assert model.config.group_detr > 1
    assert outputs.logits.shape[1] == outputs.enc_logits.shape[1] == model.config.num_queries


def _int8_linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    return [module for module in model.modules() if hasattr(module, optimization._INT8)]


def test_int8_covers_the_backbone_and_decoder_feed_forward_linears_and_restore_is_exact() -> None:
    torch.manual_seed(0)
    model = perturb_(RFDetrForObjectDetection(tiny_config()), seed=0).eval()
    pixel_values = torch.randn(2, 3, 64, 64)
    expected = _forward(model, pixel_values)
    hf_rfdetr.optimize(model, dtype="float32", quantize=True)
    backbone_linears = [m for m in model.model.backbone.modules() if isinstance(m, torch.nn.Linear)]
    feed_forward = [linear for layer in model.model.decoder.layers for linear in (layer.fc1, layer.fc2)]
    assert _int8_linears(model) == backbone_linears + feed_forward and backbone_linears and feed_forward
    assert optimization.int8_linears(model) == _int8_linears(model)
    seen = {}
    hook = model.model.projector.register_forward_pre_hook(lambda m, i: seen.update(projector={t.dtype for t in i[0]}))
    actual = _forward(model, pixel_values)
    hook.remove()
    assert seen == {"projector": {torch.float32}}
    assert actual.logits.dtype == torch.float32 and not torch.equal(actual.logits, expected.logits)  # int8 ran
    with torch.enable_grad():  # autograd may need gradients: the float32 weights run
        assert torch.equal(model(pixel_values).logits, expected.logits)
    hf_rfdetr.restore(model)
    assert not _int8_linears(model) and not any("forward" in vars(m) for m in model.modules())
    restored = _forward(model, pixel_values)
    assert torch.equal(restored.logits, expected.logits) and torch.equal(restored.pred_boxes, expected.pred_boxes)


def test_int8_follows_changed_weights_and_deep_copies() -> None:
    """The int8 copies are rebuilt when a weight changes (a loaded state dict, a deep copy that is then changed)."""
    torch.manual_seed(0)
    model = hf_rfdetr.optimize(RFDetrForObjectDetection(tiny_config()).eval(), dtype="float32", quantize=True)
    pixel_values = torch.randn(1, 3, 64, 64)
    before = _forward(model, pixel_values).logits
    twin = copy.deepcopy(model)
    assert torch.equal(_forward(twin, pixel_values).logits, before)
    with torch.no_grad():
        for parameter in twin.model.backbone.parameters():
            parameter.mul_(1.5)
    changed = _forward(twin, pixel_values).logits
    assert not torch.equal(changed, before)
    model.load_state_dict(twin.state_dict())  # in place: the same weights as the twin now
    assert torch.equal(_forward(model, pixel_values).logits, changed)


def test_int8_runs_a_model_built_under_inference_mode() -> None:
    """Weights created under `torch.inference_mode` keep no version counter: optimising such a model failed at its
    first forward ("Inference tensors do not track version counter")."""
    torch.manual_seed(0)
    model = RFDetrForObjectDetection(tiny_config()).eval()
    with torch.inference_mode():
        twin = RFDetrForObjectDetection(tiny_config()).eval()
        twin.load_state_dict(model.state_dict())
    assert twin.model.backbone.layers[0].mlp.fc1.weight.is_inference()
    for candidate in (model, twin):
        hf_rfdetr.optimize(candidate, dtype="float32", quantize=True)
    pixel_values = torch.randn(1, 3, 64, 64)
    assert torch.equal(_forward(twin, pixel_values).logits, _forward(model, pixel_values).logits)


def test_int8_compiles_without_graph_breaks() -> None:
    """The int8 linears are one operator each (`torch.ops.hf_rfdetr.int8_linear`): `torch.compile` traces the whole
    forward as one graph (a Python packing check in the forward broke it at every linear layer, and the compiled int8
    model ran 2.4x slower than the eager one) and computes what eager int8 computes."""
    torch.manual_seed(0)
    model = hf_rfdetr.optimize(
        perturb_(RFDetrForObjectDetection(tiny_config()), seed=0).eval(), dtype="float32", quantize=True
    )
    pixel_values = torch.randn(1, 3, 64, 64)
    expected = _forward(model, pixel_values)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # fullgraph: a graph break raises
    with torch.inference_mode():
        actual = compiled(pixel_values)
    torch.testing.assert_close(actual.logits, expected.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(actual.pred_boxes, expected.pred_boxes, rtol=0, atol=1e-6)
    assert not torch.equal(actual.logits, hf_rfdetr.restore(model)(pixel_values).logits)  # int8 ran in the graph


def test_eager_int8_skips_the_operator_dispatch(monkeypatch) -> None:
    """Eager forwards call the int8 computation directly (the registered operator's Python dispatch cost 2-3% of an
    int8 Nano forward) and compute exactly what the operator computes."""
    torch.manual_seed(0)
    model = hf_rfdetr.optimize(
        perturb_(RFDetrForObjectDetection(tiny_config()), seed=0).eval(), dtype="float32", quantize=True
    )
    pixel_values = torch.randn(1, 3, 64, 64)
    direct = _forward(model, pixel_values)
    calls = []

    def counted(*args):
        calls.append(args)
        return torch.ops.hf_rfdetr.int8_linear(*args)

    monkeypatch.setattr(optimization, "int8_linear", counted)
    assert torch.equal(_forward(model, pixel_values).logits, direct.logits) and not calls
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # the path `torch.compile` traces
    through_operator = _forward(model, pixel_values)
    assert len(calls) == len(_int8_linears(model))
    assert torch.equal(through_operator.logits, direct.logits)
    assert torch.equal(through_operator.pred_boxes, direct.pred_boxes)


def test_int8_adds_at_most_a_quarter_of_the_quantised_linears(demo) -> None:
    model, _ = demo
    size, addresses = _storage_bytes(model)
    linear_bytes = sum(m.weight.nbytes for m in optimization.int8_linears(model))
    try:
        hf_rfdetr.optimize(model, dtype="float32", quantize=True)
        assert _storage_bytes(model) == (size, addresses)  # the float32 weights are the same storages
        # fbgemm's packed int8 weights and scales: about a quarter of the float32 weights (never a copy of them)
        packed = sum(
            torch.ops.quantized.linear_unpack(optimization._PACKED[m.weight].packed)[0].int_repr().nbytes
            for m in _int8_linears(model)
        )
        assert packed == linear_bytes // 4
    finally:
        hf_rfdetr.restore(model)


def test_int8_runs_on_a_segmentation_model_and_keeps_its_mask_head_float32() -> None:
    torch.manual_seed(0)
    model = perturb_(RFDetrForInstanceSegmentation(tiny_config(segmentation_head=True)), seed=1).eval()
    pixel_values = torch.randn(1, 3, 64, 64)
    expected = _forward(model, pixel_values)
    hf_rfdetr.optimize(model, dtype="float32", quantize=True)
    assert _int8_linears(model) and not any(
        hasattr(module, optimization._INT8) for module in model.segmentation_head.modules()
    )
    actual = _forward(model, pixel_values)
    hf_rfdetr.restore(model)
    assert actual.pred_masks.shape == expected.pred_masks.shape and actual.pred_masks.dtype == torch.float32
    assert not torch.equal(actual.pred_masks, expected.pred_masks)  # int8 ran
    assert torch.equal(_forward(model, pixel_values).pred_masks, expected.pred_masks)  # restored exactly


@glibc_only
def test_optimize_keeps_freed_memory_between_forwards() -> None:
    """`optimize(model, tune_allocator=True)` (the default) keeps freed memory in the process: each forward reuses the
    last one's buffers, the 64 MB one too (glibc maps that size afresh whatever its mmap threshold); untuned, each is
    mapped afresh."""
    setup = """
import hf_rfdetr
from hf_rfdetr import RFDetrForObjectDetection
from tests.conftest import tiny_config

tune = sys.argv[1] == "tune"
model = RFDetrForObjectDetection(tiny_config()).eval()
assert hf_rfdetr.optimize(model, tune_allocator=tune)._hf_rfdetr_optimization.allocator_tuned == tune
"""
    assert page_faults(setup, "default") > FRESH_PAGES / 2
    assert page_faults(setup, "tune") < 100


def _attentions(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [module for module in model.modules() if isinstance(module, backbone_rfdetr.RFDetrSelfAttention)]


def test_bf16_attention_is_attention_in_bf16_and_restore_is_exact(monkeypatch) -> None:
    torch.manual_seed(0)
    model = perturb_(RFDetrForObjectDetection(tiny_config()), seed=0).eval()
    attention = _attentions(model)[0]
    hidden_states = torch.randn(3, 17, model.config.backbone_hidden_size)
    with torch.inference_mode():
        expected, _ = attention(hidden_states)
        expected_eager, _ = attention(hidden_states, eager=True)
        query, key, value = attention.qkv(hidden_states).reshape(3, 17, 3, 2, 16).permute(2, 0, 3, 1, 4).bfloat16()
        by_hand = (
            torch.softmax(query.float() @ key.float().transpose(-2, -1) / 4, -1).bfloat16().float() @ value.float()
        )
        by_hand = attention.proj(by_hand.transpose(1, 2).reshape(3, 17, -1))
    pixel_values = torch.randn(2, 3, 64, 64)
    full = _forward(model, pixel_values)
    hf_rfdetr.optimize(model, dtype="float32", quantize=False, bf16_attention=True)  # alone: the rest stays float32
    assert all(hasattr(module, optimization._BF16_ATTENTION) for module in _attentions(model))
    with torch.inference_mode():
        actual, weights = attention(hidden_states)
    assert weights is None and actual.dtype == torch.float32
    assert 0 < (actual - expected).abs().max() < 0.01 * expected.abs().max()  # bf16 rounding: it ran, and is close
    assert torch.allclose(actual, by_hand, atol=2e-3)
    with torch.inference_mode():  # explicit attention keeps the class's float32 path (and returns its weights)
        eager, eager_weights = attention(hidden_states, eager=True)
        assert torch.equal(eager, expected_eager) and eager_weights.shape == (3, 2, 17, 17)
    with torch.enable_grad():  # autograd: the class's forward
        assert torch.equal(attention(hidden_states)[0], expected)
    monkeypatch.setattr(optimization, "MAX_BF16_SCORES", 3 * 2 * 17 * 17 - 1)  # one score too many: SDPA, exact
    with torch.inference_mode():
        assert torch.equal(attention(hidden_states)[0], expected)
    monkeypatch.undo()
    assert not torch.equal(_forward(model, pixel_values).logits, full.logits)
    hf_rfdetr.restore(model)
    assert not any(hasattr(m, optimization._BF16_ATTENTION) or "forward" in vars(m) for m in model.modules())
    assert torch.equal(_forward(model, pixel_values).logits, full.logits)


def _convolution_layouts(model: torch.nn.Module) -> list[str]:
    """After each forward: the layout of the input of every convolution in the projector ("nchw", "channels_last")."""
    layouts = []

    def record(module, args) -> None:
        (tensor,) = args
        layouts.append("nchw" if tensor.is_contiguous() else "channels_last" if tensor.stride()[1] == 1 else "other")

    for module in model.model.projector.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.register_forward_pre_hook(record)
    return layouts


def test_channels_last_projector_stays_close_to_float32_and_restore_is_exact() -> None:
    torch.manual_seed(0)
    model = perturb_(RFDetrForObjectDetection(tiny_config(projector_scale=["P3", "P5"])), seed=0).eval()
    layouts = _convolution_layouts(model)  # P3's transposed convolution, P5's strided one and both levels' C2f
    pixel_values = torch.randn(2, 3, 64, 64)
    expected = _forward(model, pixel_values)
    assert layouts and set(layouts) == {"nchw"}  # the original's kernels and rounding
    layouts.clear()
    hf_rfdetr.optimize(model, dtype="float32", quantize=False, bf16_attention=False)  # "auto": channels-last on CPU
    assert model._hf_rfdetr_optimization.channels_last
    actual = _forward(model, pixel_values)
    assert layouts and set(layouts) == {"channels_last"}
    assert torch.allclose(actual.logits, expected.logits, atol=1e-4)
    assert torch.allclose(actual.pred_boxes, expected.pred_boxes, atol=1e-5)
    hf_rfdetr.restore(model)
    layouts.clear()
    restored = _forward(model, pixel_values)
    assert set(layouts) == {"nchw"} and not any("memory_format" in vars(module) for module in model.modules())
    assert torch.equal(restored.logits, expected.logits) and torch.equal(restored.pred_boxes, expected.pred_boxes)
    hf_rfdetr.optimize(model, channels_last=False)
    layouts.clear()
    _forward(model, pixel_values)
    assert not model._hf_rfdetr_optimization.channels_last and set(layouts) == {"nchw"}
