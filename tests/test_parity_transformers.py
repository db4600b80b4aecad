"""Checkpoints of transformers' own RF-DETR (`transformers.RfDetrForObjectDetection`, model_type "rf_detr").

(a) The converter (`hf_rfdetr.conversion_transformers`) gives a model with transformers' outputs, for every variant
    transformers can express (its projector is single-scale: legacy Large's P3 + P5 cannot be expressed).
(b) transformers against the ground truth, the original `rfdetr` package: for every window layout it computes the
    original's function (float64 agreement ~3e-6). Its float32 outputs differ now and then, by rounding amplified
    by `topk` (see `test_float32_gap_is_rounding_of_non_contiguous_projector_convolutions`), and its default
    `layer_norm_eps=1e-5` is a real difference (the original uses 1e-6).
(c) `convert_transformers_checkpoint` and the command line round trip, with verification.
(d) Clear errors for configurations and weights that cannot be converted.

All weights are random (perturbed so that zero-initialised heads matter); nothing is downloaded.
`python -m tests.test_parity_transformers` prints the delta table for all variants.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from hf_rfdetr import RFDetrConfig, RFDetrForObjectDetection
from hf_rfdetr.conversion import CheckpointError, load_original_state_dict

from .conftest import REFERENCE_CONFIG_CLASSES, perturb_, reference_model

pytestmark = pytest.mark.reference
transformers = pytest.importorskip("transformers", reason="needs transformers 5.x with its rf_detr model")
if not hasattr(transformers, "RfDetrForObjectDetection"):
    pytest.skip("needs transformers 5.x with its rf_detr model", allow_module_level=True)

from hf_rfdetr import conversion_transformers  # noqa: E402
from hf_rfdetr.conversion_transformers import (  # noqa: E402
    config_from_transformers,
    convert_transformers_checkpoint,
    convert_transformers_state_dict,
    load_transformers_model,
    verification_pixel_values,
    verify_against_transformers,
)
from hf_rfdetr.transformers_checkpoints import weights  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "conversion" / "convert_transformers_to_hf.py"
ATOL = 1e-4
FLOATS = (torch.float32, torch.float64)
#: Architecture fields that a conversion must reproduce exactly.
ARCHITECTURE_FIELDS = (
    "backbone_hidden_size",
    "backbone_num_hidden_layers",
    "backbone_num_attention_heads",
    "backbone_mlp_ratio",
    "backbone_layer_norm_eps",
    "backbone_layerscale_value",
    "patch_size",
    "num_windows",
    "positional_encoding_size",
    "out_feature_indexes",
    "resolution",
    "projector_scale",
    "projector_num_blocks",
    "projector_layer_norm_eps",
    "d_model",
    "decoder_layers",
    "decoder_self_attention_heads",
    "decoder_cross_attention_heads",
    "decoder_n_points",
    "decoder_ffn_dim",
    "decoder_activation_function",
    "layer_norm_eps",
    "num_queries",
    "group_detr",
    "num_labels",
)


def _needs_original() -> None:
    pytest.importorskip("rfdetr", reason="needs the original package: pip install -e '.[reference]'")


def _inputs(batch: int, resolution: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))


def _delta(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"shape {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a - b).abs().max().item()


def transformers_config_for(config: RFDetrConfig, **overrides) -> transformers.RfDetrConfig:
    """transformers' config for the architecture of our `config`. Its defaults differ from the original's in
    `dropout` (0.1), `layer_norm_eps` (1e-5), `decoder_n_points` (4) and `num_windows` (4), so all are set."""
    backbone = {
        "model_type": "rf_detr_dinov2",
        "hidden_size": config.backbone_hidden_size,
        "num_hidden_layers": config.backbone_num_hidden_layers,
        "num_attention_heads": config.backbone_num_attention_heads,
        "layer_norm_eps": config.backbone_layer_norm_eps,
        "patch_size": config.patch_size,
        "num_windows": config.num_windows,
        "image_size": config.positional_encoding_size * config.patch_size,
        "out_indices": list(config.out_feature_indexes),
    }
    backbone.update(overrides.pop("backbone", {}))
    values = {
        "backbone_config": backbone,
        "d_model": config.d_model,
        "decoder_layers": config.decoder_layers,
        "decoder_self_attention_heads": config.decoder_self_attention_heads,
        "decoder_cross_attention_heads": config.decoder_cross_attention_heads,
        "decoder_n_points": config.decoder_n_points,
        "decoder_ffn_dim": config.decoder_ffn_dim,
        "num_queries": config.num_queries,
        "group_detr": config.group_detr,
        "dropout": 0.0,
        "layer_norm_eps": config.projector_layer_norm_eps,
        "id2label": dict(config.id2label),
    }
    values.update(overrides)
    return transformers.RfDetrConfig(**values)


def _our_config(variant: str, num_windows: int | None) -> RFDetrConfig:
    return RFDetrConfig.from_variant(variant, **({"num_windows": num_windows} if num_windows else {}))


@functools.lru_cache(maxsize=2)
def original_model(variant: str, num_windows: int | None = None):
    """The original LWDETR with conftest's random, perturbed weights; `num_windows` overrides the variant's."""
    _needs_original()
    if num_windows is None:
        return reference_model(variant)
    logging.getLogger("rf-detr").setLevel(logging.ERROR)
    from rfdetr import config as reference_configs
    from rfdetr.models import build_model_from_config

    config_class = getattr(reference_configs, REFERENCE_CONFIG_CLASSES[variant])
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overrides differ from the published weights": no weights are loaded
        config = config_class(device="cpu", num_windows=num_windows)
    return perturb_(build_model_from_config(config), 0).eval()


@functools.lru_cache(maxsize=3)
def transformers_model(variant: str, num_windows: int | None = None, layer_norm_eps: float = 1e-6):
    """transformers' RfDetrForObjectDetection holding the weights of `original_model(variant, num_windows)` (its
    conversion mapping reads original state dicts)."""
    config = transformers_config_for(_our_config(variant, num_windows), layer_norm_eps=layer_norm_eps)
    state_dict = original_model(variant, num_windows).state_dict()
    state_dict = {key: tensor for key, tensor in state_dict.items() if not key.endswith("_kp_active_mask")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.RfDetrForObjectDetection.from_pretrained(None, config=config, state_dict=state_dict).eval()


def ours_from_original(variant: str, num_windows: int | None = None) -> RFDetrForObjectDetection:
    model = RFDetrForObjectDetection(_our_config(variant, num_windows)).eval()
    load_original_state_dict(model, original_model(variant, num_windows).state_dict())
    return model


def _run(model: torch.nn.Module, pixel_values: torch.Tensor, dtype: torch.dtype = torch.float32):
    """(logits, pred_boxes, two-stage boxes) of ours, transformers' or the original's model."""
    import copy

    if dtype != torch.float32:
        model = copy.deepcopy(model).to(dtype)
    with torch.no_grad():
        out = model(pixel_values.to(dtype))
    if not hasattr(out, "logits"):  # the original's dict
        return out["pred_logits"], out["pred_boxes"], out["enc_outputs"]["pred_boxes"]
    boxes = out.enc_pred_boxes if hasattr(out, "enc_pred_boxes") else out.enc_outputs_coord_logits
    return out.logits, out.pred_boxes, boxes


@functools.lru_cache(maxsize=8)
def original_outputs(
    variant: str, num_windows: int | None, seed: int, dtype: torch.dtype = torch.float32, batch: int = 2
):
    """`_run` of `original_model(variant, num_windows)` on `_inputs(batch, resolution, seed)`, computed once."""
    pixel_values = _inputs(batch, _our_config(variant, num_windows).resolution, seed)
    return _run(original_model(variant, num_windows), pixel_values, dtype)


def _deltas(outputs, reference_outputs) -> dict[str, float]:
    (logits, boxes, proposals), (ref_logits, ref_boxes, ref_proposals) = outputs, reference_outputs
    reordered = ((proposals - ref_proposals).abs().amax(-1) > 1e-3).sum().item()
    return {"logits": _delta(logits, ref_logits), "boxes": _delta(boxes, ref_boxes), "reordered": int(reordered)}


def compare(model, reference, pixel_values, dtype=torch.float32) -> dict[str, float]:
    """Max |delta| of logits and boxes, and how many queries took another two-stage proposal. `reference`: a model
    or its precomputed `_run` outputs."""
    if isinstance(reference, torch.nn.Module):
        reference = _run(reference, pixel_values, dtype)
    return _deltas(_run(model, pixel_values, dtype), reference)


def _run_with_stages(model: torch.nn.Module, pixel_values: torch.Tensor):
    """float32 `_run` outputs of ours or transformers' model, and the backbone taps and projector output of the
    same forward pass (through hooks)."""
    stages: dict[str, list[torch.Tensor]] = {}
    if isinstance(model, RFDetrForObjectDetection):
        backbone, projector = model.model.backbone, model.model.projector
        taps, memory = (lambda output: list(output.feature_maps)), (lambda output: output[0])
    else:
        backbone, projector = model.model.backbone.backbone, model.model.backbone.projector
        taps, memory = (lambda output: list(output.feature_maps)), (lambda output: output)
    hooks = [
        backbone.register_forward_hook(lambda module, args, output: stages.__setitem__("taps", taps(output))),
        projector.register_forward_hook(lambda module, args, output: stages.__setitem__("memory", memory(output))),
    ]
    try:
        return _run(model, pixel_values), stages
    finally:
        for hook in hooks:
            hook.remove()


# ----------------------------------------------------------------------------------------------------------------------
# (a) the converter reproduces transformers' model
# ----------------------------------------------------------------------------------------------------------------------

CONVERTER_CASES = [
    ("nano", None),
    ("base", None),
    pytest.param("base", 2, marks=pytest.mark.slow),
    pytest.param("small", None, marks=pytest.mark.slow),
    pytest.param("medium", None, marks=pytest.mark.slow),
    pytest.param("large", None, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("variant", "num_windows"), CONVERTER_CASES)
def test_converted_model_matches_transformers(variant: str, num_windows: int | None) -> None:
    """The converted config equals ours for the variant; the backbone taps and the projector output (everything
    before the two-stage `topk`) equal transformers' in float32, the logits and boxes in float64 and, unless
    near-tied proposals reorder, in float32, on the same batch of two."""
    theirs = transformers_model(variant, num_windows)
    expected = _our_config(variant, num_windows)
    ours = load_transformers_model(theirs, resolution=expected.resolution if num_windows else None)
    for field in ARCHITECTURE_FIELDS:
        assert getattr(ours.config, field) == getattr(expected, field), field
    assert ours.config.variant == (variant if num_windows is None else None)

    pixel_values = _inputs(2, expected.resolution, seed=1)
    ours_fp32, our_stages = _run_with_stages(ours, pixel_values)
    theirs_fp32, their_stages = _run_with_stages(theirs, pixel_values)
    assert len(our_stages["taps"]) == len(their_stages["taps"]) == len(expected.out_feature_indexes)
    for ours_tap, their_tap in zip(our_stages["taps"], their_stages["taps"]):
        assert _delta(ours_tap, their_tap) <= ATOL
    assert _delta(our_stages["memory"], their_stages["memory"]) <= ATOL

    exact = compare(ours, theirs, pixel_values, torch.float64)
    assert exact["logits"] <= ATOL and exact["boxes"] <= ATOL, exact
    # float32 agrees too, unless near-tied two-stage scores left topk in another order (module docstring).
    rounded = _deltas(ours_fp32, theirs_fp32)
    assert max(rounded["logits"], rounded["boxes"]) <= ATOL or rounded["reordered"] > 0, rounded
    logits, boxes, _ = ours_fp32
    assert logits.std() > 0.1 and boxes.std() > 0.01, "the comparison must be meaningful"


# ----------------------------------------------------------------------------------------------------------------------
# (b) transformers against the original
# ----------------------------------------------------------------------------------------------------------------------

#: (variant, num_windows, seed of a batch on which transformers' float32 run reorders proposals on an x86 CPU).
WINDOW_CASES = [
    ("base", None, 0),
    pytest.param("base", 2, 3, marks=pytest.mark.slow),
    pytest.param("base", 1, 4, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("variant", "num_windows", "seed"), WINDOW_CASES)
def test_transformers_computes_the_original_for_every_window_layout(
    variant: str, num_windows: int | None, seed: int
) -> None:
    """transformers' windowed DINOv2 equals the original for 4 windows (Base as shipped), 2 windows and 1 window.

    Earlier float32 measurements found transformers off by 0.64 in logits for Base as shipped (4 windows at 560 px)
    and by 1.5 with num_windows=1, while 2 windows agreed. That is not a windowing difference: backbone feature
    maps are bitwise equal to ours for all three layouts, float64 outputs agree with the original to ~3e-6 (the
    remainder is transformers' float32 frequency table in the box sine embedding), and the float32 gaps appear
    exactly when some of the 300 two-stage proposals leave `topk` in another order; which inputs do that depends
    on the input, not on the window count (the seeds here were picked to show it). The cause of the rounding is
    in `test_float32_gap_is_rounding_of_non_contiguous_projector_convolutions`. Ours matches the original in
    float32 on the same batch.
    """
    theirs, ours = transformers_model(variant, num_windows), ours_from_original(variant, num_windows)
    pixel_values = _inputs(2, ours.config.resolution, seed)
    original, original_fp64 = (original_outputs(variant, num_windows, seed, dtype) for dtype in FLOATS)

    ours_fp32, our_stages = _run_with_stages(ours, pixel_values)
    theirs_fp32, their_stages = _run_with_stages(theirs, pixel_values)
    ours_vs_original = _deltas(ours_fp32, original)
    assert ours_vs_original["logits"] <= ATOL and ours_vs_original["boxes"] <= ATOL, ours_vs_original
    for ours_tap, their_tap in zip(our_stages["taps"], their_stages["taps"]):
        assert _delta(ours_tap, their_tap) <= 1e-5  # bitwise equal on x86 here
    exact = compare(theirs, original_fp64, pixel_values, torch.float64)
    assert exact["logits"] <= ATOL and exact["boxes"] <= ATOL, exact
    rounded = _deltas(theirs_fp32, original)
    assert max(rounded["logits"], rounded["boxes"]) <= ATOL or rounded["reordered"] > 0, rounded


def test_float32_gap_is_rounding_of_non_contiguous_projector_convolutions(monkeypatch) -> None:
    """Cause of transformers' occasional float32 gap to the original.

    transformers' projector (`RfDetrConvNormLayer`) convolves the output of its channel LayerNorm as it comes, a
    permuted, non-contiguous (channels-last) tensor, which PyTorch sends to another convolution kernel than the
    original's contiguous input; ours makes it contiguous like the original. The projector output then differs by
    ~1e-5 in float32. That is harmless except where two of the two-stage scores that `topk` ranks lie closer than
    that: their order flips, the two queries pair with each other's learned query embedding and reference delta,
    and (through decoder self-attention) every query moves a little. On Base as shipped and this batch 2 queries
    flip here and logits differ by ~1.3. Feeding transformers' projector convolutions contiguous tensors, and
    changing nothing else, removes the gap.
    """
    from transformers.models.rf_detr import modeling_rf_detr

    original, theirs = original_outputs("base", None, 0), transformers_model("base")
    pixel_values = _inputs(2, 560, seed=0)
    as_shipped = compare(theirs, original, pixel_values)
    assert max(as_shipped["logits"], as_shipped["boxes"]) <= ATOL or as_shipped["reordered"] > 0, as_shipped

    forward = modeling_rf_detr.RfDetrConvNormLayer.forward
    monkeypatch.setattr(
        modeling_rf_detr.RfDetrConvNormLayer, "forward", lambda self, hidden: forward(self, hidden.contiguous())
    )
    contiguous = compare(theirs, original, pixel_values)
    assert contiguous["reordered"] == 0 and contiguous["logits"] <= ATOL and contiguous["boxes"] <= ATOL, (
        as_shipped,
        contiguous,
    )


def test_transformers_default_layer_norm_eps_differs_from_the_original() -> None:
    """transformers' `RfDetrConfig.layer_norm_eps` defaults to 1e-5 and sets the epsilon of its projector's
    convolution blocks; the original uses 1e-6 there. With the default, transformers differs from the original even
    in float64 (~4e-5 in logits, or far more when the difference reorders two-stage proposals); with 1e-6 it agrees.
    Our conversion refuses to guess (ValueError naming `layer_norm_eps`); `projector_layer_norm_eps=1e-6` gives the
    original's outputs, and verification then compares against transformers with that epsilon."""
    original, original_fp64 = (original_outputs("nano", None, 3, dtype, batch=1) for dtype in FLOATS)
    pixel_values = _inputs(1, 384, seed=3)
    default_eps = transformers_model("nano", layer_norm_eps=1e-5)
    gap = compare(default_eps, original_fp64, pixel_values, torch.float64)
    assert gap["logits"] > 1e-5, gap
    exact = compare(transformers_model("nano"), original_fp64, pixel_values, torch.float64)
    assert exact["logits"] <= ATOL and exact["boxes"] <= ATOL, exact

    with pytest.raises(ValueError, match="layer_norm_eps=1e-05"):
        config_from_transformers(default_eps.config)
    ours = load_transformers_model(default_eps, projector_layer_norm_eps=1e-6)
    assert ours.config.projector_layer_norm_eps == 1e-6
    ours_vs_original = compare(ours, original, pixel_values)
    assert ours_vs_original["logits"] <= ATOL and ours_vs_original["boxes"] <= ATOL, ours_vs_original
    deltas = verify_against_transformers(ours, default_eps, pixel_values)
    assert deltas["logits"] <= ATOL, deltas


# ----------------------------------------------------------------------------------------------------------------------
# (c) whole checkpoints
# ----------------------------------------------------------------------------------------------------------------------

TINY_LABELS = {0: "cat", 1: "dog", 2: "bird"}


def tiny_transformers_config(**overrides) -> transformers.RfDetrConfig:
    """A few-thousand-parameter transformers RF-DETR (64 px, 2 windows, 2 taps, 2 decoder layers, 3 groups)."""
    backbone = {
        "model_type": "rf_detr_dinov2",
        "hidden_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "patch_size": 8,
        "num_windows": 2,
        "image_size": 64,
        "out_indices": [2, 4],
    }
    backbone.update(overrides.pop("backbone", {}))
    values = {
        "backbone_config": backbone,
        "d_model": 32,
        "decoder_layers": 2,
        "decoder_self_attention_heads": 2,
        "decoder_cross_attention_heads": 4,
        "decoder_n_points": 2,
        "decoder_ffn_dim": 64,
        "num_queries": 20,
        "group_detr": 3,
        "dropout": 0.0,
        "layer_norm_eps": 1e-6,
        "id2label": dict(TINY_LABELS),
    }
    values.update(overrides)
    return transformers.RfDetrConfig(**values)


def tiny_transformers_model(**overrides):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.RfDetrForObjectDetection(tiny_transformers_config(**overrides))
    return perturb_(model, seed=0, scale=0.1).eval()


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A transformers folder (weights, config, square image processor) and the model it holds."""
    model = tiny_transformers_model()
    folder = tmp_path / "transformers-tiny"
    model.save_pretrained(folder)
    transformers.RfDetrImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder, model


def test_convert_transformers_checkpoint_round_trip(tiny_checkpoint, tmp_path: Path) -> None:
    import json

    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    import hf_rfdetr  # noqa: F401  (registers the Auto classes)

    folder, theirs = tiny_checkpoint
    output = convert_transformers_checkpoint(folder, tmp_path / "ours", verify=True)
    assert output == tmp_path / "ours"
    assert json.loads((output / "config.json").read_text())["model_type"] == "rfdetr"
    assert (output / "model.safetensors").is_file() and (output / "preprocessor_config.json").is_file()

    loaded = AutoModelForObjectDetection.from_pretrained(output).eval()
    assert isinstance(loaded, RFDetrForObjectDetection)
    assert loaded.config.resolution == 64 and loaded.config.id2label == TINY_LABELS
    processor = AutoImageProcessor.from_pretrained(output)
    assert processor.size["height"] == processor.size["width"] == 64

    pixel_values = verification_pixel_values(loaded.config)
    deltas = verify_against_transformers(loaded, theirs, pixel_values)
    assert deltas["logits_fp32"] <= ATOL and deltas["pred_boxes_fp32"] <= ATOL, deltas
    with torch.no_grad():
        ours_out, their_out = loaded(pixel_values), theirs(pixel_values)
    assert _delta(ours_out.logits, their_out.logits) <= ATOL
    assert _delta(ours_out.pred_boxes, their_out.pred_boxes) <= ATOL
    assert ours_out.logits.std() > 0.1, "the comparison must be meaningful"


def test_verification_images_are_the_bundled_demo_picture_and_its_mirror_image() -> None:
    """Not the seeded noise that stands in when the package lacks its demo asset."""
    from PIL import Image

    import hf_rfdetr
    from hf_rfdetr.models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor

    config = RFDetrConfig(resolution=64)
    picture = Image.open(Path(hf_rfdetr.__file__).parent / "assets" / "demo.jpg").convert("RGB")
    processor = RFDetrImageProcessor.from_config(config)
    expected = processor([picture, picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], return_tensors="pt")
    assert torch.equal(verification_pixel_values(config), expected["pixel_values"])


def test_verify_rejects_a_corrupted_weight(tiny_checkpoint, tmp_path: Path, monkeypatch) -> None:
    folder, _ = tiny_checkpoint

    def corrupted(state_dict, config):
        converted = convert_transformers_state_dict(state_dict, config)
        converted["class_embed.bias"] = converted["class_embed.bias"] + 0.5
        return converted

    monkeypatch.setattr(weights, "convert_transformers_state_dict", corrupted)  # the stage that loads the weights
    convert_transformers_checkpoint(folder, tmp_path / "unverified")  # without verification nothing notices
    with pytest.raises(CheckpointError, match="disagrees with transformers") as error:
        convert_transformers_checkpoint(folder, tmp_path / "verified", verify=True)
    assert "'logits': 0.5" in str(error.value) or "'logits': 0.49" in str(error.value), str(error.value)
    assert not (tmp_path / "verified").exists(), "nothing is written when verification fails"


def _cli():
    spec = importlib.util.spec_from_file_location("convert_transformers_to_hf", CLI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_command_line(tiny_checkpoint, tmp_path: Path, capsys) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(CLI), "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and "--checkpoint" in result.stdout and "--verify" in result.stdout

    folder, _ = tiny_checkpoint
    cli = _cli()
    assert cli.main(["--checkpoint", str(folder), "--output", str(tmp_path / "out"), "--verify"]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "out" / "model.safetensors").is_file()
    assert cli.main(["--checkpoint", str(tmp_path / "missing"), "--output", str(tmp_path / "never")]) == 1
    assert "error: cannot load" in capsys.readouterr().err


def test_documented_command_converts_transformers_default_layer_norm_eps(tmp_path: Path, capsys, monkeypatch) -> None:
    """README's `python conversion/convert_transformers_to_hf.py --checkpoint F --output O --verify` exited 1 on a
    checkpoint with transformers' default layer_norm_eps (1e-5), saying "Pass projector_layer_norm_eps=1e-6" (the
    Python keyword, not the script's flag), while loading the same folder on the fly took 1e-6. Both now take the
    original's 1e-6 (the converter's default): the command succeeds, its folder equals the on-the-fly conversion and
    matches transformers' model as verification checks it. The flag still overrides; a bad value names the flag."""
    import hf_rfdetr
    from hf_rfdetr.transformers_checkpoints.config_mapping import ORIGINAL_PROJECTOR_EPS

    monkeypatch.setenv("HF_ASSETS_CACHE", str(tmp_path / "assets"))  # the on-the-fly conversion's cache
    folder = tmp_path / "default-eps"
    theirs = tiny_transformers_model(layer_norm_eps=transformers.RfDetrConfig().layer_norm_eps)
    assert theirs.config.layer_norm_eps == 1e-5  # transformers' default
    theirs.save_pretrained(folder)
    cli = _cli()
    arguments = ["--checkpoint", str(folder), "--output", str(tmp_path / "out"), "--verify"]
    assert cli.main(arguments) == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out

    converted = RFDetrForObjectDetection.from_pretrained(tmp_path / "out").eval()
    assert converted.config.projector_layer_norm_eps == ORIGINAL_PROJECTOR_EPS == 1e-6
    on_the_fly = RFDetrForObjectDetection.from_pretrained(hf_rfdetr.pretrained(str(folder))).eval()
    assert on_the_fly.config.projector_layer_norm_eps == converted.config.projector_layer_norm_eps
    assert _max_state_delta(on_the_fly, converted) == 0.0
    pixel_values = verification_pixel_values(converted.config)
    deltas = verify_against_transformers(converted, theirs, pixel_values)  # float64, theirs with the same epsilon
    assert deltas["logits"] <= ATOL and deltas["pred_boxes"] <= ATOL, deltas
    with torch.no_grad():
        ours_out, their_out = converted(pixel_values), theirs(pixel_values)
    assert _delta(ours_out.logits, their_out.logits) <= ATOL and ours_out.logits.std() > 0.1
    assert _delta(ours_out.pred_boxes, their_out.pred_boxes) <= ATOL

    assert cli.main([*arguments[:3], str(tmp_path / "theirs-eps"), "--projector-layer-norm-eps", "1e-5"]) == 0
    assert RFDetrForObjectDetection.from_pretrained(tmp_path / "theirs-eps").config.projector_layer_norm_eps == 1e-5
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*arguments, "--projector-layer-norm-eps", "0"])
    assert exit_info.value.code == 2
    assert "argument --projector-layer-norm-eps: '0' must be a positive number" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match=r"layer_norm_eps=1e-05: .* Pass projector_layer_norm_eps=1e-6"):
        convert_transformers_checkpoint(folder, tmp_path / "never", projector_layer_norm_eps=None)  # refuses to guess


