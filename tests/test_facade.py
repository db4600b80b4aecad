"""The `rfdetr`-style facade: loading, `predict` on every input kind, batching, errors, train, export, optimise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import torch
from PIL import Image

import hf_rfdetr
from hf_rfdetr import COCO_CLASSES, RFDETR, RFDETRBase, RFDetrForObjectDetection, RFDetrImageProcessor, RFDETRNano

from .conftest import perturb_, tiny_config
from .synthetic_coco import class_names, write_synthetic_coco


def save_tiny(folder: Path, seed: int = 0, **overrides) -> Path:
    """A perturbed tiny model and its processor saved to `folder` (class bias raised: scores spread over (0, 1))."""
    config = tiny_config(**overrides)
    torch.manual_seed(seed)
    model = perturb_(RFDetrForObjectDetection(config), seed=seed)
    with torch.no_grad():
        model.class_embed.bias.add_(3.0)
    model.save_pretrained(folder)
    RFDetrImageProcessor.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("facade") / "tiny")


@pytest.fixture(scope="module")
def detector(tiny_folder: Path) -> RFDETR:
    return RFDETR(pretrain_weights=tiny_folder, device="cpu")


def random_image(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def by_hand(detector: RFDETR, images: list[Image.Image], threshold: float) -> list[dict[str, torch.Tensor]]:
    """The model and processor run directly, as the README's Auto-class snippet does."""
    model = RFDetrForObjectDetection.from_pretrained(detector_folder(detector)).eval()
    processor = RFDetrImageProcessor.from_pretrained(detector_folder(detector))
    with torch.no_grad():
        outputs = model(**processor(images, return_tensors="pt"))
    sizes = [(image.height, image.width) for image in images]
    return processor.post_process_object_detection(outputs, threshold=threshold, target_sizes=sizes)


def detector_folder(detector: RFDETR) -> str:
    return detector.model.name_or_path


def assert_same(detections, expected: dict[str, torch.Tensor], names: dict[int, str]) -> None:
    assert isinstance(detections, sv.Detections)
    assert len(detections) == len(expected["scores"]) > 0
    np.testing.assert_allclose(detections.xyxy, expected["boxes"].numpy(), atol=1e-4)
    np.testing.assert_allclose(detections.confidence, expected["scores"].numpy(), atol=1e-6)
    np.testing.assert_array_equal(detections.class_id, expected["labels"].numpy())
    assert list(detections.data["class_name"]) == [names[int(i)] for i in expected["labels"]]


def test_predict_equals_the_post_processed_model_output(detector: RFDETR, tiny_folder: Path) -> None:
    image = Image.fromarray(random_image(48, 80, seed=1))
    expected = by_hand(detector, [image], threshold=0.3)[0]
    detections = detector.predict(image, threshold=0.3)
    assert_same(detections, expected, detector.model.config.id2label)
    assert detections.xyxy.max() <= 80 and detections.xyxy[:, [1, 3]].max() <= 48  # pixels of the original image
    assert detector.class_names == ["cat", "dog", "bird"] and detector.resolution == 64


def test_every_input_kind_gives_the_same_detections(detector: RFDETR, tmp_path: Path) -> None:
    array = random_image(40, 56, seed=2)
    path = tmp_path / "image.png"
    Image.fromarray(array).save(path)
    reference = detector.predict(Image.fromarray(array), threshold=0.3)
    assert len(reference) > 0
    inputs = {
        "path": str(path),
        "pathlib": path,
        "numpy": array,
        "numpy-bgr-view": array[:, :, ::-1].copy()[:, :, ::-1],  # negative strides, as frame[:, :, ::-1]
        "float-numpy": array.astype(np.float32) / 255,
        "tensor": torch.from_numpy(array).permute(2, 0, 1).float() / 255,
        "rgba": Image.fromarray(array).convert("RGBA"),
    }
    for kind, image in inputs.items():
        detections = detector.predict(image, threshold=0.3)
        np.testing.assert_allclose(detections.xyxy, reference.xyxy, atol=1e-3, err_msg=kind)
        np.testing.assert_array_equal(detections.class_id, reference.class_id, err_msg=kind)


