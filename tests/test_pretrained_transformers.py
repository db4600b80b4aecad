"""A folder of transformers' own RF-DETR (`transformers.RfDetrForObjectDetection`, model_type "rf_detr") loads as it
is through every entry point of this package, converted on load, with the outputs of the converter's verified path
(`convert_transformers_checkpoint(..., verify=True)`).

Needs transformers 5.x, the only version with an rf_detr model: this module is collected in env 1 (transformers 5)
and skipped as a whole in env 2 (4.57), where `tests/test_pretrained_weights.py` checks the error those entry points
give instead. Nothing here needs the original rfdetr package.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import transformers

import hf_rfdetr
from hf_rfdetr import RFDetrForObjectDetection, pretrained_weights
from hf_rfdetr.cli import main

if not hasattr(transformers, "RfDetrForObjectDetection"):
    pytest.skip("transformers < 5 has no rf_detr model to convert from", allow_module_level=True)

from hf_rfdetr.conversion_transformers import convert_transformers_checkpoint, verification_pixel_values  # noqa: E402

from .test_parity_transformers import TINY_LABELS, tiny_transformers_model  # noqa: E402


@pytest.fixture
def theirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A transformers rf_detr folder (weights, config, processor), the model in it and an empty assets cache."""
    monkeypatch.setenv("HF_ASSETS_CACHE", str(tmp_path / "assets"))
    model = tiny_transformers_model()
    folder = tmp_path / "transformers-tiny"
    model.save_pretrained(folder)
    transformers.RfDetrImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder, model


def _max_delta(model: torch.nn.Module, reference: torch.nn.Module) -> float:
    pixel_values = verification_pixel_values(model.config)
    with torch.no_grad():
        a, b = model.eval()(pixel_values), reference.eval()(pixel_values)
    return max((a.logits - b.logits).abs().max().item(), (a.pred_boxes - b.pred_boxes).abs().max().item())


def test_every_entry_point_loads_a_transformers_folder(theirs, tmp_path: Path, caplog, capsys) -> None:
    folder, their_model = theirs
    verified = RFDetrForObjectDetection.from_pretrained(
        convert_transformers_checkpoint(folder, tmp_path / "verified", verify=True)
    )
    card = (tmp_path / "verified" / "README.md").read_text()  # every folder the package writes has a card
    assert f"converted from transformers' `RfDetrForObjectDetection` checkpoint `{folder}`" in card
    assert f"{verified.num_parameters():,}" in card and all(label in card for label in TINY_LABELS.values())
    with caplog.at_level(logging.WARNING, logger="hf_rfdetr.pretrained_weights"):
        direct = RFDetrForObjectDetection.from_pretrained(folder)
    assert "converted transformers' rf_detr checkpoint" in caplog.text and "3 labels kept" in caplog.text
    assert direct.config.model_type == "rfdetr" and direct.config.id2label == TINY_LABELS
    converted = Path(hf_rfdetr.pretrained(folder))
    assert converted.parent == tmp_path / "assets" / "hf_rfdetr" / "transformers"
    auto = transformers.AutoModelForObjectDetection.from_pretrained(converted)
    deltas = {
        "RFDetrForObjectDetection.from_pretrained(folder)": _max_delta(direct, verified),
        "AutoModelForObjectDetection.from_pretrained(hf_rfdetr.pretrained(folder))": _max_delta(auto, verified),
    }
    facade = hf_rfdetr.RFDETR(pretrain_weights=folder, device="cpu")
    deltas["RFDETR(pretrain_weights=folder).model"] = _max_delta(facade.model, verified)
    print("\nmax |delta| against the verified conversion:", json.dumps(deltas, indent=1))
    assert all(delta == 0.0 for delta in deltas.values()), deltas
    assert _max_delta(direct, their_model) <= 1e-4  # and against transformers' own model
    assert facade.class_names == list(TINY_LABELS.values()) and facade.resolution == 64

    # transformers' own mapping is not taken over: the Auto class gives transformers' model for its folder
    assert type(transformers.AutoModelForObjectDetection.from_pretrained(folder)).__module__.startswith("transformers")

    image = verification_pixel_values(direct.config)[0].permute(1, 2, 0)
    image = ((image - image.min()) / (image.max() - image.min())).numpy()
    from PIL import Image

    Image.fromarray((image * 255).astype("uint8")).save(tmp_path / "photo.png")
    command = ["predict", "--model", str(folder), str(tmp_path / "photo.png"), "--output-dir", str(tmp_path / "pred")]
    assert main([*command, "--threshold", "0.0", "--no-progress"]) == 0
    found = json.loads((tmp_path / "pred" / "detections.json").read_text())["images"][0]["detections"]
    expected = facade.predict(str(tmp_path / "photo.png"), threshold=0.0)
    assert [d["class_id"] for d in found] == expected.class_id.tolist()

    direct.save_pretrained(tmp_path / "saved")  # saving gives this package's format
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["model_type"] == "rfdetr"


