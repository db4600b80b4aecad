"""Converting original rfdetr `.pth` checkpoints: `hf-rfdetr convert` / `conversion/convert_rfdetr_to_hf.py`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForObjectDetection

from hf_rfdetr import COCO_ID2LABEL
from hf_rfdetr.cli import main
from hf_rfdetr.conversion import CheckpointError, convert_checkpoint, load_checkpoint

from .conftest import perturb_, reference_model

NANO_ARGS = dict(
    encoder="dinov2_windowed_small",
    patch_size=16,
    num_windows=2,
    out_feature_indexes=[3, 6, 9, 12],
    resolution=384,
    positional_encoding_size=24,
    dec_layers=2,
    hidden_dim=256,
    sa_nheads=8,
    ca_nheads=16,
    dec_n_points=2,
    num_queries=300,
    group_detr=13,
    projector_scale=["P4"],
    num_classes=90,
    two_stage=True,
    bbox_reparam=True,
    lite_refpoint_refine=True,
    layer_norm=True,
    segmentation_head=False,
    lr=1e-4,
)


@pytest.fixture(scope="module")
def legacy_checkpoint(tmp_path_factory) -> Path:
    """A training checkpoint as the pre-2026 engine wrote it: Namespace args, optimizer state, EMA weights."""
    model = dict(reference_model("nano").state_dict())
    model["class_embed.bias"] = model["class_embed.bias"] + 4.0  # confident enough for detections at threshold 0.5
    ema = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in model.items()}
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pth"
    payload = {"model": model, "ema_model": ema, "optimizer": {}, "epoch": 3, "args": argparse.Namespace(**NANO_ARGS)}
    torch.save(payload, path)
    return path


def _reference_outputs(state_dict: dict, pixel_values: torch.Tensor, **config) -> dict:
    from rfdetr.config import RFDETRNanoConfig
    from rfdetr.models import build_model_from_config

    reference = build_model_from_config(RFDETRNanoConfig(device="cpu", **config)).eval()
    reference.load_state_dict(state_dict)
    with torch.no_grad():
        return reference(pixel_values)


def _assert_same_detections(ours: dict, original: dict) -> None:
    """Each detection has a partner with the same label, score within 1e-4 and box within 1e-3 px (scores closer
    than float noise may come out in either order)."""
    unmatched = list(range(len(original["scores"])))
    for label, score, box in zip(ours["labels"], ours["scores"], ours["boxes"]):
        partner = next(
            i
            for i in unmatched
            if original["labels"][i] == label
            and abs(original["scores"][i] - score) <= 1e-4
            and (original["boxes"][i] - box).abs().max() <= 1e-3
        )
        unmatched.remove(partner)


def _converted_outputs(folder: Path, pixel_values: torch.Tensor):
    model = AutoModelForObjectDetection.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(pixel_values)


@pytest.mark.reference
def test_convert_verify_and_load(legacy_checkpoint: Path, tmp_path: Path) -> None:
    from rfdetr.models.postprocess import PostProcess

    from hf_rfdetr.conversion import _verification_image

    out = convert_checkpoint(legacy_checkpoint, tmp_path / "nano", verify=True)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md", "modeling_rfdetr.py"):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["variant"] == "nano" and len(config["id2label"]) == 91 and config["id2label"]["1"] == "person"
    processor = AutoImageProcessor.from_pretrained(out)
    image = _verification_image()
    pixel_values = processor([image, image.rotate(180)], return_tensors="pt")["pixel_values"]
    checkpoint = torch.load(legacy_checkpoint, weights_only=False)
    expected = _reference_outputs(checkpoint["model"], pixel_values)
    actual = _converted_outputs(out, pixel_values)
    assert (actual.logits - expected["pred_logits"]).abs().max() <= 1e-4
    assert (actual.pred_boxes - expected["pred_boxes"]).abs().max() <= 1e-4
    # The same detections at the default threshold as the original's PostProcess + predict's strict `> 0.5`.
    sizes = [(image.height, image.width)] * 2
    ours = processor.post_process_object_detection(actual, 0.5, sizes)
    theirs = PostProcess(num_select=300)(expected, torch.tensor(sizes))
    for mine, original in zip(ours, theirs):
        keep = original["scores"] > 0.5
        assert len(mine["scores"]) == int(keep.sum()) > 5
        _assert_same_detections(mine, {key: value[keep] for key, value in original.items()})
    card = (out / "README.md").read_text()
    assert "pipeline_tag: object-detection" in card and "30,467,298" in card and "checkpoint.pth" in card


@pytest.mark.reference
def test_ema_weights_are_selectable(legacy_checkpoint: Path, tmp_path: Path) -> None:
    pixel_values = torch.randn(1, 3, 384, 384, generator=torch.Generator().manual_seed(0))
    checkpoint = torch.load(legacy_checkpoint, weights_only=False)
    ema = _converted_outputs(convert_checkpoint(legacy_checkpoint, tmp_path / "ema", weights="ema"), pixel_values)
    regular = _converted_outputs(convert_checkpoint(legacy_checkpoint, tmp_path / "regular"), pixel_values)
    expected = _reference_outputs(checkpoint["ema_model"], pixel_values)
    assert (ema.logits - expected["pred_logits"]).abs().max() <= 1e-4
    assert (ema.logits - regular.logits).abs().max() > 1e-2


@pytest.mark.reference
def test_fine_tuned_checkpoint_keeps_its_class_names(tmp_path: Path) -> None:
    """A newer checkpoint (dict args with class_names, model_name) fine-tuned on 3 classes: 4 slots, all named."""
    from rfdetr.config import RFDETRNanoConfig
    from rfdetr.models import build_model_from_config

    torch.manual_seed(1)
    model = perturb_(build_model_from_config(RFDETRNanoConfig(device="cpu", num_classes=3)), seed=1)
    args = {**NANO_ARGS, "num_classes": 3, "class_names": ["apple", "banana", "cherry"]}
    path = tmp_path / "checkpoint_best_total.pth"
    torch.save({"model": model.state_dict(), "args": args, "model_name": "RFDETRNano"}, path)
    out = convert_checkpoint(path, tmp_path / "fruit", verify=True)
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "apple", "1": "banana", "2": "cherry", "3": "N/A"}
    assert config["label2id"]["cherry"] == 2


@pytest.mark.reference
def test_new_layout_checkpoint_keeps_its_architecture(tmp_path: Path) -> None:
    """rfdetr 1.11.2's training checkpoints keep the architecture in `model_config` (their `args` is the TrainConfig,
    without resolution or num_queries): a Nano trained at 320 px with 100 queries converts to that architecture, its
    outputs match the original built from the same model_config, and --verify rejects a config that lost it."""
    import json as json_module

    from rfdetr.config import RFDETRNanoConfig, TrainConfig
    from rfdetr.models import build_model_from_config

    from hf_rfdetr.conversion import _verification_image, config_from_checkpoint, verify_against_original
    from hf_rfdetr.models.rfdetr.configuration_rfdetr import RFDetrConfig
    from hf_rfdetr.models.rfdetr.modeling_rfdetr import RFDetrForObjectDetection

    model_config = RFDETRNanoConfig(device="cpu", resolution=320, num_queries=100, num_select=200, num_classes=3)
    torch.manual_seed(2)
    reference = perturb_(build_model_from_config(model_config), seed=2).eval()
    train_config = TrainConfig(dataset_dir=str(tmp_path), class_names=["apple", "banana", "cherry"])
    as_saved = lambda value: json_module.loads(json_module.dumps(value, default=str))  # noqa: E731
    payload = {
        "model": reference.state_dict(),
        "args": as_saved(train_config.model_dump()),
        "model_name": "RFDETRNano",
        "model_config": as_saved(model_config.model_dump()),
        "rfdetr_version": "1.11.2",
    }
    path = tmp_path / "checkpoint_best_ema.pth"
    torch.save(payload, path)
    out = convert_checkpoint(path, tmp_path / "fruit", verify=True)
    config = json.loads((out / "config.json").read_text())
    assert (config["resolution"], config["positional_encoding_size"], config["num_queries"]) == (320, 20, 100)
    assert config["id2label"] == {"0": "apple", "1": "banana", "2": "cherry", "3": "N/A"}
    processor = AutoImageProcessor.from_pretrained(out)
    assert processor.num_top_queries == 200
    pixel_values = processor([_verification_image()], return_tensors="pt")["pixel_values"]
    assert tuple(pixel_values.shape[-2:]) == (320, 320)
    with torch.no_grad():
        expected = reference(pixel_values)
    actual = _converted_outputs(out, pixel_values)
    assert (actual.logits - expected["pred_logits"]).abs().max() <= 1e-4
    assert (actual.pred_boxes - expected["pred_boxes"]).abs().max() <= 1e-4
    # --verify builds the original from the checkpoint, so a config that lost its resolution fails it
    checkpoint = load_checkpoint(path)
    lost = RFDetrConfig.from_dict({**config_from_checkpoint(checkpoint).to_dict(), "resolution": 384})
    model = RFDetrForObjectDetection.from_pretrained(out, config=lost)
    with pytest.raises(CheckpointError, match="trained at resolution 320"):
        verify_against_original(model, checkpoint, lost)


@pytest.mark.reference
def test_bare_state_dict_infers_the_variant(tmp_path: Path) -> None:
    path = tmp_path / "rf-detr-base.pth"
    torch.save({"model": reference_model("base").state_dict()}, path)
    assert main(["convert", str(path), str(tmp_path / "base")]) == 0
    config = json.loads((tmp_path / "base" / "config.json").read_text())
    assert (config["variant"], config["resolution"], config["positional_encoding_size"]) == ("base", 560, 37)
    assert {int(k): v for k, v in config["id2label"].items()} == COCO_ID2LABEL


@pytest.mark.reference
def test_wrong_variant_is_a_clear_error(legacy_checkpoint: Path, tmp_path: Path, capsys) -> None:
    checkpoint = torch.load(legacy_checkpoint, weights_only=False)
    bare = tmp_path / "nano.pth"
    torch.save({"model": checkpoint["model"]}, bare)
    assert main(["convert", str(bare), str(tmp_path / "out"), "--variant", "large-legacy"]) == 1
    error = capsys.readouterr().err
    assert "does not match variant 'large-legacy'" in error and "mismatched" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.reference
def test_verify_fails_loudly_on_a_wrong_conversion(legacy_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    import hf_rfdetr.conversion as conversion

    convert = conversion._convert  # what convert_original_state_dict and load_original_state_dict run

    def broken(state_dict):
        converted, unconverted, origins = convert(state_dict)
        converted["model.decoder.layers.0.fc1.weight"] = converted["model.decoder.layers.0.fc1.weight"] * 1.1
        return converted, unconverted, origins

    monkeypatch.setattr(conversion, "_convert", broken)
    with pytest.raises(CheckpointError, match=r"disagrees with the original: max \|delta\|"):
        convert_checkpoint(legacy_checkpoint, tmp_path / "out", verify=True)


@pytest.mark.reference
def test_push_to_hub_uploads_the_folder(legacy_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []

    class RecordingApi:
        def create_repo(self, repo_id, exist_ok=False, **kwargs):
            calls.append(("create_repo", repo_id, exist_ok))

        def upload_folder(self, folder_path, repo_id, **kwargs):
            calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    monkeypatch.setattr("huggingface_hub.HfApi", RecordingApi)
    convert_checkpoint(legacy_checkpoint, tmp_path / "out", push_to_hub="org/rf-detr-nano")
    assert calls[0] == ("create_repo", "org/rf-detr-nano", True)
    uploaded = calls[1][2]
    assert calls[1][1] == "org/rf-detr-nano"
    for name in ("README.md", "config.json", "model.safetensors", "preprocessor_config.json", "modeling_rfdetr.py"):
        assert name in uploaded
    assert 'model="org/rf-detr-nano"' in (tmp_path / "out" / "README.md").read_text()


def test_unreadable_files_are_named(tmp_path: Path, capsys) -> None:
    truncated = tmp_path / "truncated.pth"
    torch.save({"model": {"w": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    assert main(["convert", str(truncated), str(tmp_path / "out")]) == 1
    assert "truncated.pth' cannot be read with torch.load(weights_only=True)" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="holds no model weights: neither a 'model' state dict"):
        torch.save({"epoch": 1}, tmp_path / "no_model.pth")
        load_checkpoint(tmp_path / "no_model.pth")


class _Custom:  # an arbitrary pickled object: refused by weights_only loading
    pass


def test_arbitrary_pickles_need_explicit_trust(tmp_path: Path) -> None:
    path = tmp_path / "custom.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": _Custom()}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_checkpoint(path)
    with pytest.warns(UserWarning, match="weights_only=False"):
        assert "extra" in load_checkpoint(path, trust=True)


def test_cli_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--push-to-hub REPO" in text
    # every checkpoint name `convert` accepts, detection and segmentation
    assert "nano, small, medium, base, large, large-legacy, seg-preview, seg-nano" in text and "seg-2xlarge" in text


@pytest.mark.reference
def test_forced_variant_must_agree_with_the_checkpoint(legacy_checkpoint: Path, tmp_path: Path, capsys) -> None:
    """--variant base on a Nano checkpoint used to keep the Nano architecture (its args win) but write
    variant 'base' into config.json and the model card; now it is refused, naming both, and an agreeing one works."""
    from hf_rfdetr.conversion import config_from_checkpoint

    checkpoint = load_checkpoint(legacy_checkpoint)  # Namespace args, no model_name: the args must speak
    with pytest.raises(CheckpointError, match=r"--variant 'base'.*patch_size=16 \(variant 'base' has 14\)"):
        config_from_checkpoint(checkpoint, "base")
    assert config_from_checkpoint(checkpoint, "nano").variant == "nano"
    named = tmp_path / "fruit.pth"
    torch.save({"model": checkpoint["model"], "args": NANO_ARGS, "model_name": "RFDETRNano"}, named)
    assert main(["convert", str(named), str(tmp_path / "out"), "--variant", "base"]) == 1
    error = capsys.readouterr().err
    assert "--variant 'base' contradicts the checkpoint, which is RFDETRNano ('nano')" in error
    assert not (tmp_path / "out").exists()


def _fake_nano_weights() -> dict[str, torch.Tensor]:
    """The weights `config_from_checkpoint` reads before the settings: Nano's patch embedding, 24x24 position grid,
    91 class slots."""
    from hf_rfdetr.conversion import _BACKBONE_KEY

    return {
        _BACKBONE_KEY + "embeddings.patch_embeddings.projection.weight": torch.zeros(384, 3, 16, 16),
        _BACKBONE_KEY + "embeddings.position_embeddings": torch.zeros(1, 24 * 24 + 1, 384),
        "class_embed.bias": torch.zeros(91),
    }


def test_checkpoint_errors_name_where_the_setting_was_read() -> None:
    """rfdetr 1.11.2 checkpoints keep the architecture in `model_config`, which wins over `args`; the errors said
    `checkpoint args.X=...` even for a value read from `model_config`. They now name the entry it came from."""
    from hf_rfdetr.conversion import config_from_checkpoint

    weights = _fake_nano_weights()
    cases = [
        (
            {"args": {"two_stage": True}, "model_config": {"two_stage": False}},
            r"^checkpoint model_config\.two_stage=False: only two_stage=True is supported$",
        ),
        ({"args": {"two_stage": False}}, r"^checkpoint args\.two_stage=False: only two_stage=True is supported$"),
        (
            {"args": {"lr": 1e-4}, "model_config": {"backbone_lora": True}},
            r"^checkpoint model_config\.backbone_lora=True: LoRA backbones .* not supported",
        ),
        ({"args": {"backbone_lora": True}}, r"^checkpoint args\.backbone_lora=True: LoRA backbones"),
        (
            {"args": {"resolution": 384}, "model_config": {"resolution": 70}, "model_name": "RFDETRNano"},
            r"^the checkpoint's model_config settings \(over args\) do not form a valid configuration of variant "
            r"'nano': resolution=70 must be divisible",
        ),
        (
            {"args": {"resolution": 70}, "model_name": "RFDETRNano"},
            r"^the checkpoint's args do not form a valid configuration of variant 'nano': resolution=70",
        ),
    ]
    for entries, message in cases:
        with pytest.raises(CheckpointError, match=message):
            config_from_checkpoint({"model": weights, **entries})
    recorded = {"encoder": "dinov2_windowed_small", "patch_size": 16}
    with pytest.raises(CheckpointError, match=r"^--variant 'base' .*: model_config\.encoder=dinov2_windowed_small, "):
        config_from_checkpoint({"model": weights, "args": {"lr": 1e-4}, "model_config": recorded}, "base")


def _lightning_checkpoint(model: dict, ema: dict | None = None, compiled: bool = False, **description) -> dict:
    """A `.ckpt` as rfdetr 1.11.2's training writes it (`last.ckpt`, `checkpoint_<epoch>.ckpt`): Lightning's
    entries, the `RFDETRModelModule`'s weights under `state_dict` as `model.*` (`model._orig_mod.*` when compiled),
    the EMA callback's `AveragedModel` of the module (`module.model.*` and `n_averaged`), and what the module's
    `on_save_checkpoint` adds (`args`, `model_name`, `model_config`, `rfdetr_version`)."""
    prefix = "model._orig_mod." if compiled else "model."
    callbacks: dict = {"ModelCheckpoint{'monitor': None}": {"best_model_path": ""}}
    if ema is not None:
        averaged = {"n_averaged": torch.tensor(30)} | {f"module.{prefix}{k}": v for k, v in ema.items()}
        callbacks["RFDETREMACallback"] = {"latest_update_step": 30, "average_model_state_dict": averaged}
    return {
        "epoch": 3,
        "global_step": 30,
        "pytorch-lightning_version": "2.5.0",
        "state_dict": {f"{prefix}{k}": v for k, v in model.items()},
        "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 3}}}},
        "callbacks": callbacks,
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]}],
        "lr_schedulers": [{"last_epoch": 30}],
        **description,
    }


@pytest.mark.reference
def test_lightning_checkpoint_converts_and_loads_like_the_original(tmp_path: Path, capsys) -> None:
    """rfdetr 1.11.2's training writes Lightning `.ckpt` files (weights under `state_dict` as `model.*`, no `model`
    key); `hf-rfdetr convert` and `RFDETR(pretrain_weights=...ckpt)` refused them ("has no 'model' state dict"). They
    read them as the original's `load_pretrain_weights` does: the regular weights by default (the original never
    loads a `.ckpt`'s EMA weights), the EMA callback's with `--weights ema`; outputs match the original's model."""
    from rfdetr.config import RFDETRNanoConfig, TrainConfig

    import hf_rfdetr

    model_config = RFDETRNanoConfig(device="cpu", num_classes=90)
    reference = reference_model("nano", seed=3)
    model = dict(reference.state_dict())
    ema = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in model.items()}
    as_saved = lambda value: json.loads(json.dumps(value, default=str))  # noqa: E731
    description = {
        "args": as_saved(TrainConfig(dataset_dir=str(tmp_path)).model_dump()),
        "model_name": "RFDETRNano",
        "model_config": as_saved(model_config.model_dump()),
        "rfdetr_version": "1.11.2",
    }
    path = tmp_path / "last.ckpt"
    torch.save(_lightning_checkpoint(model, ema, **description), path)

    pixel_values = torch.randn(1, 3, 384, 384, generator=torch.Generator().manual_seed(0))
    expected = _reference_outputs(model, pixel_values)
    expected_ema = _reference_outputs(ema, pixel_values)

    checkpoint = load_checkpoint(path)
    assert checkpoint["model"].keys() == model.keys() and checkpoint["model_name"] == "RFDETRNano"
    assert "state_dict" not in checkpoint and "optimizer_states" not in checkpoint

    assert main(["convert", str(path), str(tmp_path / "regular")]) == 0, capsys.readouterr().err
    actual = _converted_outputs(tmp_path / "regular", pixel_values)
    assert (actual.logits - expected["pred_logits"]).abs().max() <= 1e-4
    assert (actual.pred_boxes - expected["pred_boxes"]).abs().max() <= 1e-4
    assert "last.ckpt" in (tmp_path / "regular" / "README.md").read_text()

    convert_checkpoint(path, tmp_path / "ema", weights="ema", verify=True)
    actual_ema = _converted_outputs(tmp_path / "ema", pixel_values)
    assert (actual_ema.logits - expected_ema["pred_logits"]).abs().max() <= 1e-4
    assert (actual_ema.logits - actual.logits).abs().max() > 1e-2

    facade = hf_rfdetr.RFDETRNano(pretrain_weights=str(path), device="cpu")
    with torch.no_grad():
        through_facade = facade.model.eval()(pixel_values)
    assert (through_facade.logits - expected["pred_logits"]).abs().max() <= 1e-4
    assert (through_facade.pred_boxes - expected["pred_boxes"]).abs().max() <= 1e-4


