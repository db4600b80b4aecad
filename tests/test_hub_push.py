"""Hub upload without the network: `hf_rfdetr.push_to_hub`, `hf-rfdetr push`, `model.push_to_hub` (transformers' own
method, on 4.57 and 5.x) and the converter's `--push-to-hub`, all against a recording stub of the Hub API."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers.dynamic_module_utils import get_relative_import_files

import hf_rfdetr
from hf_rfdetr import RFDetrForObjectDetection, RFDetrImageProcessor
from hf_rfdetr.cli import main
from hf_rfdetr.hub import HubError, push_to_hub

from .conftest import perturb_, tiny_config

MODEL_FILES = ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"]


def code_files() -> list[str]:
    """The module files `save_pretrained` copies for `trust_remote_code`: our three entry modules and their imports."""
    package = Path(hf_rfdetr.__file__).parent / "models" / "rfdetr"
    files = set()
    for entry in ("modeling_rfdetr.py", "configuration_rfdetr.py", "image_processing_rfdetr.py"):
        files |= {Path(path).name for path in get_relative_import_files(str(package / entry))} | {entry}
    return sorted(files)


class HubStub:
    """Records what would be sent to the Hub; keeps a copy of every uploaded file under `root/<repo_id>/`.

    Implements the calls of `huggingface_hub.HfApi` that `hf_rfdetr.push_to_hub` (`create_repo`, `upload_folder`) and
    transformers' `push_to_hub` (`create_repo`, `create_commit`, `create_branch`) make.
    """

    def __init__(self, root: Path, fail: Exception | None = None) -> None:
        self.root, self.fail, self.calls = root, fail, []

    def create_repo(self, repo_id, *, token=None, private=None, exist_ok=False, repo_type=None, **kwargs):
        self.calls.append(("create_repo", repo_id, {"private": private, "exist_ok": exist_ok, "token": token}))
        if self.fail is not None:
            raise self.fail
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, folder_path, repo_id, commit_message=None, token=None, **kwargs):
        self.calls.append(("upload_folder", repo_id, {"commit_message": commit_message, "token": token}))
        target = self.root / repo_id
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(folder_path, target)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")

    def create_commit(self, repo_id, operations, *, commit_message=None, **kwargs):
        self.calls.append(("create_commit", repo_id, {"commit_message": commit_message}))
        for operation in operations:
            target = self.root / repo_id / operation.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(operation.path_or_fileobj, target)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")

    def create_branch(self, repo_id, *, branch, **kwargs):
        self.calls.append(("create_branch", repo_id, {"branch": branch}))

    def uploaded(self, repo_id: str) -> list[str]:
        return sorted(path.name for path in (self.root / repo_id).iterdir())


@pytest.fixture
def model() -> RFDetrForObjectDetection:
    torch.manual_seed(0)
    return perturb_(RFDetrForObjectDetection(tiny_config()), seed=3).eval()


@pytest.fixture
def stub(tmp_path: Path) -> HubStub:
    return HubStub(tmp_path / "hub")


def _assert_equal_models(first: torch.nn.Module, second: torch.nn.Module) -> None:
    a, b = first.state_dict(), second.state_dict()
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_push_model_uploads_weights_config_processor_card_and_code(model, stub: HubStub) -> None:
    result = push_to_hub(model, "org/tiny-detector", api=stub, commit_message="first", token="hf_x")
    assert result.commit_url == "https://huggingface.co/org/tiny-detector/commit/0"
    assert stub.calls[0] == ("create_repo", "org/tiny-detector", {"private": None, "exist_ok": True, "token": "hf_x"})
    assert stub.calls[1] == ("upload_folder", "org/tiny-detector", {"commit_message": "first", "token": "hf_x"})
    assert stub.uploaded("org/tiny-detector") == sorted(MODEL_FILES + code_files())
    assert "modeling_rfdetr.py" in code_files() and "backbone_rfdetr.py" in code_files()
    repo = stub.root / "org/tiny-detector"
    config = json.loads((repo / "config.json").read_text())
    assert config["auto_map"]["AutoModelForObjectDetection"] == "modeling_rfdetr.RFDetrForObjectDetection"
    assert "auto_map" in json.loads((repo / "preprocessor_config.json").read_text())
    _assert_equal_models(RFDetrForObjectDetection.from_pretrained(repo), model)
    card = (repo / "README.md").read_text()
    assert f"| parameters | {model.num_parameters():,} |" in card and "| input resolution | 64 x 64" in card
    assert 'pipeline("object-detection", model="org/tiny-detector", trust_remote_code=True)' in card
    assert 'hf_rfdetr.export_onnx("org/tiny-detector", "onnx-out")' in card
    assert "license: apache-2.0" in card and "`cat`, `dog`, `bird`" in card
    assert "\n## Evaluation\n" not in card  # no metrics given: no section


def test_push_folder_without_code_and_with_metrics(model, stub: HubStub, tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    RFDetrImageProcessor.from_config(model.config).save_pretrained(folder)
    metrics = {"eval_map": 0.4321, "eval_map_50": 0.65, "eval_map_small": -1.0, "eval_map_dog": 0.5, "epoch": 3.0}
    push_to_hub(folder, "org/no-code", api=stub, include_code=False, metrics=metrics, dataset="org/pets", private=True)
    assert stub.calls[0][2]["private"] is True
    assert stub.uploaded("org/no-code") == sorted(MODEL_FILES)
    repo = stub.root / "org/no-code"
    assert "auto_map" not in json.loads((repo / "config.json").read_text())
    assert "auto_map" not in json.loads((repo / "preprocessor_config.json").read_text())
    _assert_equal_models(RFDetrForObjectDetection.from_pretrained(repo), model)
    card = (repo / "README.md").read_text()
    assert "| mAP@[.50:.95] | 0.4321 |" in card and "| mAP@.50 | 0.6500 |" in card and "| dog | 0.5000 |" in card
    assert "mAP (small)" not in card  # -1: nothing measured
    assert "import hf_rfdetr" in card and "trust_remote_code" not in card.split("## Usage")[1].split("### ONNX")[0]
    assert "- org/pets" in card and "type: map" in card  # card metadata: dataset and model-index results


def test_push_a_segmentation_folder_keeps_its_mask_head(stub: HubStub, tmp_path: Path) -> None:
    """A segmentation folder was loaded with the detection class: the upload lost the 23 mask-head tensors, said
    RFDetrForObjectDetection in config.json and counted the detector's parameters in the card."""
    from hf_rfdetr import RFDetrForInstanceSegmentation

    torch.manual_seed(0)
    model = perturb_(RFDetrForInstanceSegmentation(tiny_config(segmentation_head=True)), seed=3).eval()
    folder = tmp_path / "seg"
    model.save_pretrained(folder)
    RFDetrImageProcessor.from_config(model.config).save_pretrained(folder)
    push_to_hub(folder, "org/tiny-segmenter", api=stub)
    repo = stub.root / "org/tiny-segmenter"
    assert json.loads((repo / "config.json").read_text())["architectures"] == ["RFDetrForInstanceSegmentation"]
    _assert_equal_models(RFDetrForInstanceSegmentation.from_pretrained(repo), model)
    assert f"| parameters | {model.num_parameters():,} |" in (repo / "README.md").read_text()


