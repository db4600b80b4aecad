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

An `output_dir` can also hold checkpoints of an earlier run (another dataset, other labels) when a new run is started
there. So a run that starts afresh records a run id in `output_dir/_training_run.json`, every checkpoint it saves
carries that id in its marker, and `True` resumes the newest complete checkpoint of the recorded run, ignoring (and
naming) those of other runs; a resumed run keeps its checkpoint's id. Checkpoints without an id (written before run
ids) are resumed as before while `output_dir` has no run record.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors import safe_open
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

#: Written last into a checkpoint folder: `{"global_step": N, "files": {relative path: size in bytes}}`, plus
#: `"run_id"` when the trainer knows its run.
COMPLETE_MARKER = "checkpoint_complete.json"
#: In `output_dir`: `{"run_id": ..., "started": ...}`, the training run whose checkpoints `resume=True` continues. The
#: leading underscore keeps it out of `Trainer.push_to_hub`'s uploads (which ignore `_*`).
RUN_RECORD = "_training_run.json"
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


def _write_atomically(path: Path, content: dict) -> None:
    """Write `content` as JSON to `path` through a temporary file and a rename: never half written."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(content, indent=1))
    _fsync(temporary)
    os.replace(temporary, path)
    _fsync(path.parent)


def mark_complete(folder: str | os.PathLike, global_step: int, run_id: str | None = None) -> None:
    """Flush every file of `folder` to disk, then write its marker atomically (temporary file + rename), with the id
    of the training run that saved it when known."""
    folder = Path(folder)
    files = _files(folder)
    for name in files:
        _fsync(folder / name)
    for sub_folder in {(folder / name).parent for name in files}:
        _fsync(sub_folder)
    content = {"global_step": int(global_step), "files": files} | ({"run_id": run_id} if run_id else {})
    _write_atomically(folder / COMPLETE_MARKER, content)


def checkpoint_run_id(folder: str | os.PathLike) -> str | None:
    """The run id in the marker of `folder` (None without one: no marker, or written before run ids)."""
    try:
        run_id = json.loads((Path(folder) / COMPLETE_MARKER).read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
    return run_id if isinstance(run_id, str) else None


def recorded_run_id(output_dir: str | os.PathLike) -> str | None:
    """The run id recorded in `output_dir/_training_run.json` (None without a readable record)."""
    path = Path(output_dir) / RUN_RECORD
    if not path.is_file():
        return None
    try:
        run_id = json.loads(path.read_text()).get("run_id")
    except (OSError, ValueError, AttributeError) as error:
        logger.warning("Ignoring the unreadable training run record %s (%s).", path, error)
        return None
    return run_id if isinstance(run_id, str) else None


def record_run(output_dir: str | os.PathLike, run_id: str) -> None:
    """Record `run_id` as the run of `output_dir` that `resume=True` continues."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _write_atomically(folder / RUN_RECORD, {"run_id": run_id, "started": started})


def start_run(output_dir: str | os.PathLike) -> str:
    """Start a fresh training run in `output_dir`: record a new run id and return it. Checkpoints already there are
    another run's: one warning names them; they are left alone (and `resume=True` will not take them)."""
    run_id = uuid.uuid4().hex
    earlier = list_checkpoints(output_dir)
    if earlier:
        logger.warning(
            "%s already holds %s of another training run: this new run (id %s) leaves them alone and resume=True "
            "will not continue them, but a checkpoint it saves at the same step replaces that folder. Use another "
            "output_dir to keep them apart, or resume one of them by passing its folder.",
            output_dir,
            ", ".join(folder.name for folder in earlier),
            run_id,
        )
    record_run(output_dir, run_id)
    return run_id


def _of_run(folder: Path, run_id: str | None) -> bool:
    return run_id is None or checkpoint_run_id(folder) == run_id


def other_runs_checkpoints(output_dir: str | os.PathLike, run_id: str | None) -> list[Path]:
    """The complete checkpoints of `output_dir` that another run than `run_id` saved (none when `run_id` is None)."""
    return [folder for folder in list_checkpoints(output_dir) if is_complete(folder) and not _of_run(folder, run_id)]


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


