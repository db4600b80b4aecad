"""ONNX export and onnxruntime inference: outputs equal PyTorch's, the graph is the one-group inference graph, the
runner plugs into post-processing and the pipeline, and bad input gets a clear error.

Tests marked `optimum` need Optimum's exporter (`hf-rfdetr[onnx]`, transformers 4.57); scripts/test.sh runs them
in its transformers 4.57 environment and deselects them in the transformers 5 one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from PIL import Image
from transformers import pipeline

from hf_rfdetr import RFDetrConfig, RFDetrForObjectDetection, RFDetrImageProcessor, RFDetrOnnxModel, export_onnx
from hf_rfdetr.cli import main
from hf_rfdetr.demo_assets import DEMO_IMAGE
from hf_rfdetr.onnx import compare_outputs, optimum_status
from hf_rfdetr.onnx.quantization import (
    FLOAT_MODULES,
    float_module_names,
    match_detections,
    node_scope,
    nodes_of_modules,
    quantize_dynamic_int8,
)
from hf_rfdetr.onnx.validation import TIE_GAP

from .conftest import perturb_, tiny_config

ATOL = 1e-4


def _tiny_model(seed: int = 0, **overrides) -> RFDetrForObjectDetection:
    # positional_encoding_size 6 on an 8 x 8 patch grid: the interpolated position embedding is exported too.
    values = dict(positional_encoding_size=6, group_detr=13) | overrides
    torch.manual_seed(seed)
    return perturb_(RFDetrForObjectDetection(tiny_config(**values)), seed).eval()


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[RFDetrForObjectDetection, Path]:
    model = _tiny_model()
    folder = export_onnx(model, tmp_path_factory.mktemp("tiny-onnx"), validate=True, quantize=True)
    return model, folder


def _max_differences(model: RFDetrForObjectDetection, onnx_model: RFDetrOnnxModel, pixel_values: torch.Tensor):
    with torch.no_grad():
        expected = model(pixel_values=pixel_values)
    actual = onnx_model(pixel_values=pixel_values)
    assert actual.logits.shape == expected.logits.shape and actual.pred_boxes.shape == expected.pred_boxes.shape
    return (
        (actual.logits - expected.logits).abs().max().item(),
        (actual.pred_boxes - expected.pred_boxes).abs().max().item(),
    )


def _graph_tensors(path: Path) -> list[np.ndarray]:
    """Every weight of the graph: initializers and Constant nodes."""
    graph = onnx.load(str(path)).graph
    tensors = [numpy_helper.to_array(initializer) for initializer in graph.initializer]
    for node in graph.node:
        tensors += [
            numpy_helper.to_array(a.t) for a in node.attribute if node.op_type == "Constant" and a.name == "value"
        ]
    return tensors


def _op_types(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


# ---------------------------------------------------------------------------------------------- outputs and graph
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_onnxruntime_equals_pytorch(tiny_export, seed: int, batch_size: int) -> None:
    model, folder = tiny_export
    onnx_model = RFDetrOnnxModel.from_pretrained(folder)
    pixel_values = torch.randn(batch_size, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    logits_difference, boxes_difference = _max_differences(model, onnx_model, pixel_values)
    assert logits_difference <= ATOL and boxes_difference <= ATOL


def test_graph_optimisation_is_on_by_default_and_overridable(tiny_export) -> None:
    """Sessions get onnxruntime's full graph optimisation unless told otherwise; outputs equal PyTorch's either way."""
    import onnxruntime

    model, folder = tiny_export
    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    levels = onnxruntime.GraphOptimizationLevel
    for name, level in [(None, levels.ORT_ENABLE_ALL), ("extended", levels.ORT_ENABLE_EXTENDED)]:
        onnx_model = RFDetrOnnxModel.from_pretrained(folder, **({"graph_optimization": name} if name else {}))
        assert onnx_model.session.get_session_options().graph_optimization_level == level
        assert max(_max_differences(model, onnx_model, pixel_values)) <= ATOL
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = levels.ORT_DISABLE_ALL
    own = RFDetrOnnxModel.from_pretrained(folder, session_options=options)  # the caller's options win
    assert own.session.get_session_options().graph_optimization_level == levels.ORT_DISABLE_ALL
    with pytest.raises(ValueError, match="graph_optimization must be one of"):
        RFDetrOnnxModel.from_pretrained(folder, graph_optimization="max")


def test_export_at_native_grid_and_other_resolution(tmp_path: Path) -> None:
    """The stored position grid used as is (8 x 8 at 64 px), exports at 96 px (12 x 12) and 64 x 96 (interpolated)."""
    model = _tiny_model(seed=2, positional_encoding_size=8)
    for resolution in (64, 96):
        folder = export_onnx(model, tmp_path / str(resolution), resolution=resolution)
        onnx_model = RFDetrOnnxModel.from_pretrained(folder)
        assert onnx_model.input_size == (resolution, resolution)
        assert RFDetrImageProcessor.from_pretrained(folder).size == {"height": resolution, "width": resolution}
        pixel_values = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(resolution))
        assert max(_max_differences(model, onnx_model, pixel_values)) <= ATOL
    assert model.config.resolution == 64  # exporting at another size leaves the model alone
    folder = export_onnx(model, tmp_path / "wide", resolution=(64, 96))
    assert json.loads((folder / "export_report.json").read_text())["backend"] == "torch"
    pixel_values = torch.randn(3, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    assert max(_max_differences(model, RFDetrOnnxModel.from_pretrained(folder), pixel_values)) <= ATOL


def test_an_optimized_model_exports_its_float32_graph_and_stays_optimized(tmp_path: Path) -> None:
    """`hf_rfdetr.optimize` (int8 backbone linears) changes the PyTorch forward only: the export is the float32 graph,
    validated against the float32 forward, and the model runs int8 again afterwards."""
    import hf_rfdetr

    model = hf_rfdetr.optimize(_tiny_model(), dtype="float32", quantize=True)
    folder = export_onnx(model, tmp_path / "onnx", validate=True)
    assert hf_rfdetr.is_optimized(model) and model._hf_rfdetr_optimization.int8
    validation = json.loads((folder / "export_report.json").read_text())["validation"]["model.onnx"]
    for batch in (1, 3):  # validated against the float32 forward (the int8 one is 1e-2 away)
        worst = max(validation[f"logits@batch{batch}"], validation[f"pred_boxes@batch{batch}"])
        assert worst <= ATOL or validation[f"proposal_score_gap@batch{batch}"] < TIE_GAP
    onnx_model = RFDetrOnnxModel.from_pretrained(folder)
    pixel_values = torch.randn(1, 3, 64, 64)
    with hf_rfdetr.optimization.float32_forward(model):
        logit_error, box_error = _max_differences(model, onnx_model, pixel_values)
    assert logit_error <= ATOL and box_error <= ATOL


def test_graph_holds_one_query_group(tiny_export) -> None:
    """Inference uses group 0 of 13: its 20 queries are in the graph, the 12 training-only groups are not."""
    model, folder = tiny_export
    config = model.config
    tensors = _graph_tensors(folder / "model.onnx")
    shapes = [tuple(tensor.shape) for tensor in tensors]
    assert (config.num_queries, config.d_model) in shapes  # query features of one group
    assert (config.num_queries, 4) in shapes  # reference points of one group
    all_groups = config.num_queries * config.group_detr
    assert not any(all_groups in shape for shape in shapes)
    assert not any(shape[:1] == (config.group_detr,) and len(shape) > 1 for shape in shapes)  # stacked group heads
    graph_weights = sum(tensor.size for tensor in tensors)
    training_only = (config.group_detr - 1) * config.num_queries * (config.d_model + 4)
    assert graph_weights < sum(p.numel() for p in model.parameters()) - training_only


def test_export_report_and_folder(tiny_export) -> None:
    model, folder = tiny_export
    report = json.loads((folder / "export_report.json").read_text())
    available, reason = optimum_status()
    assert report["backend"] == ("optimum" if available else "torch")
    assert report["backend_reason"] == reason
    assert report["opset"] == 17 and report["input_size"] == [64, 64]
    assert report["files"] == ["model.onnx", "model_quantized.onnx"]
    validation = report["validation"]["model.onnx"]
    names = ("logits", "pred_boxes", "proposal_score_gap")
    assert set(validation) == {f"{name}@batch{b}" for name in names for b in (1, 3)}
    assert max(v for k, v in validation.items() if not k.startswith("proposal")) <= ATOL
    assert RFDetrConfig.from_pretrained(folder).id2label == model.config.id2label
    assert onnx.load(str(folder / "model.onnx")).opset_import[0].version == 17
    graph = onnx.load(str(folder / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["pixel_values"] and [o.name for o in graph.output] == [
        "logits",
        "pred_boxes",
    ]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch_size"


def test_post_processed_detections_identical(tiny_export) -> None:
    model, folder = tiny_export
    processor = RFDetrImageProcessor.from_pretrained(folder)
    onnx_model = RFDetrOnnxModel.from_pretrained(folder)
    images = [
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (50 + 9 * i, 70, 3), dtype=np.uint8))
        for i in range(2)
    ]
    inputs = processor(images, return_tensors="pt")
    sizes = [(image.height, image.width) for image in images]
    with torch.no_grad():
        expected = processor.post_process_object_detection(model(**inputs), 0.0, sizes, top_k=10)
    actual = processor.post_process_object_detection(onnx_model(**inputs), 0.0, sizes, top_k=10)
    for ours, theirs in zip(actual, expected):
        assert len(theirs["scores"]) == 10
        assert torch.equal(ours["labels"], theirs["labels"])
        torch.testing.assert_close(ours["scores"], theirs["scores"], atol=ATOL, rtol=0)
        torch.testing.assert_close(ours["boxes"], theirs["boxes"], atol=1e-3, rtol=0)


def test_pipeline_runs_the_onnx_model(tmp_path: Path) -> None:
    model = _tiny_model()
    with torch.no_grad():  # fresh class heads start at the prior 0.01, as the original's: spread the scores over (0, 1)
        model.class_embed.bias.add_(3.0)
    folder = export_onnx(model, tmp_path / "onnx", validate=True)
    processor = RFDetrImageProcessor.from_pretrained(folder)
    image = Image.fromarray(np.random.default_rng(5).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    with_onnx = pipeline("object-detection", model=RFDetrOnnxModel.from_pretrained(folder), image_processor=processor)
    with_torch = pipeline("object-detection", model=model, image_processor=processor)
    ours, theirs = with_onnx(image, threshold=0.1), with_torch(image, threshold=0.1)
    assert len(theirs) > 3 and [d["label"] for d in ours] == [d["label"] for d in theirs]
    boxes = [[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for d in (*ours, *theirs)]
    assert np.abs(np.subtract(boxes[: len(ours)], boxes[len(ours) :])).max() <= 1  # integer pixels after rounding
    assert np.allclose([d["score"] for d in ours], [d["score"] for d in theirs], atol=ATOL)


def test_an_onnx_folder_given_to_the_pytorch_loaders_names_the_onnx_runner(tiny_export, tmp_path: Path) -> None:
    """An export folder holds model.onnx and no PyTorch weights: the PyTorch loaders (and the pipeline through them)
    say so and name `RFDetrOnnxModel`, instead of transformers' "no file named model.safetensors"."""
    _, folder = tiny_export
    expected = r"holds an ONNX export \(model\.onnx.*\), not PyTorch weights.*RFDetrOnnxModel\.from_pretrained"
    with pytest.raises(OSError, match=expected):
        RFDetrForObjectDetection.from_pretrained(folder)
    with pytest.raises(ValueError, match=expected):
        pipeline("object-detection", model=str(folder))
    RFDetrConfig.from_pretrained(folder).save_pretrained(tmp_path)  # a folder without weights or graphs: as before
    with pytest.raises(OSError, match="no file named") as raised:
        RFDetrForObjectDetection.from_pretrained(tmp_path)
    assert "ONNX" not in str(raised.value)


