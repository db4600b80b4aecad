"""`hf-rfdetr convert`: an original rfdetr .pth checkpoint to a Hugging Face folder."""

from __future__ import annotations

import argparse

ORDER = 50


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an original rfdetr .pth checkpoint into a Hugging Face folder",
        description="Convert an original rfdetr checkpoint (.pth) into a folder with config.json, model.safetensors, "
        "preprocessor_config.json, the model code and a model card.",
    )
    parser.add_argument("checkpoint", help="path to the original .pth checkpoint")
    parser.add_argument("output", help="folder to write")
    parser.add_argument(
        "--variant",
        help="nano, small, medium, base, large or large-legacy (default: read from the checkpoint)",
    )
    parser.add_argument(
        "--weights", choices=("model", "ema"), default="model", help="regular or EMA weights (training checkpoints)"
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
    from ..conversion import convert_checkpoint

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
