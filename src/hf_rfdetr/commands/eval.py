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
"""`hf-rfdetr eval`: COCO metrics (pycocotools) of a model on one split of a COCO folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ORDER = 30

#: --split values -> the split names of `hf_rfdetr.training.load_coco_folder`.
SPLITS = {"valid": "validation", "val": "validation", "validation": "validation", "test": "test", "train": "train"}
#: Rows of the printed summary: metric key -> name.
SUMMARY_ROWS = {
    "map": "mAP@[.50:.95]",
    "map_50": "mAP@.50",
    "map_75": "mAP@.75",
    "map_small": "mAP small",
    "map_medium": "mAP medium",
    "map_large": "mAP large",
    "mar_1": "mAR@1",
    "mar_10": "mAR@10",
    "mar_100": "mAR@100",
    "mar_small": "mAR small",
    "mar_medium": "mAR medium",
    "mar_large": "mAR large",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="COCO mAP of a model on a split of a COCO folder (pycocotools)",
        description="Evaluate a model on one split of a COCO folder (train/ valid/ test/, each with "
        "_annotations.coco.json) with pycocotools, as the training loop evaluates: square resize to the model's "
        "resolution, top 100 detections per image. Prints the COCO summary and per-class AP.",
    )
    parser.add_argument("--model", required=True, help="Hub id or local model folder (e.g. the output of train)")
    parser.add_argument("--dataset-dir", required=True, help="COCO folder with valid/ and/or test/")
    parser.add_argument("--split", default="valid", help="valid (default), test or train")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: 8)")
    parser.add_argument("--use-ema", action="store_true", help="evaluate the EMA weights (MODEL/ema, from train)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--num-workers", type=int, default=0, help="data loading processes (default: 0)")
    parser.add_argument("--output-json", metavar="PATH", help="also write the metrics to this JSON file")
    parser.add_argument(
        "--predictions-json", metavar="PATH", help="also write the detections in COCO results format (for pycocotools)"
    )
    parser.set_defaults(run_command=run)


def run(args: argparse.Namespace) -> int:
    from ..extras import require

    require("train", "hf-rfdetr eval")
    if args.split.lower() not in SPLITS:
        raise ValueError(f"--split {args.split!r}: expected one of valid, test, train")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    dataset_dir = Path(args.dataset_dir)
    if not dataset_dir.is_dir():
        raise FileNotFoundError(f"dataset folder {str(dataset_dir)!r} does not exist")
    model_path = _model_path(args.model, args.use_ema)
    result = evaluate_coco_folder(
        model_path,
        dataset_dir,
        split=SPLITS[args.split.lower()],
        batch_size=args.batch_size,
        device=args.device,
        num_workers=args.num_workers,
        predictions_json=args.predictions_json,
    )
    result["weights"] = "ema" if args.use_ema else "model"
    print(format_report(result))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.output_json}")
    return 0


def _model_path(model: str, use_ema: bool) -> str:
    """The model to load: `model`, or its `ema/` folder with `use_ema`."""
    if not use_ema:
        return model
    ema = Path(model) / "ema"
    if not (ema / "config.json").is_file():
        raise FileNotFoundError(f"--use-ema: {str(ema)!r} has no saved model (train writes it unless --no-ema)")
    return str(ema)


def evaluate_coco_folder(
    model: Any,
    dataset_dir: str | Path,
    split: str = "validation",
    *,
    batch_size: int = 8,
    device: str | None = None,
    num_workers: int = 0,
    predictions_json: str | Path | None = None,
) -> dict[str, Any]:
    """COCO metrics of `model` (an `RFDetrForObjectDetection`, a Hub id or a folder) on one split of a COCO folder.

    The split is loaded and transformed as in training (`load_coco_folder`, the evaluation transform), detections are
    post-processed and scored by the loop `CocoEvaluator` uses (`training.metrics`: `post_process`, top 100 per image,
    then `coco_metrics`). The model's labels are matched to the dataset's categories by name, so a COCO-pretrained
    model (91 slots) evaluates on a COCO folder.

    Returns:
        `{"model", "dataset_dir", "split", "images", "boxes", "metrics"}` with `metrics` as `coco_metrics` names
        them (per-class AP as `map_<class>`).
    """
    from ..training import apply_transforms, coco_metrics, id2label_from_dataset, load_coco_folder

    splits = load_coco_folder(dataset_dir, splits=[split])
    names = id2label_from_dataset(splits)
    model = _load(model, device)
    mapping = label_mapping(model.config.id2label, names)
    dataset = apply_transforms(splits, model.config)[split]
    predictions, targets = _predict(model, dataset, batch_size, num_workers, mapping)
    metrics = coco_metrics(predictions, targets, names)
    if predictions_json is not None:
        _write_predictions(predictions, targets, Path(dataset_dir), split, names, Path(predictions_json))
    return {
        "model": str(getattr(model, "name_or_path", "") or model.__class__.__name__),
        "dataset_dir": str(dataset_dir),
        "split": split,
        "images": len(targets),
        "boxes": int(sum(len(target["class_labels"]) for target in targets)),
        "metrics": metrics,
    }


def _load(model: Any, device: str | None):
    import torch
    from transformers import AutoModelForObjectDetection

    if isinstance(model, (str, Path)):
        text, path = str(model), Path(model).expanduser()
        looks_like_path = path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1
        if looks_like_path and not path.exists():
            raise FileNotFoundError(f"model folder {text!r} does not exist")
        model = AutoModelForObjectDetection.from_pretrained(str(path) if path.exists() else text)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval()


def label_mapping(model_id2label: dict[int, str], dataset_names: dict[int, str]) -> dict[int, int]:
    """Model label index -> dataset label index, by class name; the model's other labels are not scored.

    Raises:
        ValueError: when no dataset class is among the model's labels.
    """
    by_name = {name: label for label, name in dataset_names.items()}
    mapping = {int(index): by_name[name] for index, name in model_id2label.items() if name in by_name}
    if not mapping:
        raise ValueError(
            f"none of the dataset's classes {sorted(by_name)[:10]} is a label of the model "
            f"({list(model_id2label.values())[:10]} ...): evaluate a model fine-tuned on this dataset"
        )
    missing = sorted(set(by_name) - {dataset_names[label] for label in mapping.values()})
    if missing:
        print(f"warning: the model has no label for the dataset classes {missing}; their AP is 0", file=sys.stderr)
    return mapping


def _predict(model, dataset, batch_size: int, num_workers: int, mapping: dict[int, int]):
    """Post-processed detections (labels mapped to the dataset's) and targets, image by image."""
    import torch
    from torch.utils.data import DataLoader

    from ..training import RFDetrDataCollator
    from ..training.metrics import post_process

    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=RFDetrDataCollator(), num_workers=num_workers)
    predictions, targets = [], []
    lookup = torch.full((model.config.num_labels,), -1, dtype=torch.int64)
    for index, label in mapping.items():
        lookup[index] = label
    with torch.no_grad():
        for batch in loader:
            outputs = model(pixel_values=batch["pixel_values"].to(device))
            sizes = [tuple(int(v) for v in target["orig_size"]) for target in batch["labels"]]
            for detections in post_process(outputs.logits, outputs.pred_boxes, sizes, top_k=100):
                labels = lookup[detections["labels"]]
                keep = labels >= 0
                predictions.append(
                    {"scores": detections["scores"][keep], "labels": labels[keep], "boxes": detections["boxes"][keep]}
                )
            targets += batch["labels"]
    return predictions, targets


