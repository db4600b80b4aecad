"""Auto classes, the object-detection pipeline and loading a saved folder as remote code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForObjectDetection, pipeline

from hf_rfdetr import RFDetrConfig, RFDetrForObjectDetection, RFDetrImageProcessor, RFDetrModel

from .conftest import perturb_, tiny_config


def _scene(height: int = 90, width: int = 120, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    array = np.full((height, width, 3), 40, dtype=np.uint8)
    array[20:60, 30:80] = rng.integers(150, 255, size=3, dtype=np.uint8)
    return Image.fromarray(array)


@pytest.fixture
def saved_folder(tmp_path: Path) -> Path:
    """A perturbed tiny model and its processor, saved as a Hub-style folder."""
    config = tiny_config()
    torch.manual_seed(0)
    model = perturb_(RFDetrForObjectDetection(config), seed=1, scale=0.2)
    with torch.no_grad():
        model.class_embed.bias.fill_(1.5)  # scores around 0.5 instead of the 0.01 prior: some pass the threshold
    model.save_pretrained(tmp_path)
    RFDetrImageProcessor.from_config(config).save_pretrained(tmp_path)
    return tmp_path


def test_auto_classes_resolve_to_ours(saved_folder: Path) -> None:
    assert type(AutoConfig.for_model("rfdetr")) is RFDetrConfig
    assert type(AutoModel.from_config(tiny_config())) is RFDetrModel
    assert type(AutoModelForObjectDetection.from_config(tiny_config())) is RFDetrForObjectDetection
    assert type(AutoModelForObjectDetection.from_pretrained(saved_folder)) is RFDetrForObjectDetection
    processor = AutoImageProcessor.from_pretrained(saved_folder)
    assert type(processor) is RFDetrImageProcessor
    assert processor.size == {"height": 64, "width": 64} and processor.size_divisor == 16


def test_saved_folder_carries_the_code(saved_folder: Path) -> None:
    config = json.loads((saved_folder / "config.json").read_text())
    assert config["model_type"] == "rfdetr"
    assert config["auto_map"]["AutoModelForObjectDetection"] == "modeling_rfdetr.RFDetrForObjectDetection"
    assert config["auto_map"]["AutoModel"] == "modeling_rfdetr.RFDetrModel"  # the feature-extraction pipeline's
    processor = json.loads((saved_folder / "preprocessor_config.json").read_text())
    assert processor["auto_map"]["AutoImageProcessor"] == "image_processing_rfdetr.RFDetrImageProcessor"
    for module in ("modeling_rfdetr", "backbone_rfdetr", "projector_rfdetr", "decoder_rfdetr", "configuration_rfdetr"):
        assert (saved_folder / f"{module}.py").exists(), module


def _manual_detections(folder: Path, image: Image.Image, threshold: float) -> dict:
    processor = RFDetrImageProcessor.from_pretrained(folder)
    model = RFDetrForObjectDetection.from_pretrained(folder).eval()
    with torch.no_grad():
        outputs = model(**processor(image, return_tensors="pt"))
    return processor.post_process_object_detection(outputs, threshold, [(image.height, image.width)])[0]


def test_pipeline_returns_labels_scores_and_boxes(saved_folder: Path, monkeypatch) -> None:
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("the pipeline asked to trust remote code"))
    detector = pipeline("object-detection", model=str(saved_folder), threshold=0.5)
    image = _scene()
    detections = detector(image)
    expected = _manual_detections(saved_folder, image, 0.5)
    assert len(detections) == len(expected["scores"]) > 0
    names = RFDetrConfig.from_pretrained(saved_folder).id2label
    for found, score, label, box in zip(detections, expected["scores"], expected["labels"], expected["boxes"]):
        assert found["label"] == names[int(label)]
        assert found["score"] == pytest.approx(float(score), abs=1e-6) and found["score"] > 0.5
        corners = [found["box"][key] for key in ("xmin", "ymin", "xmax", "ymax")]
        assert corners == [int(v) for v in box.tolist()]
        assert 0 <= corners[0] <= corners[2] <= image.width and 0 <= corners[1] <= corners[3] <= image.height


def test_pipeline_takes_batches_of_mixed_sizes(saved_folder: Path) -> None:
    detector = pipeline("object-detection", model=str(saved_folder), threshold=0.3)
    images = [_scene(90, 120, seed=1), _scene(200, 64, seed=2)]
    batched = detector(images)
    assert [len(r) for r in batched] == [len(detector(image)) for image in images]
    assert all(d["box"]["xmax"] <= 64 for d in batched[1])


def test_pipeline_batch_size_above_the_decoder_depth_equals_single_calls(saved_folder: Path) -> None:
    """The pipeline splits every output tensor along dim 0 to unbatch it: with `intermediate_hidden_states` stacked
    layer first, a batch of more images than decoder layers (2 here) raised IndexError."""
    detector = pipeline("object-detection", model=str(saved_folder), threshold=0.3)
    images = [_scene(90, 120, seed=1), _scene(200, 64, seed=2), _scene(64, 64, seed=3), _scene(100, 50, seed=4)]
    assert detector.model.config.decoder_layers < len(images)
    batched = detector(images, batch_size=len(images))
    for image, found in zip(images, batched):
        single = detector(image)
        assert [d["label"] for d in found] == [d["label"] for d in single] and len(single) > 0
        assert [d["score"] for d in found] == pytest.approx([d["score"] for d in single], abs=1e-5)


def test_pipeline_batches_images_the_processor_pads_to_their_own_sizes(saved_folder: Path) -> None:
    """With `keep_aspect_ratio=True` the processor pads each image to its own size; transformers' collate function
    concatenated them as they were (RuntimeError for mixed shapes). The batch now equals the processor's own padded
    batch through the model and post-processing."""
    RFDetrImageProcessor.from_pretrained(saved_folder, keep_aspect_ratio=True).save_pretrained(saved_folder)
    detector = pipeline("object-detection", model=str(saved_folder), threshold=0.3)
    images = [_scene(90, 120, seed=1), _scene(200, 64, seed=2), _scene(64, 64, seed=3)]
    assert len({detector.image_processor(image, return_tensors="pt")["pixel_values"].shape for image in images}) > 1
    batched = detector(images, batch_size=len(images))
    processor, model = detector.image_processor, detector.model
    with torch.no_grad():
        outputs = model(**processor(images, return_tensors="pt"))
    sizes = [(image.height, image.width) for image in images]
    for found, expected in zip(batched, processor.post_process_object_detection(outputs, 0.3, sizes)):
        assert len(found) == len(expected["scores"])
        assert [d["score"] for d in found] == pytest.approx(expected["scores"].tolist(), abs=1e-5)
    assert sum(len(found) for found in batched) > 0


def test_image_feature_extraction_pipeline_returns_the_decoder_states(saved_folder: Path) -> None:
    """The second task transformers' rf_detr declares for its pipeline tests: a detection checkpoint loads as the
    base model (AutoModel) and the pipeline returns its last decoder states, (1, num_queries, d_model) per image."""
    extractor = pipeline("image-feature-extraction", model=str(saved_folder))
    assert type(extractor.model) is RFDetrModel
    images = [_scene(90, 120, seed=1), _scene(200, 64, seed=2)]
    processor = RFDetrImageProcessor.from_pretrained(saved_folder)
    detector = RFDetrForObjectDetection.from_pretrained(saved_folder).eval()
    config = detector.config
    for image, listed in zip(images, extractor(images)):
        with torch.no_grad():
            expected = detector.model(**processor(image, return_tensors="pt")).last_hidden_state
        assert np.asarray(listed).shape == (1, config.num_queries, config.d_model)
        torch.testing.assert_close(extractor(image, return_tensors=True), expected)
        np.testing.assert_allclose(np.asarray(listed), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_remote_code_loads_without_the_package(saved_folder: Path, tmp_path: Path) -> None:
    """`trust_remote_code=True` in a process where `hf_rfdetr` cannot be imported gives the same outputs."""
    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    torch.save(pixel_values, tmp_path / "pixels.pt")
    with torch.no_grad():
        expected = RFDetrForObjectDetection.from_pretrained(saved_folder).eval()(pixel_values)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["hf_rfdetr"] = None  # any import of the package now fails
        import torch
        from transformers import AutoImageProcessor, AutoModelForObjectDetection, pipeline
        model = AutoModelForObjectDetection.from_pretrained({str(saved_folder)!r}, trust_remote_code=True).eval()
        processor = AutoImageProcessor.from_pretrained({str(saved_folder)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        from transformers import AutoModel
        base = AutoModel.from_pretrained({str(saved_folder)!r}, trust_remote_code=True)
        assert type(base).__name__ == "RFDetrModel", type(base)
        with torch.no_grad():
            out = model(torch.load({str(tmp_path / "pixels.pt")!r}))
        torch.save({{"logits": out.logits, "pred_boxes": out.pred_boxes}}, {str(tmp_path / "out.pt")!r})
        detector = pipeline("object-detection", model=model, image_processor=processor)
        from PIL import Image
        print("detections", len(detector(Image.new("RGB", (50, 40)), threshold=0.0)))
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is not supported for object-detection" not in result.stderr  # no list of ~150 supported models
    assert "detections 60" in result.stdout  # threshold 0 keeps all 20 queries x 3 labels
    actual = torch.load(tmp_path / "out.pt")
    assert (actual["logits"] - expected.logits).abs().max() <= 1e-6
    assert (actual["pred_boxes"] - expected.pred_boxes).abs().max() <= 1e-6


def test_remote_code_pipeline_with_keep_aspect_ratio(saved_folder: Path, tmp_path: Path) -> None:
    """Without the package, transformers' own object-detection pipeline with a `keep_aspect_ratio=True` processor:
    single images and same-size batches give the package's boxes; a batch of images the processor pads to different
    sizes (which transformers' collate function concatenates as they are: "Sizes of tensors must match") is refused
    with a ValueError naming the cause and the fixes (`import hf_rfdetr`, whose pipeline pads the batch, or
    batch_size=1)."""
    RFDetrImageProcessor.from_pretrained(saved_folder, keep_aspect_ratio=True).save_pretrained(saved_folder)
    wide, tall = _scene(90, 120, seed=1), _scene(200, 64, seed=2)
    wide.save(tmp_path / "wide.png")
    tall.save(tmp_path / "tall.png")
    expected = pipeline("object-detection", model=str(saved_folder))(wide, threshold=0.3)
    assert len(expected) > 0
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["hf_rfdetr"] = None  # any import of the package now fails
        from transformers import pipeline
        detector = pipeline("object-detection", model={str(saved_folder)!r}, trust_remote_code=True)
        assert type(detector).__name__ == "ObjectDetectionPipeline", type(detector)
        wide, tall = {str(tmp_path / "wide.png")!r}, {str(tmp_path / "tall.png")!r}
        print(json.dumps([detector(wide, threshold=0.3), *detector([wide, wide], threshold=0.3, batch_size=2)]))
        try:
            detector([wide, tall], threshold=0.3, batch_size=2)
        except Exception as error:
            print(json.dumps([type(error).__name__, str(error)]))
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found, (error_type, message) = (json.loads(line) for line in result.stdout.strip().splitlines()[-2:])
    for detections in found:
        assert [d["box"] for d in detections] == [d["box"] for d in expected]
        assert [d["score"] for d in detections] == pytest.approx([d["score"] for d in expected], abs=1e-5)
    assert error_type == "ValueError", message
    assert "different sizes [(" in message and "keep_aspect_ratio=True" in message
    assert "import hf_rfdetr" in message and "batch_size=1" in message


@pytest.mark.parametrize(("dtype", "score_tolerance"), [(torch.float16, 0.03), (torch.bfloat16, 0.15)])
def test_pipeline_on_a_model_loaded_in_half_precision(dtype: torch.dtype, score_tolerance: float) -> None:
    """`from_pretrained(..., dtype=torch.float16 / torch.bfloat16)` then the pipeline, on a batch of two sizes (a
    padded batch): the float32 detections. PyTorch's half-precision `grid_sample` on the CPU returned NaN for some
    sampling locations, which left no detection at all; the deformable sampling now runs in float32. bfloat16 moves
    the scores by up to 0.092 on the demo checkpoint (as bf16 autocast over the whole model does), float16 by 0.013."""
    from hf_rfdetr.demo_assets import DEMO_IMAGE, DEMO_MODEL
    from hf_rfdetr.onnx.quantization import match_detections

    processor = AutoImageProcessor.from_pretrained(DEMO_MODEL)
    images = [Image.open(DEMO_IMAGE).convert("RGB")]
    images.append(images[0].resize((images[0].width // 2, images[0].height)))
    results = {}
    for name in (torch.float32, dtype):
        model = AutoModelForObjectDetection.from_pretrained(DEMO_MODEL, dtype=name)
        assert next(model.parameters()).dtype == name
        results[name] = pipeline("object-detection", model=model, image_processor=processor)(images, threshold=0.3)
    for expected, actual in zip(results[torch.float32], results[dtype]):
        assert sum(detection["score"] >= 0.5 for detection in expected) >= 3  # something to compare
        match = match_detections(
            expected, actual, threshold=0.5, margin=0.2, iou_threshold=0.9, score_tolerance=score_tolerance
        )
        assert match.ok, match.problems()