def test_a_list_is_one_batch_equal_to_one_by_one(detector: RFDETR, monkeypatch) -> None:
    images = [random_image(40, 56, seed=3), Image.fromarray(random_image(72, 30, seed=4)), random_image(64, 64, 5)]
    single = [detector.predict(image, threshold=0.2) for image in images]
    calls = []
    forward = detector.model.forward
    monkeypatch.setattr(detector.model, "forward", lambda **kw: calls.append(kw["pixel_values"].shape) or forward(**kw))
    batched = detector.predict(images, threshold=0.2)
    assert calls == [(3, 3, 64, 64)]  # one forward pass for the three images
    assert isinstance(batched, list) and len(batched) == 3
    for one, many in zip(single, batched):
        np.testing.assert_allclose(many.xyxy, one.xyxy, atol=1e-4)
        np.testing.assert_allclose(many.confidence, one.confidence, atol=1e-5)
    assert isinstance(detector.predict([images[0]]), list)  # a list of one stays a list


def test_batch_equals_the_model_run_by_hand(detector: RFDETR) -> None:
    images = [Image.fromarray(random_image(50, 70, seed=6)), Image.fromarray(random_image(64, 33, seed=7))]
    expected = by_hand(detector, images, threshold=0.25)
    for detections, result in zip(detector.predict(images, threshold=0.25), expected):
        assert_same(detections, result, detector.model.config.id2label)


def test_urls_are_fetched_and_offline_errors_name_them(detector: RFDETR, monkeypatch) -> None:
    import io
    import urllib.error

    import hf_rfdetr.models.rfdetr.image_io as image_io

    image = Image.fromarray(random_image(40, 56, seed=8))
    encoded = io.BytesIO()
    image.save(encoded, format="PNG")
    fetched = []
    monkeypatch.setattr(image_io, "_fetch", lambda url, timeout=None: fetched.append(url) or encoded.getvalue())
    detections = detector.predict("https://example.com/dog.jpeg", threshold=0.3)
    assert fetched == ["https://example.com/dog.jpeg"]
    np.testing.assert_allclose(detections.xyxy, detector.predict(image, threshold=0.3).xyxy)

    def offline(url, timeout=None):
        raise urllib.error.URLError("Failed to resolve 'example.com'")

    monkeypatch.undo()
    monkeypatch.setattr(image_io.urllib.request, "urlopen", offline)
    with pytest.raises(OSError, match=r"could not fetch https://example.com/dog.jpeg \(URLError"):
        detector.predict(["https://example.com/dog.jpeg"])


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((3, 40, 4), np.uint8), r"image 0: numpy array of shape \(3, 40, 4\) is ambiguous"),
        (np.zeros((2, 40, 40, 3), np.uint8), "Pass a list of images for a batch"),
        (np.zeros((40, 40, 3), np.int64), "unsupported dtype int64; pass uint8"),
        (np.full((40, 40, 3), 2.0, np.float32), r"Image 0: float image has pixel values above 1"),
        (torch.zeros(40, 40, 2), r"image 0: expected 1 \(gray\), 3 \(RGB\) or 4 \(RGBA\) channels"),
        (torch.zeros(3, 40, 40, dtype=torch.int32), "unsupported dtype torch.int32"),
        (torch.full((3, 40, 40), 255.0), r"float image has pixel values above 1 \(max 255\)"),
    ],
)
def test_bad_arrays_are_explained(detector: RFDETR, image, message: str) -> None:
    """One rule for arrays and tensors, `hf_rfdetr.models.rfdetr.image_io.to_chw`, shared with the processor."""
    with pytest.raises(ValueError, match=message):
        detector.predict(image)


def test_bad_files_and_types_are_explained(detector: RFDETR, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image 1: '.*missing.jpg' does not exist"):
        detector.predict([random_image(40, 40, 0), str(tmp_path / "missing.jpg")])
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="notes.jpg' is not an image Pillow can read"):
        detector.predict(tmp_path / "notes.jpg")
    with pytest.raises(TypeError, match="unsupported type int"):
        detector.predict(3)
    with pytest.raises(ValueError, match="empty list"):
        detector.predict([])


def test_coco_slot_models_name_detections_with_coco_classes(tmp_path: Path) -> None:
    from hf_rfdetr import COCO_ID2LABEL

    folder = save_tiny(tmp_path / "coco", id2label=dict(COCO_ID2LABEL))
    detections = RFDETR(pretrain_weights=folder, device="cpu").predict(random_image(48, 48, 9), threshold=0.0)
    assert len(detections) > 0
    for class_id, name in zip(detections.class_id, detections.data["class_name"]):
        assert name == COCO_CLASSES.get(int(class_id), "N/A")  # COCO category ids: COCO_CLASSES[class_id] names them
    known = [int(i) for i in detections.class_id if int(i) in COCO_CLASSES]
    assert known and [COCO_CLASSES[i] for i in known]  # the reference README's lookup works


