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
"""Stage 3 of converting transformers' own RF-DETR checkpoints: verification against transformers' model.

In: our converted model (stage 2, `weights.py`) and the transformers model it was converted from.
Out: the max |delta| of their outputs on the same deterministic images (`verify_against_transformers`), or a
`CheckpointError` when they disagree.

Numerics: transformers' model computes the same function as the original `rfdetr` package (and as ours), for every
window layout, when its `layer_norm_eps` is 1e-6, the original projector's epsilon; its default is 1e-5 (see
`config_from_transformers` for what that means for a conversion). In float32 it rounds
differently from the original in one place: its projector convolutions receive the channel-permuted (non-contiguous)
output of the channel LayerNorm, which takes another convolution kernel. The ~1e-6 relative difference is harmless
except where two two-stage proposals have nearly tied scores: `topk` may then order them differently, the queries
pair with other learned query embeddings and the outputs of a few queries change completely. Verification therefore
decides in float64, where the two implementations agree to ~1e-6, and reports the float32 deltas next to it.

Segmentation: transformers' mask logits of the decoder layers equal the original's (and ours), but its two-stage
proposals' masks (`enc_outputs_mask_logits`, training only) skip the mask head's `spatial_features_proj`, which the
original applies; ours follow the original, so those are not compared.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from ..conversion import CheckpointError
from ..models.rfdetr.configuration_rfdetr import RFDetrConfig

logger = logging.getLogger(__name__)


def verification_pixel_values(config: RFDetrConfig) -> torch.Tensor:
    """A deterministic batch of two images (the bundled demo picture and its mirror image, or seeded noise without
    the asset) preprocessed by `RFDetrImageProcessor.from_config(config)`: (2, 3, resolution, resolution)."""
    from PIL import Image

    from ..models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor

    asset = Path(__file__).parent.parent / "assets" / "demo.jpg"
    if asset.exists():
        image = Image.open(asset).convert("RGB")
    else:  # pragma: no cover - the asset ships with the package
        noise = torch.rand(480, 640, 3, generator=torch.Generator().manual_seed(0))
        image = Image.fromarray((noise * 255).byte().numpy())
    processor = RFDetrImageProcessor.from_config(config)
    return processor([image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], return_tensors="pt")["pixel_values"]


def _projector_norms(reference: torch.nn.Module) -> list[torch.nn.LayerNorm]:
    """The LayerNorms of transformers' projector (convolution blocks and output norm)."""
    detector = reference.model if hasattr(reference.model, "model") else reference  # segmentation: one level deeper
    projector = detector.model.backbone.projector
    return [module for module in projector.modules() if isinstance(module, torch.nn.LayerNorm)]


def _outputs(model: torch.nn.Module, pixel_values: torch.Tensor, dtype: torch.dtype) -> Any:
    """`model`'s outputs (eval mode, no gradients) on `pixel_values`, computed in `dtype` (on a copy of the model
    for any dtype but float32)."""
    if dtype != torch.float32:
        model = copy.deepcopy(model).to(dtype)
    model.eval()
    with torch.no_grad():
        return model(pixel_values.to(dtype))


def verify_against_transformers(
    model: torch.nn.Module,
    reference: torch.nn.Module,
    pixel_values: torch.Tensor | None = None,
    atol: float = 1e-4,
) -> dict[str, float]:
    """Run our converted `model` and transformers' `reference` on the same images and raise if they disagree.

    Decides on float64 copies of both models (max |delta| of logits and pred_boxes <= `atol`): in float32 a few
    near-tied two-stage proposals may leave `topk` in another order (see the module docstring), which says nothing
    about the conversion. When `model` was converted with a `projector_layer_norm_eps` that transformers does not
    use everywhere in its projector (see `config_from_transformers`), the float64 comparison runs against a copy of
    `reference` with that epsilon, so that it checks the weights. The float32 deltas against `reference` as it is
    and the number of queries whose two-stage proposal differs there are reported as well.

    Args:
        pixel_values: (B, 3, H, W); default: `verification_pixel_values(model.config)`.

    Segmentation models also compare `pred_masks` (not the proposals' masks, see the module docstring).

    Returns:
        {"logits", "pred_boxes"} (float64), {"logits_fp32", "pred_boxes_fp32", "reordered_queries_fp32"}, and
        "pred_masks" / "pred_masks_fp32" for segmentation (no "reordered_queries_fp32": transformers' segmentation
        outputs have no proposal boxes).

    Raises:
        CheckpointError: a float64 delta exceeds `atol`; the message carries every delta.
    """
    if pixel_values is None:
        pixel_values = verification_pixel_values(model.config)
    actual, expected = _outputs(model, pixel_values, torch.float32), _outputs(reference, pixel_values, torch.float32)
    compared = ("logits", "pred_boxes", "pred_masks") if model.config.segmentation_head else ("logits", "pred_boxes")
    deltas = {f"{name}_fp32": (actual[name] - expected[name]).abs().max().item() for name in compared}
    if getattr(expected, "enc_outputs_coord_logits", None) is not None:
        reordered = (actual.enc_pred_boxes - expected.enc_outputs_coord_logits).abs().amax(-1) > 1e-3
        deltas["reordered_queries_fp32"] = int(reordered.sum().item())
    eps = model.config.projector_layer_norm_eps
    if any(norm.eps != eps for norm in _projector_norms(reference)):
        reference = copy.deepcopy(reference)
        for norm in _projector_norms(reference):
            norm.eps = eps
    actual, expected = _outputs(model, pixel_values, torch.float64), _outputs(reference, pixel_values, torch.float64)
    for name in compared:
        deltas[name] = (actual[name] - expected[name]).abs().max().item()
    if max(deltas[name] for name in compared) > atol:
        raise CheckpointError(
            f"converted model disagrees with transformers' {type(reference).__name__}: max |delta| {deltas} > {atol}"
        )
    if max(deltas[f"{name}_fp32"] for name in compared) > atol:
        logger.warning(
            "float32 outputs differ from transformers' by %s (%s queries took another two-stage proposal: near-tied "
            "scores ordered differently by rounding); float64 outputs agree (%s)",
            {f"{name}_fp32": deltas[f"{name}_fp32"] for name in compared},
            deltas.get("reordered_queries_fp32", "some"),
            {name: deltas[name] for name in compared},
        )
    return deltas


__all__ = ["verification_pixel_values", "verify_against_transformers"]
