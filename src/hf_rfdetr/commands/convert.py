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
"""`hf-rfdetr convert`: an original rfdetr .pth checkpoint (or one of the original's COCO checkpoints by name) to a
Hugging Face folder."""

from __future__ import annotations

import argparse

ORDER = 50


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..pretrained_weights import known_names  # light: no torch, no transformers

    names = ", ".join(known_names())
    parser = subparsers.add_parser(
        "convert",
        help="convert an original rfdetr .pth checkpoint into a Hugging Face folder",
        description="Convert an original rfdetr checkpoint (.pth, or .pt for Seg, or a Lightning .ckpt its training "
        "writes: last.ckpt, checkpoint_<epoch>.ckpt) into a folder with config.json, model.safetensors, "
        "preprocessor_config.json, the model code and a model card.",
    )
    parser.add_argument(
        "checkpoint",
        help=f"path to the original .pth (Seg .pt, training .ckpt) checkpoint, or a name of the original's COCO checkpoints "
        f"({names}: downloaded once, md5-checked, cached)",
    )
    parser.add_argument("output", help="folder to write")
    parser.add_argument(
        "--variant",
        help=f"one of {names} (default: read from the checkpoint)",
    )
    parser.add_argument(
        "--weights",
        choices=("model", "ema"),
        default="model",
        help="regular or EMA weights (training checkpoints; a .ckpt's EMA weights are the EMA callback's)",
    )
    parser.add_argument("--verify", action="store_true", help="compare outputs with the original rfdetr package")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the folder to this Hub repository")
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow full unpickling when weights_only loading fails (only for files you trust: it can run code)",
    )
    parser.set_defaults(run_command=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..conversion import convert_checkpoint
    from ..pretrained_weights import resolve_name

    name = None if Path(args.checkpoint).exists() else resolve_name(args.checkpoint)
    if name is not None:
        return _run_named(name, args)
    folder = convert_checkpoint(
        args.checkpoint,
        args.output,
        variant=args.variant,
        weights=args.weights,
        verify=args.verify,
        push_to_hub=args.push_to_hub,
        trust=args.trust_checkpoint,
    )
    print(f"wrote {folder}" + (" (verified against rfdetr)" if args.verify else ""))
    return 0


def _run_named(name: str, args: argparse.Namespace) -> int:
    """Copy the cached conversion of the original's COCO checkpoint `name` (`--verify`: convert its .pth again, next to
    the original package)."""
    import shutil

    from ..conversion import convert_checkpoint
    from ..pretrained_weights import coco_checkpoint, download_original

    if args.verify or args.weights != "model" or args.variant:
        folder = convert_checkpoint(
            download_original(name), args.output, variant=args.variant or name, weights=args.weights, verify=args.verify
        )
    else:
        folder = shutil.copytree(coco_checkpoint(name), args.output, dirs_exist_ok=True)
    if args.push_to_hub:
        from ..hub import push_to_hub

        push_to_hub(folder, args.push_to_hub, source=f"converted from the original rfdetr COCO checkpoint {name!r}")
    print(
        f"wrote {folder} (the original's {name} COCO checkpoint)"
        + (" (verified against rfdetr)" if args.verify else "")
    )
    return 0
