"""Where the mask head goes in the int8 export of a segmentation model: masks of each setting against float32's.

    OMP_NUM_THREADS=1 python benchmarks/segmentation_int8.py [--variant tiny|seg-nano] [--seeds 0 1 2] [--images 6]
        [--top-k 10] [--train-steps 600]

Builds an `RFDetrForInstanceSegmentation` with perturbed random weights (no checkpoint is available offline; `tiny`
is the tests' 64 px configuration, d_model 32, `seg-nano` the real variant at 312 px); with `--train-steps` it first
trains it with AdamW on synthetic scenes (`hf_rfdetr.synthetic.render_scene` shapes and their masks), so that its masks
are confident as a trained model's are, and measures on held-out scenes instead of random images. It exports the
model once to float32 ONNX with `export_onnx`, then quantises that graph with onnxruntime's dynamic quantiser under
several settings (module-name patterns left float32). Every graph runs on `--images` images per seed; both sides are
post-processed by `RFDetrImageProcessor.post_process_instance_segmentation` (top `--top-k` instances, threshold 0,
masks at a 64 x 96 / 312 x 468 "original" size) and paired by `match_detections` (same class, box IoU >= 0.7, score
within 0.1). Printed per setting: the int8 weight nodes, the float32 ones, the unpaired (missing + extra) and drifted
instances, the mean and the worst mask IoU of the paired instances (int8 mask vs float32 mask), and the share of
instances whose mask IoU is below 0.9.

The tables in `hf_rfdetr.onnx.quantization` (`SEGMENTATION_FLOAT_MODULES`) were printed by this script:
`--train-steps 600 --images 8 --top-k 5`; the defaults; `--variant seg-nano --seeds 0 --images 4`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from hf_rfdetr import RFDetrConfig, RFDetrForInstanceSegmentation, RFDetrImageProcessor, RFDetrOnnxModel, export_onnx
from hf_rfdetr.onnx.quantization import FLOAT_MODULES, match_detections, quantize_dynamic_int8
from hf_rfdetr.synthetic import _drawn_mask, render_scene

TINY = dict(
    backbone_hidden_size=32,
    backbone_num_attention_heads=2,
    backbone_num_hidden_layers=4,
    out_feature_indexes=[2, 4],
    patch_size=8,
    num_windows=2,
    resolution=64,
    positional_encoding_size=8,
    d_model=32,
    decoder_self_attention_heads=2,
    decoder_cross_attention_heads=4,
    decoder_ffn_dim=64,
    num_queries=20,
    group_detr=3,
    id2label={0: "cat", 1: "dog", 2: "bird"},
    segmentation_head=True,
)
MASK = ("segmentation_head.*",)
ALL_BUT_MASK = ("model.backbone.*", "model.projector.*", "model.decoder.*") + FLOAT_MODULES
SETTINGS = {
    "all (control: no int8 node)": ALL_BUT_MASK + MASK,
    "all but the mask head": ALL_BUT_MASK,
    "none (everything int8)": (),
    "detection rule, mask head int8": FLOAT_MODULES,
    "detection rule + mask query MLP": FLOAT_MODULES + ("segmentation_head.query_features_*",),
    "detection rule + mask spatial path": FLOAT_MODULES
    + ("segmentation_head.blocks.*", "segmentation_head.spatial_features_proj"),
    "detection rule + mask head (default)": FLOAT_MODULES + MASK,
}


def scenes(
    count: int, seed: int, processor: RFDetrImageProcessor
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """`count` synthetic scenes (1 or 2 shapes of 3 classes on a textured background) as normalised pixel values and
    labels with masks."""
    rng = np.random.default_rng(seed)
    size = processor.size["height"]
    images, labels = [], []
    for index in range(count):
        classes = rng.integers(0, 3, size=int(rng.integers(1, 3))).tolist()
        image, objects = render_scene((size, size), classes, seed=seed * 100_000 + index, object_size=(0.25, 0.45))
        images.append(image)
        boxes = torch.tensor([box for _, box in objects], dtype=torch.float32)
        labels.append(
            {
                "class_labels": torch.tensor([label for label, _ in objects]),
                "boxes": torch.cat([boxes[:, :2] + boxes[:, 2:] / 2, boxes[:, 2:]], dim=1) / size,
                "masks": torch.from_numpy(np.stack([_drawn_mask(k, box, (size, size)) for k, box in objects])),
            }
        )
    return processor(images, return_tensors="pt")["pixel_values"], labels


def train(model: RFDetrForInstanceSegmentation, steps: int, seed: int) -> None:
    """A few hundred AdamW steps on synthetic scenes, so that masks are confident as a trained model's are."""
    pixel_values, labels = scenes(256, seed + 7, RFDetrImageProcessor.from_config(model.config))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        batch = torch.randint(0, len(labels), (8,), generator=generator)
        loss = model(pixel_values=pixel_values[batch], labels=[labels[i] for i in batch]).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"seed {seed} step {step} loss {loss.item():.3f}", file=sys.stderr)
    model.eval()