def test_supervision_annotators_take_the_detections(detector: RFDETR) -> None:
    image = Image.fromarray(random_image(48, 64, seed=10))
    detections = detector.predict(image, threshold=0.3)
    labels = [
        f"{name} {confidence:.2f}" for name, confidence in zip(detections.data["class_name"], detections.confidence)
    ]
    annotated = sv.BoxAnnotator().annotate(image.copy(), detections)
    annotated = sv.LabelAnnotator().annotate(annotated, detections, labels)
    assert annotated.size == image.size and np.asarray(annotated).tolist() != np.asarray(image).tolist()


def test_a_new_architecture_or_none_gives_a_random_model_with_a_clear_warning(tmp_path: Path, monkeypatch) -> None:
    """Without pretrain_weights the COCO checkpoint is loaded (tests/test_pretrained_weights.py); fields that change
    the architecture, or pretrain_weights=None (as in the original), give random weights and say so."""
    monkeypatch.chdir(tmp_path)  # no rf-detr-nano.pth here
    with pytest.warns(UserWarning, match=r"RFDETRNano\(\): num_queries describe\(s\) a new architecture.*RANDOM"):
        model = RFDETRNano(device="cpu", num_queries=30)
    assert model.model.config.variant == "nano" and model.model.config.num_labels == 91
    assert model.model.config.num_queries == 30 and model.resolution == 384
    assert model.processor.size == {"height": 384, "width": 384}
    with pytest.warns(UserWarning, match=r"RFDETRBase\(\): pretrain_weights=None, so .*rf-detr-base.pth.*RANDOM"):
        model = RFDETRBase(None, device="cpu", resolution=448, class_names=["apple", "pear"])
    assert model.class_names == ["apple", "pear"] and model.processor.size["height"] == 448
    assert model.model.config.positional_encoding_size == 37  # Base keeps DINOv2's grid and interpolates


def test_loading_options_and_errors(tiny_folder: Path, tmp_path: Path) -> None:
    resized = RFDETR(pretrain_weights=tiny_folder, resolution=96, device="cpu")
    assert resized.resolution == 96 and resized.processor.size == {"height": 96, "width": 96}
    assert len(resized.predict(random_image(50, 50, 11), threshold=0.0)) > 0
    relabelled = RFDETR(pretrain_weights=tiny_folder, class_names=["a", "b"], device="cpu")
    assert relabelled.class_names == ["a", "b"] and relabelled.model.class_embed.out_features == 2
    original = RFDETR(pretrain_weights=tiny_folder, device="cpu").model.state_dict()
    kept = relabelled.model.state_dict()
    assert torch.equal(
        kept["model.backbone.embeddings.patch_embeddings.projection.weight"],
        original["model.backbone.embeddings.patch_embeddings.projection.weight"],
    )
    with pytest.raises(FileNotFoundError, match="pretrain_weights '.*missing.pth' does not exist"):
        RFDETR(pretrain_weights=tmp_path / "missing.pth")
    with pytest.raises(OSError, match="'nobody/no-such-model' is not a local folder or file.*Hub"):
        RFDETR(pretrain_weights="nobody/no-such-model")
    with pytest.raises(
        ValueError, match=r"num_queries describe\(s\) the architecture, which pretrain_weights=.* fixes"
    ):
        RFDETR(pretrain_weights=tiny_folder, num_queries=10)
    with pytest.raises(ValueError, match="num_classes=3 but 2 class_names"):
        RFDETR(pretrain_weights=tiny_folder, num_classes=3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="resolution"):
        RFDETR(pretrain_weights=tiny_folder, resolution=70)


def test_lazy_public_names_are_the_facade_classes() -> None:
    import hf_rfdetr.facade as facade

    names = (
        "RFDETR",
        "RFDETRNano",
        "RFDETRSmall",
        "RFDETRMedium",
        "RFDETRBase",
        "RFDETRLarge",
        "RFDETRLargeDeprecated",
        "RFDETRSeg",
        "RFDETRSegPreview",
        "RFDETRSegNano",
        "RFDETRSegSmall",
        "RFDETRSegMedium",
        "RFDETRSegLarge",
        "RFDETRSegXLarge",
        "RFDETRSeg2XLarge",
    )
    for name in names:
        assert getattr(hf_rfdetr, name) is getattr(facade, name)
        assert issubclass(getattr(hf_rfdetr, name), RFDETR)
    variants = {cls.variant for cls in RFDETR.__subclasses__() if cls is not facade.RFDETRSeg}
    assert variants == {"nano", "small", "medium", "base", "large", "large-legacy"}
    seg = {cls.variant for cls in facade.RFDETRSeg.__subclasses__()}
    assert seg == {"seg-preview", "seg-nano", "seg-small", "seg-medium", "seg-large", "seg-xlarge", "seg-2xlarge"}


