"""The original's COCO checkpoints by name (`hf_rfdetr.pretrained_weights`), served by a real HTTP server on 127.0.0.1.

The server (Python's http.server in a thread, bytes from memory) serves an original-format checkpoint made from random
weights (a Nano with one decoder layer, one query group and 10 queries: the ViT-S backbone is the bulk, ~90 MB) and
can cut the connection mid-file. `CHECKPOINTS["nano"]` is pointed at it; the assets cache and the original package's
cache are temporary folders. `scripts/test.sh` sets HF_HUB_OFFLINE=1: the tests that download unset it for
themselves, and the offline test sets it. Runs with transformers 4.57 and 5.x alike (nothing here needs rfdetr).
`pytest -s` prints the bytes served, the md5 and the time of the cached second load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hf_rfdetr
from hf_rfdetr import RFDetrConfig, RFDetrForObjectDetection, pretrained_weights
from hf_rfdetr.cli import main
from hf_rfdetr.conversion import config_from_checkpoint, load_original_state_dict
from hf_rfdetr.pretrained_weights import CHECKPOINTS, ChecksumError, DownloadError, WeightsOfflineError

from .conftest import perturb_
from .original_checkpoint import original_checkpoint_bytes

ARGS = {"dec_layers": 1, "group_detr": 1, "num_queries": 10}


@dataclasses.dataclass
class Served:
    """What the test server holds and how often it was asked."""

    url: str
    cut_url: str
    payload: bytes
    md5: str
    requests: int = 0
    bytes_sent: int = 0


def _handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            served.requests += 1
            if self.path not in ("/checkpoint.pth", "/cut.pth"):
                self.send_error(404)
                return
            body = served.payload if self.path == "/checkpoint.pth" else served.payload[: len(served.payload) // 3]
            self.send_response(200)
            self.send_header("Content-Length", str(len(served.payload)))  # /cut.pth: promise all, send a third
            self.end_headers()
            self.wfile.write(body)
            served.bytes_sent += len(body)
            self.close_connection = True

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def model() -> RFDetrForObjectDetection:
    torch.manual_seed(0)
    config = RFDetrConfig.from_variant("nano", decoder_layers=1, group_detr=1, num_queries=10)
    return perturb_(RFDetrForObjectDetection(config), seed=0).eval()


@pytest.fixture(scope="module")
def server(model: RFDetrForObjectDetection) -> Iterator[Served]:
    payload = original_checkpoint_bytes(model, ARGS, "RFDETRNano")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), None)
    served = Served("", "", payload, hashlib.md5(payload).hexdigest())
    httpd.RequestHandlerClass = _handler(served)
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    served.url, served.cut_url = f"{base}/checkpoint.pth", f"{base}/cut.pth"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def online(server: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Served:
    """Empty caches in tmp_path, network allowed, `nano` served by the test server."""
    monkeypatch.setenv("HF_ASSETS_CACHE", str(tmp_path / "assets"))
    monkeypatch.setenv("RF_HOME", str(tmp_path / "roboflow"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setitem(CHECKPOINTS, "nano", dataclasses.replace(CHECKPOINTS["nano"], url=server.url, md5=server.md5))
    server.requests = server.bytes_sent = 0
    return server


def downloads(tmp_path: Path) -> list[str]:
    folder = tmp_path / "assets" / "hf_rfdetr" / "downloads"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def verified(model: RFDetrForObjectDetection, payload: bytes, tmp_path: Path) -> RFDetrForObjectDetection:
    """The converter's verified path on the same bytes: `config_from_checkpoint` + `load_original_state_dict`."""
    path = tmp_path / "direct.pth"
    path.write_bytes(payload)
    checkpoint = torch.load(path, weights_only=True)
    reference = RFDetrForObjectDetection(config_from_checkpoint(checkpoint)).eval()
    load_original_state_dict(reference, checkpoint["model"])
    return reference


def image() -> Image.Image:
    generator = np.random.default_rng(0)
    return Image.fromarray(generator.integers(0, 256, (120, 160, 3), dtype=np.uint8))


