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
#: Prefix of the mask metrics of a segmentation model (`segm_map`, ...), printed as a second table.
SEGM_PREFIX = "segm_"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="COCO mAP of a model on a split of a COCO folder (pycocotools)",
        description="Evaluate a model on one split of a COCO folder (train/ valid/ test/, each with "
        "_annotations.coco.json) with pycocotools, as the training loop evaluates: square resize to the model's "
        "resolution, top 100 detections per image. Prints the COCO summary and per-class AP; for a segmentation "
        "model (RF-DETR Seg) the mask (segm) summary and per-class mask AP too.",
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
        "--predictions-json",
        metavar="PATH",
        help="also write the detections in COCO results format (for pycocotools, iouType 'bbox'); for a Seg model "
        "also their RLE masks, without boxes, to PATH_segm.json beside it (for iouType 'segm': pycocotools takes a "
        "result's area from its bbox when it has one)",
    )
    parser.set_defaults(run_command=run)


def run(args: argparse.Namespace) -> int:
    from ..extras import require

    require("train", "hf-rfdetr eval")
    from ..training.data import SPLIT_ALIASES

    if args.split.lower() not in SPLIT_ALIASES:
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
        split=SPLIT_ALIASES[args.split.lower()],
        batch_size=args.batch_size,
        device=args.device,
        num_workers=args.num_workers,
        predictions_json=args.predictions_json,
    )
    result["weights"] = "ema" if args.use_ema else "model"
    print(format_report(result))
    if args.predictions_json:
        masks = segm_predictions_path(args.predictions_json)
        if "segm_map" in result["metrics"]:
            print(f"wrote {args.predictions_json} (box detections in COCO results format, pycocotools iouType 'bbox')")
            print(f"wrote {masks} (mask detections in COCO results format, RLE, pycocotools iouType 'segm')")
        else:
            print(f"wrote {args.predictions_json} (detections in COCO results format)")
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


def segm_predictions_path(path: str | Path) -> Path:
    """The file of the mask results written beside the box results `path` (`preds.json` -> `preds_segm.json`)."""
    path = Path(path)
    return path.with_name(f"{path.stem}_segm{path.suffix}")


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
    """COCO metrics of `model` (an `RFDetrForObjectDetection` or `RFDetrForInstanceSegmentation`, a Hub id or a
    folder) on one split of a COCO folder.

    The split is loaded and transformed as in training (`load_coco_folder`, the evaluation transform), detections are
    post-processed and scored by the loop `CocoEvaluator` uses (`training.metrics`: `post_process`, top 100 per image,
    then `coco_metrics`). A segmentation model (`config.segmentation_head`) is evaluated on the split's masks too
    (`post_process_segmentation`: masks at the original image size, RLE), with pycocotools' `segm` metrics beside
    the `bbox` ones, against the annotated masks at the original size (crowd regions as `iscrowd`). The model's
    labels are matched to the dataset's categories by name, so a COCO-pretrained model (91 slots) evaluates on a COCO
    folder. Ground-truth areas (small / medium / large) are the annotations' `area`, as pycocotools reads them from
    the split's json (`with_evaluation_ground_truth`).

    `predictions_json` gets the detections in COCO results format (`bbox`); for a segmentation model their masks go
    to a second file beside it (`segm_predictions_path`), as `segmentation` without `bbox`: pycocotools' `loadRes`
    takes every result's area from its `bbox` when it has one, even for `segm` scoring. Each file, scored by
    pycocotools against the split's json (`bbox`, `segm`), gives the returned metrics.

    Returns:
        `{"model", "dataset_dir", "split", "images", "boxes", "metrics"}` with `metrics` as `coco_metrics` names
        them (per-class AP as `map_<class>`; mask metrics as `segm_map`, ..., `segm_map_<class>`).
    """
    from ..training import apply_transforms, coco_metrics, id2label_from_dataset, load_coco_folder
    from ..training.metrics import with_evaluation_ground_truth

    model = _load(model, device)
    segmentation = bool(getattr(model.config, "segmentation_head", False))
    splits = load_coco_folder(dataset_dir, splits=[split], masks=segmentation)
    names = id2label_from_dataset(splits)
    mapping = label_mapping(model.config.id2label, names)
    dataset = with_evaluation_ground_truth(apply_transforms(splits, model.config)[split])
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
    """The model in eval mode on `device`: an object, or a Hub id / folder (`RFDetrForInstanceSegmentation` when its
    config has `segmentation_head`, else `RFDetrForObjectDetection`)."""
    import torch
    from transformers import AutoConfig, AutoModelForInstanceSegmentation, AutoModelForObjectDetection

    if isinstance(model, (str, Path)):
        text, path = str(model), Path(model).expanduser()
        looks_like_path = path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1
        if looks_like_path and not path.exists():
            raise FileNotFoundError(f"model folder {text!r} does not exist")
        source = str(path) if path.exists() else text
        segmentation = getattr(AutoConfig.from_pretrained(source), "segmentation_head", False)
        auto_class = AutoModelForInstanceSegmentation if segmentation else AutoModelForObjectDetection
        model = auto_class.from_pretrained(source)
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
    """Post-processed detections (labels mapped to the dataset's; with packed RLE masks for a segmentation model) and
    targets (their masks packed as RLE at the original size), image by image."""
    import torch
    from torch.utils.data import DataLoader

    from ..training import RFDetrDataCollator
    from ..training.metrics import RLE_KEY, pack_rles, pack_target_masks, unpack_rles

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
            for detections in _post_process(outputs, sizes):
                labels = lookup[detections["labels"]]
                keep = labels >= 0
                prediction = {
                    "scores": detections["scores"][keep],
                    "labels": labels[keep],
                    "boxes": detections["boxes"][keep],
                }
                if RLE_KEY in detections:
                    counts = unpack_rles(detections[RLE_KEY])
                    prediction[RLE_KEY] = pack_rles([text for text, kept in zip(counts, keep.tolist()) if kept])
                predictions.append(prediction)
            targets += [pack_target_masks(target) for target in batch["labels"]]
    return predictions, targets