def last_complete_checkpoint(
    output_dir: str | os.PathLike, run_id: str | None = None
) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint of `output_dir` (None if there is none), of the run `run_id` when given (complete
    checkpoints of other runs are passed over), and the newer, incomplete ones it skipped, each with the reason."""
    skipped = []
    for folder in reversed(list_checkpoints(output_dir)):
        reason = incompleteness(folder)
        if reason is None and _of_run(folder, run_id):
            return folder, skipped
        if reason is not None:
            skipped.append((folder, reason))
    return None, skipped


def _names(folders: list[Path]) -> str:
    return ", ".join(folder.name for folder in folders)


def _newest_of_the_recorded_run(output_dir: str | os.PathLike) -> str:
    """`resolve_checkpoint(True, ...)`: the newest complete checkpoint of the run recorded in `output_dir` (of any
    run when none is recorded), warning about what it passed over."""
    run_id = recorded_run_id(output_dir)
    found, skipped = last_complete_checkpoint(output_dir, run_id)
    others = other_runs_checkpoints(output_dir, run_id)
    if found is None:
        detail = f" (only incomplete ones: {_names([folder for folder, _ in skipped])})" if skipped else ""
        if run_id is None or not others:
            raise ValueError(f"resume=True but {output_dir} holds no complete checkpoint to resume from{detail}")
        raise ValueError(
            f"resume=True but {output_dir} holds no complete checkpoint of the training run recorded in its "
            f"{RUN_RECORD} (run {run_id}, which was killed before its first checkpoint or whose checkpoints were "
            f"deleted){detail}; {_names(others)} belong to other runs (other data or settings): pass one of them as "
            "resume=<its folder> to continue it, or resume=None to start afresh"
        )
    for folder, reason in skipped:
        logger.warning("Resuming from %s: skipped the incomplete checkpoint %s, as %s.", found, folder, reason)
    if others:
        logger.warning(
            "Resuming from %s, a checkpoint of the training run recorded in %s (run %s): ignored %s, saved by other "
            "runs in the same folder.",
            found,
            Path(output_dir) / RUN_RECORD,
            run_id,
            _names(others),
        )
    return str(found)


def resolve_checkpoint(resume: str | os.PathLike | bool | None, output_dir: str | os.PathLike) -> str | None:
    """The checkpoint folder to resume from: None for no resume, the newest complete one of `output_dir` for True (of
    the run recorded in `output_dir` when there is a record; logging warnings that name each incomplete checkpoint
    skipped and those of other runs), or the given folder after checking it is complete.
    Raises `ValueError` / `FileNotFoundError` explaining why not."""
    if resume is None or resume is False:
        return None
    if resume is True:
        return _newest_of_the_recorded_run(output_dir)
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
    output_dir: str | os.PathLike,
    limit: int | None,
    current: str | os.PathLike,
    best: str | os.PathLike | None = None,
    run_id: str | None = None,
) -> list[Path]:
    """After `current` was marked complete: delete incomplete checkpoints of earlier steps (left by interrupted saves,
    never resumable) and, with a `limit`, the oldest complete ones beyond it, counting only those of the run `run_id`
    when given (other runs' checkpoints are left alone). `current` and `best` are always kept, so the newest complete
    checkpoint is never deleted. Returns the deleted folders."""
    current = Path(current)
    step = checkpoint_step(current)
    checkpoints = list_checkpoints(output_dir)
    incomplete = [folder for folder in checkpoints if not is_complete(folder)]
    complete = [folder for folder in checkpoints if folder not in incomplete and _of_run(folder, run_id)]
    deleted = [folder for folder in incomplete if checkpoint_step(folder) < step]
    if limit is not None and limit > 0:
        protected = {current.resolve()} | ({Path(best).resolve()} if best else set())
        others = [folder for folder in complete if folder.resolve() not in protected]
        deleted += others[: max(0, len(others) - max(0, limit - len(protected)))]
    for folder in deleted:
        logger.info("Deleting the checkpoint %s (save_total_limit=%s or an interrupted save).", folder, limit)
        remove_checkpoint(folder)
    return deleted


def _saved_shapes(folder: Path) -> dict[str, tuple[int, ...]] | None:
    """Name -> shape of the weights in `folder`'s `model.safetensors` (or its shards), read from the file headers;
    None when the checkpoint has no safetensors weights (an adapter, `save_safetensors=False`)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
    else:
        files = ["model.safetensors"] if (folder / "model.safetensors").is_file() else []
    if not files:
        return None
    shapes = {}
    for name in files:
        with safe_open(folder / name, framework="pt") as weights:
            shapes.update({key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()})
    return shapes


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _differing_fields(saved, model: torch.nn.Module) -> list[str]:
    """The fields of the configuration class's own (its `__init__` arguments) that differ, and `architectures` when
    it does not name the model's class: not the generic ones transformers sets while training (`use_cache`, ...),
    nor the labels (reported apart)."""
    current = model.config
    own = [name for name in inspect.signature(type(current).__init__).parameters if name not in ("self", "kwargs")]
    fields = [
        f"{name}={_short(getattr(saved, name, None))} (the model's: {_short(getattr(current, name, None))})"
        for name in own
        if getattr(saved, name, None) != getattr(current, name, None)
    ]
    if saved.architectures and type(model).__name__ not in saved.architectures:
        fields.append(f"architectures={saved.architectures} (the model's: {type(model).__name__})")
    return fields


def check_checkpoint_fits(folder: str | os.PathLike, model: torch.nn.Module) -> None:
    """Raise `ValueError` when the checkpoint `folder` is not one of `model`: other labels (config.json's id2label),
    or weights of other names or shapes (an architecture change), naming the differing configuration fields. Loading
    it would otherwise fail with a bare size-mismatch RuntimeError, or (same shapes, other labels) train on silently
    with the wrong class names."""
    folder = Path(folder)
    config = getattr(model, "config", None)
    if config is None or not (folder / "config.json").is_file():
        return
    saved = type(config).from_json_file(str(folder / "config.json"))
    problems = []
    if saved.id2label != config.id2label:
        problems.append(f"its labels {_short(saved.id2label, 200)} (the model's: {_short(config.id2label, 200)})")
    shapes = _saved_shapes(folder)
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    if shapes is not None and shapes != expected:
        differing = sorted(name for name in shapes.keys() | expected.keys() if shapes.get(name) != expected.get(name))
        fields = _differing_fields(saved, model)
        if len(saved.id2label) != len(config.id2label):
            fields.append(f"num_labels={len(saved.id2label)} (the model's: {len(config.id2label)})")
        problems.append(
            f"{len(differing)} weight(s) of another name or shape (e.g. {', '.join(differing[:3])}), with the "
            f"configuration fields {', '.join(fields) if fields else '(none differ)'}"
        )
    if problems:
        raise ValueError(
            f"cannot resume from {folder}: it is a checkpoint of another model than the one being trained, with "
            f"{'; and '.join(problems)}. Resume from a checkpoint of this training (the same model and labels), or start "
            "afresh (resume=None) in another output_dir"
        )
