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
"""Dynamic int8 quantisation of an exported RF-DETR, with the ranking-sensitive layers left in float32.

onnxruntime's dynamic quantiser (`quantize_dynamic`) stores the weights of every MatMul / Conv in int8 and quantises
their inputs at run time. Applied to every layer, its error (which also depends on the CPU's int8 kernels: AVX2,
AVX-512 VNNI and ARM dot-product instructions differ) is large enough to change which detections pass the threshold:
on an AVX-512 VNNI CPU the bundled demo checkpoint found a seventh, near-duplicate box that PyTorch scores 0.484 and
int8 0.640. The backbone's linear layers carry most of the weights and time and stay int8, as do the decoder's
attention and feed-forward projections; these stay float32 (`FLOAT_MODULES`, module-name patterns of
`RFDetrForObjectDetection`):

- the projector's convolutions (`model.projector`), which feed every proposal and query;
- the two-stage proposal heads (`model.enc_output`, `model.enc_out_class_embed`, `model.enc_out_bbox_embed`), whose
  scores decide, through top-k, which proposals become queries;
- the decoder's reference-point head and the deformable attention's sampling offsets and attention weights (where
  each query looks);
- the final class and box heads (`class_embed`, `bbox_embed`).

The measurement behind that choice is `benchmarks/int8_exclusions.py` (its docstring has the table): on 20 images,
leaving out the projector and the heads removed every missing, extra and drifted detection, while either alone, or
the whole decoder without the projector, did not; per-channel weights did not help consistently. Graph nodes are
found by name: both exporters (torch.onnx and Optimum) name a layer's node after the module scope that called it
(`/model/decoder/layers.0/cross_attn/sampling_offsets/MatMul`), so a node belongs to a module when its scope path ends
with the module's qualified name (a module nested under another of the same relative name would match too; the
model has none). `quantize_dynamic_int8` refuses a graph in which a float32 module has no node.

A segmentation model (`RFDetrForInstanceSegmentation`) keeps its whole mask head float32 as well
(`SEGMENTATION_FLOAT_MODULES` = `FLOAT_MODULES` + `segmentation_head.*`: per decoder layer a depthwise conv and a
linear layer, the spatial 1x1 projection, the query MLP and projection; 8 small weight nodes of 62 at 2 decoder
layers). Measured by `benchmarks/segmentation_int8.py`: int8 vs float32 instances after
`post_process_instance_segmentation` (top k per image, threshold 0), paired by class and box (`match_detections`);
"unpaired" counts instances without a partner, IoU is the mask IoU of the pairs. No trained Seg checkpoint exists
offline, so the tiny 64 px Seg model (d_model 32) is trained for 600 steps on synthetic scenes (`--train-steps 600`,
3 seeds, 8 held-out scenes each, top 5: 120 instances), as a trained model's masks are confident:

    float32 modules                       int8  float  unpaired  drifted  mean IoU  min IoU  IoU<0.9
    all (control: no int8 node)              0     62         0        0    1.0000   1.0000     0.0%
    all but the mask head                    8     54         0        0    0.9958   0.9600     0.0%
    none (everything int8)                  62      0         8        2    0.9873   0.8929     1.7%
    detection rule, mask head int8          39     23         2        0    0.9946   0.9139     0.0%
    detection rule + mask query MLP         36     26         2        0    0.9941   0.8000     0.8%
    detection rule + mask spatial path      34     28         2        0    0.9962   0.9102     0.0%
    detection rule + mask head (default)    31     31         2        0    0.9966   0.9102     0.0%

The detection rule already removes most of the damage (unpaired 8 -> 2, drifted 2 -> 0); a float32 mask head is the
best setting, by a little, for 8 small nodes. With untrained weights masks are unconfident (logits near 0 over large
areas) and int8 flips many pixels: random tiny (3 seeds x 6 images, top 10) gives mean IoU 0.9385 with the default
(0.9374 with an int8 mask head), random Seg Nano at 312 px (1 seed, 4 images) 0.7891 (0.7809). So int8 Seg exports
are offered, with the mask head float32; check the masks of your own checkpoint (the benchmark takes `--variant`).

`match_detections` compares two lists of detections (PyTorch's and onnxruntime's) by class and box overlap, with a
stated score tolerance, instead of requiring equal counts.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

#: Module-name patterns (fnmatch, over `RFDetrForObjectDetection.named_modules()`) whose layers stay float32.
FLOAT_MODULES: tuple[str, ...] = (
    "model.projector.*",
    "model.enc_output",
    "model.enc_out_class_embed",
    "model.enc_out_bbox_embed.*",
    "model.decoder.ref_point_head.*",
    "model.decoder.layers.*.cross_attn.sampling_offsets",
    "model.decoder.layers.*.cross_attn.attention_weights",
    "class_embed",
    "bbox_embed.*",
)
#: The mask head of `RFDetrForInstanceSegmentation`, also float32 in a segmentation model's int8 export.
MASK_HEAD_FLOAT_MODULES: tuple[str, ...] = ("segmentation_head.*",)
#: `float_modules_for` a segmentation config: the detection ones and the mask head.
SEGMENTATION_FLOAT_MODULES: tuple[str, ...] = FLOAT_MODULES + MASK_HEAD_FLOAT_MODULES
#: The operators onnxruntime's dynamic quantiser turns into integer kernels here.
QUANTIZED_OP_TYPES: tuple[str, ...] = ("MatMul", "Conv", "Gemm")


def float_modules_for(model: nn.Module) -> tuple[str, ...]:
    """The module-name patterns kept float32 in the int8 export of `model`: `FLOAT_MODULES` for a detector,
    `SEGMENTATION_FLOAT_MODULES` for a model with a mask head (`RFDetrForInstanceSegmentation.segmentation_head`)."""
    has_mask_head = isinstance(getattr(model, "segmentation_head", None), nn.Module)
    return SEGMENTATION_FLOAT_MODULES if has_mask_head else FLOAT_MODULES


def float_module_names(model: nn.Module, patterns: Iterable[str] = FLOAT_MODULES) -> list[str]:
    """Qualified names of the leaf modules (no children) of `model` that match one of `patterns`."""
    patterns = tuple(patterns)
    return [
        name
        for name, module in model.named_modules()
        if name and not any(True for _ in module.children()) and any(fnmatch.fnmatchcase(name, p) for p in patterns)
    ]


def node_scope(node_name: str) -> str:
    """The module scope of an exported node as a dotted name: `/model/decoder/layers.0/fc1/MatMul` -> `model.decoder
    .layers.0.fc1` (the last path element is the operator)."""
    return ".".join(part for part in node_name.split("/")[:-1] if part)


def nodes_of_modules(
    graph: Any, module_names: Sequence[str], op_types: Sequence[str] = QUANTIZED_OP_TYPES
) -> list[str]:
    """Names of the `op_types` nodes of an ONNX `graph` that belong to one of `module_names`.

    A node belongs to a module when its scope (`node_scope`) equals the module's qualified name or ends with it after
    a dot: the exporters prefix the scope with the wrapper that was traced (`model.` for torch.onnx's
    `RFDetrOnnxGraph`, nothing for Optimum).
    """
    names = set(module_names)
    selected = []
    for node in graph.node:
        if node.op_type not in op_types:
            continue
        scope = node_scope(node.name)
        parts = scope.split(".")
        if any(".".join(parts[start:]) in names for start in range(len(parts))):
            selected.append(node.name)
    return selected


def quantize_dynamic_int8(
    source: Path,
    target: Path,
    model: nn.Module,
    float_modules: Iterable[str] = FLOAT_MODULES,
    per_channel: bool = False,
) -> list[str]:
    """Write `target`, the dynamically int8-quantised `source`, leaving the nodes of `float_modules` in float32.

    Returns the names of the weight nodes left in float32 (checked: each pattern that matches a module of `model`
    that has weights must match at least one node, otherwise the graph's names are not what this code expects).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    modules = float_module_names(model, float_modules)
    weighted = [name for name in modules if _has_weight_matrix(model.get_submodule(name))]
    excluded = nodes_of_modules(graph, modules)
    found = {node_scope(node) for node in excluded}
    missing = [name for name in weighted if not any(scope == name or scope.endswith("." + name) for scope in found)]
    if missing:
        raise ValueError(
            f"{source}: no MatMul/Conv/Gemm node is named after the module(s) {missing[:5]}, which should stay float32 "
            "in the int8 model; the exporter's node names changed (expected '/<scope>/<module path>/MatMul')"
        )
    quantize_dynamic(
        str(source), str(target), weight_type=QuantType.QInt8, per_channel=per_channel, nodes_to_exclude=excluded
    )
    return excluded


def _has_weight_matrix(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(weight, nn.Parameter) and weight.ndim >= 2


@dataclass
class DetectionMatch:
    """The outcome of `match_detections`: pairs of matched detections, and those that found no partner."""

    #: (expected, actual, IoU) for each matched pair.
    pairs: list[tuple[dict, dict, float]] = field(default_factory=list)
    #: Expected detections above `threshold + margin` without a partner in `actual`.
    missing: list[dict] = field(default_factory=list)
    #: Actual detections above `threshold + margin` without a partner in `expected`.
    extra: list[dict] = field(default_factory=list)
    #: Matched pairs (with one side above `threshold + margin`) whose scores differ by more than `score_tolerance`.
    drifted: list[tuple[dict, dict, float]] = field(default_factory=list)

    @property
    def max_score_drift(self) -> float:
        return max((abs(a["score"] - e["score"]) for e, a, _ in self.pairs), default=0.0)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.drifted)

    def problems(self) -> list[str]:
        """One line per missing, extra or drifted detection (empty when `ok`)."""
        return (
            [f"missing: {_describe(d)}" for d in self.missing]
            + [f"extra: {_describe(d)}" for d in self.extra]
            + [f"score drift: {_describe(e)} -> {a['score']:.3f}" for e, a, _ in self.drifted]
        )


def match_detections(
    expected: Sequence[dict],
    actual: Sequence[dict],
    *,
    threshold: float,
    margin: float = 0.05,
    iou_threshold: float = 0.7,
    score_tolerance: float = 0.1,
) -> DetectionMatch:
    """Match two detection lists (pipeline format: `{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}`).

    Both lists should hold every detection down to `threshold - margin`, so that a detection near the threshold on
    one side finds its partner just below it on the other. Pairs have the same label and IoU >= `iou_threshold`; the
    assignment (Hungarian, over |score difference| + (1 - IoU)) pairs near-duplicates by score. Only detections
    scoring at least `threshold + margin` must be matched (`missing`, `extra`), and their partner's score must be
    within `score_tolerance` (`drifted`).
    """
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    high = threshold + margin
    cost = np.full((len(expected), len(actual)), 1e6)
    overlaps = np.zeros_like(cost)
    for i, e in enumerate(expected):
        for j, a in enumerate(actual):
            overlaps[i, j] = box_iou(e["box"], a["box"])
            if e["label"] == a["label"] and overlaps[i, j] >= iou_threshold:
                cost[i, j] = abs(e["score"] - a["score"]) + 1 - overlaps[i, j]
    result = DetectionMatch()
    matched_expected, matched_actual = set(), set()
    for i, j in zip(*linear_sum_assignment(cost)) if cost.size else ():
        if cost[i, j] >= 1e6:
            continue
        pair = (expected[i], actual[j], float(overlaps[i, j]))
        result.pairs.append(pair)
        matched_expected.add(i)
        matched_actual.add(j)
        too_far = abs(expected[i]["score"] - actual[j]["score"]) > score_tolerance
        if too_far and max(expected[i]["score"], actual[j]["score"]) >= high:
            result.drifted.append(pair)
    result.missing = [d for i, d in enumerate(expected) if i not in matched_expected and d["score"] >= high]
    result.extra = [d for j, d in enumerate(actual) if j not in matched_actual and d["score"] >= high]
    return result


def box_iou(first: dict, second: dict) -> float:
    """Intersection over union of two `{"xmin", "ymin", "xmax", "ymax"}` boxes."""
    width = min(first["xmax"], second["xmax"]) - max(first["xmin"], second["xmin"])
    height = min(first["ymax"], second["ymax"]) - max(first["ymin"], second["ymin"])
    intersection = max(width, 0) * max(height, 0)
    union = _area(first) + _area(second) - intersection
    return intersection / union if union > 0 else 0.0


def _area(box: dict) -> float:
    return max(box["xmax"] - box["xmin"], 0) * max(box["ymax"] - box["ymin"], 0)


def _describe(detection: dict) -> str:
    box = detection["box"]
    return (
        f"{detection['label']} {detection['score']:.3f} "
        f"({box['xmin']:.0f}, {box['ymin']:.0f}, {box['xmax']:.0f}, {box['ymax']:.0f})"
    )
