"""ONNX export of `RFDetrForInstanceSegmentation`: the graph returns `pred_masks` with a dynamic batch, onnxruntime
equals PyTorch at batch 1 and 3 (mask logits included), the runner feeds `post_process_instance_segmentation` and the
image-segmentation pipeline, the int8 export keeps the mask head float32, and Optimum knows the segmentation task.

Tests marked `optimum` need Optimum's exporter (transformers 4.57); scripts/test.sh runs them in that environment.
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
from PIL import Image
from transformers import pipeline

from hf_rfdetr import (
    RFDetrConfig,
    RFDetrForInstanceSegmentation,
    RFDetrForObjectDetection,
    RFDetrImageProcessor,
    RFDetrOnnxModel,
    export_onnx,
)
from hf_rfdetr.models.rfdetr.outputs_rfdetr import RFDetrInstanceSegmentationOutput
from hf_rfdetr.onnx import compare_outputs
from hf_rfdetr.onnx.quantization import FLOAT_MODULES, SEGMENTATION_FLOAT_MODULES, float_module_names, node_scope
from hf_rfdetr.onnx.validation import MASK_RTOL, TIE_GAP, validate_export, validation_tolerances

from .conftest import perturb_, tiny_config

ATOL = 1e-4
OUTPUTS = ("logits", "pred_boxes", "pred_masks")


def _tiny_seg_model(seed: int = 0) -> RFDetrForInstanceSegmentation:
    # positional_encoding_size 6 on an 8 x 8 patch grid: the interpolated position embedding is exported too;
    # group_detr 13: the graph must hold one query group.
    torch.manual_seed(seed)
    config = tiny_config(segmentation_head=True, positional_encoding_size=6, group_detr=13)
    return perturb_(RFDetrForInstanceSegmentation(config), seed, scale=0.05).eval()


@pytest.fixture(scope="module")
def seg_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[RFDetrForInstanceSegmentation, Path]:
    model = _tiny_seg_model()
    folder = export_onnx(model, tmp_path_factory.mktemp("seg-onnx"), validate=True, quantize=True, backend="torch")
    return model, folder


def _pixels(batch_size: int, seed: int, size: int = 64) -> torch.Tensor:
    return torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _images(count: int) -> list[Image.Image]:
    return [
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (50 + 9 * i, 70, 3), dtype=np.uint8))
        for i in range(count)
    ]


# ---------------------------------------------------------------------------------------------- outputs and graph
@pytest.mark.parametrize("batch_size", [1, 3])
def test_onnxruntime_equals_pytorch_with_masks(seg_export, batch_size: int) -> None:
    model, folder = seg_export
    onnx_model = RFDetrOnnxModel.from_pretrained(folder)
    assert onnx_model.segmentation
    pixel_values = _pixels(batch_size, seed=batch_size)
    with torch.no_grad():
        expected = model(pixel_values=pixel_values)
    actual = onnx_model(pixel_values=pixel_values)
    assert isinstance(actual, RFDetrInstanceSegmentationOutput)
    assert actual.pred_masks.shape == expected.pred_masks.shape == (batch_size, 20, 16, 16)  # (H // 4, W // 4)
    assert expected.pred_masks.abs().max() > 1.0  # mask logits that matter, not a zero head
    comparison = compare_outputs(expected, actual)
    assert set(comparison) == {"logits", "pred_boxes", "pred_masks", "proposal_score_gap"}
    assert max(comparison["logits"], comparison["pred_boxes"], comparison["pred_masks"]) <= ATOL, comparison


def test_graph_outputs_masks_with_a_dynamic_batch(seg_export) -> None:
    model, folder = seg_export
    graph = onnx.load(str(folder / "model.onnx")).graph
    assert [o.name for o in graph.output] == ["logits", "pred_boxes", "pred_masks"]
    for value in (*graph.input, *graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch_size", value.name
    report = json.loads((folder / "export_report.json").read_text())
    assert report["files"] == ["model.onnx", "model_quantized.onnx"]
    validation = report["validation"]["model.onnx"]
    assert validation["pred_masks@batch1"] <= ATOL and validation["pred_masks@batch3"] <= ATOL
    assert set(report["tolerances"]) == {f"{name}@batch{batch}" for name in OUTPUTS for batch in (1, 3)}
    assert json.loads((folder / "config.json").read_text())["segmentation_head"] is True


def test_post_processed_instances_identical(seg_export) -> None:
    model, folder = seg_export
    processor = RFDetrImageProcessor.from_pretrained(folder)
    onnx_model = RFDetrOnnxModel.from_pretrained(folder)
    images = _images(2)
    inputs = processor(images, return_tensors="pt")
    sizes = [(image.height, image.width) for image in images]
    with torch.no_grad():
        expected = processor.post_process_instance_segmentation(model(**inputs), 0.0, sizes, top_k=10)
    actual = processor.post_process_instance_segmentation(onnx_model(**inputs), 0.0, sizes, top_k=10)
    for ours, theirs, size in zip(actual, expected, sizes):
        assert theirs["masks"].shape == (10, *size) and theirs["masks"].any()
        assert torch.equal(ours["labels"], theirs["labels"])
        torch.testing.assert_close(ours["scores"], theirs["scores"], atol=ATOL, rtol=0)
        # A pixel flips only where the resized logit is within ~1e-5 of the 0.5 threshold.
        assert (ours["masks"] != theirs["masks"]).float().mean() < 1e-3
        assert torch.equal(ours["segmentation"], theirs["segmentation"]) or (
            (ours["segmentation"] != theirs["segmentation"]).float().mean() < 1e-3
        )


def test_image_segmentation_pipeline_runs_the_onnx_model(seg_export, caplog: pytest.LogCaptureFixture) -> None:
    model, folder = seg_export
    processor = RFDetrImageProcessor.from_pretrained(folder)
    image = _images(1)[0]
    with_onnx = pipeline("image-segmentation", model=RFDetrOnnxModel.from_pretrained(folder), image_processor=processor)
    with_torch = pipeline("image-segmentation", model=model, image_processor=processor)
    assert "is not supported for image-segmentation" not in caplog.text  # the runner is in the names table
    # Random weights give overlapping masks: keep every segment that owns a pixel (the pipeline's default is 0.5).
    settings = dict(threshold=0.0, overlap_mask_area_threshold=0.0)
    ours, theirs = with_onnx(image, **settings), with_torch(image, **settings)
    assert len(theirs) >= 2, [t["score"] for t in theirs]
    assert [s["label"] for s in ours] == [s["label"] for s in theirs]
    assert np.allclose([s["score"] for s in ours], [s["score"] for s in theirs], atol=ATOL)
    for segment, reference in zip(ours, theirs):
        assert segment["mask"].size == image.size
        ours_mask, reference_mask = np.asarray(segment["mask"]), np.asarray(reference["mask"])
        assert reference_mask.any() and (ours_mask != reference_mask).mean() < 1e-3


# ------------------------------------------------------------------------------------------------------ int8
def test_int8_keeps_the_mask_head_float(seg_export) -> None:
    """The detection rule (projector, heads, sampling) plus the whole mask head stay float32; the backbone is int8."""
    model, folder = seg_export
    report = json.loads((folder / "export_report.json").read_text())
    assert report["float_modules"] == list(SEGMENTATION_FLOAT_MODULES)
    assert set(FLOAT_MODULES) < set(SEGMENTATION_FLOAT_MODULES)
    graph = onnx.load(str(folder / "model_quantized.onnx")).graph
    nodes = {node.name: node for node in graph.node}
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    mask_nodes = [name for name in report["float_nodes"] if "segmentation_head" in node_scope(name)]
    # Per decoder layer a depthwise conv and a linear; the spatial projection; the query MLP (2) and projection.
    assert len(mask_nodes) == 2 * model.config.decoder_layers + 1 + 2 + 1, mask_nodes
    for name in mask_nodes:
        assert nodes[name].op_type in ("MatMul", "Conv", "Gemm") and f"{name}_quant" not in nodes, name
        assert initializers[nodes[name].input[1]].data_type == onnx.TensorProto.FLOAT, name
    matrices = [
        n
        for n in float_module_names(model, SEGMENTATION_FLOAT_MODULES)
        if getattr(model.get_submodule(n), "weight", torch.ones(1)).ndim > 1
    ]
    assert len(report["float_nodes"]) == len(matrices)
    quantized = [node.name for node in graph.node if node.op_type == "MatMulInteger"]
    assert not any("segmentation_head" in name for name in quantized)
    assert len([name for name in quantized if "/backbone/" in name]) == 4 * model.config.backbone_num_hidden_layers
    int8_model = RFDetrOnnxModel.from_pretrained(folder, file_name="model_quantized.onnx")
    assert int8_model(pixel_values=_pixels(2, seed=4)).pred_masks.shape == (2, 20, 16, 16)


# -------------------------------------------------------------------------------------- folders, errors, checks
def test_export_of_a_saved_folder_loads_the_segmentation_class(tmp_path: Path) -> None:
    model = _tiny_seg_model(seed=3)
    model.save_pretrained(tmp_path / "model")
    folder = export_onnx(tmp_path / "model", tmp_path / "onnx", validate=True, backend="torch")
    validation = json.loads((folder / "export_report.json").read_text())["validation"]["model.onnx"]
    assert {"pred_masks@batch1", "pred_masks@batch3"} <= set(validation)
    assert RFDetrOnnxModel.from_pretrained(folder).segmentation


def test_detector_built_from_a_seg_config_exports_a_detector(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The class decides the graph: an `RFDetrForObjectDetection` of a Seg config (no mask head) exports logits and
    boxes; the runner reads the graph's outputs, runs it as a detector and says why there are no masks."""
    torch.manual_seed(0)
    detector = perturb_(RFDetrForObjectDetection(tiny_config(segmentation_head=True)), 0).eval()
    folder = export_onnx(detector, tmp_path, backend="torch", validate=True, quantize=True)
    assert json.loads((folder / "export_report.json").read_text())["float_modules"] == list(FLOAT_MODULES)
    assert [o.name for o in onnx.load(str(folder / "model.onnx")).graph.output] == ["logits", "pred_boxes"]
    onnx_model = RFDetrOnnxModel.from_pretrained(folder)
    assert not onnx_model.segmentation and "has no 'pred_masks' output although its config.json" in caplog.text
    outputs = onnx_model(_pixels(1, 0))
    assert type(outputs).__name__ == "RFDetrObjectDetectionOutput" and "pred_masks" not in outputs