def test_the_table_is_the_originals() -> None:
    assert hf_rfdetr.pretrained is pretrained_weights.pretrained
    seg = {"seg-preview", "seg-nano", "seg-small", "seg-medium", "seg-large", "seg-xlarge", "seg-2xlarge"}
    assert set(CHECKPOINTS) == {"nano", "small", "medium", "base", "large", "large-legacy"} | seg
    base = CHECKPOINTS["base"]
    assert base.url == "https://storage.googleapis.com/rfdetr/rf-detr-base-coco.pth"
    assert base.md5 == "b4d3ce46099eaed50626ede388caf979" and base.filename == "rf-detr-base.pth"
    assert CHECKPOINTS["large"].filename == "rf-detr-large-2026.pth"
    assert CHECKPOINTS["large-legacy"].filename == "rf-detr-large.pth"
    for text in ("base", "BASE", "rf-detr-base", "rf-detr-base.pth"):
        assert pretrained_weights.resolve_name(text) == "base"


def test_download_md5_conversion_and_cache_hit(
    online: Served, model: RFDetrForObjectDetection, tmp_path: Path, monkeypatch, capsys
) -> None:
    start = time.perf_counter()
    folder = Path(hf_rfdetr.pretrained("nano"))
    first = time.perf_counter() - start
    assert online.requests == 1 and online.bytes_sent == len(online.payload)
    assert folder.parent == tmp_path / "assets" / "hf_rfdetr" / "coco"
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".py")) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    assert downloads(tmp_path) == [], "the .pth is removed once converted"

    loaded = RFDetrForObjectDetection.from_pretrained(folder).eval()
    assert loaded.config.variant == "nano" and loaded.config.num_labels == 91 and loaded.config.id2label[1] == "person"
    pixel_values = torch.rand(1, 3, 384, 384, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, expected = loaded(pixel_values), verified(model, online.payload, tmp_path)(pixel_values)
    assert torch.equal(ours.logits, expected.logits) and torch.equal(ours.pred_boxes, expected.pred_boxes)
    assert ours.logits.std() > 0.1, "the comparison must be meaningful"

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the second load needs no network ...
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("the cached load unpickled something"))
    start = time.perf_counter()
    assert Path(hf_rfdetr.pretrained("rf-detr-nano.pth")) == folder
    second = time.perf_counter() - start
    assert online.requests == 1  # ... and asks the server nothing
    with capsys.disabled():
        print(
            f"\n[test server] served {online.bytes_sent} bytes (md5 {online.md5}, verified); first call (download, "
            f"md5, conversion) {first:.2f} s; cached second call {second * 1000:.1f} ms, 0 requests"
        )


