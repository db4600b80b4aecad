"""Damaged checkpoints and invalid configs fail at load with a message naming the file, the field or the keys; the
`hf-rfdetr` command prints one line per user error (tracebacks only with --debug)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForObjectDetection, pipeline

from hf_rfdetr import RFDETR, RFDetrConfig, RFDetrForObjectDetection, RFDetrImageProcessor
from hf_rfdetr.cli import main
from hf_rfdetr.conversion import CheckpointError, convert_checkpoint, load_original_state_dict
from hf_rfdetr.models.rfdetr.configuration_rfdetr import _FIELD_TYPES, RFDetrConfigError

from .conftest import tiny_config

DEMO_MODEL = Path(__file__).parents[1] / "src" / "hf_rfdetr" / "assets" / "demo-model"
DEMO_IMAGE = DEMO_MODEL.parent / "demo.jpg"


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory) -> Path:
    """A tiny saved model folder (config, weights, processor) to copy and damage."""
    folder = tmp_path_factory.mktemp("tiny") / "model"
    torch.manual_seed(0)
    RFDetrForObjectDetection(tiny_config()).save_pretrained(folder)
    RFDetrImageProcessor.from_config(tiny_config()).save_pretrained(folder)
    return folder


def _copy(folder: Path, destination: Path) -> Path:
    shutil.copytree(folder, destination)
    return destination


def _edit_config(folder: Path, **changes) -> Path:
    config_file = folder / "config.json"
    config_file.write_text(json.dumps(json.loads(config_file.read_text()) | changes))
    return folder


# ----------------------------------------------------------------------------------------------------------------------
# config.json values
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("layer_norm_eps", "1e-5", "layer_norm_eps='1e-5' is of type str; expected float"),
        ("num_queries", "300", "num_queries='300' is of type str; expected int"),
        ("backbone_mlp_ratio", 4.5, "backbone_mlp_ratio=4.5 is of type float; expected int"),
        ("auxiliary_loss", "yes", "auxiliary_loss='yes' is of type str; expected bool"),
        ("dropout", True, "dropout=True is of type bool; expected float"),
        ("out_feature_indexes", [2, "4"], r"out_feature_indexes=\[2, '4'\] is of type list; expected list\[int\]"),
        ("projector_scale", "P4", r"projector_scale='P4' is of type str; expected list\[str\] \| tuple\[str, ...\]"),
        ("variant", 3, r"variant=3 is of type int; expected str \| None"),
        ("decoder_activation_function", None, "decoder_activation_function=None is of type NoneType; expected str"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(field: str, value, message: str) -> None:
    with pytest.raises(RFDetrConfigError, match=message):
        tiny_config(**{field: value})


def test_every_field_is_type_checked() -> None:
    """The table comes from `__init__`'s annotations: every field refuses a value of no sensible type."""
    assert len(_FIELD_TYPES) == 46 and _FIELD_TYPES["layer_norm_eps"] is float
    assert _FIELD_TYPES["segmentation_head"] is bool and _FIELD_TYPES["mask_point_sample_ratio"] is int
    for field in _FIELD_TYPES:
        with pytest.raises(RFDetrConfigError, match=rf"^{field}=<object object at .*> is of type object; expected "):
            tiny_config(**{field: object()})


def test_ints_are_accepted_for_floats() -> None:
    config = tiny_config(dropout=0, layer_norm_eps=1, out_feature_indexes=(2, 4), projector_scale=("P4",))
    assert (config.dropout, config.layer_norm_eps, config.out_feature_indexes) == (0, 1, [2, 4])