def test_validation_fails_on_a_mask_difference(seg_export) -> None:
    """A graph whose masks alone disagree with the model (the mask bias changed after export) is refused."""
    model, folder = seg_export
    changed = _tiny_seg_model()
    with torch.no_grad():
        changed.segmentation_head.bias.add_(0.5)
    with pytest.raises(ValueError, match=r"onnxruntime differs from PyTorch by 5\.0.e-01 > atol 0.0001"):
        validate_export(changed, folder, ["model.onnx"], 64, 64, ATOL, fp16=False)
    comparison = compare_outputs(
        changed(pixel_values=_pixels(1, 0)), RFDetrOnnxModel.from_pretrained(folder)(_pixels(1, 0))
    )
    assert comparison["logits"] <= ATOL and comparison["pred_masks"] == pytest.approx(0.5, abs=1e-4)


# -------------------------------------------------------------------------------------------------------- Optimum
@pytest.mark.optimum
def test_optimum_knows_the_segmentation_task() -> None:
    from optimum.exporters.tasks import TasksManager

    import hf_rfdetr  # noqa: F401  (registers with Optimum)

    tasks = TasksManager.get_supported_tasks_for_model_type("rfdetr", "onnx", library_name="transformers")
    assert {"object-detection", "image-segmentation"} <= set(tasks)
    model_class = TasksManager.get_model_class_for_task("image-segmentation", model_type="rfdetr")
    assert model_class.from_config(_tiny_seg_model().config).__class__ is RFDetrForInstanceSegmentation