def test_optimize_for_inference(detector: RFDETR, monkeypatch) -> None:
    image = random_image(48, 64, seed=12)
    reference = detector.predict(image, threshold=0.3)
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module: compiled.append(module) or module)
    weights = {name: tensor.clone() for name, tensor in detector.model.state_dict().items()}
    detector.optimize_for_inference(compile=True, dtype="float32")  # torch.compile on a tensor-only forward
    try:
        assert len(compiled) == 1
        np.testing.assert_allclose(detector.predict(image, threshold=0.3).xyxy, reference.xyxy, atol=1e-4)
        detector.optimize_for_inference(dtype="bfloat16")  # the default compiles nothing
        assert len(compiled) == 1
        assert hf_rfdetr.is_optimized(detector.model) and next(detector.model.parameters()).dtype == torch.float32
        low = detector.predict(image, threshold=0.3)
        assert abs(len(low) - len(reference)) <= 2
        detector.optimize_for_inference(dtype="float32", quantize=True)  # int8 backbone linears ("auto" on VNNI CPUs)
        assert detector.model._hf_rfdetr_optimization.int8
        assert abs(len(detector.predict(image, threshold=0.3)) - len(reference)) <= 2
        detector.optimize_for_inference(dtype="float32", quantize=True, bf16_attention=True)
        assert detector.model._hf_rfdetr_optimization.bf16_attention
        assert abs(len(detector.predict(image, threshold=0.3)) - len(reference)) <= 2
        with pytest.raises(ValueError, match="floating-point torch dtype"):
            detector.optimize_for_inference(dtype="int8")
    finally:
        detector.remove_optimized_model()
    assert not hf_rfdetr.is_optimized(detector.model)
    assert all(torch.equal(tensor, weights[name]) for name, tensor in detector.model.state_dict().items())
    np.testing.assert_allclose(detector.predict(image, threshold=0.3).xyxy, reference.xyxy, atol=1e-5)


def test_predict_skips_a_mask_without_padding(detector: RFDETR, monkeypatch) -> None:
    """The processor resizes every image to the model's square input, so nothing is padded: the model runs without
    pixel_mask (the same outputs, without the masked code paths)."""
    masks = []
    forward = type(detector.model).forward
    monkeypatch.setattr(
        type(detector.model),
        "forward",
        lambda self, *a, **k: masks.append(k.get("pixel_mask")) or forward(self, *a, **k),
    )
    detector.predict(random_image(48, 64, seed=1))
    detector.predict([random_image(48, 64, seed=1), random_image(64, 48, seed=2)])
    assert masks == [None, None]


def test_train_fine_tunes_and_keeps_the_trained_model(tiny_folder: Path, tmp_path: Path) -> None:
    dataset = write_synthetic_coco(tmp_path / "shapes", num_train=4, num_valid=2, image_size=(64, 64))
    model = RFDETR(pretrain_weights=tiny_folder, device="cpu")  # "cat", "dog", "bird": class rows truncated / tiled
    before = model.model.state_dict()["model.backbone.embeddings.patch_embeddings.projection.weight"].clone()
    output = tmp_path / "run"
    trainer = model.train(
        dataset_dir=dataset,
        epochs=1,
        batch_size=2,
        grad_accum_steps=1,
        lr=1e-3,
        output_dir=output,
        tensorboard=False,
        num_workers=0,
    )
    assert (
        trainer.state.global_step == 5
    )  # 4 images < 5 batches of 2: drawn with replacement, 5 steps (as the original)
    assert model.class_names == class_names(3) and model.model is trainer.model and not model.model.training
    saved = RFDetrForObjectDetection.from_pretrained(output).state_dict()
    for key, value in model.model.state_dict().items():  # the facade holds the saved (regular) weights
        assert torch.equal(value, saved[key]), key
    assert not torch.equal(saved["model.backbone.embeddings.patch_embeddings.projection.weight"], before)
    assert (output / "ema" / "model.safetensors").exists()
    assert json.loads((output / "preprocessor_config.json").read_text())["size"] == {"height": 64, "width": 64}
    detections = model.predict(random_image(64, 64, 13), threshold=0.0)
    assert set(detections.data["class_name"]) <= set(class_names(3))
    for card in (output / "README.md", output / "ema" / "README.md"):  # they named a deleted temporary folder
        text = card.read_text()
        assert "rfdetr-start-" not in text and f"from `{tiny_folder}`" in text, card