def test_a_transformers_segmentation_folder_loads_with_the_segmentation_class(tmp_path: Path, monkeypatch) -> None:
    """`RFDetrForInstanceSegmentation.from_pretrained` converts a folder of transformers'
    `RfDetrForInstanceSegmentation` as the detection class does (it raised an AttributeError on transformers' config)."""
    from hf_rfdetr import RFDetrForInstanceSegmentation

    from .conftest import perturb_
    from .test_parity_transformers import tiny_transformers_config

    monkeypatch.setenv("HF_ASSETS_CACHE", str(tmp_path / "assets"))
    torch.manual_seed(0)
    theirs = perturb_(
        transformers.RfDetrForInstanceSegmentation(tiny_transformers_config(intermediate_size=128)), 0, 0.1
    ).eval()
    theirs.save_pretrained(tmp_path / "seg")
    ours = RFDetrForInstanceSegmentation.from_pretrained(tmp_path / "seg").eval()
    assert ours.config.model_type == "rfdetr" and ours.config.segmentation_head
    pixel_values = verification_pixel_values(ours.config)
    with torch.no_grad():
        expected, actual = theirs(pixel_values=pixel_values), ours(pixel_values)
    for name in ("logits", "pred_boxes", "pred_masks"):
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-4, msg=name)


def test_export_converts_a_transformers_folder_and_the_config_says_how(theirs, tmp_path: Path) -> None:
    """`hf-rfdetr export` converts a transformers rf_detr folder as from_pretrained does; `RFDetrConfig.from_pretrained`
    on it names the problem and the fix instead of failing on a read-only property."""
    from hf_rfdetr import RFDetrConfig, RFDetrOnnxModel
    from hf_rfdetr.models.rfdetr.configuration_rfdetr import RFDetrConfigError

    folder, _ = theirs
    with pytest.raises(RFDetrConfigError, match=r"transformers' own rf_detr configuration.*hf_rfdetr\.pretrained"):
        RFDetrConfig.from_pretrained(folder)
    assert main(["export", str(folder), str(tmp_path / "onnx"), "--backend", "torch"]) == 0
    ours = RFDetrForObjectDetection.from_pretrained(folder).eval()
    pixel_values = verification_pixel_values(ours.config)
    with torch.no_grad():
        expected = ours(pixel_values)
    actual = RFDetrOnnxModel.from_pretrained(tmp_path / "onnx")(pixel_values)
    assert (actual.logits - expected.logits).abs().max() <= 1e-4
    assert (actual.pred_boxes - expected.pred_boxes).abs().max() <= 1e-4


def test_the_conversion_is_cached_and_the_default_epsilon_is_reported(theirs, tmp_path: Path, caplog, monkeypatch):
    folder, _ = theirs
    first = hf_rfdetr.pretrained(folder)
    monkeypatch.setattr(
        "hf_rfdetr.conversion_transformers.convert_transformers_checkpoint", lambda *a, **k: pytest.fail("reconverted")
    )
    assert hf_rfdetr.pretrained(folder) == first
    monkeypatch.undo()
    monkeypatch.setenv("HF_ASSETS_CACHE", str(tmp_path / "assets"))

    model = tiny_transformers_model(layer_norm_eps=1e-5)  # transformers' default
    model.save_pretrained(tmp_path / "eps")
    with caplog.at_level(logging.WARNING, logger="hf_rfdetr.pretrained_weights"):
        loaded = RFDetrForObjectDetection.from_pretrained(tmp_path / "eps")
    assert "projector LayerNorm eps 1e-06 (the original's) for its layer_norm_eps=1e-05" in caplog.text
    verified = RFDetrForObjectDetection.from_pretrained(
        convert_transformers_checkpoint(tmp_path / "eps", tmp_path / "v", verify=True, projector_layer_norm_eps=1e-6)
    )
    assert _max_delta(loaded, verified) == 0.0
    assert pretrained_weights.as_rfdetr_checkpoint(str(tmp_path / "v")) == str(tmp_path / "v")  # ours: as it is


def test_a_transformers_checkpoint_in_a_subfolder_is_converted_too(theirs, tmp_path: Path, monkeypatch) -> None:
    """`from_pretrained(repo, subfolder=...)` looked for the rf_detr config at the top only, loaded the subfolder
    unconverted and failed, telling the user to call the from_pretrained they had just called."""
    folder, their_model = theirs
    direct = RFDetrForObjectDetection.from_pretrained(folder)
    local = RFDetrForObjectDetection.from_pretrained(folder.parent, subfolder=folder.name)
    assert _max_delta(local, direct) == 0.0 and _max_delta(local, their_model) <= 1e-4

    # A Hub repository: its subfolder's config.json is looked up there, then the subfolder is downloaded to convert
    import huggingface_hub
    import transformers.utils

    def cached_file(repo, name, subfolder="", **kwargs):
        assert (repo, name, subfolder) == ("org/repo", "config.json", folder.name)
        return str(folder / name)

    def snapshot_download(repo, allow_patterns=None, **kwargs):
        assert (repo, allow_patterns) == ("org/repo", [f"{folder.name}/*"])
        return str(folder.parent)

    monkeypatch.setattr(transformers.utils, "cached_file", cached_file)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    converted = pretrained_weights.as_rfdetr_checkpoint("org/repo", subfolder=folder.name)
    assert converted == hf_rfdetr.pretrained(folder)  # the same cached conversion as the folder's own