def test_facade_auto_classes_and_cli_by_name(online: Served, model, tmp_path: Path, monkeypatch) -> None:
    from transformers import AutoModelForObjectDetection

    monkeypatch.chdir(tmp_path)  # no rf-detr-nano.pth in the current folder
    detector = hf_rfdetr.RFDETRNano(device="cpu")
    reference = verified(model, online.payload, tmp_path)
    expected = hf_rfdetr.RFDETR(pretrain_weights=tmp_path / "direct.pth", device="cpu").predict(image(), 0.0)
    detections = detector.predict(image(), threshold=0.0)
    np.testing.assert_allclose(detections.xyxy, expected.xyxy, atol=1e-4)
    np.testing.assert_array_equal(detections.class_id, expected.class_id)

    auto = AutoModelForObjectDetection.from_pretrained(hf_rfdetr.pretrained("nano"))
    assert isinstance(auto, RFDetrForObjectDetection)
    assert all(torch.equal(auto.state_dict()[k], v) for k, v in reference.state_dict().items())
    relabelled = hf_rfdetr.RFDETRNano(class_names=["a", "b"], device="cpu")  # COCO weights, new heads
    assert relabelled.class_names == ["a", "b"]
    key = "model.decoder.layers.0.fc1.weight"
    assert torch.equal(relabelled.model.state_dict()[key], reference.state_dict()[key])

    image().save(tmp_path / "photo.png")
    assert main(["convert", "nano", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["variant"] == "nano"
    threshold = float(np.median(expected.confidence))
    command = ["predict", "--model", "nano", str(tmp_path / "photo.png"), "--output-dir", "pred", "--no-progress"]
    assert main([*command, "--threshold", str(threshold)]) == 0
    found = json.loads((tmp_path / "pred" / "detections.json").read_text())["images"][0]["detections"]
    assert len(found) == int((expected.confidence > threshold).sum()) > 0
    assert [d["class_id"] for d in found] == expected.class_id[: len(found)].tolist()
    assert online.requests == 1, "everything after the first download reads the cache"


def test_md5_mismatch_removes_the_file_and_names_both_hashes(online: Served, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(CHECKPOINTS, "nano", dataclasses.replace(CHECKPOINTS["nano"], md5="0" * 32))
    with pytest.raises(ChecksumError, match=f"md5 {online.md5}, expected {'0' * 32}.*removed"):
        hf_rfdetr.pretrained("nano")
    assert online.bytes_sent == len(online.payload) and downloads(tmp_path) == []


def test_interrupted_download_leaves_nothing_and_the_next_call_starts_clean(online: Served, tmp_path: Path) -> None:
    good = CHECKPOINTS["nano"]
    CHECKPOINTS["nano"] = dataclasses.replace(good, url=online.cut_url)  # restored by the fixture's setitem
    with pytest.raises(DownloadError, match=r"connection closed after \d+ of \d+ bytes.*put it at") as error:
        hf_rfdetr.pretrained("nano")
    assert online.cut_url in str(error.value)
    assert downloads(tmp_path) == [], "no partial file"
    CHECKPOINTS["nano"] = good
    folder = Path(hf_rfdetr.pretrained("nano"))
    assert (folder / "model.safetensors").is_file() and online.requests == 2


def test_offline_names_the_url_and_where_to_put_the_file(online: Served, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsOfflineError) as error:
        hf_rfdetr.RFDETRNano(device="cpu")
    message = str(error.value)
    target = tmp_path / "assets" / "hf_rfdetr" / "downloads" / "rf-detr-nano.pth"
    assert "\n" not in message and online.url in message and f"put it at {target}" in message
    assert online.requests == 0
    target.write_bytes(online.payload)  # as the message says: the next call uses it, offline
    assert (Path(hf_rfdetr.pretrained("nano")) / "model.safetensors").is_file() and online.requests == 0


def test_the_original_packages_download_is_used(online: Served, tmp_path: Path) -> None:
    (tmp_path / "roboflow").mkdir()
    (tmp_path / "roboflow" / "rf-detr-nano.pth").write_bytes(online.payload)
    assert (Path(hf_rfdetr.pretrained("nano")) / "model.safetensors").is_file() and online.requests == 0
    assert (tmp_path / "roboflow" / "rf-detr-nano.pth").is_file(), "the original's own file is left alone"


def test_unknown_names_list_the_known_ones(tmp_path: Path, capsys) -> None:
    known = "nano, small, medium, base, large, large-legacy"
    with pytest.raises(ValueError, match=f"'bsae' is not a known checkpoint name.*known names: {known}"):
        hf_rfdetr.pretrained("bsae")
    with pytest.raises(ValueError, match=known):
        hf_rfdetr.RFDETR(pretrain_weights="bsae", device="cpu")
    with pytest.raises(FileNotFoundError, match="rf-detr-base.pth"):
        hf_rfdetr.RFDETR(pretrain_weights="rf-detr-bsae.pth", device="cpu")
    image().save(tmp_path / "photo.png")
    code = main(["predict", "--model", "bsae", str(tmp_path / "photo.png"), "--output-dir", str(tmp_path / "o")])
    error = capsys.readouterr().err
    assert code == 1 and error.count("\n") == 1 and known in error


def test_transformers_rf_detr_without_transformers_5_is_explained(tmp_path: Path, monkeypatch) -> None:
    """On transformers 4.57 (no rf_detr model) every entry point says what is needed (simulated on 5.x)."""
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "config.json").write_text(json.dumps({"model_type": "rf_detr"}))
    monkeypatch.setattr(pretrained_weights, "_has_transformers_rf_detr", lambda: False)
    for load in (
        lambda: RFDetrForObjectDetection.from_pretrained(tmp_path / "theirs"),
        lambda: hf_rfdetr.pretrained(tmp_path / "theirs"),
        lambda: hf_rfdetr.RFDETR(pretrain_weights=tmp_path / "theirs", device="cpu"),
    ):
        with pytest.raises(ValueError, match="transformers' own rf_detr model.*needs transformers 5.x"):
            load()