def test_train_takes_the_originals_schedule_and_refuses_its_other_options_up_front(
    tiny_folder: Path, tmp_path: Path
) -> None:
    """The original's warmup_epochs= / lr_drop= failed in TrainingArguments after the data and model were loaded;
    they now set the original's step schedule, and options without an equivalent are refused before loading."""
    model = RFDETR(pretrain_weights=tiny_folder, device="cpu")
    missing = tmp_path / "no-such-dataset"  # any data loading would fail on it first
    for name, value, error, message in [
        ("class_names", ["a"], ValueError, r"class_names= is an option of the original .* from the dataset"),
        ("ema_decay", 0.99, ValueError, r"ema_decay= .* use_ema=False"),
        ("warmup_epoch", 1, TypeError, r"unexpected keyword argument 'warmup_epoch'"),
        ("epochs", 0, ValueError, r"^epochs=0: .* must be positive"),  # trained nothing, saved as if trained
        ("batch_size", 0, ValueError, r"^batch_size=0: .* must be an integer, 1 or more"),  # failed in the DataLoader
        ("grad_accum_steps", -1, ValueError, r"^grad_accum_steps=-1: .* must be an integer, 1 or more"),
        ("lr", -1e-4, ValueError, r"^lr=-0.0001: the learning rate must be positive"),  # failed in AdamW
    ]:
        with pytest.raises(error, match=message):
            model.train(dataset_dir=missing, **{name: value})
    dataset = write_synthetic_coco(tmp_path / "shapes", num_train=4, num_valid=1, image_size=(64, 64))
    trainer = model.train(
        dataset_dir=dataset,
        epochs=2,
        batch_size=2,
        grad_accum_steps=1,
        warmup_epochs=0.5,
        lr_drop=1,
        output_dir=tmp_path / "run",
        tensorboard=False,
        num_workers=0,
    )
    # 4 images, under 5 batches: 5 steps per epoch as the original (drawn with replacement); 2 warmup steps
    # (int(0.5 * 5)), x0.1 from step 5 (epoch 1) on
    assert trainer.state.global_step == 10
    factors = [trainer.lr_scheduler.lr_lambdas[0](step) for step in range(10)]
    assert factors == [0.0, 0.5, 1.0, 1.0, 1.0] + [0.1] * 5
    # the logged rate is the base lr's (it was group 0's: the encoder embeddings', with layer decay)
    logged = [entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry]
    assert logged == pytest.approx([1e-4, 1e-5])  # lr's default, then x0.1 after lr_drop


def test_export_calls_export_onnx(detector: RFDETR, tmp_path: Path, monkeypatch) -> None:
    """The facade's part only (the exporter itself is tested with hf_rfdetr.onnx)."""
    import sys
    import types

    calls = []

    def export_onnx(model, output_dir, *, image_processor=None, **kwargs):
        calls.append((model, output_dir, image_processor, kwargs))
        return Path(output_dir)

    monkeypatch.setitem(sys.modules, "hf_rfdetr.onnx", types.SimpleNamespace(export_onnx=export_onnx))
    assert detector.export(tmp_path / "onnx", opset=18) == tmp_path / "onnx"
    source = detector_folder(detector)  # what the detector was given: the card names it
    assert calls == [(detector.model, tmp_path / "onnx", detector.processor, {"opset": 18, "source": source})]
    monkeypatch.chdir(tmp_path)
    detector.export()
    assert calls[-1][1] == "output"
    # the original's options: mapped where export_onnx has them, else refused naming the option (a bare TypeError)
    detector.export("out", opset_version=18, shape=[192, 128], batch_size=1, dynamic_batch=True)
    assert calls[-1][3] == {"opset": 18, "resolution": (192, 128), "source": source}
    with pytest.raises(ValueError, match=r"export\(simplify=...\) is an option of the original .* onnxsim"):
        detector.export("out", simplify=True)
    # the original's own defaults spelled out are accepted (and mean ONNX as here)
    detector.export(
        "out",
        format="onnx",
        verbose=True,
        infer_dir=None,
        patch_size=8,
        quantization=None,
        calibration_data=None,
        max_images=100,
        soc=None,
        output_name=None,
    )
    assert calls[-1][3] == {"source": source}
    refused = {
        "format": ("tflite", "only format='onnx'"),
        "infer_dir": ("images", "validate=True"),
        "quantization": ("int8", "quantize=True"),
        "calibration_data": ("images", "needs no data"),
        "soc": ("SM8650", "ExecuTorch"),
        "output_name": ("my-model", "model.onnx"),
        "patch_size": (14, "the model's patch size"),
    }
    for name, (value, says) in refused.items():
        with pytest.raises(ValueError, match=rf"export\({name}=...\) is an option of the original .*{says}"):
            detector.export("out", **{name: value})
    with pytest.raises(ValueError, match="ExecuTorch backend .* 'auto', 'torch' or 'optimum'"):
        detector.export("out", backend="xnnpack")