def test_quantized_and_fp16_graphs(tiny_export, tmp_path: Path) -> None:
    """int8: quantised weights, same interface. fp16: the float16 model (as Optimum's dtype="fp16"), close outputs."""
    model, folder = tiny_export
    quantized = RFDetrOnnxModel.from_pretrained(folder, file_name="model_quantized.onnx")
    graph = onnx.load(str(folder / "model_quantized.onnx")).graph
    assert any(node.op_type in ("DynamicQuantizeLinear", "MatMulInteger") for node in graph.node)
    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    assert quantized(pixel_values=pixel_values).logits.shape == (2, model.config.num_queries, model.config.num_labels)

    fp16_folder = export_onnx(model, tmp_path / "fp16", fp16=True, validate=True)
    weights = [i for i in onnx.load(str(fp16_folder / "model.onnx")).graph.initializer if len(i.dims) > 1]
    assert weights and all(i.data_type == onnx.TensorProto.FLOAT16 for i in weights)
    fp16_model = RFDetrOnnxModel.from_pretrained(fp16_folder)
    assert fp16_model.session.get_inputs()[0].type == "tensor(float16)" and fp16_model.dtype == torch.float16
    single = pixel_values[:1]
    with torch.no_grad():
        expected = model(pixel_values=single)
    # Compare the best-scoring queries: float16 rounding may reorder near-tied proposals further down.
    scores = fp16_model(pixel_values=single).logits.sigmoid().flatten().topk(5).values
    assert scores.dtype == torch.float32  # float16 inputs and outputs are converted by the runner
    torch.testing.assert_close(scores, expected.logits.sigmoid().flatten().topk(5).values, atol=5e-3, rtol=0)
    with pytest.raises(ValueError, match="separate targets"):
        export_onnx(model, tmp_path / "both", fp16=True, quantize=True)