@pytest.mark.parametrize(
    ("id2label", "message"),
    [
        ({"1": "cat", "2": "dog", "5": "bird"}, r"id2label keys \['1', '2', '5'\] must be the label indexes 0\.\.2"),
        ({0: "cat", 2: "dog"}, r"id2label keys \[0, 2\] must be the label indexes 0\.\.1"),
        ({"cat": 0, "dog": 1}, r"id2label keys \['cat', 'dog'\] must be the label indexes 0\.\.1"),
        ({"0": "cat", "1": 7}, r"id2label values must be class names \(strings\); got \[7\]"),
        ({}, r"id2label=\{\} must be a non-empty mapping"),
    ],
)
def test_id2label_must_index_the_logit_slots(id2label: dict, message: str) -> None:
    with pytest.raises(RFDetrConfigError, match=message):
        tiny_config(id2label=id2label)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"layer_norm_eps": "1e-5"}, "layer_norm_eps='1e-5' is of type str; expected float"),
        ({"id2label": {"1": "cat", "2": "dog", "5": "bird"}}, r"id2label keys \['1', '2', '5'\]"),
    ],
)
def test_bad_config_json_fails_at_load_naming_the_file(saved_folder: Path, tmp_path: Path, changes, message) -> None:
    folder = _edit_config(_copy(saved_folder, tmp_path / "model"), **changes)
    expected = rf"^{folder / 'config.json'}: {message}"
    loaders = {
        "RFDetrConfig.from_pretrained": lambda: RFDetrConfig.from_pretrained(folder),
        "AutoConfig": lambda: AutoConfig.from_pretrained(folder),
        "RFDetrForObjectDetection": lambda: RFDetrForObjectDetection.from_pretrained(folder),
        "AutoModelForObjectDetection": lambda: AutoModelForObjectDetection.from_pretrained(folder),
        "pipeline": lambda: pipeline("object-detection", model=str(folder)),
        "RFDETR": lambda: RFDETR(pretrain_weights=str(folder)),
    }
    for name, load in loaders.items():
        with pytest.raises(RFDetrConfigError, match=expected) as error:
            load()
        assert error.value.source is not None, name


def test_impossible_values_fail_when_a_model_is_loaded_naming_the_file(saved_folder: Path, tmp_path: Path) -> None:
    """Well-typed values no model can have (a zero epsilon) load into a configuration, as in transformers, and are
    refused, with the file named, by every loader that builds a model."""
    folder = _edit_config(_copy(saved_folder, tmp_path / "model"), backbone_layer_norm_eps=0.0)
    assert RFDetrConfig.from_pretrained(folder).backbone_layer_norm_eps == 0.0
    expected = rf"^{folder / 'config.json'}: backbone_layer_norm_eps=0.0 must be positive"
    loaders = {
        "RFDetrForObjectDetection": lambda: RFDetrForObjectDetection.from_pretrained(folder),
        "AutoModelForObjectDetection": lambda: AutoModelForObjectDetection.from_pretrained(folder),
        "RFDETR": lambda: RFDETR(pretrain_weights=str(folder)),
    }
    for name, load in loaders.items():
        with pytest.raises(RFDetrConfigError, match=expected) as error:
            load()
        assert error.value.source is not None, name
    with pytest.raises(ValueError) as error:  # the pipeline gathers its loaders' errors into one ValueError
        pipeline("object-detection", model=str(folder))
    assert f"{folder / 'config.json'}: backbone_layer_norm_eps=0.0 must be positive" in str(error.value)


def test_valid_saved_configs_still_load(tmp_path: Path) -> None:
    """The bundled demo checkpoint (written by an earlier version of this package under transformers 5.23) and the
    same config as transformers 4.57 writes it (auto_map, torch_dtype) load in both environments."""
    demo = RFDetrConfig.from_pretrained(DEMO_MODEL)
    assert (demo.layer_norm_eps, demo.id2label[2], demo.resolution) == (1e-5, "blue-triangle", 192)
    auto, direct = AutoConfig.from_pretrained(DEMO_MODEL).to_dict(), demo.to_dict()
    assert auto.pop("_name_or_path") == str(DEMO_MODEL) and direct.pop("_name_or_path") == ""
    assert auto == direct
    written_by_457 = json.loads((DEMO_MODEL / "config.json").read_text())
    del written_by_457["dtype"]
    written_by_457 |= {
        "auto_map": {"AutoConfig": "configuration_rfdetr.RFDetrConfig"},
        "torch_dtype": "float32",
        "transformers_version": "4.57.6",
    }
    (tmp_path / "config.json").write_text(json.dumps(written_by_457))
    assert AutoConfig.from_pretrained(tmp_path).id2label == demo.id2label
    assert RFDETR(pretrain_weights=str(DEMO_MODEL)).class_names == ["red-rectangle", "green-circle", "blue-triangle"]


# ----------------------------------------------------------------------------------------------------------------------
# model.safetensors
# ----------------------------------------------------------------------------------------------------------------------


