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
"""Optimum's command line with RF-DETR registered.

    python -m hf_rfdetr.onnx.optimum_cli export onnx --model FOLDER --task object-detection OUTPUT

takes exactly `optimum-cli`'s arguments. `optimum-cli` itself cannot export RF-DETR: Optimum loads no third-party
ONNX configs, so the process must import `hf_rfdetr` first, which is all this entry point adds, with one difference:
as `export_onnx` and `hf-rfdetr export` do, an earlier export's files in OUTPUT (`model.onnx`,
`model_quantized.onnx`, their external data, `export_report.json`, its model card) are deleted, with a warning naming
them (`hf_rfdetr.onnx.export.remove_previous_export`), once Optimum has loaded the model and before it writes. Optimum
writes neither a report nor a card, so none would otherwise be left beside its new graph vouching for it (a card and
report of another input size, an int8 graph of the earlier weights).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def main() -> None:
    from optimum.commands.optimum_cli import main as optimum_cli

    from .optimum import register_optimum

    register_optimum()
    with removing_previous_exports():
        optimum_cli()


@contextmanager
def removing_previous_exports() -> Iterator[None]:
    """While in effect, Optimum's ONNX export (`main_export`, which the `export onnx` command calls) first deletes an
    earlier export's files from its output folder (`remove_previous_export`): after loading the model, just before
    `onnx_export_from_model` writes, as `export_onnx` does after loading and before exporting."""
    from .export import remove_previous_export

    optimum_main = importlib.import_module("optimum.exporters.onnx.__main__")
    write = optimum_main.onnx_export_from_model
    signature = inspect.signature(write)

    def onnx_export_from_model(*args: Any, **kwargs: Any) -> Any:
        remove_previous_export(Path(signature.bind(*args, **kwargs).arguments["output"]))
        return write(*args, **kwargs)

    optimum_main.onnx_export_from_model = onnx_export_from_model
    try:
        yield
    finally:
        optimum_main.onnx_export_from_model = write


if __name__ == "__main__":
    sys.exit(main())
