"""transformers' object-detection guide (`docs/source/en/tasks/object_detection.md`), condensed, with RF-DETR.

The guide's code runs as written with two changes: the checkpoint is a tiny random RF-DETR saved to a temporary
folder, and the data is a synthetic dataset with cppe-5's schema (sizes scaled down so that it runs in seconds).
Training passes `return_pixel_mask=True` (the guide's own switch): RF-DETR normalises boxes to the unpadded image
given `pixel_mask`, the frame the processor's labels use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check at import

import albumentations as A  # noqa: E402
from datasets import ClassLabel, Dataset, Features, Sequence, Value  # noqa: E402
from datasets import Image as ImageFeature  # noqa: E402
from torchmetrics.detection.mean_ap import MeanAveragePrecision  # noqa: E402
from transformers import (  # noqa: E402
    AutoImageProcessor,
    AutoModelForObjectDetection,
    Trainer,
    TrainingArguments,
    pipeline,
)
from transformers.image_transforms import center_to_corners_format  # noqa: E402

from hf_rfdetr import RFDetrForObjectDetection, RFDetrImageProcessor  # noqa: E402

from .conftest import tiny_config  # noqa: E402

CATEGORIES = ["Coverall", "Face_Shield", "Gloves", "Goggles", "Mask"]
MAX_SIZE = 64  # the guide's 480, scaled to the tiny model (a multiple of its block size 16)
COLOURS = [(230, 40, 40), (40, 200, 60), (50, 80, 230), (230, 210, 40), (200, 60, 220)]


def synthetic_cppe5(num_images: int, seed: int) -> Dataset:
    """Images of differing, non-square sizes with 1-2 coloured boxes each, in cppe-5's schema."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[Any]] = {"image_id": [], "image": [], "width": [], "height": [], "objects": []}
    next_id = 0
    for image_id in range(num_images):
        height, width = (int(v) for v in rng.choice([48, 64, 80, 96], size=2, replace=False))
        pixels = rng.integers(90, 140, (height, width, 3), dtype=np.uint8)
        objects: dict[str, list[Any]] = {"id": [], "area": [], "bbox": [], "category": []}
        for _ in range(int(rng.integers(1, 3))):
            w, h = int(rng.integers(width // 4, width // 2)), int(rng.integers(height // 4, height // 2))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            category = int(rng.integers(0, len(CATEGORIES)))
            pixels[y : y + h, x : x + w] = COLOURS[category]
            objects["id"].append(next_id)
            objects["area"].append(w * h)
            objects["bbox"].append([float(x), float(y), float(w), float(h)])
            objects["category"].append(category)
            next_id += 1
        for key, value in (("image_id", image_id), ("image", Image.fromarray(pixels)), ("width", width)):
            rows[key].append(value)
        rows["height"].append(height)
        rows["objects"].append(objects)
    features = Features(
        {
            "image_id": Value("int64"),
            "image": ImageFeature(),
            "width": Value("int32"),
            "height": Value("int32"),
            "objects": Sequence(
                {
                    "id": Value("int64"),
                    "area": Value("int64"),
                    "bbox": Sequence(Value("float32"), length=4),
                    "category": ClassLabel(names=CATEGORIES),
                }
            ),
        }
    )
    return Dataset.from_dict(rows, features=features)


# ----------------------------------------------------------------------------------------------------------------------
# The guide's code (functions as written there)
# ----------------------------------------------------------------------------------------------------------------------


def format_image_annotations_as_coco(image_id, categories, areas, bboxes):
    annotations = []
    for category, area, bbox in zip(categories, areas, bboxes):
        formatted_annotation = {
            "image_id": image_id,
            "category_id": category,
            "iscrowd": 0,
            "area": area,
            "bbox": list(bbox),
        }
        annotations.append(formatted_annotation)
    return {"image_id": image_id, "annotations": annotations}


def augment_and_transform_batch(examples, transform, image_processor, return_pixel_mask=False):
    images = []
    annotations = []
    for image_id, image, objects in zip(examples["image_id"], examples["image"], examples["objects"]):
        image = np.array(image.convert("RGB"))
        output = transform(image=image, bboxes=objects["bbox"], category=objects["category"])
        images.append(output["image"])
        formatted_annotations = format_image_annotations_as_coco(
            image_id, output["category"], objects["area"], output["bboxes"]
        )
        annotations.append(formatted_annotations)
    result = image_processor(images=images, annotations=annotations, return_tensors="pt")
    if not return_pixel_mask:
        result.pop("pixel_mask", None)
    return result


def collate_fn(batch):
    data = {}
    data["pixel_values"] = torch.stack([x["pixel_values"] for x in batch])
    data["labels"] = [x["labels"] for x in batch]
    if "pixel_mask" in batch[0]:
        data["pixel_mask"] = torch.stack([x["pixel_mask"] for x in batch])
    return data


def convert_bbox_yolo_to_pascal(boxes, image_size):
    boxes = center_to_corners_format(boxes)
    height, width = image_size
    boxes = boxes * torch.tensor([[width, height, width, height]])
    return boxes


@dataclass
class ModelOutput:
    logits: torch.Tensor
    pred_boxes: torch.Tensor


@torch.no_grad()
def compute_metrics(evaluation_results, image_processor, threshold=0.0, id2label=None):
    predictions, targets = evaluation_results.predictions, evaluation_results.label_ids
    image_sizes = []
    post_processed_targets = []
    post_processed_predictions = []
    for batch in targets:
        batch_image_sizes = torch.tensor(np.array([x["orig_size"] for x in batch]))
        image_sizes.append(batch_image_sizes)
        for image_target in batch:
            boxes = torch.tensor(image_target["boxes"])
            boxes = convert_bbox_yolo_to_pascal(boxes, image_target["orig_size"])
            labels = torch.tensor(image_target["class_labels"])
            post_processed_targets.append({"boxes": boxes, "labels": labels})
    for batch, target_sizes in zip(predictions, image_sizes):
        batch_logits, batch_boxes = batch[1], batch[2]
        output = ModelOutput(logits=torch.tensor(batch_logits), pred_boxes=torch.tensor(batch_boxes))
        post_processed_output = image_processor.post_process_object_detection(
            output, threshold=threshold, target_sizes=target_sizes
        )
        post_processed_predictions.extend(post_processed_output)
    metric = MeanAveragePrecision(box_format="xyxy", class_metrics=True)
    metric.update(post_processed_predictions, post_processed_targets)
    metrics = metric.compute()
    classes = metrics.pop("classes")
    map_per_class = metrics.pop("map_per_class")
    mar_100_per_class = metrics.pop("mar_100_per_class")
    for class_id, class_map, class_mar in zip(classes, map_per_class, mar_100_per_class):
        class_name = id2label[class_id.item()] if id2label is not None else class_id.item()
        metrics[f"map_{class_name}"] = class_map
        metrics[f"mar_100_{class_name}"] = class_mar
    metrics = {k: round(v.item(), 4) for k, v in metrics.items()}
    return metrics


# ----------------------------------------------------------------------------------------------------------------------
# The test
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path: Path) -> str:
    """A tiny random RF-DETR (3 classes) and its processor, saved as a local checkpoint."""
    torch.manual_seed(0)
    config = tiny_config()
    RFDetrForObjectDetection(config).save_pretrained(tmp_path / "ckpt")
    RFDetrImageProcessor.from_config(config).save_pretrained(tmp_path / "ckpt")
    return str(tmp_path / "ckpt")


def test_object_detection_guide(checkpoint: str, tmp_path: Path) -> None:
    cppe5 = {"train": synthetic_cppe5(8, seed=0), "validation": synthetic_cppe5(4, seed=1)}
    objects = cppe5["train"].features["objects"]  # datasets >= 4 stores a Sequence of dicts as a dict of lists
    categories = (objects.feature["category"] if hasattr(objects, "feature") else objects["category"].feature).names
    id2label = {index: x for index, x in enumerate(categories, start=0)}
    label2id = {v: k for k, v in id2label.items()}

    image_processor = AutoImageProcessor.from_pretrained(
        checkpoint,
        do_resize=True,
        size={"max_height": MAX_SIZE, "max_width": MAX_SIZE},
        do_pad=True,
        pad_size={"height": MAX_SIZE, "width": MAX_SIZE},
    )
    train_augment_and_transform = A.Compose(
        [
            A.Perspective(p=0.1),
            A.HorizontalFlip(p=0.5),
            A.RandomBrightnessContrast(p=0.5),
            A.HueSaturationValue(p=0.1),
        ],
        bbox_params=A.BboxParams(format="coco", label_fields=["category"], clip=True, min_area=25),
        seed=0,
    )
    validation_transform = A.Compose(
        [A.NoOp()],
        bbox_params=A.BboxParams(format="coco", label_fields=["category"], clip=True),
    )
    train_transform_batch = partial(
        augment_and_transform_batch,
        transform=train_augment_and_transform,
        image_processor=image_processor,
        return_pixel_mask=True,
    )
    validation_transform_batch = partial(
        augment_and_transform_batch,
        transform=validation_transform,
        image_processor=image_processor,
        return_pixel_mask=True,
    )
    cppe5["train"] = cppe5["train"].with_transform(train_transform_batch)
    cppe5["validation"] = cppe5["validation"].with_transform(validation_transform_batch)

    example = cppe5["train"][0]
    assert tuple(example["pixel_values"].shape) == (3, MAX_SIZE, MAX_SIZE)
    assert example["pixel_mask"].sum() < MAX_SIZE * MAX_SIZE  # non-square images: resized and padded, not stretched

    model = AutoModelForObjectDetection.from_pretrained(
        checkpoint, id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True
    )
    assert model.config.num_labels == len(CATEGORIES)
    training_args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=40,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=5e-3,
        lr_scheduler_type="constant",
        weight_decay=1e-4,
        logging_steps=1,
        eval_strategy="no",
        save_strategy="no",
        remove_unused_columns=False,
        eval_do_concat_batches=False,
        report_to="none",
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
    )
    eval_compute_metrics_fn = partial(
        compute_metrics, image_processor=image_processor, id2label=id2label, threshold=0.0
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=cppe5["train"],
        eval_dataset=cppe5["validation"],
        processing_class=image_processor,
        data_collator=collate_fn,
        compute_metrics=eval_compute_metrics_fn,
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 40
    first, last = float(np.mean(losses[:5])), float(np.mean(losses[-5:]))
    print(f"loss: first 5 steps {first:.4f}, last 5 steps {last:.4f}; curve {[round(v, 3) for v in losses]}")
    assert last < 0.8 * first, f"loss did not fall: {first:.4f} -> {last:.4f}"

    metrics = trainer.evaluate()
    for key in ("eval_map", "eval_map_50", "eval_map_75", "eval_mar_100"):
        assert key in metrics and -1.0 <= metrics[key] <= 1.0, (key, metrics)

    detector = pipeline("object-detection", model=trainer.model, image_processor=image_processor)
    image = synthetic_cppe5(1, seed=2)[0]["image"]
    detections = detector(image, threshold=0.0)
    assert detections and set(detections[0]) == {"score", "label", "box"}
    assert all(d["label"] in CATEGORIES for d in detections)
    assert all(0 <= d["box"]["xmin"] <= d["box"]["xmax"] <= image.width for d in detections)
    assert all(0 <= d["box"]["ymin"] <= d["box"]["ymax"] <= image.height for d in detections)