def _damage(folder: Path, how: str) -> Path:
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not safetensors" * 20, "empty": b""}[how])
    return weights


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_damaged_safetensors_name_the_file(saved_folder: Path, tmp_path: Path, how: str) -> None:
    folder = _copy(saved_folder, tmp_path / "model")
    weights = _damage(folder, how)
    expected = rf"^{weights} \({weights.stat().st_size} bytes\): damaged or truncated, safetensors cannot read it"
    for load in (
        lambda: RFDetrForObjectDetection.from_pretrained(folder),
        lambda: AutoModelForObjectDetection.from_pretrained(folder),
        lambda: RFDETR(pretrain_weights=str(folder)),
    ):
        with pytest.raises(OSError, match=expected):
            load()
    with pytest.raises(ValueError) as error:  # the pipeline gathers its loaders' errors into one ValueError
        pipeline("object-detection", model=str(folder))
    assert f"OSError: {weights} ({weights.stat().st_size} bytes): damaged or truncated" in str(error.value)


def test_damaged_safetensors_in_the_hub_cache_are_named(saved_folder: Path, tmp_path: Path) -> None:
    """A Hub id read from the local cache (offline): the message names the cached file."""
    snapshot = tmp_path / "cache" / "models--org--tiny" / "snapshots" / ("0" * 40)
    _copy(saved_folder, snapshot)
    (tmp_path / "cache" / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "cache" / "models--org--tiny" / "refs" / "main").write_text("0" * 40)
    weights = _damage(snapshot, "truncated")
    with pytest.raises(OSError, match=rf"^{weights} \(\d+ bytes\): damaged or truncated.*force_download=True"):
        RFDetrForObjectDetection.from_pretrained("org/tiny", cache_dir=tmp_path / "cache", local_files_only=True)


def test_facade_names_a_damaged_file_in_the_hub_cache(saved_folder: Path, tmp_path: Path, monkeypatch) -> None:
    """The facade's "not a local folder ... (offline, private or misspelled?)" is for Hub ids that cannot be had: a
    repository that is in the cache but damaged gets the loader's own message instead."""
    snapshot = tmp_path / "cache" / "models--org--tiny" / "snapshots" / ("0" * 40)
    _copy(saved_folder, snapshot)
    (tmp_path / "cache" / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "cache" / "models--org--tiny" / "refs" / "main").write_text("0" * 40)
    weights = _damage(snapshot, "truncated")
    import transformers.utils.hub as transformers_hub
    from huggingface_hub import constants

    # the facade passes no cache_dir: make the test's cache the default one (transformers 5 reads huggingface_hub's
    # constant at call time, 4.57 its own copy taken at import)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(transformers_hub, "TRANSFORMERS_CACHE", str(tmp_path / "cache"), raising=False)
    with pytest.raises(OSError, match=rf"^{weights} \(\d+ bytes\): damaged or truncated.*force_download=True"):
        RFDETR(pretrain_weights="org/tiny")


# ----------------------------------------------------------------------------------------------------------------------
# original .pth checkpoints
# ----------------------------------------------------------------------------------------------------------------------


def test_state_dict_that_does_not_fit_names_missing_and_unexpected_keys() -> None:
    model = RFDetrForObjectDetection(tiny_config())
    original = {
        "transformer.decoder.layers.0.norm1.weight": torch.ones(32),
        "segmentation_head.blocks.0.weight": torch.ones(3),
        "backbone.0.encoder.encoder.encoder.layer.0.attention.attention.query.weight": torch.ones(32, 32),
    }
    with pytest.raises(CheckpointError) as error:
        load_original_state_dict(model, original)
    message = str(error.value)
    assert f"missing from the checkpoint (this package's names) ({len(model.state_dict()) - 1}): [" in message
    assert "'model.backbone.embeddings.cls_token'" in message
    assert "unexpected in the checkpoint (its names) (2): [" in message
    assert "'segmentation_head.blocks.0.weight'" in message  # a mask head weight a detection model has no place for
    assert "'backbone.0.encoder.encoder.encoder.layer.0.attention.attention.query.weight (no key/value)'" in message
    assert "mismatched" not in message


def test_hugging_face_state_dict_in_a_pth_is_refused_by_name(tmp_path: Path, capsys) -> None:
    path = tmp_path / "ours.pth"
    torch.save(RFDetrForObjectDetection(tiny_config()).state_dict(), path)
    expected = (
        "not an original rfdetr (LWDETR) state dict: missing "
        "['backbone.0.encoder.encoder.embeddings.patch_embeddings.projection.weight', "
        "'backbone.0.encoder.encoder.embeddings.position_embeddings']"
    )
    with pytest.raises(CheckpointError) as error:
        RFDETR(pretrain_weights=str(path))
    assert str(error.value).startswith(f"pretrain_weights {str(path)!r}: {expected}")
    assert "keys are those of a Hugging Face model" in str(error.value)
    with pytest.raises(CheckpointError, match=f"^{str(path)!r}: not an original rfdetr"):
        convert_checkpoint(path, tmp_path / "out")
    assert main(["convert", str(path), str(tmp_path / "out")]) == 1
    assert _one_error_line(capsys, "convert").startswith(f"hf-rfdetr convert: error: {str(path)!r}: {expected}")


