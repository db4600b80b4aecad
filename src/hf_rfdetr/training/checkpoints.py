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
"""Crash-safe Trainer checkpoints: a completeness marker written last, resuming from the newest complete checkpoint,
and rotation that only ever counts (and deletes) complete ones.

`transformers.Trainer` writes `checkpoint-N/` file by file, so a process killed during a save leaves a folder that
looks like a checkpoint but lacks some of its files. `RFDetrTrainer` therefore writes `checkpoint_complete.json` into
the folder after everything else (including the EMA weights and the collator's random state) is on disk, listing every
file with its size. A folder is complete when the marker is there and every file it lists has the listed size, which
also catches a checkpoint that was half deleted or half overwritten after it was marked. Resuming with `True` takes
the newest complete checkpoint and names the incomplete ones it skipped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

#: Written last into a checkpoint folder: `{"global_step": N, "files": {relative path: size in bytes}}`.
COMPLETE_MARKER = "checkpoint_complete.json"
_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def checkpoint_step(folder: str | os.PathLike) -> int | None:
    """The step N of a `checkpoint-N` folder name, or None for other names."""
    match = _CHECKPOINT_NAME.match(Path(folder).name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The `checkpoint-N` folders of `output_dir`, complete or not, by increasing N."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [path for path in folder.iterdir() if path.is_dir() and checkpoint_step(path) is not None]
    return sorted(found, key=checkpoint_step)


def _files(folder: Path) -> dict[str, int]:
    """Every file under `folder` except the marker, as relative path -> size."""
    return {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != COMPLETE_MARKER
    }


def incompleteness(folder: str | os.PathLike) -> str | None:
    """Why `folder` is not a complete checkpoint (None when it is)."""
    folder = Path(folder)
    marker = folder / COMPLETE_MARKER
    if not marker.is_file():
        return f"it has no {COMPLETE_MARKER} (its save was interrupted, or another trainer wrote it)"
    try:
        listed = json.loads(marker.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"its {COMPLETE_MARKER} is unreadable ({error})"
    for name, size in listed.items():
        path = folder / name
        if not path.is_file():
            return f"{name}, listed in its {COMPLETE_MARKER}, is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, its {COMPLETE_MARKER} lists {size}"
    return None


def is_complete(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a checkpoint whose save finished (see `incompleteness`)."""
    return incompleteness(folder) is None


def _fsync(path: Path) -> None:
    """Flush a file or folder to disk (folders: their entries; ignored where the platform cannot)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def mark_complete(folder: str | os.PathLike, global_step: int) -> None:
    """Flush every file of `folder` to disk, then write its marker atomically (temporary file + rename)."""
    folder = Path(folder)
    files = _files(folder)
    for name in files:
        _fsync(folder / name)
    for sub_folder in {(folder / name).parent for name in files}:
        _fsync(sub_folder)
    temporary = folder / f".{COMPLETE_MARKER}.tmp"
    temporary.write_text(json.dumps({"global_step": int(global_step), "files": files}, indent=1))
    _fsync(temporary)
    os.replace(temporary, folder / COMPLETE_MARKER)
    _fsync(folder)


def mark_incomplete(folder: str | os.PathLike) -> None:
    """Remove the marker first, so that a folder being overwritten or deleted never looks complete meanwhile."""
    marker = Path(folder) / COMPLETE_MARKER
    if marker.exists():
        marker.unlink()
        _fsync(marker.parent)


def remove_checkpoint(folder: str | os.PathLike) -> None:
    """Delete a checkpoint folder, un-marking it first (a kill during the deletion leaves an incomplete folder)."""
    mark_incomplete(folder)
    shutil.rmtree(folder, ignore_errors=True)


def last_complete_checkpoint(output_dir: str | os.PathLike) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint of `output_dir` (None if there is none), and the newer, incomplete ones it
    skipped, each with the reason."""
    skipped = []
    for folder in reversed(list_checkpoints(output_dir)):
        reason = incompleteness(folder)
        if reason is None:
            return folder, skipped
        skipped.append((folder, reason))
    return None, skipped


def resolve_checkpoint(resume: str | os.PathLike | bool | None, output_dir: str | os.PathLike) -> str | None:
    """The checkpoint folder to resume from: None for no resume, the newest complete one of `output_dir` for True
    (logging a warning that names each incomplete one skipped), or the given folder after checking it is complete.
    Raises `ValueError` / `FileNotFoundError` explaining why not."""
    if resume is None or resume is False:
        return None
    if resume is True:
        found, skipped = last_complete_checkpoint(output_dir)
        if found is None:
            detail = f" (only incomplete ones: {', '.join(folder.name for folder, _ in skipped)})" if skipped else ""
            raise ValueError(f"resume=True but {output_dir} holds no complete checkpoint to resume from{detail}")
        for folder, reason in skipped:
            logger.warning("Resuming from %s: skipped the incomplete checkpoint %s, as %s.", found, folder, reason)
        return str(found)
    folder = Path(resume)
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot resume from {folder}: no such checkpoint folder")
    reason = incompleteness(folder)
    if reason is not None:
        newest, _ = last_complete_checkpoint(folder.parent)
        hint = f"; the newest complete checkpoint there is {newest}" if newest else ""
        raise ValueError(f"cannot resume from {folder}: it is not a complete checkpoint, as {reason}{hint}")
    return str(folder)


def rotate_checkpoints(
    output_dir: str | os.PathLike, limit: int | None, current: str | os.PathLike, best: str | os.PathLike | None = None
) -> list[Path]:
    """After `current` was marked complete: delete incomplete checkpoints of earlier steps (left by interrupted saves,
    never resumable) and, with a `limit`, the oldest complete ones beyond it. `current` and `best` are always kept,
    so the newest complete checkpoint is never deleted. Returns the deleted folders."""
    current = Path(current)
    step = checkpoint_step(current)
    checkpoints = list_checkpoints(output_dir)
    complete = [folder for folder in checkpoints if is_complete(folder)]
    deleted = [folder for folder in checkpoints if folder not in complete and checkpoint_step(folder) < step]
    if limit is not None and limit > 0:
        protected = {current.resolve()} | ({Path(best).resolve()} if best else set())
        others = [folder for folder in complete if folder.resolve() not in protected]
        deleted += others[: max(0, len(others) - max(0, limit - len(protected)))]
    for folder in deleted:
        logger.info("Deleting the checkpoint %s (save_total_limit=%s or an interrupted save).", folder, limit)
        remove_checkpoint(folder)
    return deleted