@pytest.mark.optimum
def test_optimum_main_export_of_a_segmentation_folder(tmp_path: Path) -> None:
    from optimum.exporters.onnx import main_export

    model = _tiny_seg_model(seed=6)
    model.save_pretrained(tmp_path / "model")
    RFDetrImageProcessor.from_config(model.config).save_pretrained(tmp_path / "model")
    main_export(str(tmp_path / "model"), output=tmp_path / "onnx", task="image-segmentation")
    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph
    assert [o.name for o in graph.output] == ["logits", "pred_boxes", "pred_masks"]
    onnx_model = RFDetrOnnxModel.from_pretrained(tmp_path / "onnx")
    for batch_size in (1, 3):
        pixel_values = _pixels(batch_size, seed=10 + batch_size)
        with torch.no_grad():
            comparison = compare_outputs(model(pixel_values=pixel_values), onnx_model(pixel_values=pixel_values))
        assert max(comparison["logits"], comparison["pred_boxes"], comparison["pred_masks"]) <= ATOL, comparison


@pytest.mark.optimum
def test_optimum_and_torch_backends_write_the_same_segmentation_graph(tmp_path: Path) -> None:
    model = _tiny_seg_model(seed=8)
    with_optimum = export_onnx(model, tmp_path / "optimum", backend="optimum", validate=True)
    with_torch = export_onnx(model, tmp_path / "torch", backend="torch")
    report = json.loads((with_optimum / "export_report.json").read_text())
    assert report["backend"] == "optimum" and report["validation"]["model.onnx"]["pred_masks@batch3"] <= ATOL
    op_types = [
        [node.op_type for node in onnx.load(str(f / "model.onnx")).graph.node] for f in (with_optimum, with_torch)
    ]
    assert op_types[0] == op_types[1]
    pixel_values = _pixels(2, seed=8)
    first = RFDetrOnnxModel.from_pretrained(with_optimum)(pixel_values=pixel_values)
    second = RFDetrOnnxModel.from_pretrained(with_torch)(pixel_values=pixel_values)
    assert torch.equal(first.pred_masks, second.pred_masks) and torch.equal(first.logits, second.logits)