@pytest.mark.reference
@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            "rename",
            "unexpected in the checkpoint (its names) (3): ['backbone.0.encoder.encoder.encoder.layer.0.attention."
            "attention.key.weight (no query)', 'backbone.0.encoder.encoder.encoder.layer.0.attention.attention.value."
            "weight (no query)', 'backbone.0.encoder.encoder.encoder.layer.0.attention.attention.q.weight']",
        ),
        ("drop", "missing from the checkpoint (this package's names) (1): ['model.decoder.layers.1.fc1.weight']"),
        ("add", "unexpected in the checkpoint (its names) (1): ['transformer.extra_head.weight']"),
    ],
)
def test_original_checkpoint_with_keys_that_do_not_fit(tmp_path: Path, capsys, edit: str, expected: str) -> None:
    from .conftest import reference_model

    state_dict = dict(reference_model("nano").state_dict())
    query = "backbone.0.encoder.encoder.encoder.layer.0.attention.attention.query.weight"
    if edit == "rename":
        state_dict[query.replace(".query.", ".q.")] = state_dict.pop(query)
    elif edit == "drop":
        del state_dict["transformer.decoder.layers.1.linear1.weight"]
    else:
        state_dict["transformer.extra_head.weight"] = torch.ones(2)
    path = tmp_path / "nano.pth"
    torch.save({"model": state_dict}, path)
    with pytest.raises(CheckpointError) as error:
        RFDETR(pretrain_weights=str(path))
    assert str(error.value).startswith(f"pretrain_weights {str(path)!r}: The original checkpoint does not fit")
    assert expected in str(error.value)
    assert main(["convert", str(path), str(tmp_path / "out")]) == 1
    line = _one_error_line(capsys, "convert")
    assert f"{str(path)!r} does not match variant 'nano'" in line and expected in line


# ----------------------------------------------------------------------------------------------------------------------
# the hf-rfdetr command
# ----------------------------------------------------------------------------------------------------------------------


def _one_error_line(capsys, command: str) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"hf-rfdetr {command}: error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1] and "Traceback" not in "\n".join(lines), lines
    assert errors[0].endswith(" (--debug shows the traceback)")
    return errors[0]