@pytest.mark.reference
def test_lightning_checkpoint_of_a_compiled_run_without_description(tmp_path: Path) -> None:
    """A `.ckpt` of a `torch.compile`d run (`model._orig_mod.*`) of rfdetr 1.11.0 or earlier (no `args`, no
    `model_name`, no EMA callback): the weights lose both prefixes as in the original, the variant follows from them,
    and `--weights ema` says there are none."""
    from hf_rfdetr.conversion import config_from_checkpoint

    model = reference_model("nano", seed=4).state_dict()
    path = tmp_path / "checkpoint_0004.ckpt"
    torch.save(_lightning_checkpoint(dict(model), compiled=True), path)
    checkpoint = load_checkpoint(path)
    assert checkpoint["model"].keys() == model.keys() and "ema_model" not in checkpoint
    assert all(torch.equal(checkpoint["model"][k], v) for k, v in model.items())
    assert config_from_checkpoint(checkpoint).variant == "nano"
    with pytest.raises(CheckpointError, match="has no 'ema_model' weights"):
        convert_checkpoint(path, tmp_path / "ema", weights="ema")


def test_lightning_checkpoint_without_model_weights_is_refused(tmp_path: Path, capsys) -> None:
    """A `.ckpt` whose `state_dict` has no `model.*` weights (another Lightning module's), or one with neither
    `state_dict` nor `model`, is refused saying what was expected."""
    other = tmp_path / "other.ckpt"
    torch.save({"epoch": 1, "state_dict": {"net.weight": torch.zeros(2)}, "optimizer_states": []}, other)
    with pytest.raises(
        CheckpointError, match=r"Lightning checkpoint .* none of its 1 weights has the 'model\.' prefix"
    ):
        load_checkpoint(other)
    assert main(["convert", str(other), str(tmp_path / "out")]) == 1
    assert "not an rfdetr training checkpoint" in capsys.readouterr().err
    empty = tmp_path / "empty.ckpt"
    torch.save({"epoch": 1, "optimizer_states": []}, empty)
    with pytest.raises(CheckpointError, match=r"nor a Lightning 'state_dict' \(its \.ckpt files"):
        load_checkpoint(empty)