def _max_state_delta(a: torch.nn.Module, b: torch.nn.Module) -> float:
    state = b.state_dict()
    return max((value - state[name]).abs().max().item() for name, value in a.state_dict().items())


# ----------------------------------------------------------------------------------------------------------------------
# (d) configurations and weights that cannot be converted
# ----------------------------------------------------------------------------------------------------------------------


def test_config_mapping_field_by_field() -> None:
    config = config_from_transformers(tiny_transformers_config(dropout=0.1, attention_dropout=0.1, c2f_num_blocks=2))
    expected = {
        "backbone_hidden_size": 32,
        "backbone_num_hidden_layers": 4,
        "backbone_num_attention_heads": 2,
        "backbone_mlp_ratio": 4,
        "backbone_layer_norm_eps": 1e-6,
        "patch_size": 8,
        "num_windows": 2,
        "positional_encoding_size": 8,
        "out_feature_indexes": [2, 4],
        "resolution": 64,
        "projector_scale": ["P4"],
        "projector_num_blocks": 2,
        "projector_layer_norm_eps": 1e-6,
        "d_model": 32,
        "decoder_layers": 2,
        "decoder_self_attention_heads": 2,
        "decoder_cross_attention_heads": 4,
        "decoder_n_points": 2,
        "decoder_ffn_dim": 64,
        "dropout": 0.1,
        "layer_norm_eps": 1e-5,
        "num_queries": 20,
        "group_detr": 3,
        "id2label": TINY_LABELS,
        "variant": None,
    }
    assert {field: getattr(config, field) for field in expected} == expected
    # A plain dict (config.json) works too; an image_size that is no multiple of the block size is rounded up.
    odd = tiny_transformers_config(backbone={"image_size": 72}).to_dict()
    assert config_from_transformers(odd).resolution == 80
    assert config_from_transformers(odd, resolution=96).resolution == 96


