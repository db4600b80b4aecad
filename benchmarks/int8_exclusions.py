"""Which layers to leave in float32 in the int8 export: detections of each setting against PyTorch's.

    OMP_NUM_THREADS=1 python benchmarks/int8_exclusions.py [--model DIR] [--image PATH] [--threshold 0.5]
        [--margin 0.05] [--tolerance 0.1] [--scenes 8] [--only LABEL ...]

Exports the model (default: the bundled demo checkpoint) once to float32 ONNX with `export_onnx`, then quantises it
with onnxruntime's dynamic quantiser under several settings (module-name patterns left in float32, per-tensor or
per-channel weights). Each int8 graph runs on the image, its horizontally flipped, vertically flipped and transposed
copies, and `--scenes` other scenes of the demo's generator and their mirrors, through the image processor and the
object-detection pipeline, and is compared with PyTorch by `hf_rfdetr.onnx.quantization.match_detections` (same
class, IoU >= 0.7, score within `--tolerance` for detections at or above threshold + margin; both sides listed down
to threshold - margin). Printed per setting: the int8 weight nodes (MatMulInteger / ConvInteger), the weight nodes
left float32, the largest score drift of a matched pair, the matched / missing / extra detections summed over the
images, the images with any missing, extra or drifted detection, the int8 count at the threshold, the file size.

Measured on an AMD EPYC (AVX-512 VNNI), onnxruntime 1.32, torch.onnx export, the demo checkpoint, threshold 0.5,
score tolerance 0.1, 20 images (the demo image, flipped both ways and transposed; 8 other scenes of the same generator
and their mirrors): PyTorch finds 127 detections at 0.5. "failed" counts the images with a missing, extra or drifted
detection.

    float32 modules                          int8  float  max drift  matched  missing  extra  failed  count  size KB
    none (the old export)                      54      0      0.194      128        2      1       7    125     1603
    none, per-channel                          54      0      0.249      127        2      1       8    124     1633
    heads                                      45      9      0.268      128        0      0       6    124     1732
    heads, per-channel                         45      9      0.171      125        2      1       4    124     1759
    heads + points                             39     15      0.187      128        1      0       6    126     1819
    heads + decoder                            25     29      0.188      127        1      0       6    125     2412
    heads + decoder, per-channel               25     29      0.165      125        2      1       4    123     2429
    projector                                  46      8      0.183      129        1      0       7    128     2075
    projector, per-channel                     46      8      0.257      128        1      2       5    128     2105
    projector + patch embedding                45      9      0.311      125        2      2       7    124     2127
    projector + heads                          37     17      0.065      127        0      0       0    123     2205
    projector + heads + points (default)       31     23      0.071      127        0      0       0    124     2291
    projector + heads + points, per-channel    31     23      0.072      128        0      0       0    126     2317
    projector + heads + decoder                17     37      0.075      127        0      0       0    123     2885
    all but backbone linears                   16     38      0.083      126        0      0       0    125     2936
    all but backbone linears, per-channel      16     38      0.191      128        0      0       1    127     2953

The int8 error of the backbone alone (last rows: everything else float32) moves scores by up to 0.08 on this small
model; on top of it, the int8 projector convolutions and the int8 heads each push some detections across the
threshold or duplicate them, and only leaving both out removes every failure. Per-channel weights did not help
consistently. The default (`FLOAT_MODULES`) also keeps the deformable-attention sampling offsets, attention weights and
reference-point head in float32 (the positions where each query looks), at no measurable cost in agreement.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageOps
from transformers import pipeline

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hf_rfdetr import RFDetrForObjectDetection, RFDetrImageProcessor, RFDetrOnnxModel, export_onnx  # noqa: E402
from hf_rfdetr.demo_assets import DEMO_IMAGE, DEMO_MODEL  # noqa: E402
from hf_rfdetr.onnx.quantization import FLOAT_MODULES, match_detections, quantize_dynamic_int8  # noqa: E402
from hf_rfdetr.synthetic import render_scene  # noqa: E402

HEADS = ("class_embed", "bbox_embed.*", "model.enc_output", "model.enc_out_class_embed", "model.enc_out_bbox_embed.*")
POINTS = (
    "model.decoder.ref_point_head.*",
    "model.decoder.layers.*.cross_attn.sampling_offsets",
    "model.decoder.layers.*.cross_attn.attention_weights",
)
PROJECTOR = ("model.projector.*",)
PATCH = ("model.backbone.embeddings.*",)
DECODER = ("model.decoder.*",)
SETTINGS: dict[str, tuple[tuple[str, ...], bool]] = {
    "none (the old export)": ((), False),
    "none, per-channel": ((), True),
    "heads": (HEADS, False),
    "heads, per-channel": (HEADS, True),
    "heads + points": (HEADS + POINTS, False),
    "heads + decoder": (HEADS + DECODER, False),
    "heads + decoder, per-channel": (HEADS + DECODER, True),
    "projector": (PROJECTOR, False),
    "projector, per-channel": (PROJECTOR, True),
    "projector + patch embedding": (PROJECTOR + PATCH, False),
    "projector + heads": (PROJECTOR + HEADS, False),
    "projector + heads + points (default)": (FLOAT_MODULES, False),
    "projector + heads + points, per-channel": (FLOAT_MODULES, True),
    "projector + heads + decoder": (PROJECTOR + HEADS + DECODER, False),
    "all but backbone linears": (PROJECTOR + PATCH + HEADS + DECODER, False),
    "all but backbone linears, per-channel": (PROJECTOR + PATCH + HEADS + DECODER, True),
}


def _images(path: Path, scenes: int) -> dict[str, Image.Image]:
    """The image, flipped, mirrored and transposed; `scenes` more demo-like scenes (seeds 5000...) and their mirrors."""
    image = Image.open(path).convert("RGB")
    images = {
        "original": image,
        "hflip": ImageOps.mirror(image),
        "vflip": ImageOps.flip(image),
        "transpose": image.transpose(Image.Transpose.TRANSPOSE),
    }
    for seed in range(5000, 5000 + scenes):
        scene, _ = render_scene((360, 480), (0, 1, 2, 0, 1, 2), seed=seed, object_size=(0.2, 0.3), gap=16)
        images |= {f"scene{seed}": scene, f"scene{seed}-hflip": ImageOps.mirror(scene)}
    return images


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEMO_MODEL)
    parser.add_argument("--image", type=Path, default=DEMO_IMAGE)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--only", nargs="*", help="run the settings whose label contains one of these")
    parser.add_argument("--tolerance", type=float, default=0.1, help="largest score difference of a matched pair")
    parser.add_argument("--scenes", type=int, default=8, help="extra synthetic scenes (each also mirrored)")
    args = parser.parse_args()
    low = args.threshold - args.margin
    model = RFDetrForObjectDetection.from_pretrained(str(args.model)).eval()
    images = _images(args.image, args.scenes)
    with tempfile.TemporaryDirectory() as scratch:
        folder = export_onnx(model, Path(scratch), backend="torch")
        processor = RFDetrImageProcessor.from_pretrained(folder)
        reference = pipeline("object-detection", model=model, image_processor=processor)
        expected = {name: reference(image, threshold=low) for name, image in images.items()}
        counts = sum(sum(d["score"] >= args.threshold for d in found) for found in expected.values())
        print(f"PyTorch: {counts} detection(s) at {args.threshold} over {len(images)} images")
        header = f"{'float32 modules':40} int8  float  max drift  matched  missing  extra  failed  count  size KB"
        print(header)
        for label, (patterns, per_channel) in SETTINGS.items():
            if args.only and not any(part in label for part in args.only):
                continue
            target = folder / "model_quantized.onnx"
            excluded = quantize_dynamic_int8(folder / "model.onnx", target, model, patterns, per_channel=per_channel)
            detector = pipeline(
                "object-detection",
                model=RFDetrOnnxModel.from_pretrained(folder, file_name=target.name),
                image_processor=processor,
            )
            drift, matched, missing, extra, count, failed = 0.0, 0, 0, 0, 0, 0
            for name, image in images.items():
                actual = detector(image, threshold=low)
                match = match_detections(
                    expected[name], actual, threshold=args.threshold, margin=args.margin, score_tolerance=args.tolerance
                )
                drift = max(drift, match.max_score_drift)
                matched += sum(max(e["score"], a["score"]) >= args.threshold for e, a, _ in match.pairs)
                missing += len(match.missing)
                extra += len(match.extra)
                count += sum(d["score"] >= args.threshold for d in actual)
                failed += not match.ok
                for problem in match.problems():
                    print(f"    {name}: {problem}")
            quantized = _quantized_nodes(target)
            size = target.stat().st_size / 1024
            print(
                f"{label:40} {quantized:4d} {len(excluded):6d} {drift:10.3f} {matched:8d} {missing:8d} {extra:6d} "
                f"{failed:7d} {count:6d} {size:8.0f}"
            )
    return 0


def _quantized_nodes(path: Path) -> int:
    import onnx

    return sum(node.op_type in ("MatMulInteger", "ConvInteger") for node in onnx.load(str(path)).graph.node)


if __name__ == "__main__":
    sys.exit(main())
