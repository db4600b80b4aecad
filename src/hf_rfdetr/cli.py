"""The `hf-rfdetr` command: one subcommand per module of `hf_rfdetr.commands`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-rfdetr", description="RF-DETR object detection with Hugging Face")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [
        importlib.import_module(f"{commands.__name__}.{info.name}") for info in pkgutil.iter_modules(commands.__path__)
    ]
    for module in sorted(modules, key=lambda module: module.ORDER):
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run_command(args)
    except (ValueError, OSError) as error:  # bad input: say what is wrong, no traceback
        print(f"hf-rfdetr {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
