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
"""The `hf-rfdetr` command: one subcommand per module of `hf_rfdetr.commands`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .verbosity import quiet_loading

#: Errors caused by what the user gave (paths, files, values, missing extras): one line on stderr, exit code 1. Any
#: other exception is a bug and keeps its traceback; `--debug` shows the traceback of these too.
USER_ERRORS = (ValueError, OSError, ImportError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-rfdetr", description="RF-DETR object detection with Hugging Face")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    parser.add_argument("--verbose", action="store_true", help="show transformers' progress bars and messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [
        importlib.import_module(f"{commands.__name__}.{info.name}") for info in pkgutil.iter_modules(commands.__path__)
    ]
    for module in sorted(modules, key=lambda module: module.ORDER):
        module.register(subparsers)
    for subparser in subparsers.choices.values():  # also after the command: `hf-rfdetr predict ... --debug`
        subparser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of errors"
        )
        subparser.add_argument(
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show transformers' progress bars and messages",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "device", None):
            check_device(args.device)
        with quiet_loading(args.verbose):
            return args.run_command(args)
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"hf-rfdetr {args.command}: error: {one_line(error)} (--debug shows the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"hf-rfdetr {args.command}: interrupted", file=sys.stderr)
        return 130


def check_device(name: str) -> None:
    """Raise `ValueError` naming `--device` when `name` is not a device PyTorch knows or has here (torch raises a
    `RuntimeError` deep inside the command otherwise)."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"--device {name!r} is not a device name (cpu, cuda, cuda:1, mps, ...): {error}") from None
    available = {
        "cuda": lambda: torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
        "mps": lambda: torch.backends.mps.is_available(),
        "xpu": lambda: hasattr(torch, "xpu") and torch.xpu.is_available(),
    }
    if device.type in available and not available[device.type]():
        raise ValueError(f"--device {name!r}: no such device is available on this machine (PyTorch sees none)")


def one_line(error: BaseException) -> str:
    """The error's message on one line (the lines of a multi-line message joined), or its type when it has none."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
