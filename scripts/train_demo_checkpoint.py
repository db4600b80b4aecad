"""Train the small demo checkpoint bundled with hf_rfdetr, and draw the demo image it is shown on.

    OMP_NUM_THREADS=1 python scripts/train_demo_checkpoint.py [--output FOLDER] [--image PATH] [--epochs N] ...

Reproducible (seeded, one CPU thread): it writes a synthetic COCO folder of coloured shapes with
`hf_rfdetr.synthetic` (train / valid / test), trains a small RF-DETR (about 1M parameters) from scratch on it with
`hf_rfdetr.fine_tune`, evaluates the final and the EMA weights on the held-out test split, and saves the weights that
score better on the validation split to `--output` (default `src/hf_rfdetr/assets/demo-model/`): `config.json`
(the class names as `id2label`), `model.safetensors`, `preprocessor_config.json`, a model card `README.md` and
`training_metrics.json` (the command, the timing, the validation curve and the held-out metrics). It also draws the
demo image (`--image`, default `src/hf_rfdetr/assets/demo.jpg`, a scene from another seed than any training image)
and its ground-truth boxes (the same path with `.json`).

The checkpoint detects only these synthetic shapes: it exists so that the demo shows real detections offline.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import transformers

from hf_rfdetr import RFDetrConfig, RFDetrForObjectDetection, RFDetrImageProcessor, fine_tune
from hf_rfdetr.demo_assets import DEMO_IMAGE, DEMO_MODEL
from hf_rfdetr.model_card import Evaluation, render_model_card
from hf_rfdetr.synthetic import class_names, render_scene, write_synthetic_coco
from hf_rfdetr.training import apply_transforms, load_coco_folder

NUM_CLASSES = 3
#: Demo image: (height, width), the class of each object (two of each), seed (no training image uses it), sizes.
DEMO_IMAGE_SIZE = (360, 480)
DEMO_LABELS = (0, 1, 2, 0, 1, 2)
DEMO_SEED = 2024
DEMO_OBJECT_SIZE = (0.2, 0.3)
#: Training scenes have the demo image's aspect ratio at a lower size, with up to 7 objects of similar relative size.
TRAIN_IMAGE_SIZE = (144, 192)
TRAIN_OBJECT_SIZE = (0.15, 0.35)
TRAIN_MAX_OBJECTS = 7
METRICS_FILE = "training_metrics.json"
WEIGHT_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def demo_config(resolution: int, num_queries: int = 30) -> RFDetrConfig:
    """A ~1M-parameter RF-DETR (4-layer, 96-wide windowed ViT with patch 8; 2 decoder layers) for the shapes."""
    names = class_names(NUM_CLASSES)
    return RFDetrConfig(
        backbone_hidden_size=96,
        backbone_num_attention_heads=3,
        backbone_num_hidden_layers=4,
        out_feature_indexes=[2, 4],
        patch_size=8,
        num_windows=2,
        resolution=resolution,
        positional_encoding_size=resolution // 8,
        d_model=96,
        decoder_self_attention_heads=4,
        decoder_cross_attention_heads=4,
        decoder_ffn_dim=256,
        decoder_layers=2,
        num_queries=num_queries,
        group_detr=4,
        id2label=dict(enumerate(names)),
        label2id={name: index for index, name in enumerate(names)},
    )


def write_demo_image(path: Path) -> list[dict]:
    """Draw the demo scene to `path` (JPEG) and its ground truth to `path.with_suffix(".json")`; return the objects
    as `{"label", "box": {"xmin", "ymin", "xmax", "ymax"}}` (pixel corners, as the object-detection pipeline)."""
    image, objects = render_scene(DEMO_IMAGE_SIZE, DEMO_LABELS, seed=DEMO_SEED, object_size=DEMO_OBJECT_SIZE, gap=16)
    names = class_names(NUM_CLASSES)
    truth = [
        {"label": names[label], "box": {"xmin": x, "ymin": y, "xmax": x + w, "ymax": y + h}}
        for label, (x, y, w, h) in objects
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=90, optimize=True)
    document = {"image": path.name, "width": image.width, "height": image.height, "objects": truth}
    path.with_suffix(".json").write_text(json.dumps(document, indent=1) + "\n")
    return truth


def train(args: argparse.Namespace, data: Path, run: Path) -> tuple[transformers.Trainer, float]:
    """Train from scratch with `fine_tune` on the COCO folder `data`; return the trainer and the seconds it took."""
    torch.manual_seed(args.seed)
    model = RFDetrForObjectDetection(demo_config(args.resolution))
    start = time.perf_counter()
    trainer = fine_tune(
        model,
        data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_accum_steps=1,
        lr=args.lr,
        lr_encoder=args.lr,
        device="cpu",
        tensorboard=False,
        num_workers=0,
        checkpoint_interval=args.epochs,
        output_dir=run,
        seed=args.seed,
        disable_tqdm=True,
    )
    return trainer, time.perf_counter() - start


def validation_curve(log_history: list[dict]) -> list[dict]:
    """Per epoch: validation mAP50 / mAP of the regular and the EMA weights."""
    keys = ("eval_map_50", "eval_map", "eval_ema_map_50", "eval_ema_map")
    return [
        {"epoch": round(entry["epoch"]), **{key[5:]: round(entry[key], 4) for key in keys if key in entry}}
        for entry in log_history
        if "eval_map" in entry
    ]


def save_checkpoint(model: RFDetrForObjectDetection, output: Path) -> None:
    """Write `model` with its image processor to `output` as plain weights: no model code, no `auto_map` (the
    checkpoint is loaded with hf_rfdetr installed)."""
    output.mkdir(parents=True, exist_ok=True)
    for stale in [*output.glob("*.py"), *(output / name for name in WEIGHT_FILES)]:
        stale.unlink(missing_ok=True)
    model.save_pretrained(output, safe_serialization=True)
    RFDetrImageProcessor.from_config(model.config).save_pretrained(output)
    for code in output.glob("*.py"):
        code.unlink()
    for name in ("config.json", "preprocessor_config.json"):
        document = json.loads((output / name).read_text())
        document.pop("auto_map", None)
        (output / name).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    transformers.utils.logging.set_verbosity_error()
    command = f"python scripts/train_demo_checkpoint.py {shlex.join(sys.argv[1:] if argv is None else argv)}".strip()
    truth = write_demo_image(args.image)
    print(f"wrote {args.image} ({len(truth)} objects) and {args.image.with_suffix('.json')}")
    with tempfile.TemporaryDirectory(prefix="rfdetr-demo-") as scratch:
        data = write_synthetic_coco(
            Path(scratch) / "shapes",
            num_train=args.num_train,
            num_valid=args.num_valid,
            num_test=args.num_test,
            image_size=TRAIN_IMAGE_SIZE,
            seed=args.seed,
            num_classes=NUM_CLASSES,
            max_objects=TRAIN_MAX_OBJECTS,
            object_size=TRAIN_OBJECT_SIZE,
        )
        trainer, seconds = train(args, data, Path(scratch) / "run")
        curve = validation_curve(trainer.state.log_history)
        test_split = apply_transforms(load_coco_folder(data, splits=["test"]), trainer.model.config)["test"]
        held_out = trainer.evaluate(test_split, metric_key_prefix="test")
        use_ema = curve[-1].get("ema_map", -1.0) > curve[-1]["map"]
        model = RFDetrForObjectDetection.from_pretrained(Path(scratch) / "run" / "ema") if use_ema else trainer.model
    prefix = "test_ema_" if use_ema else "test_"
    metrics = {key[len(prefix) :]: value for key, value in held_out.items() if key.startswith(prefix)}
    metrics = {key: round(value, 4) for key, value in metrics.items() if key.startswith(("map", "mar"))}
    save_checkpoint(model, args.output)
    report = {
        "command": command,
        "weights": "EMA" if use_ema else "final",
        "train_seconds": round(seconds, 1),
        "epochs": args.epochs,
        "num_train_images": args.num_train,
        "num_parameters": model.num_parameters(),
        "validation_curve": curve,
        "test_metrics": metrics,
        "test_metrics_final_and_ema": {k: round(v, 4) for k, v in held_out.items() if "map" in k},
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }
    (args.output / METRICS_FILE).write_text(json.dumps(report, indent=1) + "\n")
    write_card(model, args, metrics, report)
    size = (args.output / "model.safetensors").stat().st_size
    print(
        f"trained {args.epochs} epochs in {seconds:.0f} s; saved the {report['weights']} weights ({size / 1e6:.2f} MB)"
    )
    print("held-out test:", {key: metrics[key] for key in ("map", "map_50", "map_75") if key in metrics})
    return 0


def write_card(model: RFDetrForObjectDetection, args: argparse.Namespace, metrics: dict, report: dict) -> None:
    """`args.output/README.md`: the model card with the held-out metrics and how the weights were made."""
    training = (
        f"trained from scratch for {args.epochs} epochs on {args.num_train} synthetic {TRAIN_IMAGE_SIZE[1]}x"
        f"{TRAIN_IMAGE_SIZE[0]} images (CPU, one thread, {report['train_seconds']:.0f} s) by "
        f"`{report['command']}`; {report['weights']} weights; test split: {args.num_test} held-out images"
    )
    card = render_model_card(
        model.config,
        model.num_parameters(),
        repo_id="src/hf_rfdetr/assets/demo-model",
        source="trained from scratch on synthetic shapes (hf_rfdetr.synthetic); a demo, not a general detector",
        dataset="hf_rfdetr.synthetic shapes (coloured rectangles, circles and triangles on gradients)",
        evaluations=[Evaluation("test (held out)", metrics, float(args.epochs), METRICS_FILE)],
        training=training,
        remote_code=False,
    )
    (args.output / "README.md").write_text(card, encoding="utf-8")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEMO_MODEL, help="checkpoint folder to write")
    parser.add_argument("--image", type=Path, default=DEMO_IMAGE, help="demo image to write (and .json)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--num-train", type=int, default=256, help="training images")
    parser.add_argument("--num-valid", type=int, default=32, help="validation images (weights choice)")
    parser.add_argument("--num-test", type=int, default=64, help="held-out test images (reported metrics)")
    parser.add_argument("--resolution", type=int, default=192, help="square input side, a multiple of 16")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