def test_int8_graph_keeps_the_sensitive_layers_float(tiny_export) -> None:
    """Every weight node of FLOAT_MODULES stays a float32 MatMul / Conv in model_quantized.onnx (whichever exporter
    named the nodes), the report lists them, and the backbone's linear layers are int8."""
    model, folder = tiny_export
    report = json.loads((folder / "export_report.json").read_text())
    assert report["float_modules"] == list(FLOAT_MODULES)
    graph = onnx.load(str(folder / "model_quantized.onnx")).graph
    nodes = {node.name: node for node in graph.node}
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    float_nodes = report["float_nodes"]
    for name in float_nodes:
        assert nodes[name].op_type in ("MatMul", "Conv", "Gemm") and f"{name}_quant" not in nodes, name
        weight = initializers[nodes[name].input[1]]
        assert weight.data_type == onnx.TensorProto.FLOAT and len(weight.dims) >= 2, name
    scopes = [node_scope(name) for name in float_nodes]
    # Each kind of sensitive layer is there: heads, two-stage heads, reference points, sampling, projector.
    kinds = ("class_embed", "bbox_embed.layers.2", "enc_out_class_embed", "enc_out_bbox_embed.layers.0", "enc_output")
    kinds += ("ref_point_head.layers.0", "cross_attn.sampling_offsets", "cross_attn.attention_weights", "conv")
    for kind in kinds:
        assert any(scope.endswith(kind) for scope in scopes), kind
    matrices = [
        n for n in float_module_names(model) if getattr(model.get_submodule(n), "weight", torch.ones(1)).ndim > 1
    ]
    assert len(float_nodes) == len(matrices)  # one node per weight matrix (eval graph: one query group)
    quantized = [node.name for node in graph.node if node.op_type == "MatMulInteger"]
    backbone = [name for name in quantized if "/backbone/" in name]
    assert len(backbone) == 4 * model.config.backbone_num_hidden_layers  # qkv, proj, fc1, fc2 of every block
    assert not any(node_scope(name.removesuffix("_quant")) in scopes for name in quantized)


def test_float_nodes_are_found_by_module_name(tiny_export, tmp_path: Path) -> None:
    """torch.onnx prefixes the scopes with its wrapper (`/model/model/...`), Optimum does not (`/model/...`); both
    match. A graph whose names do not follow the modules is refused instead of being quantised whole."""
    model, folder = tiny_export
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("MatMul", ["x", "w"], ["a"], name="/model/class_embed/MatMul"),
            onnx.helper.make_node("MatMul", ["x", "w"], ["b"], name="/class_embed/MatMul"),
            onnx.helper.make_node("MatMul", ["x", "w"], ["c"], name="/model/model/decoder/layers.1/fc1/MatMul"),
            onnx.helper.make_node("Conv", ["x", "w"], ["d"], name="/model/projector/levels.0/c2f/cv1/conv/Conv"),
            onnx.helper.make_node("Add", ["x", "w"], ["e"], name="/class_embed/Add"),
            onnx.helper.make_node("MatMul", ["x", "w"], ["f"], name="/model/enc_out_class_embed/MatMul"),
        ],
        "g",
        [],
        [],
    )
    assert node_scope("/model/model/decoder/layers.0/fc1/MatMul") == "model.model.decoder.layers.0.fc1"
    found = nodes_of_modules(graph, ["class_embed", "model.projector.levels.0.c2f.cv1.conv"])
    assert found == ["/model/class_embed/MatMul", "/class_embed/MatMul", "/model/projector/levels.0/c2f/cv1/conv/Conv"]

    renamed = onnx.load(str(folder / "model.onnx"))
    for index, node in enumerate(renamed.graph.node):
        node.name = f"node_{index}"
    onnx.save(renamed, str(tmp_path / "renamed.onnx"))
    with pytest.raises(
        ValueError, match=r"no MatMul/Conv/Gemm node is named after the module\(s\) \['model\.projector"
    ):
        quantize_dynamic_int8(tmp_path / "renamed.onnx", tmp_path / "int8.onnx", model)
    assert not (tmp_path / "int8.onnx").exists()