def test_training_only_differences_warn() -> None:
    with pytest.warns(UserWarning, match="attention_dropout=0.0 and dropout=0.1"):
        assert config_from_transformers(tiny_transformers_config(dropout=0.1)).dropout == 0.1
    with pytest.warns(UserWarning, match="hidden_dropout_prob=0.1 is ignored"):
        config_from_transformers(tiny_transformers_config(backbone={"hidden_dropout_prob": 0.1}))


def test_base_as_shipped_maps_to_the_base_variant() -> None:
    config = config_from_transformers(transformers_config_for(RFDetrConfig.from_variant("base")))
    assert config.variant == "base" and config.resolution == 560 and config.positional_encoding_size == 37


def _set(target, **values):
    for name, value in values.items():
        setattr(target, name, value)
    return target


UNSUPPORTED_CONFIGS = [
    (lambda c: _set(c, num_feature_levels=2), "num_feature_levels"),
    (lambda c: _set(c, hidden_expansion=0.25), "hidden_expansion"),
    (lambda c: _set(c, activation_function="relu"), "activation_function"),
    (lambda c: _set(c, attention_bias=False), "attention_bias"),
    (lambda c: _set(c, layer_norm_eps=1e-5), "layer_norm_eps"),
    (lambda c: _set(c, decoder_activation_function="tanh"), "decoder_activation_function"),
    (lambda c: _set(c.backbone_config, use_swiglu_ffn=True), "backbone_config.use_swiglu_ffn"),
    (lambda c: _set(c.backbone_config, qkv_bias=False), "backbone_config.qkv_bias"),
    (lambda c: _set(c.backbone_config, image_size=(64, 96)), "backbone_config.image_size"),
    (lambda c: _set(c.backbone_config, patch_size=(8, 16)), "backbone_config.patch_size"),
    (lambda c: _set(c.backbone_config, window_block_indexes=[0]), "backbone_config.window_block_indexes"),
    (lambda c: _set(c.backbone_config, num_register_tokens=4), "backbone_config.num_register_tokens"),
    (lambda c: _set(c.backbone_config, _out_indices=[0, 4]), "backbone_config.out_indices"),
]


