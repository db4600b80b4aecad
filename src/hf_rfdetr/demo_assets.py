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
"""Paths of the demo files shipped inside the package (`hf_rfdetr/assets/`, described in its README.md).

- `DEMO_MODEL`: a small RF-DETR (about 1M parameters, 192 x 192 input) trained from scratch by
  `scripts/train_demo_checkpoint.py` on synthetic shapes from `hf_rfdetr.synthetic`. It detects three classes only,
  `red-rectangle`, `green-circle` and `blue-triangle`: it lets the demo and the snippets run offline with real
  detections, and is no general-purpose detector (start from a COCO-pretrained checkpoint on the Hub, or a `.pth` of
  the original package converted with `hf-rfdetr convert`, for real images).
- `DEMO_IMAGE`: a 480 x 360 scene of the same generator, two objects of each class, from a seed no training image
  used; `DEMO_GROUND_TRUTH` is its JSON (`{"image", "width", "height", "objects": [{"label", "box"}]}`, boxes as
  the object-detection pipeline's `{"xmin", "ymin", "xmax", "ymax"}` in pixels).

    >>> from transformers import pipeline
    >>> from hf_rfdetr.demo_assets import DEMO_IMAGE, DEMO_MODEL
    >>> detector = pipeline("object-detection", model=str(DEMO_MODEL))
    >>> detector(str(DEMO_IMAGE), threshold=0.5)
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["ASSETS", "DEMO_GROUND_TRUTH", "DEMO_IMAGE", "DEMO_MODEL", "demo_ground_truth"]

#: The package's asset folder.
ASSETS = Path(__file__).resolve().parent / "assets"
#: The bundled demo checkpoint: a folder for `from_pretrained` / `pipeline(model=str(DEMO_MODEL))`.
DEMO_MODEL = ASSETS / "demo-model"
#: The bundled demo image (JPEG).
DEMO_IMAGE = ASSETS / "demo.jpg"
#: The demo image's ground-truth boxes (JSON).
DEMO_GROUND_TRUTH = ASSETS / "demo.json"


def demo_ground_truth() -> list[dict]:
    """The demo image's objects: `[{"label": str, "box": {"xmin", "ymin", "xmax", "ymax"}}, ...]` in pixels."""
    return json.loads(DEMO_GROUND_TRUTH.read_text())["objects"]