def build(variant: str, seed: int) -> RFDetrForInstanceSegmentation:
    config = RFDetrConfig(**TINY) if variant == "tiny" else RFDetrConfig.from_variant(variant)
    torch.manual_seed(seed)
    model = RFDetrForInstanceSegmentation(config)
    generator = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model.eval()


def instances(result: dict, labels: dict[int, str]) -> list[dict]:
    """Post-processed instances in `match_detections`' format, each with its `mask`."""
    return [
        {
            "label": labels[int(label)],
            "score": float(score),
            "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), box.tolist())),
            "mask": mask,
        }
        for score, label, box, mask in zip(result["scores"], result["labels"], result["boxes"], result["masks"])
    ]


def mask_iou(first: torch.Tensor, second: torch.Tensor) -> float:
    union = (first | second).sum().item()
    return (first & second).sum().item() / union if union else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument(
        "--train-steps", type=int, default=0, help="train on synthetic scenes first and measure on held-out ones"
    )
    args = parser.parse_args()
    totals = {name: {"int8": 0, "unpaired": 0, "drifted": 0, "ious": []} for name in SETTINGS}
    for seed in args.seeds:
        model = build(args.variant, seed)
        size = model.config.resolution
        target = (size, size * 3 // 2)
        processor = RFDetrImageProcessor.from_config(model.config)
        generator = torch.Generator().manual_seed(seed)
        pixel_values = torch.randn(args.images, 3, size, size, generator=generator)
        if args.train_steps:
            train(model, args.train_steps, seed)
            pixel_values = scenes(args.images, seed + 1000, processor)[0]
        with tempfile.TemporaryDirectory() as scratch:
            folder = export_onnx(model, Path(scratch), backend="torch")
            expected = post_process(processor, RFDetrOnnxModel.from_pretrained(folder), pixel_values, target, args)
            for index, (name, patterns) in enumerate(SETTINGS.items()):
                file_name = f"int8-{index}.onnx"
                excluded = quantize_dynamic_int8(folder / "model.onnx", folder / file_name, model, patterns)
                actual = post_process(
                    processor, RFDetrOnnxModel.from_pretrained(folder, file_name=file_name), pixel_values, target, args
                )
                totals[name]["int8"] = count_integer_nodes(folder / file_name)
                totals[name]["float"] = len(excluded)
                for ours, theirs in zip(expected, actual):
                    match = match_detections(ours, theirs, threshold=0.0, margin=0.0, score_tolerance=0.1)
                    totals[name]["unpaired"] += len(match.missing) + len(match.extra)
                    totals[name]["drifted"] += len(match.drifted)
                    totals[name]["ious"] += [mask_iou(e["mask"], a["mask"]) for e, a, _ in match.pairs]
    trained = f"trained {args.train_steps} steps on synthetic scenes" if args.train_steps else "random weights"
    print(f"{args.variant} ({trained}), seeds {args.seeds}, {args.images} images each, top {args.top_k} per image")
    print(
        f"{'float32 modules':40s} {'int8':>5s} {'float':>5s} {'unpaired':>8s} {'drifted':>7s} "
        f"{'mean IoU':>8s} {'min IoU':>7s} {'IoU<0.9':>7s}"
    )
    for name, total in totals.items():
        ious = np.array(total["ious"])
        print(
            f"{name:40s} {total['int8']:5d} {total['float']:5d} {total['unpaired']:8d} {total['drifted']:7d} "
            f"{ious.mean():8.4f} {ious.min():7.4f} {(ious < 0.9).mean():7.1%}"
        )


def post_process(processor, onnx_model, pixel_values, target, args) -> list[list[dict]]:
    outputs = onnx_model(pixel_values=pixel_values)
    results = processor.post_process_instance_segmentation(
        outputs, 0.0, [target] * len(pixel_values), top_k=args.top_k, return_binary_maps=True
    )
    return [instances(result, onnx_model.config.id2label) for result in results]


def count_integer_nodes(path: Path) -> int:
    import onnx

    return sum(node.op_type in ("MatMulInteger", "ConvInteger") for node in onnx.load(str(path)).graph.node)


if __name__ == "__main__":
    sys.exit(main())