@pytest.mark.optimum
def test_optimum_segmentation_task_refuses_a_detector(tmp_path: Path) -> None:
    from optimum.exporters.onnx import main_export

    from hf_rfdetr.onnx.optimum import RFDetrOnnxConfig

    torch.manual_seed(0)
    RFDetrForObjectDetection(tiny_config()).save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match=r"RFDetrForInstanceSegmentation needs config.segmentation_head=True"):
        main_export(str(tmp_path / "model"), output=tmp_path / "onnx", task="image-segmentation")
    # The ONNX config itself, as `custom_onnx_configs` would use it, says the same.
    with pytest.raises(ValueError, match=r"needs a segmentation model .*task 'object-detection'"):
        _ = RFDetrOnnxConfig(tiny_config(), task="image-segmentation").outputs
    assert list(RFDetrOnnxConfig(tiny_config(), task="object-detection").outputs) == ["logits", "pred_boxes"]
    outputs = RFDetrOnnxConfig(tiny_config(segmentation_head=True), task="image-segmentation").outputs
    assert outputs == {name: {0: "batch_size"} for name in ("logits", "pred_boxes", "pred_masks")}


def test_mask_tolerance_scales_with_the_mask_logits() -> None:
    """Mask logits are allowed `atol + MASK_RTOL * max |logit|` (float32 rounding of a d_model-long dot product); the
    other outputs `atol`."""
    expected = {
        "logits": torch.zeros(1, 2, 3),
        "pred_boxes": torch.zeros(1, 2, 4),
        "pred_masks": torch.full((1, 2, 4, 4), -40.0),
    }
    tolerances = validation_tolerances(expected, ATOL)
    assert tolerances["logits"] == tolerances["pred_boxes"] == ATOL
    assert tolerances["pred_masks"] == pytest.approx(ATOL + MASK_RTOL * 40.0) and MASK_RTOL == 5e-6
    assert set(validation_tolerances({"logits": None, "pred_boxes": None}, ATOL)) == {"logits", "pred_boxes"}


