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
"""Run an exported RF-DETR in onnxruntime with the PyTorch model's interface.

`RFDetrOnnxModel.from_pretrained(folder)` loads `folder/model.onnx` (written by `hf_rfdetr.export_onnx`, Optimum or
`hf-rfdetr export`) and its `config.json`. Calling it with `pixel_values` returns an `RFDetrObjectDetectionOutput`
(`logits`, `pred_boxes` as torch tensors), so `RFDetrImageProcessor.post_process_object_detection` and
`pipeline("object-detection", model=onnx_model, image_processor=processor)` work unchanged. The export of a
segmentation model (`config.segmentation_head`) also has `pred_masks`: the runner returns an
`RFDetrInstanceSegmentationOutput`, for `post_process_instance_segmentation` and
`pipeline("image-segmentation", model=onnx_model, image_processor=processor)`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models.rfdetr.configuration_rfdetr import RFDetrConfig
from ..models.rfdetr.outputs_rfdetr import RFDetrInstanceSegmentationOutput, RFDetrObjectDetectionOutput

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
QUANTIZED_FILE = "model_quantized.onnx"  # beside it with `export_onnx(quantize=True)`
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
#: `graph_optimization` names -> onnxruntime's `GraphOptimizationLevel` member names.
GRAPH_OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


class RFDetrOnnxModel(nn.Module):
    """An onnxruntime session over an exported RF-DETR: pixel_values (B, 3, H, W) -> logits, pred_boxes (and
    pred_masks for a segmentation model).

    It is an `nn.Module` without parameters only so that code written for PyTorch models (pipelines, `.eval()`,
    `.to(device)`) accepts it; the computation happens in onnxruntime.

    Attributes:
        config: the model's `RFDetrConfig` (labels in `config.id2label`).
        session: the `onnxruntime.InferenceSession`.
        input_size: the (height, width) the graph was exported for; the batch size is free.
        segmentation: whether the graph returns `pred_masks` (the export of an `RFDetrForInstanceSegmentation`): the
            output is then an `RFDetrInstanceSegmentationOutput`.
    """

    main_input_name = "pixel_values"

    def __init__(self, session: Any, config: RFDetrConfig, path: Path) -> None:
        super().__init__()
        self.session = session
        self.config = config
        self.path = path
        pixel_input = session.get_inputs()[0]
        if pixel_input.name != self.main_input_name:
            raise ValueError(f"{path}: the graph's input is {pixel_input.name!r}, expected 'pixel_values'")
        self.input_size = tuple(pixel_input.shape[2:])
        self.input_dtype = np.float16 if pixel_input.type == "tensor(float16)" else np.float32
        self.output_names = [output.name for output in session.get_outputs()]
        for name in ("logits", "pred_boxes"):
            if name not in self.output_names:
                raise ValueError(f"{path}: the graph has no {name!r} output (outputs: {self.output_names})")
        self.segmentation = "pred_masks" in self.output_names
        if getattr(config, "segmentation_head", False) and not self.segmentation:
            logger.warning(
                "%s has no 'pred_masks' output although its config.json describes a segmentation model "
                "(segmentation_head=True): it runs as a detector (logits, pred_boxes). For masks, export the "
                "RFDetrForInstanceSegmentation with hf_rfdetr.export_onnx",
                path,
            )

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        file_name: str = ONNX_FILE,
        provider: str | None = None,
        session_options: Any = None,
        graph_optimization: str = "all",
    ) -> RFDetrOnnxModel:
        """Load `folder/file_name` and `folder/config.json`.

        Args:
            folder: a folder written by the export (a Hub repository id is downloaded first).
            file_name: the graph to run, e.g. `model_quantized.onnx`.
            provider: onnxruntime execution provider (default: CPUExecutionProvider).
            session_options: an `onnxruntime.SessionOptions` (threads, ...); its own `graph_optimization_level`
                is used as set, `graph_optimization` applies to sessions created here.
            graph_optimization: onnxruntime's graph optimisation level when `session_options` is not given: "all"
                (default: constant folding, node fusions and layout optimisations; outputs stay within 1e-4 of
                PyTorch, `tests/test_onnx.py`), "extended", "basic" or "disable".

        Raises:
            FileNotFoundError: no graph or no config.json in `folder`. ValueError: an unknown `graph_optimization`.
        """
        from ..extras import require

        require("ort", "RFDetrOnnxModel", ("onnxruntime",))
        import onnxruntime

        if session_options is None:
            session_options = session_options_for(graph_optimization)
        folder = _local_folder(folder, file_name)
        path = folder / file_name
        if not path.is_file():
            found = sorted(p.name for p in folder.glob("*.onnx"))
            raise FileNotFoundError(
                f"no {file_name} in {folder} (ONNX files there: {', '.join(found) or 'none'}); "
                "export one with hf_rfdetr.export_onnx(model, folder) or `hf-rfdetr export`"
            )
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"no config.json beside {path}: the labels and model settings are read from it")
        config = RFDetrConfig.from_pretrained(folder)
        providers = [provider or _PROVIDERS["cpu"]]
        session = onnxruntime.InferenceSession(str(path), sess_options=session_options, providers=providers)
        return cls(session, config, path)

    # -- the parts of the PreTrainedModel interface that pipelines use ------------------------------------------
    @property
    def device(self) -> torch.device:
        return torch.device("cuda" if self.session.get_providers()[0] == _PROVIDERS["cuda"] else "cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The graph's float type (float16 for an `fp16=True` export)."""
        return torch.float16 if self.input_dtype == np.float16 else torch.float32

    def to(self, device: str | torch.device) -> RFDetrOnnxModel:
        """Choose the execution provider: "cpu" or "cuda" (onnxruntime-gpu)."""
        device = torch.device(device)
        if device.type not in _PROVIDERS:
            raise ValueError(f"RFDetrOnnxModel runs on 'cpu' or 'cuda', not {device}")
        if device != self.device:
            self.session.set_providers([_PROVIDERS[device.type]])
        return self

    def can_generate(self) -> bool:
        return False

    # -- inference -------------------------------------------------------------------------------------------------
    def forward(
        self, pixel_values: torch.Tensor | np.ndarray, pixel_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> RFDetrObjectDetectionOutput | RFDetrInstanceSegmentationOutput:
        """pixel_values (B, 3, H, W) at the exported (H, W) -> logits (B, Q, num_labels), pred_boxes (B, Q, 4), and for
        a segmentation export pred_masks (B, Q, H // r, W // r) mask logits (an `RFDetrInstanceSegmentationOutput`).

        Inputs are cast to the graph's float type; outputs are float32 torch tensors on the CPU.
        """
        if kwargs.get("labels") is not None:
            raise ValueError("RFDetrOnnxModel runs inference only: it cannot compute a loss from `labels`")
        if pixel_mask is not None and not bool(torch.as_tensor(pixel_mask).all()):
            raise ValueError(
                "the ONNX graph takes no pixel_mask: it was exported for unpadded, fixed-size inputs; use the image "
                "processor without keep_aspect_ratio"
            )
        inputs = self._check_pixel_values(pixel_values)
        outputs = dict(zip(self.output_names, self.session.run(None, {self.main_input_name: inputs})))
        tensors = {name: torch.from_numpy(outputs[name]).float() for name in ("logits", "pred_boxes")}
        if self.segmentation:
            return RFDetrInstanceSegmentationOutput(
                **tensors, pred_masks=torch.from_numpy(outputs["pred_masks"]).float()
            )
        return RFDetrObjectDetectionOutput(**tensors)

    def _check_pixel_values(self, pixel_values: torch.Tensor | np.ndarray) -> np.ndarray:
        array = pixel_values.detach().cpu().numpy() if isinstance(pixel_values, torch.Tensor) else pixel_values
        array = np.asarray(array)
        expected = f"(batch, {self.config.num_channels}, {self.input_size[0]}, {self.input_size[1]})"
        if array.ndim != 4 or array.shape[1] != self.config.num_channels or tuple(array.shape[2:]) != self.input_size:
            raise ValueError(
                f"pixel_values has shape {tuple(array.shape)}, but {self.path.name} was exported for {expected}; "
                "preprocess with the RFDetrImageProcessor saved beside it (or re-export at this size)"
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"pixel_values must be floating point (normalised), got {array.dtype}")
        return np.ascontiguousarray(array, dtype=self.input_dtype)

    def __repr__(self) -> str:
        return f"RFDetrOnnxModel({self.path}, input_size={self.input_size}, providers={self.session.get_providers()})"


def session_options_for(graph_optimization: str = "all") -> Any:
    """An `onnxruntime.SessionOptions` with the named graph optimisation level (see `GRAPH_OPTIMIZATION_LEVELS`)."""
    import onnxruntime

    if graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
        raise ValueError(
            f"graph_optimization must be one of {sorted(GRAPH_OPTIMIZATION_LEVELS)}, got {graph_optimization!r}"
        )
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = getattr(
        onnxruntime.GraphOptimizationLevel, GRAPH_OPTIMIZATION_LEVELS[graph_optimization]
    )
    return options


def _local_folder(folder: str | Path, file_name: str) -> Path:
    """`folder` itself when it exists locally, else the snapshot of the Hub repository of that name."""
    if Path(folder).is_dir():
        return Path(folder)
    if Path(folder).suffix == ".onnx":
        raise ValueError(f"pass the folder that holds the model, not the file: {folder}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(folder), allow_patterns=[file_name, "*.json"]))
    except Exception as error:
        raise FileNotFoundError(
            f"{folder} is not a local folder and could not be fetched from the Hub: {error}"
        ) from error
