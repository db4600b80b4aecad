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