def _post_process(outputs: Any, sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """The top 100 detections per image (with packed RLE masks when the outputs have `pred_masks`)."""
    from ..training.metrics import post_process, post_process_segmentation

    if getattr(outputs, "pred_masks", None) is not None:
        return post_process_segmentation(outputs.logits, outputs.pred_boxes, outputs.pred_masks, sizes, top_k=100)
    return post_process(outputs.logits, outputs.pred_boxes, sizes, top_k=100)


def _write_predictions(predictions, targets, dataset_dir: Path, split: str, names, path: Path) -> None:
    """Detections in COCO results format, with the split's image ids and category ids, to `path`; for a segmentation
    model also each detection's mask as a COCO RLE `segmentation` at the image's size, without `bbox`, to
    `segm_predictions_path(path)` (with a `bbox`, pycocotools would score the mask with the box's area)."""
    from ..training.data import ANNOTATION_FILE, SPLIT_FOLDERS
    from ..training.metrics import RLE_KEY, coco_results, coco_segment_results

    folder = next(dataset_dir / name for name in SPLIT_FOLDERS[split] if (dataset_dir / name).is_dir())
    category_ids = coco_category_ids(names, json.loads((folder / ANNOTATION_FILE).read_text())["categories"])
    results, segments = [], []
    for prediction, target in zip(predictions, targets):
        image_id = int(target["image_id"][0])
        results += coco_results(prediction, image_id, category_ids)
        if RLE_KEY in prediction:
            segments += coco_segment_results({**prediction, "size": target["orig_size"]}, image_id, category_ids)
    path.write_text(json.dumps(results))
    if any(RLE_KEY in prediction for prediction in predictions):
        segm_predictions_path(path).write_text(json.dumps(segments))


def coco_category_ids(names: dict[int, str], categories: list[dict[str, Any]]) -> dict[int, int]:
    """The dataset's category id of each label: by name, else (names that `load_coco_folder` made unique by
    appending `_<category id>`, e.g. two categories named "dog") by that suffix. Category id 0 is an id like any
    other."""
    by_name = {str(category["name"]): int(category["id"]) for category in categories}
    found = {label: by_name.get(name) for label, name in names.items()}
    return {
        label: category_id if category_id is not None else int(names[label].rsplit("_", 1)[-1])
        for label, category_id in found.items()
    }


def format_report(result: dict[str, Any]) -> str:
    """The summary and per-class AP as aligned text tables (box and mask columns for a segmentation model)."""
    metrics = result["metrics"]
    masks = {key[len(SEGM_PREFIX) :]: value for key, value in metrics.items() if key.startswith(SEGM_PREFIX)}
    boxes = {key: value for key, value in metrics.items() if not key.startswith(SEGM_PREFIX)}
    lines = [
        f"{result['model']} on {result['dataset_dir']} [{result['split']}]: {result['images']} images, "
        f"{result['boxes']} boxes" + (f", {result['weights']} weights" if "weights" in result else ""),
        "",
    ]
    rows = {name: [boxes.get(key)] + ([masks.get(key)] if masks else []) for key, name in SUMMARY_ROWS.items()}
    lines += _table("metric", ["box", "mask"] if masks else ["value"], rows, 16)
    per_class = {key[4:]: value for key, value in boxes.items() if key.startswith("map_") and key not in SUMMARY_ROWS}
    if per_class:
        rows = {name: [value] + ([masks.get(f"map_{name}")] if masks else []) for name, value in per_class.items()}
        lines += [""] + _table("class", ["box AP", "mask AP"] if masks else ["AP"], rows, 16)
    return "\n".join(lines)


def _table(title: str, columns: list[str], rows: dict[str, list[float | None]], min_width: int) -> list[str]:
    """Aligned lines: a header, then one row per name with its values (rows whose values are all missing are
    left out)."""
    rows = {name: values for name, values in rows.items() if any(value is not None for value in values)}
    width = max(min_width, 2 + max((len(name) for name in rows), default=0))
    lines = [f"{title:<{width}}" + "".join(f"{column:>8}" for column in columns)]
    lines += [f"{name:<{width}}" + "".join(f"{_value(value):>8}" for value in values) for name, values in rows.items()]
    return lines


def _value(value: float | None) -> str:
    return "n/a" if value is None or value < 0 else f"{value:.4f}"
