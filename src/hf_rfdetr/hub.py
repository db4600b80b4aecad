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
"""Upload an RF-DETR model (weights, config, image processor, model card and optionally its code) to the Hub."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from .model_card import (
    Evaluation,
    card_fields,
    describe_source,
    is_generated_card,
    load_evaluation_file,
    normalize_metrics,
    read_evaluations,
    render_model_card,
)
from .models.rfdetr.configuration_rfdetr import RFDetrConfig
from .models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor
from .models.rfdetr.modeling_rfdetr import RFDetrForInstanceSegmentation, RFDetrForObjectDetection, model_class_for

#: Files carrying the model apart from its code.
MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "README.md")


class HubError(OSError):
    """An upload to the Hub failed; the message says which repository and what to check."""


def save_for_hub(
    model_or_folder: RFDetrForObjectDetection | str | os.PathLike,
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    include_code: bool = True,
    metrics: dict[str, float] | list[Evaluation] | str | os.PathLike | None = None,
    dataset: str | None = None,
    source: str | None = None,
    training: str | None = None,
    image_processor: RFDetrImageProcessor | None = None,
) -> Path:
    """Write what `push_to_hub` uploads into `output_dir`: `model.safetensors`, `config.json`,
    `preprocessor_config.json`, the model card `README.md` and, with `include_code`, the model code (the `.py` files
    and the `auto_map` that `trust_remote_code=True` loads).

    Args:
        model_or_folder: an `RFDetrForObjectDetection` or a saved model folder (`fine_tune`'s output, a converted
            checkpoint, anything `save_pretrained` wrote).
        metrics: COCO metrics for the card: a dict (`map`, `map_50`, ...), `Evaluation`s, or a JSON file
            (`hf-rfdetr eval --output-json`, `eval_results.json`). Default: what training left in the folder.
        dataset: the training dataset, a Hub dataset id (linked and in the card metadata) or a description.
        source: where the weights come from, for the card.
        training: one line on how the model was trained, for the card.
        image_processor: the processor to save (default: the folder's, else the config's default).

    Returns:
        `Path(output_dir)`.
    """
    output_dir = Path(output_dir)
    folder = None if isinstance(model_or_folder, torch.nn.Module) else _check_folder(model_or_folder)
    model = _load_model(folder) if folder is not None else model_or_folder
    if image_processor is None:
        has_processor = folder is not None and (folder / "preprocessor_config.json").is_file()
        image_processor = (
            RFDetrImageProcessor.from_pretrained(folder)
            if has_processor
            else RFDetrImageProcessor.from_config(model.config)
        )
    model.save_pretrained(output_dir)
    image_processor.save_pretrained(output_dir)
    if not include_code:
        _remove_code(output_dir)
    existing = folder / "README.md" if folder is not None else None
    if existing is not None and existing.is_file() and not is_generated_card(existing.read_text(encoding="utf-8")):
        shutil.copyfile(existing, output_dir / "README.md")  # a card the user wrote: upload it as it is
        return output_dir
    previous = card_fields(existing) if existing is not None else {}
    card = render_model_card(
        model.config,
        sum(parameter.numel() for parameter in model.parameters()),
        repo_id=repo_id,
        source=source or previous.get("source") or describe_source(folder),
        dataset=dataset or previous.get("dataset"),
        evaluations=_evaluations(metrics, folder),
        training=training or previous.get("training"),
        remote_code=include_code,
        num_top_queries=image_processor.num_top_queries,
    )
    (output_dir / "README.md").write_text(card, encoding="utf-8")
    return output_dir


def push_to_hub(
    model_or_folder: RFDetrForObjectDetection | str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload RF-DETR model",
    include_code: bool = True,
    metrics: dict[str, float] | list[Evaluation] | str | os.PathLike | None = None,
    dataset: str | None = None,
    api: Any = None,
    source: str | None = None,
    training: str | None = None,
    image_processor: RFDetrImageProcessor | None = None,
) -> Any:
    """Upload a model or a saved model folder to the Hub repository `repo_id` (created if needed).

    The upload holds `model.safetensors`, `config.json`, `preprocessor_config.json`, a model card (`README.md`, from
    `hf_rfdetr.model_card`: variant, parameters, resolution, labels, metrics, usage) and, unless `include_code=False`,
    the model code with its `auto_map` (so that `trust_remote_code=True` loads it without `hf_rfdetr`). A folder's own
    README.md is uploaded unchanged when the user wrote it (it lacks the generator's marker line).

    Args:
        token: a Hub token (default: the one of `hf auth login` / `HF_TOKEN`).
        private: create the repository private (ignored when it exists).
        api: an object with `create_repo` and `upload_folder` as `huggingface_hub.HfApi` (default: a new `HfApi`).
        metrics, dataset, source, training, image_processor: see `save_for_hub`.

    Returns:
        What `api.upload_folder` returns (a `huggingface_hub.CommitInfo` with the commit URL).

    Raises:
        HubError: the Hub refused or could not be reached (bad token, no access, offline, invalid repository id).
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)  # before the model is written out for upload
    except HFValidationError as error:
        raise _hub_error(error, repo_id) from error
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    with tempfile.TemporaryDirectory(prefix="hf_rfdetr_push_") as staging:
        save_for_hub(
            model_or_folder,
            staging,
            repo_id,
            include_code=include_code,
            metrics=metrics,
            dataset=dataset,
            source=source,
            training=training,
            image_processor=image_processor,
        )
        try:
            created = api.create_repo(repo_id, token=token, private=private, exist_ok=True, repo_type="model")
            repo_id = getattr(created, "repo_id", None) or repo_id
            return api.upload_folder(
                folder_path=staging, repo_id=repo_id, token=token, commit_message=commit_message, repo_type="model"
            )
        except Exception as error:  # huggingface_hub's errors (HTTP, offline, no token, bad id) and network errors
            raise _hub_error(error, repo_id) from error