# ----------------------------------------------------------------------------------------------- real model sizes
@pytest.mark.slow
def test_seg_nano_export_matches_pytorch(tmp_path: Path) -> None:
    """Seg Nano at 312 px with perturbed random weights: logits and boxes within 1e-4, mask logits (about 40) within
    1e-4 + 5e-6 x max |logit| (measured: 1.0e-4 to 1.3e-4, as far apart as PyTorch float32 is from float64)."""
    torch.manual_seed(0)
    model = perturb_(RFDetrForInstanceSegmentation(RFDetrConfig.from_variant("seg-nano")), seed=0).eval()
    with torch.no_grad():  # untrained proposal scores sit on the prior bias, near-tied (see tests/test_onnx.py)
        model.model.enc_out_class_embed.bias.zero_()
    folder = export_onnx(model, tmp_path, validate=True, backend="torch")
    report = json.loads((folder / "export_report.json").read_text())
    validation, tolerances = report["validation"]["model.onnx"], report["tolerances"]
    for batch in (1, 3):  # within tolerance, or an input whose ranking is tied to rounding (the export warned)
        assert tolerances[f"logits@batch{batch}"] == ATOL and tolerances[f"pred_masks@batch{batch}"] > 1.5 * ATOL
        within = all(validation[f"{name}@batch{batch}"] <= tolerances[f"{name}@batch{batch}"] for name in OUTPUTS)
        assert within or validation[f"proposal_score_gap@batch{batch}"] < TIE_GAP, validation
    onnx_model = RFDetrOnnxModel.from_pretrained(folder)
    pixel_values = torch.randn(3, 3, 312, 312, generator=torch.Generator().manual_seed(1))
    strict = []
    for batch in (pixel_values[:1], pixel_values[1:2], pixel_values[2:], pixel_values):
        with torch.no_grad():
            expected = model(pixel_values=batch)
        comparison = compare_outputs(expected, onnx_model(pixel_values=batch))
        tolerances = validation_tolerances(expected, ATOL)
        assert expected.pred_masks.abs().max() > 10.0  # mask logits of the size a trained model gives (about 40)
        ok = all(comparison[name] <= tolerance for name, tolerance in tolerances.items())
        assert ok or comparison["proposal_score_gap"] < TIE_GAP, comparison
        strict.append(ok)
    assert sum(strict) >= 2, strict


@pytest.mark.optimum
def test_optimum_cli_entry_point_exports_masks(tmp_path: Path) -> None:
    """`python -m hf_rfdetr.onnx.optimum_cli export onnx --task image-segmentation` (optimum-cli's arguments)."""
    model = _tiny_seg_model(seed=9)
    model.save_pretrained(tmp_path / "model")
    arguments = ["export", "onnx", "--model", str(tmp_path / "model"), "--task", "image-segmentation"]
    result = subprocess.run(
        [sys.executable, "-m", "hf_rfdetr.onnx.optimum_cli", *arguments, str(tmp_path / "onnx")],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pixel_values = _pixels(2, seed=9)
    with torch.no_grad():
        expected = model(pixel_values=pixel_values)
    comparison = compare_outputs(expected, RFDetrOnnxModel.from_pretrained(tmp_path / "onnx")(pixel_values))
    assert max(comparison[name] for name in OUTPUTS) <= ATOL, comparison
