# Copyright 2026 The hf_rfdetr Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Real weights by name: the original's COCO checkpoints, and checkpoints of transformers' own `rf_detr`, as folders
of this package.

* `pretrained("base")` (also "rf-detr-base", "rf-detr-base.pth"; see `CHECKPOINTS`) downloads the original's
  published COCO checkpoint once (the URL and md5 of rfdetr 1.11.2's asset table), checks its md5, converts it with
  `hf_rfdetr.conversion.convert_checkpoint` and caches the result as a safetensors folder; it returns that folder.
  Later calls return the cached folder: no network, no unpickling.
* `pretrained(folder_or_repo)` with transformers' `rf_detr` model in it (config `model_type` "rf_detr") converts it
  with `hf_rfdetr.conversion_transformers` into a cached folder of this package (needs transformers 5.x);
  a folder or repository of this package comes back as it is.

Everything lands in Hugging Face's assets cache (`huggingface_hub.constants.HF_ASSETS_CACHE`, `~/.cache/huggingface/
assets` unless `HF_ASSETS_CACHE` or `HF_HOME` says otherwise), under `hf_rfdetr/`: `downloads/` (the original's
`.pth` files, removed once converted), `coco/<file>-<md5 prefix>/` and `transformers/<name>-<key>/`. The assets
cache is where huggingface_hub lets libraries keep files they derive (as `huggingface_hub.cached_assets_path` lays
out); the hub cache next to it holds only repository snapshots.

Downloads go to a temporary `.part` file, renamed into place only after the md5 matched, so an interrupted or
corrupted download never leaves a file that a later call would trust. `HF_HUB_OFFLINE=1` forbids them.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINTS",
    "ChecksumError",
    "DownloadError",
    "OriginalCheckpoint",
    "WeightsOfflineError",
    "download_original",
    "known_names",
    "pretrained",
    "resolve_name",
]


@dataclass(frozen=True)
class OriginalCheckpoint:
    """One published checkpoint of the original package: the file name it uses, where it lives and its md5."""

    variant: str
    filename: str
    url: str
    md5: str

    @property
    def stem(self) -> str:
        """The file name without its suffix (`.pth` for detection, `.pt` for segmentation): another accepted name."""
        return self.filename.rsplit(".", 1)[0]


#: The original's COCO detection and segmentation checkpoints, by our variant name: file name, URL and md5 as in rfdetr 1.11.2
#: (`rfdetr/assets/model_weights.py`; the file names are the `pretrain_weights` defaults of its `*Config` classes).
#: `large` is the 2026 Large (the original's `RFDETRLarge` since 1.4), `large-legacy` its `RFDETRLargeDeprecated`.
CHECKPOINTS: dict[str, OriginalCheckpoint] = {
    "nano": OriginalCheckpoint(
        "nano",
        "rf-detr-nano.pth",
        "https://storage.googleapis.com/rfdetr/nano_coco/checkpoint_best_regular.pth",
        "fb6504cce7fbdc783f7a46991f07639f",
    ),
    "small": OriginalCheckpoint(
        "small",
        "rf-detr-small.pth",
        "https://storage.googleapis.com/rfdetr/small_coco/checkpoint_best_regular.pth",
        "fb37061c1af7bace359c91b723a8d5c1",
    ),
    "medium": OriginalCheckpoint(
        "medium",
        "rf-detr-medium.pth",
        "https://storage.googleapis.com/rfdetr/medium_coco/checkpoint_best_regular.pth",
        "7223f764a87b863f02eb8d52bf0ce2ee",
    ),
    "base": OriginalCheckpoint(
        "base",
        "rf-detr-base.pth",
        "https://storage.googleapis.com/rfdetr/rf-detr-base-coco.pth",
        "b4d3ce46099eaed50626ede388caf979",
    ),
    "large": OriginalCheckpoint(
        "large",
        "rf-detr-large-2026.pth",
        "https://storage.googleapis.com/rfdetr/rf-detr-large-2026.pth",
        "5cb72153541cbcb9aa6efa26222acc75",
    ),
    "large-legacy": OriginalCheckpoint(
        "large-legacy",
        "rf-detr-large.pth",
        "https://storage.googleapis.com/rfdetr/rf-detr-large.pth",
        "992c8e862aa733a7bb2777e45d49f1a0",
    ),
    # Segmentation (RF-DETR Seg, converted to `RFDetrForInstanceSegmentation`); the local file names are those of
    # rfdetr 1.11.2's asset table, which differ from the URLs' basenames for all but the preview.
    "seg-preview": OriginalCheckpoint(
        "seg-preview",
        "rf-detr-seg-preview.pt",
        "https://storage.googleapis.com/rfdetr/rf-detr-seg-preview.pt",
        "e35820c28fb86080558123e47a5e49ca",
    ),
    "seg-nano": OriginalCheckpoint(
        "seg-nano",
        "rf-detr-seg-nano.pt",
        "https://storage.googleapis.com/rfdetr/rf-detr-seg-n-ft.pth",
        "9995497791d0ff1664a1d9ddee9cfd20",
    ),
    "seg-small": OriginalCheckpoint(
        "seg-small",
        "rf-detr-seg-small.pt",
        "https://storage.googleapis.com/rfdetr/rf-detr-seg-s-ft.pth",
        "0a2a3006381d0c42853907e700eadd08",
    ),
    "seg-medium": OriginalCheckpoint(
        "seg-medium",
        "rf-detr-seg-medium.pt",
        "https://storage.googleapis.com/rfdetr/rf-detr-seg-m-ft.pth",
        "a49af1562c3719227ad43d0ca53b4c7a",
    ),
    "seg-large": OriginalCheckpoint(
        "seg-large",
        "rf-detr-seg-large.pt",
        "https://storage.googleapis.com/rfdetr/rf-detr-seg-l-ft.pth",
        "275f7b094909544ed2841c94a677d07e",
    ),
    "seg-xlarge": OriginalCheckpoint(
        "seg-xlarge",
        "rf-detr-seg-xlarge.pt",
        "https://storage.googleapis.com/rfdetr/rf-detr-seg-xl-ft.pth",
        "3693b35d0eea86ebb3e0444f4a611fba",
    ),
    "seg-2xlarge": OriginalCheckpoint(
        "seg-2xlarge",
        "rf-detr-seg-xxlarge.pt",
        "https://storage.googleapis.com/rfdetr/rf-detr-seg-2xl-ft.pth",
        "040bc3412af840fa8a47e0ff69b552ba",
    ),
}
#: Other names of checkpoints (the original resolves "seg-xxlarge" to its Seg2XLarge too).
_NAME_ALIASES = {"seg-xxlarge": "seg-2xlarge"}
_LIBRARY = "hf_rfdetr"
_CHUNK = 1 << 20
_TIMEOUT_S = 60


class DownloadError(OSError):
    """A checkpoint could not be downloaded; the message names the URL and where to put the file by hand."""


class WeightsOfflineError(DownloadError):
    """A download was needed while `HF_HUB_OFFLINE` is set."""


class ChecksumError(DownloadError):
    """A file's md5 is not the published one; the message names both hashes."""


# ----------------------------------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------------------------------


def known_names() -> list[str]:
    """The checkpoint names `pretrained` accepts (each also as its original file name, with or without its suffix)."""
    return list(CHECKPOINTS)


def resolve_name(text: str | os.PathLike) -> str | None:
    """The variant name of `text` ("base", "rf-detr-base", "rf-detr-base.pth", "seg-nano", "rf-detr-seg-nano.pt",
    "seg-xxlarge", any case), or None."""
    key = str(text).strip().lower()
    key = _NAME_ALIASES.get(key, key)
    for name, spec in CHECKPOINTS.items():
        if key in (name, spec.filename, spec.stem):
            return name
    return None


def _unknown_name_error(text: str) -> ValueError:
    names = ", ".join(known_names())
    return ValueError(
        f"{text!r} is not a known checkpoint name, an existing file or folder, or a Hub repository id (ORG/NAME); "
        f"known names: {names} (or the original's file names, e.g. rf-detr-base.pth)"
    )


# ----------------------------------------------------------------------------------------------------------------------
# Locations
# ----------------------------------------------------------------------------------------------------------------------


def cache_folder(namespace: str) -> Path:
    """`<HF assets cache>/hf_rfdetr/<namespace>` (created), the assets cache read at call time (`HF_ASSETS_CACHE`,
    else huggingface_hub's default, which follows `HF_HOME`)."""
    folder = Path(os.environ.get("HF_ASSETS_CACHE") or constants.HF_ASSETS_CACHE) / _LIBRARY / namespace
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _download_path(spec: OriginalCheckpoint) -> Path:
    return cache_folder("downloads") / spec.filename


def _coco_folder(spec: OriginalCheckpoint) -> Path:
    return cache_folder("coco") / f"{spec.stem}-{spec.md5[:8]}"


def _original_cache_file(spec: OriginalCheckpoint) -> Path:
    """Where the original package keeps the file (`RF_HOME` / `ROBOFLOW_HOME`, default `~/.roboflow/models`)."""
    folder = os.environ.get("RF_HOME") or os.environ.get("ROBOFLOW_HOME") or "~/.roboflow/models"
    return Path(folder).expanduser() / spec.filename


def _is_offline() -> bool:
    """`HF_HUB_OFFLINE` as huggingface_hub reads it, but at call time."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _is_folder_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


# ----------------------------------------------------------------------------------------------------------------------
# Downloads
# ----------------------------------------------------------------------------------------------------------------------


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_original(name: str) -> Path:
    """The original's `.pth` for `name`, md5-checked: already in the download folder (put there by hand, or left by
    `hf-rfdetr convert NAME --verify`), in the original package's cache, or downloaded now.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
        WeightsOfflineError: a download is needed and `HF_HUB_OFFLINE` is set.
        DownloadError: the download failed (the message names the URL and where to put the file by hand).
        ChecksumError: the file's md5 is not the published one (a failed download leaves nothing behind).
    """
    variant = resolve_name(name)
    if variant is None:
        raise _unknown_name_error(str(name))
    spec = CHECKPOINTS[variant]
    target = _download_path(spec)
    if target.is_file():
        actual = md5_of(target)
        if actual != spec.md5:
            raise ChecksumError(
                f"{target} has md5 {actual}, expected {spec.md5} (the published {spec.filename}); delete it to "
                f"download it again from {spec.url}"
            )
        return target
    original = _original_cache_file(spec)
    if original.is_file() and md5_of(original) == spec.md5:
        logger.info("using the original package's download %s", original)
        return original
    if _is_offline():
        raise WeightsOfflineError(
            f"{spec.filename} is not cached and HF_HUB_OFFLINE is set: download {spec.url} (md5 {spec.md5}) and "
            f"put it at {target}"
        )
    _download(spec, target)
    return target


def _download(spec: OriginalCheckpoint, target: Path) -> None:
    """`spec.url` -> `target`, through a temporary file renamed into place once its size and md5 are right."""
    from huggingface_hub.utils import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, part_name = tempfile.mkstemp(dir=target.parent, prefix=f".{spec.filename}.", suffix=".part")
    part = Path(part_name)
    try:
        digest, size, total = hashlib.md5(usedforsecurity=False), 0, None
        request = urllib.request.Request(spec.url, headers={"User-Agent": "hf-rfdetr"})
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=spec.filename) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
        if total is not None and size != total:
            raise http.client.IncompleteRead(b"", total - size)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        part.unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or error
        if isinstance(error, http.client.IncompleteRead):
            reason = f"connection closed after {size} of {total} bytes"
        raise DownloadError(
            f"could not download {spec.url} ({type(error).__name__}: {reason}); download it by hand and put it at "
            f"{target}"
        ) from error
    except BaseException:  # KeyboardInterrupt, ...: nothing half-written stays behind
        part.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if actual != spec.md5:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"downloaded {spec.url} ({size} bytes) has md5 {actual}, expected {spec.md5}; the file was removed. "
            "Try again; if it persists the published file changed"
        )
    os.replace(part, target)
    logger.info("downloaded %s (%d bytes, md5 %s verified) to %s", spec.url, size, actual, target)


# ----------------------------------------------------------------------------------------------------------------------
# Folders of this package
# ----------------------------------------------------------------------------------------------------------------------


def pretrained(name_or_path: str | os.PathLike, *, revision: str | None = None, token: str | bool | None = None) -> str:
    """A local folder (or Hub id) of this package for a checkpoint name, a folder or a Hub repository.

    * a name of `CHECKPOINTS` ("base", "rf-detr-base.pth", ...): the original's COCO checkpoint, downloaded, checked
      and converted on first use, then read from the cache (see the module docstring);
    * a folder or Hub repository with transformers' `rf_detr` model: converted once (needs transformers 5.x) into a
      cached folder; the labels are kept; a message reports the conversion;
    * anything else (a folder or repository of this package): returned as it is.

    The result goes to `from_pretrained` of any class: `AutoModelForObjectDetection.from_pretrained(
    hf_rfdetr.pretrained("base"))`, `AutoImageProcessor.from_pretrained(...)`, `pipeline(..., model=...)`.

    Raises:
        ValueError: an unknown name (not a path, no "/": the message lists the known names), or a transformers
            checkpoint that cannot be converted.
        OSError: download failures (see `download_original`).
    """
    text = os.fspath(name_or_path)
    if not os.path.exists(text):
        name = resolve_name(text)
        if name is not None:
            return str(coco_checkpoint(name))
        if "/" not in text.replace(os.sep, "/"):
            raise _unknown_name_error(text)
    return as_rfdetr_checkpoint(text, revision=revision, token=token)


def coco_checkpoint(name: str) -> Path:
    """The cached folder of the original's COCO checkpoint `name`: made on first use (download, md5, conversion)."""
    from .conversion import convert_checkpoint

    spec = CHECKPOINTS[resolve_name(name) or name]
    folder = _coco_folder(spec)
    if _is_folder_complete(folder):
        logger.info("RF-DETR %s: cached %s", spec.variant, folder)
        return folder
    source = download_original(spec.variant)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        convert_checkpoint(source, staging, variant=spec.variant)
        _move_into_place(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if source == _download_path(spec):
        source.unlink()  # converted: the safetensors folder replaces the pickle
    logger.warning("RF-DETR %s: converted %s (md5 %s verified) into %s", spec.variant, spec.url, spec.md5, folder)
    return folder


def _move_into_place(staging: Path, folder: Path) -> None:
    """Rename a finished folder into place (another process may have finished first: then keep theirs)."""
    try:
        os.replace(staging, folder)
    except OSError:
        if not _is_folder_complete(folder):
            raise


def _config_file(
    source: str, revision: str | None, token: str | bool | None, subfolder: str | None = None
) -> Path | None:
    """`config.json` of a folder or Hub repository (downloaded to the hub cache), in `subfolder` when given, or None
    without one."""
    local = Path(source)
    if local.is_dir():
        path = local / (subfolder or "") / "config.json"
        return path if path.is_file() else None
    from transformers.utils import cached_file

    resolved = cached_file(
        source,
        "config.json",
        subfolder=subfolder or "",
        revision=revision,
        token=token,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    return Path(resolved) if resolved else None


def as_rfdetr_checkpoint(
    source: str, *, revision: str | None = None, token: str | bool | None = None, subfolder: str | None = None
) -> str:
    """`source` itself, unless it (or its `subfolder`) holds transformers' `rf_detr` model: then the cached folder of
    its conversion, which holds the model at its top (load that without `subfolder`).

    This is what `RFDetrForObjectDetection.from_pretrained` and the facade call before loading.
    """
    config = _config_file(source, revision, token, subfolder)
    if config is None or json.loads(config.read_text()).get("model_type") != "rf_detr":
        return source
    location = _subfolder_location(source, subfolder, revision, token) if subfolder else source
    return str(_transformers_checkpoint(location, config, revision, token))


def _subfolder_location(source: str, subfolder: str, revision: str | None, token: str | bool | None) -> str:
    """The folder `source/subfolder`: local, or a Hub repository's subfolder downloaded to the hub cache."""
    if Path(source).is_dir():
        return str(Path(source) / subfolder)
    from huggingface_hub import snapshot_download

    root = snapshot_download(source, revision=revision, token=token, allow_patterns=[f"{subfolder}/*"])
    return str(Path(root) / subfolder)


def _has_transformers_rf_detr() -> bool:
    import transformers

    return hasattr(transformers, "RfDetrForObjectDetection")


def _transformers_checkpoint(source: str, config: Path, revision: str | None, token: str | bool | None) -> Path:
    import transformers

    from .conversion import CheckpointError
    from .conversion_transformers import convert_transformers_checkpoint

    if not _has_transformers_rf_detr():
        raise CheckpointError(
            f"{source!r} holds transformers' own rf_detr model, which transformers {transformers.__version__} does "
            "not have: converting it needs transformers 5.x (once: hf_rfdetr.pretrained(...) there, then load the "
            "folder it returns anywhere)"
        )
    weights = config.with_name("model.safetensors")
    stamp = [str(config.resolve()), config.stat().st_size, config.stat().st_mtime_ns]
    if weights.is_file():
        stamp += [weights.stat().st_size, weights.stat().st_mtime_ns]
    key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(source).name or "checkpoint")
    folder = cache_folder("transformers") / f"{slug}-{key}"
    if _is_folder_complete(folder):
        logger.info("transformers rf_detr checkpoint %r: cached conversion %s", source, folder)
        return folder
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        # The converter's default projector epsilon (the original's 1e-6), as conversion/convert_transformers_to_hf.py
        # uses it: transformers' default layer_norm_eps is 1e-5 (see `config_from_transformers`).
        convert_transformers_checkpoint(source, staging)
        _move_into_place(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _report_conversion(source, config, folder)
    return folder


def _report_conversion(source: str, config: Path, folder: Path) -> None:
    theirs = json.loads(config.read_text())
    ours = json.loads((folder / "config.json").read_text())
    eps, projector_eps = theirs.get("layer_norm_eps", 1e-5), ours.get("projector_layer_norm_eps")
    note = (
        ""
        if eps == projector_eps
        else f"; projector LayerNorm eps {projector_eps} (the original's) for its layer_norm_eps={eps}"
    )
    logger.warning(
        "converted transformers' rf_detr checkpoint %r (model_type rf_detr -> rfdetr, variant %s, resolution %s, "
        "%d labels kept%s) into %s",
        source,
        ours.get("variant"),
        ours.get("resolution"),
        len(ours.get("id2label", {})),
        note,
        folder,
    )
