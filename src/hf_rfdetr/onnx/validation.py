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
"""`validate=True` of the ONNX export: each exported file against the float32 PyTorch model.

The float32 `model.onnx` is compared query by query on random inputs (`compare_outputs`, within
`validation_tolerances`); every file, float16 and int8 included, on what users see: its detections of the bundled demo
scene matched to PyTorch's (`compare_detections`).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor
from .runtime import ONNX_FILE, QUANTIZED_FILE

if TYPE_CHECKING:
    from .export import RFDetrExportable

logger = logging.getLogger(__name__)


def validate_export(
    model: RFDetrExportable,
    folder: Path,
    files: list[str],
    height: int,
    width: int,
    atol: float,
    fp16: bool,
    used_tolerances: dict[str, float] | None = None,
    detections: dict[str, dict[str, float]] | None = None,
    methods: dict[str, str] | None = None,
) -> dict[str, dict[str, float]]:
    """Validate every file of `files` against the float32 PyTorch model; returns max |ORT - PyTorch| per file and
    output at batch sizes 1 and 3 on random inputs (see `compare_outputs`).

    Two checks, both raising `ValueError`:

    - float32 `model.onnx`, query by query: within `validation_tolerances` (recorded in `used_tolerances`) on random
      inputs, unless the input's two-stage ranking has a near-tie (then a warning says so).
    - every file, on what users see (`compare_detections`, recorded in `detections`): the detections of the bundled
      demo scene (as is at batch 1; as is, mirrored and upside down at batch 3) above `DETECTION_THRESHOLD` must
      match PyTorch's by class and IoU, their scores within `DETECTION_SCORE_TOLERANCE`. This is the check of the
      float16 and int8 files: their rounding reorders near-tied two-stage proposals, which gives those queries other
      embeddings, so their per-query differences (recorded too) reach O(1) for a correct graph (the demo checkpoint
      in float16: logits 1.2, boxes 0.25 on the demo scene; 0.7 / 0.96 on random inputs) while the detections agree
      (scores within 0.011, IoU >= 0.995).

    `methods` gets one line per file saying which check decided.
    """
    from .runtime import RFDetrOnnxModel

    generator = torch.Generator().manual_seed(0)
    model = model.eval()
    if model.dtype != torch.float32:  # a half-precision model (a float16 folder under transformers 5's dtype="auto")
        model = copy.deepcopy(model).float()  # exports its weights in float32: compare with what was exported
    scenes = _validation_scenes(model, folder, height, width)
    results: dict[str, dict[str, float]] = {}
    for file_name in files:
        kind = "int8" if file_name == QUANTIZED_FILE else "float16" if fp16 else "float32"
        onnx_model = RFDetrOnnxModel.from_pretrained(folder, file_name=file_name)
        differences = {}
        for batch_size in (1, 3):
            pixel_values = torch.rand(batch_size, model.config.num_channels, height, width, generator=generator)
            with torch.no_grad():
                expected = model(pixel_values=pixel_values.to(model.device))
            comparison = compare_outputs(expected, onnx_model(pixel_values=pixel_values))
            tolerances = validation_tolerances(expected, atol)
            if used_tolerances is not None and file_name == ONNX_FILE:
                used_tolerances.update({f"{name}@batch{batch_size}": value for name, value in tolerances.items()})
            differences.update({f"{name}@batch{batch_size}": value for name, value in comparison.items()})
            failed = [name for name, tolerance in tolerances.items() if comparison[name] > tolerance]
            if kind != "float32" or not failed:
                continue
            name = max(failed, key=lambda output: comparison[output] / tolerances[output])
            message = (
                f"{folder / file_name}: onnxruntime differs from PyTorch by {comparison[name]:.2e} > atol {atol}"
                + (
                    f" + {MASK_RTOL:g} x max |mask logit| {(tolerances[name] - atol) / MASK_RTOL:.1f} = "
                    f"{tolerances[name]:.2e}"
                    if name == "pred_masks"
                    else ""
                )
                + f" in {name}"
            )
            if comparison["proposal_score_gap"] >= TIE_GAP:
                raise ValueError(message)
            logger.warning(
                "%s at batch %d, where two two-stage proposal scores are %.1e apart (relative): rounding can rank them the "
                "other way round, which moves both to other queries (typical of untrained weights)",
                message,
                batch_size,
                comparison["proposal_score_gap"],
            )
        results[file_name] = differences
        checked = _check_detections(model, onnx_model, folder / file_name, kind, scenes)
        if detections is not None:
            detections[file_name] = checked
        if methods is not None:
            methods[file_name] = _validation_method(kind, atol, checked)
    return results


#: The detection check of `validate=True`: detections scoring above DETECTION_THRESHOLD + DETECTION_MARGIN on either
#: side need a partner of the same class with IoU >= DETECTION_IOU (both sides listed down to threshold - margin).
DETECTION_THRESHOLD = 0.5
DETECTION_MARGIN = 0.05
DETECTION_IOU = 0.7
#: The largest score difference of matched detections, per file kind. float16: the demo checkpoint drifts by 0.011
#: at most; int8: `match_detections`' default, as its error depends on the CPU's int8 kernels (README).
DETECTION_SCORE_TOLERANCE = {"float32": 0.05, "float16": 0.05, "int8": 0.1}


def _validation_scenes(model: RFDetrExportable, folder: Path, height: int, width: int) -> torch.Tensor | None:
    """The detection check's inputs: the bundled demo scene as is, mirrored and upside down, through the export's
    processor (None for a model that does not take RGB images)."""
    if model.config.num_channels != 3:
        return None
    from PIL import Image

    from ..demo_assets import DEMO_IMAGE

    scene = Image.open(DEMO_IMAGE).convert("RGB")
    images = [scene, scene.transpose(Image.Transpose.FLIP_LEFT_RIGHT), scene.transpose(Image.Transpose.FLIP_TOP_BOTTOM)]
    processor = RFDetrImageProcessor.from_pretrained(folder)
    pixel_values = processor(images, return_tensors="pt")["pixel_values"]
    if tuple(pixel_values.shape[-2:]) != (height, width):
        raise ValueError(
            f"{folder}: the saved processor gives {tuple(pixel_values.shape[-2:])} inputs, not {height}x{width}"
        )
    return pixel_values


def compare_detections(
    processor: RFDetrImageProcessor,
    expected: Any,
    actual: Any,
    image_size: tuple[int, int],
    score_tolerance: float,
    id2label: dict[int, str] | None = None,
) -> list[Any]:
    """Per image, `match_detections` of the post-processed detections of `expected` and `actual` (model outputs)
    with the `DETECTION_*` rule, boxes in pixels of `image_size` (height, width), labelled with `id2label`."""
    from .quantization import match_detections

    def listed(outputs: Any) -> list[list[dict]]:
        results = processor.post_process_object_detection(
            {"logits": outputs["logits"].float(), "pred_boxes": outputs["pred_boxes"].float()},
            DETECTION_THRESHOLD - DETECTION_MARGIN,
            [image_size] * len(outputs["logits"]),
        )
        names = ("xmin", "ymin", "xmax", "ymax")
        return [
            [
                {
                    "label": (id2label or {}).get(int(label), str(int(label))),
                    "score": float(score),
                    "box": dict(zip(names, map(float, box))),
                }
                for score, label, box in zip(result["scores"], result["labels"], result["boxes"])
            ]
            for result in results
        ]

    return [
        match_detections(
            wanted,
            found,
            threshold=DETECTION_THRESHOLD,
            margin=DETECTION_MARGIN,
            iou_threshold=DETECTION_IOU,
            score_tolerance=score_tolerance,
        )
        for wanted, found in zip(listed(expected), listed(actual))
    ]


def _check_detections(
    model: RFDetrExportable, onnx_model: Any, path: Path, kind: str, scenes: torch.Tensor | None
) -> dict[str, float]:
    """The detection check of one file (see `_validate`): per batch size, how many PyTorch detections it compared
    (score >= threshold + margin), the largest score drift and the smallest IoU of the matched pairs."""
    if scenes is None:
        return {}
    processor = RFDetrImageProcessor.from_pretrained(path.parent)
    tolerance = DETECTION_SCORE_TOLERANCE[kind]
    checked: dict[str, float] = {}
    for batch in (scenes[:1], scenes):
        with torch.no_grad():
            expected = model(pixel_values=batch.to(model.device))
        matches = compare_detections(
            processor,
            expected,
            onnx_model(pixel_values=batch),
            tuple(scenes.shape[-2:]),
            tolerance,
            model.config.id2label,
        )
        problems = [f"image {index}: {line}" for index, match in enumerate(matches) for line in match.problems()]
        if problems:
            raise ValueError(
                f"{path} ({kind}): its detections of the demo scene differ from PyTorch's (same class, IoU >= "
                f"{DETECTION_IOU}, score within {tolerance} above {DETECTION_THRESHOLD + DETECTION_MARGIN:g}): "
                + "; ".join(problems[:8])
            )
        high = DETECTION_THRESHOLD + DETECTION_MARGIN
        pairs = [pair for match in matches for pair in match.pairs if max(pair[0]["score"], pair[1]["score"]) >= high]
        suffix = f"@batch{len(batch)}"
        checked[f"detections{suffix}"] = float(sum(pair[0]["score"] >= high for pair in pairs))
        checked[f"max_score_drift{suffix}"] = max((abs(e["score"] - a["score"]) for e, a, _ in pairs), default=0.0)
        checked[f"min_iou{suffix}"] = min((iou for _, _, iou in pairs), default=1.0)
    if not checked["detections@batch3"]:
        logger.warning(
            "%s: the model detects nothing above %g in the demo scene, so the detection check compared nothing%s",
            path,
            DETECTION_THRESHOLD + DETECTION_MARGIN,
            "" if kind == "float32" else f" and {kind} outputs were not checked: compare detections on your own images",
        )
    return checked


def _validation_method(kind: str, atol: float, checked: dict[str, float]) -> str:
    rule = (
        f"detections of the demo scene above {DETECTION_THRESHOLD + DETECTION_MARGIN:g} matched to PyTorch's (same "
        f"class, IoU >= {DETECTION_IOU}, score within {DETECTION_SCORE_TOLERANCE[kind]}): "
        f"{int(checked.get('detections@batch3', 0))} at batch 3"
        if checked
        else "no detection check (the model does not take RGB images)"
    )
    if kind == "float32":
        return f"per query: max |ORT - PyTorch| <= atol {atol:g} on random inputs; and {rule}"
    return (
        f"{kind}: {rule}. Per-query differences are recorded but not checked: {kind} rounding reorders near-tied "
        "two-stage proposals, which moves them to other queries"
    )


#: Proposal scores closer than this (relative to the largest) may be ranked differently by two correct runtimes.
TIE_GAP = 1e-5
#: Mask logits may also differ by this fraction of their largest magnitude: they are dot products over d_model
#: channels whose float32 rounding grows with the terms, not with the result. Measured on Seg Nano (perturbed random
#: weights, mask logits up to 41): PyTorch float32 itself is 7e-5 to 9e-5 away from PyTorch float64, onnxruntime
#: 8e-5, and the two float32 runtimes 1.0e-4 to 1.3e-4 (3e-6 relative) apart (benchmarks/segmentation_onnx_parity.py).
MASK_RTOL = 5e-6


def validation_tolerances(expected: Any, atol: float) -> dict[str, float]:
    """The largest max |ORT - PyTorch| accepted per output: `atol` for `logits` and `pred_boxes`; for `pred_masks`
    `atol + MASK_RTOL * max |expected mask logit|` (1e-4 + 2e-4 for Seg Nano's logits of about 40)."""
    tolerances = {"logits": atol, "pred_boxes": atol}
    if expected.get("pred_masks") is not None:
        tolerances["pred_masks"] = atol + MASK_RTOL * expected["pred_masks"].float().abs().max().item()
    return tolerances


def compare_outputs(expected: Any, actual: Any) -> dict[str, float]:
    """Max |actual - expected| of `logits` and `pred_boxes` (and `pred_masks` when `expected` has them), query by
    query, and `proposal_score_gap`: the smallest
    difference between the ranked two-stage scores (max class logit) of the selected proposals in `expected`,
    relative to the largest score.

    The two-stage selection ranks proposals with `topk`; each rank has its own learned query embedding. Two scores
    within rounding of each other (a gap below `TIE_GAP`, common with untrained weights) may be ranked the other way
    round by another runtime, which changes those queries' outputs by O(1) while every operation agrees to 1e-6.
    """
    ranked = expected["enc_logits"].float().amax(dim=-1) if expected.get("enc_logits") is not None else None
    gap = float("inf")
    if ranked is not None and ranked.shape[1] > 1:
        gap = ((ranked[:, :-1] - ranked[:, 1:]).abs().min() / ranked.abs().max().clamp(min=1e-12)).item()
    names = ["logits", "pred_boxes"] + (["pred_masks"] if expected.get("pred_masks") is not None else [])
    missing = [name for name in names if actual.get(name) is None]
    if missing:
        raise ValueError(f"the outputs to compare have no {missing} (expected {names})")
    return {name: (actual[name].float().cpu() - expected[name].float().cpu()).abs().max().item() for name in names} | {
        "proposal_score_gap": gap
    }
