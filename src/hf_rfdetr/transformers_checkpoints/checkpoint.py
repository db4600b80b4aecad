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
"""Stage 4 of converting transformers' own RF-DETR checkpoints: the whole-checkpoint entry point.

In: a folder or Hub repository of transformers' `RfDetrForObjectDetection` / `RfDetrForInstanceSegmentation`.
Out: a folder of this package (`config.json`, `model.safetensors`, `preprocessor_config.json`), made by loading the
transformers model, mapping its configuration and weights (`weights.load_transformers_model`, which uses
`config_mapping.config_from_transformers`) and, on request, verifying the result (`verification`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..conversion import CheckpointError
from .config_mapping import ORIGINAL_PROJECTOR_EPS
from .verification import verify_against_transformers
from .weights import load_transformers_model

logger = logging.getLogger(__name__)


def _processor_resolution(folder_or_repo: str | Path) -> int | None:
    """The square `size` of the checkpoint's `preprocessor_config.json`, when it has one."""
    path = Path(folder_or_repo) / "preprocessor_config.json"
    if not path.is_file():
        try:
            from transformers.utils import cached_file

            resolved = cached_file(
                str(folder_or_repo),
                "preprocessor_config.json",
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except (OSError, ValueError):
            resolved = None
        if resolved is None:
            return None
        path = Path(resolved)
    size = json.loads(path.read_text()).get("size") or {}
    height, width = size.get("height"), size.get("width")
    return int(height) if height and height == width else None


def _transformers_class_name(folder_or_repo: str | Path) -> str:
    """ "RfDetrForInstanceSegmentation" when the checkpoint's config lists it in `architectures`, else
    "RfDetrForObjectDetection"."""
    from transformers import AutoConfig

    try:
        architectures = AutoConfig.from_pretrained(str(folder_or_repo)).architectures or []
    except (OSError, ValueError):
        architectures = []  # from_pretrained names the problem
    segmentation = "RfDetrForInstanceSegmentation" in architectures
    return "RfDetrForInstanceSegmentation" if segmentation else "RfDetrForObjectDetection"


def convert_transformers_checkpoint(
    folder_or_repo: str | Path,
    output_dir: str | Path,
    verify: bool = False,
    resolution: int | None = None,
    projector_layer_norm_eps: float | None = ORIGINAL_PROJECTOR_EPS,
) -> Path:
    """Convert a transformers `RfDetrForObjectDetection` (or, when its config's `architectures` says so,
    `RfDetrForInstanceSegmentation`) folder or Hub repository into this package's format.

    Writes `config.json`, `model.safetensors`, `preprocessor_config.json` (`RFDetrImageProcessor.from_config`) and
    a model card (`README.md`, naming the source checkpoint) to `output_dir`. With `verify`, first runs both models on the same images (`verify_against_transformers`) and
    raises before writing anything if they disagree.

    Args:
        resolution: inference resolution; default: the checkpoint's image processor `size` when square, else see
            `config_from_transformers`.
        projector_layer_norm_eps: the epsilon of all projector LayerNorms. Default: the original `rfdetr` package's
            1e-6 (`ORIGINAL_PROJECTOR_EPS`), which reproduces transformers' model exactly when its `layer_norm_eps`
            is 1e-6 and otherwise computes what the original computes with these weights (transformers' default
            `layer_norm_eps` is 1e-5, which transformers applies only to its projector's convolution blocks: no
            single epsilon here reproduces it; verification then compares against transformers with this epsilon,
            see `verify_against_transformers`). The on-load conversion and `conversion/convert_transformers_to_hf.py`
            use this default. `None`: the checkpoint's `layer_norm_eps` when it is 1e-6, else a `CheckpointError`
            (see `config_from_transformers`).

    Raises:
        CheckpointError: the checkpoint cannot be loaded or converted, or verification fails.
    """
    import transformers

    from ..models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor

    if not hasattr(transformers, "RfDetrForObjectDetection"):
        raise CheckpointError(f"transformers {transformers.__version__} has no RfDetrForObjectDetection (needs 5.x)")
    class_name = _transformers_class_name(folder_or_repo)
    try:
        reference = getattr(transformers, class_name).from_pretrained(str(folder_or_repo)).eval()
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot load {str(folder_or_repo)!r} as transformers' {class_name}: {error}") from error
    if resolution is None:
        resolution = _processor_resolution(folder_or_repo)
    try:
        model = load_transformers_model(
            reference, resolution=resolution, projector_layer_norm_eps=projector_layer_norm_eps
        )
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"{str(folder_or_repo)!r} cannot be converted: {error}") from error
    if verify:
        deltas = verify_against_transformers(model, reference)
        logger.info("verified against transformers' %s: %s", class_name, deltas)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    RFDetrImageProcessor.from_config(model.config).save_pretrained(output_dir)
    _write_model_card(model, output_dir, f"converted from transformers' `{class_name}` checkpoint `{folder_or_repo}`")
    return output_dir


def _write_model_card(model, output_dir: Path, source: str) -> None:
    """The converted folder's model card (`README.md`), as every folder this package writes has one."""
    from ..model_card import carries_code, render_model_card

    card = render_model_card(
        model.config,
        sum(parameter.numel() for parameter in model.parameters()),
        repo_id=output_dir.name,
        source=source,
        remote_code=carries_code(output_dir),
    )
    (output_dir / "README.md").write_text(card, encoding="utf-8")


__all__ = ["convert_transformers_checkpoint"]