@pytest.mark.reference
def test_every_keyword_of_the_originals_export_is_taken_or_refused_by_name(
    detector: RFDETR, tmp_path: Path, monkeypatch
) -> None:
    """The original's rarer export options (max_batch_size, notes, coreml_precision, ...) reached export_onnx as a
    bare `TypeError: unexpected keyword`. Every keyword of the installed original's `export` signature (so that the
    test follows the reference) is now accepted at its default, and with another value either taken (mapped onto
    export_onnx's options, or unused) or refused with a message naming it and what to do; a keyword the original
    does not know keeps the usual TypeError."""
    import inspect
    import sys
    import types

    from rfdetr.detr import RFDETR as OriginalRFDETR

    from hf_rfdetr.onnx.export import export_onnx as real_export_onnx

    accepts = inspect.signature(real_export_onnx)
    calls = []

    def export_onnx(model, output_dir, *, image_processor=None, **kwargs):
        accepts.bind(model, output_dir, image_processor=image_processor, **kwargs)  # else the real one's TypeError
        calls.append(kwargs)
        return Path(output_dir)

    monkeypatch.setitem(sys.modules, "hf_rfdetr.onnx", types.SimpleNamespace(export_onnx=export_onnx))
    # a value other than the original's default, per option (any option not listed here: a plain object)
    others = {
        "infer_dir": "images",
        "backbone_only": True,
        "opset_version": 18,
        "verbose": False,
        "shape": (96, 128),
        "batch_size": 4,
        "dynamic_batch": True,
        "patch_size": 14,
        "format": "tflite",
        "quantization": "int8",
        "calibration_data": np.zeros((2, 64, 64, 3), np.float32),
        "max_images": 10,
        "backend": "xnnpack",
        "soc": "SM8650",
        "fp16": False,
        "max_batch_size": 8,
        "notes": {"run": 1},
        "coreml_precision": "float16",
        "coreai_precision": "float16",
        "openvino_precision": "float32",
        "output_name": "my-model",
    }
    parameters = inspect.signature(OriginalRFDETR.export).parameters.values()
    parameters = [parameter for parameter in parameters if parameter.name not in ("self", "output_dir")]
    assert len(parameters) >= 20
    outcomes = {}
    for parameter in parameters:
        name = parameter.name
        assert parameter.default is not inspect.Parameter.empty, name
        detector.export(tmp_path / "out", **{name: parameter.default})  # the original's default: accepted
        try:
            detector.export(tmp_path / "out", **{name: others.get(name, object())})
        except (TypeError, ValueError) as error:
            assert name in str(error) and "unexpected keyword" not in str(error), f"{name}: {error}"
            outcomes[name] = "refused"
        else:
            outcomes[name] = "taken"
    taken = ["opset_version", "verbose", "shape", "batch_size", "dynamic_batch", "max_images", "fp16", "max_batch_size"]
    assert {name for name, outcome in outcomes.items() if outcome == "taken"} == set(taken)
    assert calls[-1] == {"source": detector_folder(detector)}  # output_name=None: nothing reaches export_onnx
    says = {
        "notes": "no ONNX metadata; add it to model.onnx afterwards",
        "coreml_precision": "format='coreml' precision; only ONNX is exported here",
        "coreai_precision": "format='coreai' precision; only ONNX is exported here",
        "openvino_precision": "format='openvino' precision; only ONNX is exported here",
        "backbone_only": "the whole model is exported",
        "patch_size": r"the model's patch size \(8\)",
    }
    for name, message in says.items():
        with pytest.raises(ValueError, match=rf"export\({name}=...\) is an option of the original .*{message}"):
            detector.export(tmp_path / "out", **{name: others[name]})
    # an array is no default (not compared elementwise), None is: the original's backend=None is auto here
    detector.export(tmp_path / "out", backend=None, patch_size=None, notes=None, max_batch_size=None)
    assert calls[-1] == {"source": detector_folder(detector)}
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        detector.export(tmp_path / "out", colour="red")