def _hub_error(error: Exception, repo_id: str) -> HubError:
    """A `HubError` naming the repository, the Hub's own message and what to check."""
    name = type(error).__name__
    message = str(error).strip().splitlines()[0] if str(error).strip() else name
    status = getattr(getattr(error, "response", None), "status_code", None)
    if name in ("OfflineModeIsEnabled",) or "offline" in message.lower():
        hint = "the Hub is disabled (HF_HUB_OFFLINE=1): unset it to upload"
    elif status in (401, 403) or name in ("LocalTokenNotFoundError", "GatedRepoError"):
        hint = "log in with `hf auth login`, or pass a token with write access (--token / HF_TOKEN)"
    elif name in ("HFValidationError",):
        hint = "the repository id must look like ORG_OR_USER/NAME"
    else:
        hint = "check the repository id, your token (`hf auth login`, --token) and the network"
    return HubError(f"upload to {repo_id!r} failed: {name}: {message} ({hint})")


def _check_folder(path: str | os.PathLike) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {str(folder)!r} does not exist")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{str(folder)!r} has no config.json: not a saved model folder")
    return folder


def _load_model(folder: Path) -> RFDetrForObjectDetection | RFDetrForInstanceSegmentation:
    """The folder's model (its task class: a segmentation folder keeps its mask head), in the dtype its weights were
    saved in."""
    model = model_class_for(RFDetrConfig.from_pretrained(folder)).from_pretrained(folder)
    dtypes = {parameter.dtype for parameter in _saved_tensors(folder)}
    if len(dtypes) == 1:
        model.to(dtypes.pop())
    return model.eval()


def _saved_tensors(folder: Path) -> list[torch.Tensor]:
    """A few floating-point tensors of the folder's safetensors (their dtype is the saved one)."""
    from safetensors import safe_open

    tensors = []
    for path in sorted(folder.glob("*.safetensors"))[:1]:
        with safe_open(str(path), "pt") as handle:
            for key in list(handle.keys())[:8]:
                tensor = handle.get_tensor(key)
                if tensor.is_floating_point():
                    tensors.append(tensor)
    return tensors


def _remove_code(folder: Path) -> None:
    """Drop the model code and the `auto_map` entries that point at it."""
    for path in folder.glob("*.py"):
        path.unlink()
    for name in ("config.json", "preprocessor_config.json"):
        path = folder / name
        if path.is_file():
            document = json.loads(path.read_text())
            if document.pop("auto_map", None) is not None:
                path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def _evaluations(
    metrics: dict[str, float] | list[Evaluation] | str | os.PathLike | None, folder: Path | None
) -> list[Evaluation]:
    if metrics is None:
        return read_evaluations(folder) if folder is not None else []
    if isinstance(metrics, (str, os.PathLike)):
        return [load_evaluation_file(metrics)]
    if isinstance(metrics, dict):
        return [Evaluation("evaluation", normalize_metrics(metrics))]
    return list(metrics)


__all__ = ["MODEL_FILES", "HubError", "push_to_hub", "save_for_hub"]