@pytest.mark.parametrize(("change", "field"), UNSUPPORTED_CONFIGS, ids=[field for _, field in UNSUPPORTED_CONFIGS])
def test_config_that_cannot_be_expressed_names_the_field(change, field: str) -> None:
    rf_config = tiny_transformers_config()
    change(rf_config)
    with pytest.raises(ValueError, match=field.replace(".", r"\.") + "="):
        config_from_transformers(rf_config)


def test_not_a_transformers_rf_detr_config() -> None:
    with pytest.raises(ValueError, match="model_type='rfdetr'"):
        config_from_transformers(RFDetrConfig())
    with pytest.raises(ValueError, match="RfDetrForObjectDetection, got RfDetrModel"):
        load_transformers_model(transformers.RfDetrModel(tiny_transformers_config()))


def test_state_dict_errors_name_the_key() -> None:
    model = tiny_transformers_model()
    config = config_from_transformers(model.config)
    state_dict = model.state_dict()
    with pytest.raises(KeyError, match="model.some_new_head.weight"):
        convert_transformers_state_dict({**state_dict, "model.some_new_head.weight": torch.zeros(1)}, config)
    without_key = {
        k: v for k, v in state_dict.items() if k != "model.backbone.backbone.encoder.layer.1.attention.k_proj.bias"
    }
    with pytest.raises(KeyError, match=r"layers\.1\.attention\.qkv\.bias.*k projection"):
        convert_transformers_state_dict(without_key, config)
    without_group = {k: v for k, v in state_dict.items() if not k.startswith("model.enc_output.2.")}
    with pytest.raises(KeyError, match=r"model\.enc_output\.weight.*groups \[0, 1\]"):
        convert_transformers_state_dict(without_group, config)
    ours = RFDetrForObjectDetection(RFDetrConfig(**{**config.to_dict(), "group_detr": 2})).eval()
    with pytest.raises(KeyError, match="group_detr=2"):
        conversion_transformers.load_transformers_state_dict(ours, state_dict)