def test_push_keeps_a_card_the_user_wrote(model, stub: HubStub, tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    (folder / "README.md").write_text("# My detector\n\nHand-written.\n")
    push_to_hub(folder, "org/mine", api=stub)
    assert (stub.root / "org/mine/README.md").read_text() == "# My detector\n\nHand-written.\n"
    assert "preprocessor_config.json" in stub.uploaded("org/mine")  # made from the config when the folder has none


def test_hub_errors_are_named(model, tmp_path: Path, capsys, monkeypatch) -> None:
    from huggingface_hub.errors import HFValidationError

    failing = HubStub(tmp_path, fail=HFValidationError("Repo id must be in the form 'repo_name'"))
    with pytest.raises(HubError, match="upload to 'org/name' failed: HFValidationError.*ORG_OR_USER/NAME"):
        push_to_hub(model, "org/name", api=failing)
    quiet = HubStub(tmp_path)
    for bad in ("bad id", "org/a--b", "org/name/extra"):  # huggingface_hub's validate_repo_id, before any upload
        with pytest.raises(HubError, match=f"upload to '{bad}' failed: HFValidationError: .*ORG_OR_USER/NAME"):
            push_to_hub(model, bad, api=quiet)
    assert quiet.calls == []
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    monkeypatch.setattr("huggingface_hub.HfApi", lambda *a, **k: HubStub(tmp_path, fail=ConnectionError("offline")))
    assert main(["push", str(folder), "org/x"]) == 1
    error = capsys.readouterr().err
    assert "hf-rfdetr push: error: upload to 'org/x' failed: ConnectionError: offline" in error
    assert main(["push", str(tmp_path / "missing"), "org/x"]) == 1
    assert "model folder" in capsys.readouterr().err


def test_cli_push(model, stub: HubStub, tmp_path: Path, capsys, monkeypatch) -> None:
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    (tmp_path / "metrics.json").write_text(json.dumps({"split": "test", "metrics": {"map": 0.25, "map_50": 0.5}}))
    monkeypatch.setattr("huggingface_hub.HfApi", lambda *a, **k: stub)
    arguments = ["push", str(folder), "org/cli", "--no-code", "--private", "--commit-message", "cli upload"]
    assert main([*arguments, "--metrics", str(tmp_path / "metrics.json"), "--token", "hf_y"]) == 0
    assert "pushed" in capsys.readouterr().out
    assert stub.calls[0] == ("create_repo", "org/cli", {"private": True, "exist_ok": True, "token": "hf_y"})
    assert stub.calls[1][2] == {"commit_message": "cli upload", "token": "hf_y"}
    assert stub.uploaded("org/cli") == sorted(MODEL_FILES)
    card = (stub.root / "org/cli/README.md").read_text()
    assert "| metric | test |" in card and "| mAP@[.50:.95] | 0.2500 |" in card


def test_cli_help(capsys) -> None:
    for command, flags in (("push", ("--private", "--no-code", "--token", "--commit-message")),):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert all(flag in out for flag in flags)


def _install_transformers_stub(monkeypatch, stub: HubStub) -> None:
    """Route transformers' own `push_to_hub` (4.57: module functions; 5.x: a shared `HfApi`) to the stub, with no
    card on the Hub yet."""
    from huggingface_hub import ModelCard
    from huggingface_hub.errors import EntryNotFoundError
    from transformers.utils import hub as transformers_hub

    def no_card(*args, **kwargs):
        raise EntryNotFoundError("README.md not found")

    monkeypatch.setattr(ModelCard, "load", no_card)
    if hasattr(transformers_hub, "hf_api"):  # transformers 5.x
        monkeypatch.setattr(transformers_hub, "_hf_api", stub)
    for name in ("create_repo", "create_commit", "create_branch"):  # transformers 4.57
        if hasattr(transformers_hub, name):
            monkeypatch.setattr(transformers_hub, name, getattr(stub, name))


def test_model_push_to_hub_writes_the_rfdetr_card(model, stub: HubStub, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # transformers 4.57 uses ./<repo name> as working folder when it exists
    _install_transformers_stub(monkeypatch, stub)
    model.push_to_hub("org/own-method", commit_message="own")
    assert ("create_commit", "org/own-method", {"commit_message": "own"}) in stub.calls
    uploaded = stub.uploaded("org/own-method")
    assert {"README.md", "config.json", "model.safetensors", "modeling_rfdetr.py"} <= set(uploaded)
    card = (stub.root / "org/own-method/README.md").read_text()
    assert "This is the model card of a 🤗 transformers model" not in card
    assert f"| parameters | {model.num_parameters():,} |" in card and "model.push_to_hub" in card
    assert 'model="org/own-method", trust_remote_code=True' in card
    _assert_equal_models(RFDetrForObjectDetection.from_pretrained(stub.root / "org/own-method"), model)


def test_model_push_to_hub_keeps_a_card_written_on_the_hub(model, stub: HubStub, tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import ModelCard

    monkeypatch.chdir(tmp_path)
    _install_transformers_stub(monkeypatch, stub)
    own = "---\nlicense: apache-2.0\n---\n\n# Written by hand\n"
    monkeypatch.setattr(ModelCard, "load", lambda *args, **kwargs: ModelCard(own))
    model.push_to_hub("org/hand-card")
    assert "# Written by hand" in (stub.root / "org/hand-card/README.md").read_text()


def test_processor_and_config_saved_first_thing_carry_their_code(tmp_path: Path) -> None:
    """In a fresh interpreter, a processor or config saved before anything imported transformers' Auto modules still
    writes its `auto_map` and code files (push_to_hub of a model alone used to upload a processor without its code)."""
    script = (
        "import sys, hf_rfdetr\n"
        "from hf_rfdetr import RFDetrConfig, RFDetrImageProcessor\n"
        "RFDetrImageProcessor().save_pretrained(sys.argv[1])\n"
        "RFDetrConfig().save_pretrained(sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, capture_output=True)
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["auto_map"] == {
        "AutoImageProcessor": "image_processing_rfdetr.RFDetrImageProcessor"
    }
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"] == {
        "AutoConfig": "configuration_rfdetr.RFDetrConfig"
    }
    assert {"image_processing_rfdetr.py", "image_io.py", "configuration_rfdetr.py", "coco_classes.py"} <= {
        path.name for path in tmp_path.glob("*.py")
    }