@pytest.mark.reference
def test_original_checkpoint_is_converted_on_the_fly(tmp_path: Path, monkeypatch) -> None:
    from .conftest import reference_model
    from .test_conversion import _reference_outputs

    state_dict = reference_model("nano").state_dict()
    path = tmp_path / "rf-detr-nano.pth"
    torch.save({"model": state_dict, "args": {"resolution": 384}}, path)
    model = RFDETR(pretrain_weights=path, device="cpu")
    assert model.model.config.variant == "nano" and model.model.config.num_labels == 91
    image = Image.fromarray(random_image(120, 160, seed=14))
    pixel_values = model.processor(image, return_tensors="pt")["pixel_values"]
    original = _reference_outputs(state_dict, pixel_values)
    expected = model.processor.post_process_object_detection(
        {"logits": original["pred_logits"], "pred_boxes": original["pred_boxes"]},
        threshold=0.0,
        target_sizes=[(120, 160)],
    )[0]
    detections = model.predict(image, threshold=0.0)
    np.testing.assert_allclose(detections.xyxy[:50], expected["boxes"][:50].numpy(), atol=1e-2)
    np.testing.assert_array_equal(detections.class_id[:50], expected["labels"][:50].numpy())
    assert list(detections.data["class_name"][:5]) == [COCO_CLASSES.get(int(i), "N/A") for i in detections.class_id[:5]]

    monkeypatch.chdir(tmp_path)  # as the original: the variant's default file in the current folder is used
    default = RFDETRNano(device="cpu")
    np.testing.assert_allclose(default.predict(image, threshold=0.0).xyxy, detections.xyxy, atol=1e-5)

    two = RFDETR(pretrain_weights=path, class_names=["a", "b"], device="cpu")  # the first 2 rows, as the original
    assert two.model.class_embed.out_features == 2
    assert torch.equal(two.model.class_embed.weight, model.model.class_embed.weight[:2])
    assert torch.equal(two.model.model.enc_out_class_embed.bias, model.model.model.enc_out_class_embed.bias[:, :2])
    key = "model.decoder.layers.0.fc1.weight"
    assert torch.equal(two.model.state_dict()[key], model.model.state_dict()[key])


def test_export_writes_an_onnx_model_that_detects_the_same(detector: RFDETR, tmp_path: Path) -> None:
    from hf_rfdetr.onnx import RFDetrOnnxModel

    folder = detector.export(tmp_path / "onnx", validate=True)
    assert (folder / "model.onnx").is_file() and (folder / "preprocessor_config.json").is_file()
    onnx_model = RFDetrOnnxModel.from_pretrained(folder)
    image = Image.fromarray(random_image(48, 80, seed=15))
    outputs = onnx_model(**detector.processor(image, return_tensors="pt"))
    expected = detector.processor.post_process_object_detection(outputs, threshold=0.3, target_sizes=[(48, 80)])[0]
    assert_same(detector.predict(image, threshold=0.3), expected, detector.model.config.id2label)


def test_a_facade_export_card_names_the_source_the_user_gave(tiny_folder: Path, tmp_path: Path, monkeypatch) -> None:
    """The export card named the model's folder (for a checkpoint name: the cached COCO folder) as its source; it now
    names what the user gave the facade (`self._source`), as the facade's training cards do."""
    import hf_rfdetr.facade_loading as facade_loading

    monkeypatch.setattr(facade_loading, "pretrained", lambda name: str(tiny_folder) if name == "nano" else name)
    named = RFDETR(pretrain_weights="nano", device="cpu")
    assert named.model.name_or_path == str(tiny_folder)  # the "cached COCO folder"
    card = (named.export(tmp_path / "nano-onnx", backend="torch") / "README.md").read_text()
    assert "The source model: `nano`, the original RF-DETR COCO checkpoint `rf-detr-nano.pth`" in card
    assert str(tiny_folder) not in card
    # a folder is named as given; a random model has no source: the model object is described
    card = RFDETR(pretrain_weights=tiny_folder, device="cpu").export(tmp_path / "folder-onnx", backend="torch")
    assert f"The source model: `{tiny_folder}`." in (card / "README.md").read_text()
    with pytest.warns(UserWarning, match="RANDOM weights"):
        random = RFDETRNano(pretrain_weights=None, device="cpu", resolution=64)
    card = (random.export(tmp_path / "random-onnx", backend="torch") / "README.md").read_text()
    assert "The source model: `an in-memory RFDetrForObjectDetection (nano)`." in card


