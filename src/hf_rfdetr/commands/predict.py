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
"""`hf-rfdetr predict`: detect (and segment) objects in images, folders and videos; write annotated copies and
detections.json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ORDER = 10

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="detect objects in images, folders and videos; write annotated copies and detections.json",
        description=(
            "Run RF-DETR on images, folders of images and videos. Writes an annotated copy of each input to "
            "--output-dir (images keep their format, videos become .mp4) and every detection to "
            "OUTPUT_DIR/detections.json (boxes as [x0, y0, x1, y1] in pixels of the input as a viewer shows it, EXIF "
            "orientation applied). With a segmentation model (seg-nano, ..., or a folder of one) masks are drawn too "
            "and each detection has a 'mask': COCO RLE ({'size': [height, width], 'counts': text}, decode with "
            "pycocotools.mask.decode). Inputs that cannot be read are listed under 'errors' in detections.json and on "
            "stderr, the others are processed, and the exit code is 1. Inputs are never overwritten: an annotated "
            "copy whose name is taken by an input gets the next free name (demo.jpg -> demo-1.jpg), and an "
            "--output-dir inside an INPUT folder is skipped when that folder is searched."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, or folders of images")
    parser.add_argument(
        "--model",
        required=True,
        help="a COCO checkpoint name (nano, small, medium, base, large, large-legacy; segmentation: seg-nano, "
        "seg-small, seg-medium, seg-large, seg-xlarge, seg-2xlarge, seg-preview: downloaded once and cached), a Hub "
        "repository id, a local folder (ours or transformers' rf_detr), or an original rfdetr .pth / .pt checkpoint",
    )
    parser.add_argument("--output-dir", required=True, type=Path, help="where annotated files and detections.json go")
    parser.add_argument("--threshold", type=float, default=0.5, help="keep detections scoring above this (0.5)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: 8)")
    parser.add_argument("--videos", action="store_true", help="also process the videos found in INPUT folders")
    parser.add_argument("--max-frames", type=int, help="process at most this many frames of each video")
    parser.add_argument("--device", help="cpu, cuda, ... (default: CUDA when available)")
    parser.add_argument(
        "--optimize",
        action="store_true",
        help="the fast inference path (optimize_for_inference: int8 or bf16 backbone where the CPU has it, bf16 / "
        "fp16 on CUDA); scores move by about 0.001",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    parser.set_defaults(run_command=run)


def collect_inputs(
    inputs: list[str], videos_in_folders: bool = False, exclude: Path | None = None
) -> tuple[list[Path], list[Path]]:
    """`(images, videos)` named by `inputs`: files by their suffix (unknown suffixes are tried as images), folders
    by their image files (and video files with `videos_in_folders`), sorted, recursively, leaving out what lies in
    `exclude` (the output folder) when it is a subfolder of the searched one. Raises `FileNotFoundError` naming a
    missing input and `ValueError` when nothing is found."""
    skip = exclude.resolve() if exclude is not None else None
    images: list[Path] = []
    videos: list[Path] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            inside = skip is not None and path.resolve() in skip.parents  # exclude is a subfolder of path
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not p.name.startswith(".") and not (inside and skip in p.resolve().parents)
            )
            images += [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            videos += [p for p in files if videos_in_folders and p.suffix.lower() in VIDEO_SUFFIXES]
        elif path.is_file():
            (videos if path.suffix.lower() in VIDEO_SUFFIXES else images).append(path)
        else:
            raise FileNotFoundError(f"input {text!r} does not exist")
    if not images and not videos:
        kinds = "images or videos" if videos_in_folders else "images (add --videos for videos in folders)"
        raise ValueError(f"found no {kinds} in {', '.join(inputs)}")
    return images, videos


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be at least 1, got {args.max_frames}")
    images, videos = collect_inputs(args.inputs, args.videos, exclude=args.output_dir)
    if args.no_progress:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    from ..facade import RFDETR

    model = RFDETR(pretrain_weights=args.model, device=args.device)
    if args.optimize:
        model.optimize_for_inference()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    names = _OutputNames(args.output_dir, reserved=images + videos)
    report: dict[str, Any] = {"model": args.model, "threshold": args.threshold, "images": [], "videos": []}
    errors: list[dict[str, str]] = []
    report["images"] = _predict_images(model, images, names, args, errors)
    report["videos"] = [entry for video in videos if (entry := _predict_video(model, video, names, args, errors))]
    report["errors"] = errors
    (args.output_dir / "detections.json").write_text(json.dumps(report, indent=2) + "\n")
    found = sum(len(entry["detections"]) for entry in report["images"])
    print(
        f"{len(report['images'])} image(s) ({found} detections) and {len(report['videos'])} video(s) -> "
        f"{args.output_dir} (annotated copies and detections.json)"
    )
    return _report_errors(errors, len(images) + len(videos), args.output_dir)


def _report_errors(errors: list[dict[str, str]], total: int, output_dir: Path) -> int:
    """Print the inputs that could not be read (stderr); 1 when there are any, else 0."""
    if not errors:
        return 0
    print(
        f"hf-rfdetr predict: error: could not read {len(errors)} of {total} input(s); the others were processed "
        f"(the errors are listed under 'errors' in {output_dir / 'detections.json'}):",
        file=sys.stderr,
    )
    for error in errors:
        print(f"  {error['error']}", file=sys.stderr)
    return 1


def _predict_images(
    model: Any, images: list[Path], names: _OutputNames, args: argparse.Namespace, errors: list[dict[str, str]]
) -> list[dict]:
    """Annotate and describe `images`, `args.batch_size` per forward pass. Images are read as a viewer shows them
    (`hf_rfdetr.models.rfdetr.image_io.load_image`: EXIF orientation, 16-bit scaling), so boxes, sizes and annotated copies are in
    the displayed frame; files that cannot be read, or are too small for the model (under 2x2 pixels), go to `errors` (`{"input", "error"}`) and the rest carry on."""
    from tqdm.auto import tqdm

    from ..annotate import draw_detections
    from ..models.rfdetr.image_io import check_spatial_size, load_image

    entries = []
    with tqdm(total=len(images), unit="image", desc="images", disable=args.no_progress or not images) as bar:
        for start in range(0, len(images), args.batch_size):
            batch = images[start : start + args.batch_size]
            readable, pictures = [], []
            for path in batch:
                try:
                    picture = load_image(path)
                    check_spatial_size(picture.height, picture.width, str(path))
                    pictures.append(picture)
                    readable.append(path)
                except (OSError, ValueError) as error:
                    errors.append({"input": str(path), "error": str(error)})
            found_lists = model.predict(pictures, threshold=args.threshold) if pictures else []
            for path, image, detections in zip(readable, pictures, found_lists):
                found = detection_dicts(detections)
                output = names.next(path, path.suffix if path.suffix.lower() in IMAGE_SUFFIXES else ".png")
                draw_detections(image, found, masks=detections.mask).save(output)
                entries.append(
                    {"input": str(path), "output": str(output), "width": image.width, "height": image.height}
                    | {"detections": found}
                )
            bar.update(len(batch))
    return entries


def _predict_video(
    model: Any, video: Path, names: _OutputNames, args: argparse.Namespace, errors: list[dict[str, str]]
) -> dict | None:
    """Annotate one video into an .mp4 and return its per-frame detections (None, and an entry in `errors`, when
    the video cannot be opened)."""
    from ..video import frame_callback, open_capture, process_video

    try:
        open_capture(video).release()
    except (OSError, ValueError) as error:
        errors.append({"input": str(video), "error": str(error)})
        return None
    frames: list[list[dict]] = []
    output = names.next(video, ".mp4")
    callback = frame_callback(
        model, args.threshold, on_detections=lambda _, found: frames.append(detection_dicts(found))
    )
    stats = process_video(
        video, callback=callback, output=output, max_frames=args.max_frames, progress=not args.no_progress
    )
    print(f"{video}: {stats.frames} frames in {stats.seconds:.1f} s ({stats.fps:.1f} frames/s) -> {output}")
    return {"input": str(video), "output": str(output), "frames": stats.frames, "fps": round(stats.fps, 2)} | {
        "detections": frames
    }


def detection_dicts(detections: Any) -> list[dict]:
    """`supervision.Detections` -> `[{"label", "class_id", "score", "box": [x0, y0, x1, y1]}]` (JSON-ready), plus
    `"mask": {"size": [height, width], "counts": str}` (COCO RLE, `pycocotools.mask.encode`) when the detections
    have masks."""
    found = [
        {
            "label": str(name),
            "class_id": int(class_id),
            "score": round(float(score), 5),
            "box": [round(float(v), 2) for v in box],
        }
        for box, score, class_id, name in zip(
            detections.xyxy, detections.confidence, detections.class_id, detections.data["class_name"]
        )
    ]
    if detections.mask is not None:
        for entry, rle in zip(found, mask_rles(detections.mask)):
            entry["mask"] = rle
    return found


def mask_rles(masks: Any) -> list[dict]:
    """COCO RLE dicts (`counts` as text) of `(N, H, W)` bool masks, as `post_process_instance_segmentation(...,
    return_coco_annotation=True)` writes them."""
    import torch

    from ..models.rfdetr.post_processing import coco_rle

    try:
        return coco_rle(torch.as_tensor(masks, dtype=torch.bool))
    except ImportError as error:
        raise ImportError(
            "hf-rfdetr predict writes segmentation masks as COCO RLE, which needs pycocotools (pip install "
            "pycocotools, or hf-rfdetr's train extra)"
        ) from error


class _OutputNames:
    """Output paths in one folder: the input's stem with a new suffix, `-1`, `-2`, ... when a name repeats, ignoring
    case (`a.jpg` and `sub/a.JPG` would be one file on macOS and Windows), or would land on one of the `reserved`
    files (the inputs: an output never overwrites an input)."""

    def __init__(self, folder: Path, reserved: list[Path] = ()) -> None:
        self.folder = folder
        self.used: set[str] = set()
        self.reserved = {str(path.resolve()).casefold() for path in reserved}

    def _taken(self, name: str) -> bool:
        return name.casefold() in self.used or str((self.folder / name).resolve()).casefold() in self.reserved

    def next(self, source: Path, suffix: str) -> Path:
        name, count = f"{source.stem}{suffix}", 0
        while self._taken(name):
            count += 1
            name = f"{source.stem}-{count}{suffix}"
        self.used.add(name.casefold())
        return self.folder / name