def _detection(label: str, score: float, box: tuple[float, float, float, float]) -> dict:
    return {"label": label, "score": score, "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), box))}


def test_match_detections_pairs_by_class_and_overlap() -> None:
    expected = [
        _detection("cat", 0.90, (0, 0, 100, 100)),
        _detection("dog", 0.70, (200, 200, 300, 300)),
        _detection("dog", 0.48, (202, 200, 300, 302)),  # near-duplicate below the threshold
        _detection("cat", 0.52, (400, 0, 500, 100)),  # within the margin: its int8 partner may fall below 0.5
    ]
    close = [
        _detection("cat", 0.88, (1, 0, 100, 101)),
        _detection("dog", 0.47, (202, 200, 300, 301)),
        _detection("dog", 0.72, (200, 201, 300, 300)),
        _detection("cat", 0.47, (400, 0, 500, 100)),
    ]
    match = match_detections(expected, close, threshold=0.5, margin=0.05, iou_threshold=0.7, score_tolerance=0.1)
    assert match.ok and len(match.pairs) == 4 and match.problems() == []
    assert match.max_score_drift == pytest.approx(0.05)
    dogs = {e["score"]: a["score"] for e, a, _ in match.pairs if e["label"] == "dog"}
    assert dogs == {0.70: 0.72, 0.48: 0.47}  # duplicates are paired by score, not by list order

    # The int8 failure of issue 10: the near-duplicate rises from 0.48 to 0.64.
    duplicate = [*close[:1], _detection("dog", 0.64, (202, 200, 300, 301)), *close[2:]]
    match = match_detections(expected, duplicate, threshold=0.5)
    assert not match.ok and match.problems() == ["score drift: dog 0.480 (202, 200, 300, 302) -> 0.640"]
    wrong_class = [_detection("dog", 0.9, (0, 0, 100, 100)), *close[1:]]
    match = match_detections(expected, wrong_class, threshold=0.5)
    assert [d["label"] for d in match.missing] == ["cat"] and [d["label"] for d in match.extra] == ["dog"]
    shifted = [_detection("cat", 0.9, (30, 0, 130, 100)), *close[1:]]  # IoU 0.54
    match = match_detections(expected, shifted, threshold=0.5)
    assert len(match.missing) == len(match.extra) == 1 and "missing: cat 0.900 (0, 0, 100, 100)" in match.problems()
    assert match_detections([], [], threshold=0.5).ok
    assert match_detections(expected, [], threshold=0.5).missing == expected[:2]


# ------------------------------------------------------------------------------------------------------ bad input
def test_export_rejects_bad_settings(tmp_path: Path) -> None:
    model = _tiny_model()
    with pytest.raises(
        ValueError,
        match=r"height 60: .* multiple of the block size 16 \(patch_size 8 x num_windows 2\); for example 64",
    ):
        export_onnx(model, tmp_path / "a", resolution=60)
    with pytest.raises(ValueError, match="opset 15 is too old"):
        export_onnx(model, tmp_path / "b", opset=15)
    with pytest.raises(ValueError, match="backend must be one of"):
        export_onnx(model, tmp_path / "c", backend="tensorrt")
    if not optimum_status()[0]:
        with pytest.raises(ValueError, match="backend='optimum' was asked for, but optimum-onnx is not usable"):
            export_onnx(model, tmp_path / "d", backend="optimum")


def test_runner_errors_name_the_problem(tiny_export, tmp_path: Path) -> None:
    _, folder = tiny_export
    with pytest.raises(FileNotFoundError, match=r"no model\.onnx in .*ONNX files there: none"):
        RFDetrOnnxModel.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no model_fp16\.onnx in .*model\.onnx, model_quantized\.onnx"):
        RFDetrOnnxModel.from_pretrained(folder, file_name="model_fp16.onnx")
    onnx_model = RFDetrOnnxModel.from_pretrained(folder)
    with pytest.raises(ValueError, match=r"shape \(1, 3, 96, 96\).*exported for \(batch, 3, 64, 64\)"):
        onnx_model(pixel_values=torch.zeros(1, 3, 96, 96))
    with pytest.raises(ValueError, match=r"shape \(3, 64, 64\)"):
        onnx_model(pixel_values=torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="must be floating point"):
        onnx_model(pixel_values=np.zeros((1, 3, 64, 64), dtype=np.uint8))
    mask = torch.ones(1, 64, 64, dtype=torch.long)
    mask[:, :, 40:] = 0
    with pytest.raises(ValueError, match="takes no pixel_mask"):
        onnx_model(pixel_values=torch.zeros(1, 3, 64, 64), pixel_mask=mask)
    assert onnx_model(pixel_values=torch.zeros(1, 3, 64, 64), pixel_mask=torch.ones(1, 64, 64)).logits.shape[0] == 1


# ------------------------------------------------------------------------------------------------------------ CLI
def test_saved_processor_fits_the_graph_when_the_source_keeps_the_aspect_ratio(tmp_path: Path) -> None:
    """A source processor with keep_aspect_ratio=True (and a pad_size) would give the fixed-size graph inputs of
    another shape; the exported folder's own processor feeds it, on a non-square image, the same detections as the
    PyTorch model with that processor."""
    model = _tiny_model(seed=3)
    source = RFDetrImageProcessor.from_config(
        model.config, keep_aspect_ratio=True, pad_size={"height": 64, "width": 64}
    )
    folder = export_onnx(model, tmp_path / "onnx", image_processor=source, resolution=(64, 96))
    processor = RFDetrImageProcessor.from_pretrained(folder)
    assert not processor.keep_aspect_ratio and processor.pad_size is None
    image = Image.fromarray(np.random.default_rng(7).integers(0, 255, (45, 90, 3), dtype=np.uint8))
    inputs = processor(image, return_tensors="pt")
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 64, 96)
    onnx_model = RFDetrOnnxModel.from_pretrained(folder)
    sizes = [(image.height, image.width)]
    with torch.no_grad():
        expected = processor.post_process_object_detection(model(**inputs), 0.0, sizes, top_k=10)[0]
    actual = processor.post_process_object_detection(onnx_model(**inputs), 0.0, sizes, top_k=10)[0]
    assert torch.equal(actual["labels"], expected["labels"])
    torch.testing.assert_close(actual["boxes"], expected["boxes"], atol=1e-3, rtol=0)


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _tiny_model(seed=4)
    model.save_pretrained(tmp_path / "model")
    assert main(["export", str(tmp_path / "model"), str(tmp_path / "onnx"), "--validate", "--backend", "torch"]) == 0
    printed = capsys.readouterr().out
    assert "exported with torch (backend='torch' was asked for), opset 17" in printed
    assert "input pixel_values (batch, 3, 64, 64); wrote model.onnx" in printed
    assert "validated model.onnx: max |onnxruntime - PyTorch|: logits@batch1" in printed
    pixel_values = torch.rand(1, 3, 64, 64)
    assert max(_max_differences(model, RFDetrOnnxModel.from_pretrained(tmp_path / "onnx"), pixel_values)) <= ATOL

    assert main(["export", str(tmp_path / "model"), str(tmp_path / "bad"), "--resolution", "70"]) == 1
    assert "hf-rfdetr export: error: cannot export at height 70" in capsys.readouterr().err