def test_predict_shape_runs_at_that_size_for_the_call_and_checks_it(detector: RFDETR) -> None:
    image = Image.fromarray(random_image(40, 56, seed=11))
    processor = RFDetrImageProcessor.from_pretrained(detector_folder(detector))
    model = RFDetrForObjectDetection.from_pretrained(detector_folder(detector)).eval()
    with torch.no_grad():
        outputs = model(**processor([image], return_tensors="pt", size={"height": 32, "width": 48}))
    expected = processor.post_process_object_detection(outputs, threshold=0.3, target_sizes=[(40, 56)])[0]
    assert_same(detector.predict(image, threshold=0.3, shape=(32, 48)), expected, detector.model.config.id2label)
    assert detector.processor.size == {"height": 64, "width": 64}  # the stored processor is unchanged
    assert_same(
        detector.predict(image, threshold=0.3, patch_size=8),
        by_hand(detector, [image], 0.3)[0],
        detector.model.config.id2label,
    )
    for shape in [(30, 48), (32, 0), (32.0, 48), (True, 16), (32,)]:
        with pytest.raises(ValueError, match="multiples of 16"):
            detector.predict(image, shape=shape)
    with pytest.raises(ValueError, match="patch_size=8"):
        detector.predict(image, patch_size=14)


def test_predict_adds_source_shape_and_the_source_image_per_image(detector: RFDETR) -> None:
    array = random_image(40, 56, seed=12)
    floats = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    first, second = detector.predict([Image.fromarray(array), floats[:, :32, :48]], threshold=0.0)
    np.testing.assert_array_equal(first.metadata["source_image"], array)
    assert first.metadata["source_image"].dtype == np.uint8
    assert second.metadata["source_image"].shape == (32, 48, 3)
    np.testing.assert_array_equal(
        second.metadata["source_image"], (floats[:, :32, :48] * 255).permute(1, 2, 0).to(torch.uint8).numpy()
    )
    assert first.data["source_shape"].dtype == np.int64
    np.testing.assert_array_equal(first.data["source_shape"], np.tile([40, 56], (len(first), 1)))
    np.testing.assert_array_equal(second.data["source_shape"], np.tile([32, 48], (len(second), 1)))
    bare = detector.predict(array, threshold=0.0, include_source_image=False)
    assert "source_image" not in bare.metadata and bare.data["source_shape"].shape == (len(bare), 2)


def test_the_originals_inference_maps_onto_optimize_for_inference(detector: RFDETR) -> None:
    image = random_image(48, 64, seed=13)
    reference = detector.predict(image, threshold=0.0)
    try:
        detector.inference(dtype=torch.bfloat16, compile=False, batch_size=4, inplace=True)
        assert hf_rfdetr.is_optimized(detector.model) and not detector.is_optimized_inplace
        low = detector.predict(image, threshold=0.0)
        # bf16 backbone linears: the top scores move by a few thousandths (0.004 on this tiny random model)
        np.testing.assert_allclose(low.confidence[:5], reference.confidence[:5], atol=0.01)
        with pytest.raises(ValueError, match="compile_backend"):
            detector.inference(compile_backend="tensorrt")
    finally:
        detector.remove_optimized_model()
    restored = detector.predict(image, threshold=0.0)
    np.testing.assert_array_equal(restored.confidence, reference.confidence)
    np.testing.assert_array_equal(restored.xyxy, reference.xyxy)


def test_gradient_checkpointing_is_accepted_with_weights(tiny_folder: Path) -> None:
    plain = RFDETR(pretrain_weights=tiny_folder, device="cpu")
    checkpointed = RFDETR(pretrain_weights=tiny_folder, device="cpu", gradient_checkpointing=True)
    assert checkpointed.model.is_gradient_checkpointing and not plain.model.is_gradient_checkpointing
    image = random_image(48, 64, seed=14)
    np.testing.assert_array_equal(checkpointed.predict(image).confidence, plain.predict(image).confidence)
    with pytest.raises(ValueError, match="num_queries describe.* the architecture, .* pretrain_weights=None"):
        RFDETR(pretrain_weights=tiny_folder, device="cpu", num_queries=10, gradient_checkpointing=True)