# ----------------------------------------------------------------------------------------------------------------------
# python -m tests.test_parity_transformers: the delta table of the report
# ----------------------------------------------------------------------------------------------------------------------


def _table() -> None:  # pragma: no cover - a report, not a test
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    rows = [
        ("nano", None),
        ("small", None),
        ("medium", None),
        ("large", None),
        ("base", None),
        ("base", 2),
        ("base", 1),
    ]
    print(
        "| variant | ours vs transformers fp32: logits / boxes (reordered) | ours vs transformers fp64 | "
        "transformers vs original fp32 (reordered) | transformers vs original fp64 |"
    )
    print("|---|---|---|---|---|")

    def row(name, ours, theirs, original, pixel_values):
        d32, d64 = compare(ours, theirs, pixel_values), compare(ours, theirs, pixel_values, torch.float64)
        t32, t64 = compare(theirs, original, pixel_values), compare(theirs, original, pixel_values, torch.float64)
        print(
            f"| {name} | {d32['logits']:.1e} / {d32['boxes']:.1e} ({d32['reordered']}) | {d64['logits']:.1e} / "
            f"{d64['boxes']:.1e} | {t32['logits']:.1e} / {t32['boxes']:.1e} ({t32['reordered']}) | "
            f"{t64['logits']:.1e} / {t64['boxes']:.1e} |",
            flush=True,
        )

    for variant, num_windows in rows:
        theirs, original = transformers_model(variant, num_windows), original_model(variant, num_windows)
        resolution = _our_config(variant, num_windows).resolution
        name = variant + (" (as shipped)" if variant == "base" and num_windows is None else "")
        name += f" num_windows={num_windows}" if num_windows else ""
        ours = load_transformers_model(theirs, resolution=resolution)
        row(name, ours, theirs, original, _inputs(2, resolution, seed=1))
        if variant == "nano":
            default_eps = transformers_model("nano", layer_norm_eps=1e-5)
            ours = load_transformers_model(default_eps, projector_layer_norm_eps=1e-6)
            name = "nano, transformers layer_norm_eps=1e-5 (converted with projector_layer_norm_eps=1e-6)"
            row(name, ours, default_eps, original, _inputs(2, resolution, seed=3))
        transformers_model.cache_clear(), original_model.cache_clear(), reference_model.cache_clear()


if __name__ == "__main__":  # pragma: no cover
    _table()