def test_export_resolves_names_and_names_missing_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`export` takes what the other entry points take: a checkpoint name whose COCO folder is cached exports offline
    (here a tiny model stands in for it), and a local folder that does not exist is named as such."""
    from hf_rfdetr import pretrained_weights

    monkeypatch.setenv("HF_ASSETS_CACHE", str(tmp_path / "assets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = pretrained_weights._coco_folder(pretrained_weights.CHECKPOINTS["nano"])
    model = _tiny_model(seed=5)
    model.save_pretrained(cached)
    assert main(["export", "nano", str(tmp_path / "onnx"), "--backend", "torch"]) == 0
    pixel_values = torch.rand(2, 3, 64, 64)
    assert max(_max_differences(model, RFDetrOnnxModel.from_pretrained(tmp_path / "onnx"), pixel_values)) <= ATOL

    missing = tmp_path / "no-such-folder"
    assert main(["export", str(missing), str(tmp_path / "out")]) == 1
    assert f"model folder {str(missing)!r} does not exist" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="'./no/such/folder' does not exist"):
        export_onnx("./no/such/folder", tmp_path / "out")


def test_a_float16_model_validates_against_the_float32_graph_it_exports(tmp_path: Path) -> None:
    """The float32 graph of a float16 model (an object, or a folder saved in float16, which transformers 5 loads in
    float16) is validated against the float32 model it was exported from, not the float16 one (6.9e-1 apart)."""
    model = _tiny_model(seed=8).half()
    model.save_pretrained(tmp_path / "fp16")
    for source in (model, tmp_path / "fp16"):
        name = "object" if source is model else "folder"
        folder = export_onnx(source, tmp_path / f"onnx-{name}", validate=True, backend="torch")
        validation = json.loads((folder / "export_report.json").read_text())["validation"]["model.onnx"]
        assert max(validation["logits@batch1"], validation["pred_boxes@batch3"]) <= ATOL, (name, validation)
    assert model.dtype == torch.float16  # the caller's model is left as it was


# ----------------------------------------------------------------------------------------------- real model sizes
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["nano", "base"])
def test_nano_and_base_export_match_pytorch(variant: str, tmp_path: Path) -> None:
    """Random, perturbed weights; Base interpolates its 37 x 37 position grid to 40 x 40 (a constant in the graph)."""
    config = RFDetrConfig.from_variant(variant)
    torch.manual_seed(0)
    model = perturb_(RFDetrForObjectDetection(config), seed=0).eval()
    # Untrained proposal scores sit on the prior-probability bias, within a few percent of each other: some
    # neighbours end up 1e-7 apart, and two correct runtimes may rank them differently (the export then warns).
    # Without the bias they spread relative to their size, as trained scores do.
    with torch.no_grad():
        model.model.enc_out_class_embed.bias.zero_()
    folder = export_onnx(model, tmp_path, validate=True)
    validation = json.loads((folder / "export_report.json").read_text())["validation"]["model.onnx"]
    for batch in (1, 3):  # within ATOL, or an input whose ranking is tied to rounding (the export warned)
        worst = max(validation[f"logits@batch{batch}"], validation[f"pred_boxes@batch{batch}"])
        assert worst <= ATOL or validation[f"proposal_score_gap@batch{batch}"] < TIE_GAP
    onnx_model = RFDetrOnnxModel.from_pretrained(folder)
    # A real picture (the bundled scene, as is, mirrored and darkened) ranks its proposals without ties.
    scene = Image.open(DEMO_IMAGE).convert("RGB")
    images = [scene, scene.transpose(Image.Transpose.FLIP_LEFT_RIGHT), scene.point(lambda value: value // 2)]
    pixel_values = RFDetrImageProcessor.from_pretrained(folder)(images, return_tensors="pt")["pixel_values"]
    comparisons = []
    with torch.no_grad():
        for batch in (pixel_values[:1], pixel_values[1:2], pixel_values[2:], pixel_values):
            comparisons.append(compare_outputs(model(pixel_values=batch), onnx_model(pixel_values=batch)))
    strict = [max(c["logits"], c["pred_boxes"]) <= ATOL for c in comparisons]
    # Every query agrees, except where two proposal scores are within rounding (relative gap < TIE_GAP): two
    # correct runtimes may rank them either way, which gives those queries other embeddings. Most inputs are exact.
    assert all(ok or c["proposal_score_gap"] < TIE_GAP for ok, c in zip(strict, comparisons)), comparisons
    assert sum(strict) >= 2, comparisons
    shapes = {tuple(t.shape) for t in _graph_tensors(folder / "model.onnx")}
    assert (config.num_queries, config.d_model) in shapes
    assert not any(config.num_queries * config.group_detr in shape for shape in shapes)


# -------------------------------------------------------------------------------------------------------- Optimum
def _saved_tiny(folder: Path, seed: int = 6) -> RFDetrForObjectDetection:
    model = _tiny_model(seed=seed)
    model.save_pretrained(folder)
    RFDetrImageProcessor.from_config(model.config).save_pretrained(folder)
    return model


@pytest.mark.optimum
def test_optimum_main_export_of_a_saved_folder(tmp_path: Path) -> None:
    from optimum.exporters.onnx import main_export

    model = _saved_tiny(tmp_path / "model")
    main_export(str(tmp_path / "model"), output=tmp_path / "onnx", task="object-detection")
    onnx_model = RFDetrOnnxModel.from_pretrained(tmp_path / "onnx")
    for batch_size in (1, 3):
        pixel_values = torch.randn(batch_size, 3, 64, 64, generator=torch.Generator().manual_seed(batch_size))
        assert max(_max_differences(model, onnx_model, pixel_values)) <= ATOL


@pytest.mark.optimum
def test_optimum_and_torch_backends_write_the_same_graph(tmp_path: Path) -> None:
    model = _tiny_model(seed=8)
    with_optimum = export_onnx(model, tmp_path / "optimum", backend="optimum")
    with_torch = export_onnx(model, tmp_path / "torch", backend="torch")
    assert json.loads((with_optimum / "export_report.json").read_text())["backend"] == "optimum"
    assert _op_types(with_optimum / "model.onnx") == _op_types(with_torch / "model.onnx")
    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    first = RFDetrOnnxModel.from_pretrained(with_optimum)(pixel_values=pixel_values)
    second = RFDetrOnnxModel.from_pretrained(with_torch)(pixel_values=pixel_values)
    assert torch.equal(first.logits, second.logits) and torch.equal(first.pred_boxes, second.pred_boxes)


@pytest.mark.optimum
def test_optimum_cli_entry_point(tmp_path: Path) -> None:
    """`python -m hf_rfdetr.onnx.optimum_cli` takes optimum-cli's arguments; plain optimum-cli knows no RF-DETR."""
    model = _saved_tiny(tmp_path / "model", seed=9)
    arguments = ["export", "onnx", "--model", str(tmp_path / "model"), "--task", "object-detection"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "hf_rfdetr.onnx.optimum_cli", *arguments, str(tmp_path / "onnx")],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    assert max(_max_differences(model, RFDetrOnnxModel.from_pretrained(tmp_path / "onnx"), pixel_values)) <= ATOL

    plain = subprocess.run(
        [
            sys.executable,
            "-c",
            "from optimum.commands.optimum_cli import main; main()",
            *arguments,
            "--trust-remote-code",
            str(tmp_path / "plain"),
        ],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert plain.returncode != 0 and "custom or unsupported architecture" in plain.stderr


@pytest.mark.optimum
def test_the_optimum_cli_removes_an_earlier_exports_files_too(tmp_path: Path) -> None:
    """`python -m hf_rfdetr.onnx.optimum_cli export onnx` into a folder holding an earlier export (another input size,
    quantised, with its report and card) left that export's model_quantized.onnx, export_report.json and card beside
    Optimum's new graph, vouching for it. It now removes them before Optimum writes, naming them, as `export_onnx`
    does; other files (the user's) stay."""
    model = _saved_tiny(tmp_path / "model", seed=13)
    folder = export_onnx(model, tmp_path / "onnx", resolution=96, quantize=True, backend="torch")
    assert "model_quantized.onnx" in _export_files(folder) and "export_report.json" in _export_files(folder)
    (folder / "notes.txt").write_text("mine\n")

    arguments = ["export", "onnx", "--model", str(tmp_path / "model"), "--task", "object-detection", str(folder)]
    result = subprocess.run(
        [sys.executable, "-m", "hf_rfdetr.onnx.optimum_cli", *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        f"removed the earlier export's files from {folder} before exporting: model.onnx, model_quantized.onnx, "
        "export_report.json, README.md" in result.stderr
    )
    assert _export_files(folder) == ["config.json", "model.onnx", "notes.txt", "preprocessor_config.json"]
    onnx_model = RFDetrOnnxModel.from_pretrained(folder)
    assert onnx_model.input_size == (64, 64)  # Optimum's export of the saved model, not the earlier 96 x 96 one
    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(13))
    assert max(_max_differences(model, onnx_model, pixel_values)) <= ATOL

    # into a folder without an earlier export (or a new one): nothing is removed, nothing said
    again = subprocess.run(
        [sys.executable, "-m", "hf_rfdetr.onnx.optimum_cli", *arguments[:-1], str(tmp_path / "new")],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "removed the earlier export's files" not in again.stderr


def test_compare_outputs_reports_near_tied_proposals() -> None:
    """The comparison is query by query; the smallest gap between ranked two-stage scores tells ties apart."""
    generator = torch.Generator().manual_seed(0)
    expected = {
        "logits": torch.randn(2, 6, 3, generator=generator),
        "pred_boxes": torch.rand(2, 6, 4, generator=generator),
        "enc_logits": torch.tensor([[5.0, 4.0, 3.0], [2.0, 1.5, 1.4999995]])[..., None].expand(2, 3, 2),
    }
    changed = {name: value.clone() for name, value in expected.items()}
    changed["logits"][1, 3] += 0.5
    comparison = compare_outputs(expected, changed)
    assert comparison["logits"] == pytest.approx(0.5) and comparison["pred_boxes"] == 0.0
    assert comparison["proposal_score_gap"] == pytest.approx(5e-7 / 5.0, rel=0.3)  # relative to the largest score


def test_validation_fails_on_a_real_difference(tiny_export, tmp_path: Path) -> None:
    """A graph that disagrees with the model (here: the model changed after export) is refused."""
    from hf_rfdetr.onnx.validation import validate_export

    model, folder = tiny_export
    changed = _tiny_model()
    with torch.no_grad():
        changed.class_embed.bias.add_(1.0)
    with pytest.raises(ValueError, match=r"onnxruntime differs from PyTorch by 1\.0.e\+00 > atol 0.0001"):
        validate_export(changed, folder, ["model.onnx"], 64, 64, ATOL, fp16=False)


def test_fp16_and_int8_validation_compares_detections_and_refuses_a_broken_graph(tmp_path: Path) -> None:
    """fp16 and int8 validation used to check nothing (any graph passed): their rounding reorders near-tied two-stage
    proposals, so per-query differences reach O(1) for a correct graph. They now match the demo scene's detections
    (class, IoU, score within a stated tolerance): a correct export of the demo checkpoint passes, a wrong one fails."""
    from hf_rfdetr.demo_assets import DEMO_MODEL
    from hf_rfdetr.onnx.validation import DETECTION_SCORE_TOLERANCE, validate_export

    model = RFDetrForObjectDetection.from_pretrained(DEMO_MODEL).eval()
    size = model.config.resolution
    fp16_folder = export_onnx(model, tmp_path / "fp16", fp16=True, validate=True, backend="torch")
    int8_folder = export_onnx(model, tmp_path / "int8", quantize=True, validate=True, backend="torch")
    for folder, file_name, kind in [
        (fp16_folder, "model.onnx", "float16"),
        (int8_folder, "model_quantized.onnx", "int8"),
    ]:
        report = json.loads((folder / "export_report.json").read_text())
        checked = report["detections"][file_name]
        assert checked["detections@batch1"] >= 5 and checked["detections@batch3"] >= 3 * 5, checked
        assert checked["max_score_drift@batch3"] <= DETECTION_SCORE_TOLERANCE[kind] and checked["min_iou@batch3"] > 0.9
        method = report["validation_method"][file_name]
        assert method.startswith(f"{kind}: detections of the demo scene above 0.55 matched") and "not checked" in method
    assert report["validation_method"]["model.onnx"].startswith("per query: max |ORT - PyTorch| <= atol 0.0001")

    changed = RFDetrForObjectDetection.from_pretrained(DEMO_MODEL).eval()
    with torch.no_grad():
        changed.bbox_embed.layers[-1].bias.add_(0.3)  # every box moves: a graph that disagrees with the model
    for folder, file_name, fp16 in [(fp16_folder, "model.onnx", True), (int8_folder, "model_quantized.onnx", False)]:
        with pytest.raises(ValueError, match=r"detections of the demo scene differ from PyTorch's .* missing: "):
            validate_export(changed, folder, [file_name], size, size, ATOL, fp16=fp16)


def test_quiet_export_silences_our_tracer_warnings_and_optimums_notices_only() -> None:
    """The TracerWarnings of our modules (shape-derived values the export fixes) and the listed transformers /
    Optimum log lines are dropped during an export; other modules' TracerWarnings and other log lines are kept."""
    import logging
    import warnings

    from hf_rfdetr.onnx.export import quiet_export

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    library = logging.getLogger("transformers")
    library.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with quiet_export():
                for module in ("hf_rfdetr.models.rfdetr.modeling_rfdetr", "user_code"):
                    warnings.warn_explicit("frozen", torch.jit.TracerWarning, "f.py", 1, module=module)
                logging.getLogger("transformers.modeling_utils").warning("`torch_dtype` is deprecated! Use `dtype`")
                logging.getLogger("transformers.modeling_utils").warning("something else")
            logging.getLogger("transformers.modeling_utils").warning("`torch_dtype` is deprecated! Use `dtype`")
            warnings.warn_explicit("frozen", torch.jit.TracerWarning, "f.py", 2, module="hf_rfdetr.x")
    finally:
        library.removeHandler(handler)
    assert [w.lineno for w in caught] == [1, 2]  # user_code inside, ours after the export
    assert [r.getMessage() for r in records] == ["something else", "`torch_dtype` is deprecated! Use `dtype`"]


def test_opset_16_exports_and_validates(tmp_path: Path) -> None:
    """README: opset 16 is enough (GridSample). It exports and validates; each LayerNorm is then decomposed."""
    model = _tiny_model(seed=3)
    folder = export_onnx(model, tmp_path / "16", opset=16, validate=True)
    report = json.loads((folder / "export_report.json").read_text())
    assert report["opset"] == 16 and onnx.load(str(folder / "model.onnx")).opset_import[0].version == 16
    assert max(v for k, v in report["validation"]["model.onnx"].items() if not k.startswith("proposal")) <= ATOL
    assert "LayerNormalization" not in _op_types(folder / "model.onnx") and "GridSample" in _op_types(
        folder / "model.onnx"
    )


@pytest.mark.optimum
def test_optimum_export_prints_no_tracer_warnings_or_optimums_notices(tmp_path: Path) -> None:
    """Through Optimum, export_onnx printed our modules' TracerWarnings (shape-derived values; the torch.onnx path
    silenced them), transformers' torch_dtype deprecation and slow-processor notices for Optimum's own calls, and
    Optimum's "lower than the recommended minimum opset (17)" for the supported opset 16."""
    import logging
    import warnings

    from transformers.utils import logging as transformers_logging

    transformers_logging.warning_once.cache_clear()  # the deprecation is logged once per process
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    libraries = [logging.getLogger("transformers"), logging.getLogger("optimum")]
    for library in libraries:
        library.addHandler(handler)
    model = _tiny_model(seed=4)
    model.save_pretrained(tmp_path / "model")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            folder = export_onnx(tmp_path / "model", tmp_path / "onnx", opset=16, backend="optimum", validate=True)
    finally:
        for library in libraries:
            library.removeHandler(handler)
    assert json.loads((folder / "export_report.json").read_text())["opset"] == 16
    tracer = [f"{w.filename}:{w.lineno}" for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    assert tracer == []
    messages = [record.getMessage() for record in records]
    for fragment in ("torch_dtype", "slow image processor", "recommended minimum opset"):
        assert not [message for message in messages if fragment in message], messages


def _python_blocks(card: str) -> list[str]:
    return [block.split("\n", 1)[1] for block in card.split("```")[1::2] if block.startswith("python\n")]


def test_export_folders_get_a_model_card_whose_snippets_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Export folders had no README.md, though every folder the package writes has a card: they now have one saying
    what the folder holds, the graph, the source model and how to run it, and its snippets run on the folder."""
    from huggingface_hub import ModelCard

    model = _tiny_model(seed=10)
    model.save_pretrained(tmp_path / "tiny-source")
    assert main(["export", str(tmp_path / "tiny-source"), str(tmp_path / "tiny-onnx"), "--backend", "torch"]) == 0
    assert f"wrote model.onnx, README.md (model card) to {tmp_path / 'tiny-onnx'}" in capsys.readouterr().out
    card = (tmp_path / "tiny-onnx" / "README.md").read_text()
    metadata = ModelCard(card).data
    assert (metadata.library_name, metadata.pipeline_tag, metadata.license) == (
        "onnx",
        "object-detection",
        "apache-2.0",
    )
    assert "onnx" in metadata.tags and metadata.base_model is None  # a local folder is no Hub base model
    assert card.count("<!-- Generated by hf_rfdetr's ONNX export") == 1 and "# tiny-onnx (ONNX)" in card
    assert f"The source model: `{tmp_path / 'tiny-source'}`." in card
    for row in (
        "| `model.onnx` | the float32 inference graph (opset 17) |",
        "| `preprocessor_config.json` | the image processor (`RFDetrImageProcessor`): resizes every image to 64 x 64",
        "| `export_report.json` | how the export ran: exporter, opset, input size, files |",
        "| input | `pixel_values` (batch, 3, 64, 64), float32, dynamic batch size |",
        "| exporter | torch (backend='torch' was asked for) |",
        "| validation | not run (",
    ):
        assert row in card, row
    assert "model_quantized.onnx` |" not in card and "pred_masks" not in card

    monkeypatch.chdir(tmp_path)  # the snippets load "tiny-onnx" and read image.jpg
    Image.new("RGB", (80, 60), (40, 90, 160)).save("image.jpg")
    blocks = _python_blocks(card)
    assert len(blocks) == 2
    scope: dict = {}
    exec(blocks[0], scope)  # noqa: S102 - the card's own snippet
    assert len(scope["detections"]["scores"]) == len(scope["detections"]["labels"])
    exec(blocks[1], scope)  # noqa: S102
    assert scope["scores"].shape == (1, model.config.num_queries, model.config.num_labels)
    expected = torch.sigmoid(model(pixel_values=torch.as_tensor(scope["pixel_values"])).logits).detach().numpy()
    np.testing.assert_allclose(scope["scores"], expected, atol=1e-4)

    # quantized and validated: both graphs listed with the measured differences; the source of an object is named
    folder = export_onnx(model, tmp_path / "int8", quantize=True, validate=True, backend="torch")
    card = (folder / "README.md").read_text()
    assert "| `model_quantized.onnx` | the same graph with dynamic int8 weights" in card
    assert (
        "| validation | `model.onnx` (float32): passed per query (no detections in the demo scene to compare); "
        "`model_quantized.onnx` (int8): not checked (no detections in the demo scene to compare); see" in card
    )
    assert "The source model: `an in-memory RFDetrForObjectDetection" in card
    # a README.md that is not an export card (the user's) is kept; an earlier export card is replaced
    (folder / "README.md").write_text("my notes\n")
    export_onnx(model, folder, backend="torch")
    assert (folder / "README.md").read_text() == "my notes\n"


def test_a_float16_export_card_states_what_validation_checked_not_unchecked_differences(tmp_path: Path) -> None:
    """The card of a float16 (or int8) export showed the per-query max |onnxruntime - PyTorch| as its validation:
    those are O(1) for a correct graph (rounding reorders near-tied two-stage proposals) and not checked; the
    detections are. The card now says per file what was checked and the result, and prints no unchecked numbers."""
    from hf_rfdetr.demo_assets import DEMO_MODEL

    model = RFDetrForObjectDetection.from_pretrained(DEMO_MODEL).eval()
    folder = export_onnx(model, tmp_path / "fp16", fp16=True, validate=True, backend="torch")
    report = json.loads((folder / "export_report.json").read_text())
    card = (folder / "README.md").read_text()
    checked = report["detections"]["model.onnx"]
    assert checked["detections@batch3"] >= 3
    assert "| validation | `model.onnx` (float16): passed by its detections of the demo scene; see" in card
    assert "max \\|onnxruntime - PyTorch\\|" not in card and "max |onnxruntime - PyTorch|" not in card
    for value in report["validation"]["model.onnx"].values():  # the unchecked per-query differences
        assert f"{value:.1e}" not in card, value
    method = report["validation_method"]["model.onnx"].removeprefix("float16: ")
    assert "\n## Validation\n" in card
    assert (
        f"- `model.onnx` (float16): passed by its detections of the demo scene. The check: {method}. Result: " in card
    )
    assert (
        f"{int(checked['detections@batch1'])} detections at batch 1 and {int(checked['detections@batch3'])} at "
        f"batch 3 matched PyTorch's, largest score drift {checked['max_score_drift@batch3']:.3f}, smallest IoU "
        f"{checked['min_iou@batch3']:.3f}"
    ) in card
    assert "Per-query differences are recorded but not checked" in card

    # a model that detects nothing in the demo scene: its float16 graph was not checked, and the card says so
    folder = export_onnx(_tiny_model(seed=10), tmp_path / "tiny", fp16=True, validate=True, backend="torch")
    card = (folder / "README.md").read_text()
    assert (
        "| validation | `model.onnx` (float16): not checked (no detections in the demo scene to compare); see" in card
    )
    assert "Result: the model detects nothing above 0.55 in the demo scene, so no detections were compared." in card
    for value in json.loads((folder / "export_report.json").read_text())["validation"]["model.onnx"].values():
        assert f"{value:.1e}" not in card, value


def test_a_segmentation_export_card_names_the_mask_output() -> None:
    from hf_rfdetr.onnx.model_card import render_onnx_card

    config = tiny_config(segmentation_head=True, variant="seg-nano")
    report = {"backend": "torch", "backend_reason": "why", "opset": 17, "input_size": [64, 96], "files": ["model.onnx"]}
    card = render_onnx_card(config, report, "org/rf-detr-seg", repo_id="org/rf-detr-seg-onnx")
    ratio = config.mask_downsample_ratio
    assert f"`pred_masks` (batch, {config.num_queries}, {64 // ratio}, {96 // ratio}): mask logits" in card
    assert "post_process_instance_segmentation" in card and "pipeline_tag: image-segmentation" in card
    assert "base_model: org/rf-detr-seg" in card and "[org/rf-detr-seg](https://huggingface.co/org/rf-detr-seg)" in card
    assert 'session.run(["logits", "pred_boxes", "pred_masks"]' in card
    named = render_onnx_card(config, report, "seg-nano")  # a checkpoint name is no Hub repository
    assert (
        "base_model" not in named and "`seg-nano`, the original RF-DETR COCO checkpoint `rf-detr-seg-nano.pt`" in named
    )
    by_file = render_onnx_card(config, report, "rf-detr-seg-nano.pt")  # not named twice
    assert "`rf-detr-seg-nano.pt`, the original RF-DETR COCO checkpoint (converted by hf_rfdetr)" in by_file


def test_the_onnx_card_states_the_saved_processors_top_k_and_the_int8_file_only_when_there_is_one(
    tiny_export, tmp_path: Path
) -> None:
    """The card said post-processing keeps the top `config.num_queries` (query, class) pairs, but the saved processor
    selects its `num_top_queries` (300 for a detector, at most queries x labels), and its usage snippet pointed to
    `model_quantized.onnx` in folders without one. It now states what the saved processor selects, and names the
    int8 file only where it was exported."""
    from hf_rfdetr.onnx.model_card import render_onnx_card

    model, folder = tiny_export  # quantized; its processor keeps num_top_queries 300 > 20 queries x 3 labels
    card = (folder / "README.md").read_text()
    pixel_values = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    outputs = RFDetrOnnxModel.from_pretrained(folder)(pixel_values=pixel_values)
    kept = RFDetrImageProcessor.from_pretrained(folder).post_process_object_detection(outputs, 0.0)[0]
    assert len(kept["scores"]) == 60 and "(top 60 (query, class) pairs)" in card
    assert 'from_pretrained("tiny-onnx0")  # file_name="model_quantized.onnx" for the int8 graph\n' in card

    processor = RFDetrImageProcessor.from_config(model.config, num_top_queries=7)
    other = export_onnx(model, tmp_path / "top7", image_processor=processor, backend="torch")
    card = (other / "README.md").read_text()
    kept = RFDetrImageProcessor.from_pretrained(other).post_process_object_detection(outputs, 0.0)[0]
    assert len(kept["scores"]) == 7 and "(top 7 (query, class) pairs)" in card
    assert 'onnx_model = RFDetrOnnxModel.from_pretrained("top7")\n' in card and "model_quantized" not in card

    # a segmentation processor derived from the config selects num_queries pairs (the original Seg's num_select)
    config = tiny_config(segmentation_head=True, variant="seg-nano", num_queries=10)
    report = {"backend": "torch", "backend_reason": "why", "opset": 17, "input_size": [64, 64], "files": ["model.onnx"]}
    assert RFDetrImageProcessor.from_config(config).num_top_queries == 10
    assert "(top 10 (query, class) pairs)" in render_onnx_card(config, report, "seg-nano")
    assert "(top 4 (query, class) pairs)" in render_onnx_card(config, report, "seg-nano", num_top_queries=4)


def _export_files(folder: Path) -> list[str]:
    """The files of an export folder, less the processor's and config's code files that save_pretrained copies."""
    return sorted(path.name for path in folder.iterdir() if path.suffix != ".py")


def test_a_re_export_removes_the_earlier_exports_graphs_report_and_card(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Re-exporting into a folder kept the earlier export's files that the new one does not write: an export without
    quantize left the earlier model_quantized.onnx, for the earlier input size, beside the new processor. A re-export
    now deletes the earlier graphs (with their external data), report and card first, naming them; other files
    (the user's) stay."""
    model = _tiny_model(seed=11)
    folder = export_onnx(model, tmp_path / "onnx", quantize=True, validate=True, backend="torch")
    assert _export_files(folder) == [
        "README.md",
        "config.json",
        "export_report.json",
        "model.onnx",
        "model_quantized.onnx",
        "preprocessor_config.json",
    ]
    graph = onnx.load(str(folder / "model.onnx"))  # the earlier graph with its weights in an external-data file
    onnx.save(graph, str(folder / "model.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=0)
    (folder / "notes.txt").write_text("mine\n")

    with caplog.at_level("WARNING", logger="hf_rfdetr.onnx.export"):
        export_onnx(model, folder, resolution=96, backend="torch")
    assert (
        f"removed the earlier export's files from {folder} before exporting: model.onnx, weights.bin, "
        "model_quantized.onnx, export_report.json, README.md" in caplog.text
    )
    assert _export_files(folder) == [
        "README.md",
        "config.json",
        "export_report.json",
        "model.onnx",
        "notes.txt",
        "preprocessor_config.json",
    ]
    assert json.loads((folder / "export_report.json").read_text())["files"] == ["model.onnx"]
    assert RFDetrOnnxModel.from_pretrained(folder).input_size == (96, 96)
    card = (folder / "README.md").read_text()
    assert "| input | `pixel_values` (batch, 3, 96, 96), float32" in card and "model_quantized" not in card


def test_a_re_export_that_fails_validation_leaves_no_report_or_card_vouching_for_its_files(tmp_path: Path) -> None:
    """A re-export that failed validation left the earlier export_report.json and card (another input size, both
    files validated) and the earlier int8 graph beside its new unvalidated model.onnx, config and processor. Now the
    folder holds the new files only, for inspection, with no report or card, and the error says so; the user's
    README.md stays."""
    model = _tiny_model(seed=11)
    folder = export_onnx(model, tmp_path / "onnx", quantize=True, validate=True, backend="torch")
    with pytest.raises(ValueError, match=r"onnxruntime differs from PyTorch by .* > atol 1e-12") as raised:
        export_onnx(model, folder, resolution=96, validate=True, atol=1e-12, backend="torch")
    assert (
        f"{folder} now holds this export's unvalidated files (model.onnx, config.json, preprocessor_config.json), "
        "left for inspection, and no export_report.json or README.md card vouching for them" in str(raised.value)
    )
    assert _export_files(folder) == ["config.json", "model.onnx", "preprocessor_config.json"]
    assert RFDetrOnnxModel.from_pretrained(folder).input_size == (96, 96)
    assert RFDetrImageProcessor.from_pretrained(folder).size == {"height": 96, "width": 96}

    (folder / "README.md").write_text("my notes\n")
    with pytest.raises(ValueError, match="holds this export's unvalidated files"):
        export_onnx(model, folder, quantize=True, validate=True, atol=1e-12, backend="torch")
    assert _export_files(folder) == [
        "README.md",
        "config.json",
        "model.onnx",
        "model_quantized.onnx",
        "preprocessor_config.json",
    ]
    assert (folder / "README.md").read_text() == "my notes\n"


@pytest.mark.optimum
def test_an_optimum_re_export_removes_the_earlier_exports_files_too(tmp_path: Path) -> None:
    """backend="optimum" goes through the same clean-up: an earlier int8 graph, report and card do not outlive the
    export they described, and a failed validation leaves no report or card."""
    model = _tiny_model(seed=12)
    folder = export_onnx(model, tmp_path / "onnx", quantize=True, backend="optimum")
    assert "model_quantized.onnx" in _export_files(folder)
    export_onnx(model, folder, resolution=96, backend="optimum")
    assert _export_files(folder) == [
        "README.md",
        "config.json",
        "export_report.json",
        "model.onnx",
        "preprocessor_config.json",
    ]
    report = json.loads((folder / "export_report.json").read_text())
    assert (report["backend"], report["files"], report["input_size"]) == ("optimum", ["model.onnx"], [96, 96])
    with pytest.raises(ValueError, match="holds this export's unvalidated files"):
        export_onnx(model, folder, validate=True, atol=1e-12, backend="optimum")
    assert _export_files(folder) == ["config.json", "model.onnx", "preprocessor_config.json"]
    assert RFDetrOnnxModel.from_pretrained(folder).input_size == (64, 64)