def _write_predictions(predictions, targets, dataset_dir: Path, split: str, names, path: Path) -> None:
    """Detections in COCO results format, with the split's image ids and category ids."""
    from ..training.data import ANNOTATION_FILE, SPLIT_FOLDERS
    from ..training.metrics import coco_results

    folder = next(dataset_dir / name for name in SPLIT_FOLDERS[split] if (dataset_dir / name).is_dir())
    categories = json.loads((folder / ANNOTATION_FILE).read_text())["categories"]
    by_name = {str(category["name"]): int(category["id"]) for category in categories}
    category_ids = {label: by_name.get(name) for label, name in names.items()}
    if None in category_ids.values():  # names made unique by load_coco_folder end with their category id
        category_ids = {label: category_ids[label] or int(names[label].rsplit("_", 1)[-1]) for label in names}
    results = []
    for prediction, target in zip(predictions, targets):
        results += coco_results(prediction, int(target["image_id"][0]), category_ids)
    path.write_text(json.dumps(results))


def format_report(result: dict[str, Any]) -> str:
    """The summary and per-class AP as aligned text tables."""
    metrics = result["metrics"]
    lines = [
        f"{result['model']} on {result['dataset_dir']} [{result['split']}]: {result['images']} images, "
        f"{result['boxes']} boxes" + (f", {result['weights']} weights" if "weights" in result else ""),
        "",
        f"{'metric':<16}{'value':>8}",
    ]
    lines += [f"{name:<16}{_value(metrics.get(key)):>8}" for key, name in SUMMARY_ROWS.items() if key in metrics]
    per_class = {key[4:]: value for key, value in metrics.items() if key.startswith("map_") and key not in SUMMARY_ROWS}
    if per_class:
        width = max(16, 2 + max(len(name) for name in per_class))
        lines += ["", f"{'class':<{width}}{'AP':>8}"]
        lines += [f"{name:<{width}}{_value(value):>8}" for name, value in per_class.items()]
    return "\n".join(lines)


def _value(value: float | None) -> str:
    return "n/a" if value is None or value < 0 else f"{value:.4f}"