@pytest.fixture(scope="module")
def bad_inputs(saved_folder: Path, tmp_path_factory) -> dict[str, Path]:
    from hf_rfdetr.synthetic import write_synthetic_coco

    root = tmp_path_factory.mktemp("bad")
    damaged = _copy(saved_folder, root / "damaged")
    _damage(damaged, "truncated")
    return {
        "damaged": damaged,
        "bad_config": _edit_config(_copy(saved_folder, root / "bad_config"), layer_norm_eps="1e-5"),
        "garbage_pth": _write(root / "garbage.pth", b"garbage" * 10),
        "dataset": write_synthetic_coco(root / "coco", num_train=2, num_valid=2, image_size=(64, 64)),
        "root": root,
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


#: command -> its arguments; MODEL, DATA and OUT are replaced by the model, the dataset and an output path.
COMMANDS = {
    "predict": ["predict", str(DEMO_IMAGE), "--model", "MODEL", "--output-dir", "OUT", "--no-progress"],
    "eval": ["eval", "--model", "MODEL", "--dataset-dir", "DATA"],
    "export": ["export", "MODEL", "OUT", "--backend", "torch"],
    "push": ["push", "MODEL", "org/name"],
    "train": ["train", "--model", "MODEL", "--dataset-dir", "DATA", "--output-dir", "OUT", "--epochs", "1"],
    "convert": ["convert", "MODEL", "OUT"],
}


def _arguments(command: str, model: Path, inputs: dict[str, Path]) -> list[str]:
    values = {"MODEL": str(model), "DATA": str(inputs["dataset"]), "OUT": str(inputs["root"] / f"out-{command}")}
    return [values.get(argument, argument) for argument in COMMANDS[command]]


@pytest.mark.parametrize(
    ("command", "model", "message"),
    [
        ("predict", "damaged", "damaged/model.safetensors ({size} bytes): damaged or truncated"),
        ("predict", "bad_config", "bad_config/config.json: layer_norm_eps='1e-5' is of type str; expected float"),
        ("predict", "missing", "pretrain_weights '{model}' does not exist"),
        ("eval", "damaged", "damaged/model.safetensors ({size} bytes): damaged or truncated"),
        ("eval", "bad_config", "bad_config/config.json: layer_norm_eps='1e-5' is of type str; expected float"),
        ("export", "damaged", "damaged/model.safetensors ({size} bytes): damaged or truncated"),
        ("export", "bad_config", "bad_config/config.json: layer_norm_eps='1e-5' is of type str; expected float"),
        ("push", "damaged", "damaged/model.safetensors ({size} bytes): damaged or truncated"),
        ("push", "missing", "model folder '{model}' does not exist"),
        ("train", "bad_config", "bad_config/config.json: layer_norm_eps='1e-5' is of type str; expected float"),
        ("convert", "garbage_pth", "'{model}' cannot be read with torch.load(weights_only=True)"),
        ("convert", "missing", "checkpoint '{model}' does not exist or is not a file"),
    ],
)
def test_every_command_prints_one_line(bad_inputs: dict, capsys, command: str, model: str, message: str) -> None:
    path = bad_inputs.get(model, bad_inputs["root"] / "missing")
    assert main(_arguments(command, path, bad_inputs)) == 1
    line = _one_error_line(capsys, command)
    size = (path / "model.safetensors").stat().st_size if path.is_dir() else 0
    assert message.format(model=path, size=size) in line


def test_debug_shows_the_traceback(bad_inputs: dict, capsys) -> None:
    arguments = _arguments("predict", bad_inputs["bad_config"], bad_inputs)
    with pytest.raises(RFDetrConfigError, match="layer_norm_eps='1e-5'"):
        main(["--debug", *arguments])
    with pytest.raises(OSError, match="damaged or truncated"):
        main([*_arguments("predict", bad_inputs["damaged"], bad_inputs), "--debug"])


def test_the_installed_command_prints_one_line_and_exits_1(bad_inputs: dict) -> None:
    """Through a real process: stderr is the one error line (no traceback), and the traceback with --debug."""
    arguments = [sys.executable, "-m", "hf_rfdetr.cli", *_arguments("predict", bad_inputs["damaged"], bad_inputs)]
    environment = os.environ | {"PYTHONWARNINGS": "ignore"}
    quiet = subprocess.run(arguments, capture_output=True, text=True, env=environment, timeout=300)
    assert quiet.returncode == 1
    assert quiet.stderr.count("\n") == 1 and quiet.stderr.startswith("hf-rfdetr predict: error: "), quiet.stderr
    assert "model.safetensors" in quiet.stderr and "damaged or truncated" in quiet.stderr
    loud = subprocess.run([*arguments, "--debug"], capture_output=True, text=True, env=environment, timeout=300)
    assert loud.returncode == 1 and "Traceback (most recent call last)" in loud.stderr
    assert "SafetensorError" in loud.stderr and loud.stderr.strip().splitlines()[-1].startswith("OSError: ")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mask_downsample_ratio", 0),
        ("mask_point_sample_ratio", -2),
        ("mask_ce_cost", -1.0),
        ("giou_loss_coefficient", -0.5),
    ],
)
def test_segmentation_and_loss_weights_are_range_checked(field: str, value) -> None:
    with pytest.raises(RFDetrConfigError, match=rf"^{field}={value}"):
        tiny_config(**{field: value}).validate()


@pytest.mark.parametrize(
    ("device", "message"),
    [("cdua", "--device 'cdua' is not a device name"), ("cuda:7", "--device 'cuda:7': no such device is available")],
)
@pytest.mark.parametrize("command", ["predict", "eval", "train", "export"])
def test_a_bad_device_is_a_one_line_error(command: str, device: str, message: str, tmp_path, capsys) -> None:
    """A mistyped or absent --device gave torch's RuntimeError traceback from deep inside each command."""
    from hf_rfdetr.cli import main

    required = {
        "predict": [str(tmp_path / "a.jpg"), "--model", str(tmp_path), "--output-dir", str(tmp_path / "out")],
        "eval": ["--dataset-dir", str(tmp_path), "--model", str(tmp_path)],
        "train": ["--dataset-dir", str(tmp_path)],
        "export": [str(tmp_path), str(tmp_path / "onnx")],
    }[command]
    assert main([command, *required, "--device", device]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.splitlines()[-1].startswith(f"hf-rfdetr {command}: error: {message}"), err
