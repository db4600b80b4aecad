"""Optimum's command line with RF-DETR registered.

    python -m hf_rfdetr.onnx.optimum_cli export onnx --model FOLDER --task object-detection OUTPUT

takes exactly `optimum-cli`'s arguments. `optimum-cli` itself cannot export RF-DETR: Optimum loads no third-party
ONNX configs, so the process must import `hf_rfdetr` first, which is all this entry point adds.
"""

from __future__ import annotations

import sys


def main() -> None:
    from optimum.commands.optimum_cli import main as optimum_cli

    from .optimum import register_optimum

    register_optimum()
    optimum_cli()


if __name__ == "__main__":
    sys.exit(main())
