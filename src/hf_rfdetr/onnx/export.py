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
"""ONNX export of `RFDetrForObjectDetection` and `RFDetrForInstanceSegmentation`: the inference graph, through
Optimum or `torch.onnx` directly.

The exported graph takes `pixel_values` (batch, 3, H, W), float32, with a dynamic batch size and the fixed (H, W) of
the export resolution, and returns `logits` (batch, num_queries, num_labels) and `pred_boxes` (batch, num_queries, 4),
normalised (cx, cy, w, h): exactly what `RFDetrImageProcessor.post_process_object_detection` reads. A segmentation
model's graph also returns `pred_masks` (batch, num_queries, H // r, W // r), the last decoder layer's mask logits
(r = `config.mask_downsample_ratio`), which `post_process_instance_segmentation` reads. It is the eval-mode model: one
query group (the 12 training-only Group DETR groups and their two-stage heads are not in it), no auxiliary or
two-stage outputs.

Two exporters produce it:

- **Optimum** (`optimum-onnx`, which needs transformers < 4.58): `import hf_rfdetr` registers `RFDetrOnnxConfig`
  with Optimum's `TasksManager` (see `hf_rfdetr.onnx.optimum`), and `export_onnx` calls `main_export`.
- **torch.onnx** (any transformers version): the same TorchScript-based exporter that Optimum uses, with the same
  input and output names, dynamic axes, opset and export-time patch.

`quantize=True` adds `model_quantized.onnx`, onnxruntime's dynamic int8 quantisation with the layers whose error
changes the detections left in float32 (see `hf_rfdetr.onnx.quantization`).

The export-time patch (`inference_graph`): the backbone's position embedding is bicubically interpolated with
anti-aliasing when the patch grid differs from the stored one (Base, Large-legacy, non-native resolutions), an
operator that ONNX cannot express. Its value only depends on the (fixed) input size, so it is computed once, in
PyTorch, and enters the graph as a constant.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..extras import require
from ..models.rfdetr.configuration_rfdetr import RFDetrConfig
from ..models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor
from ..models.rfdetr.modeling_rfdetr import RFDetrForInstanceSegmentation, RFDetrForObjectDetection
from ..optimization import float32_forward
from .quantization import float_modules_for, quantize_dynamic_int8
from .runtime import ONNX_FILE, QUANTIZED_FILE
from .validation import validate_export

logger = logging.getLogger(__name__)

REPORT_FILE = "export_report.json"
PROCESSOR_FILE = "preprocessor_config.json"
INPUTS = {"pixel_values": {0: "batch_size"}}
OUTPUTS = {"logits": {0: "batch_size"}, "pred_boxes": {0: "batch_size"}}
#: The extra output of a segmentation model's graph: mask logits (batch, num_queries, H // r, W // r).
MASK_OUTPUTS = {"pred_masks": {0: "batch_size"}}
#: Optimum's task names (`TasksManager`) for the two heads; Optimum has no "instance-segmentation" task.
DETECTION_TASK = "object-detection"
SEGMENTATION_TASK = "image-segmentation"
#: The default opset: from 17 on, each LayerNorm is one `LayerNormalization` node. Opset 16 exports and validates as
#: well, on both exporters (the demo checkpoint: the same outputs to 2e-6), with each LayerNorm decomposed into
#: primitive ops (1708 nodes instead of 1428). Optimum calls its config's default (17) "the recommended minimum" and
#: warns below it; `export_onnx`, which supports 16, leaves that warning out.
DEFAULT_OPSET = 17
#: GridSample (deformable attention) exists from opset 16.
MIN_OPSET = 16
#: The modules whose TracerWarnings `export_onnx` silences (regular expression over the warning's module name).
OWN_MODULES = r"hf_rfdetr\."
#: Log lines that the libraries `export_onnx` calls print about their own calls, dropped during the export (logger
#: name -> message fragments): Optimum's `main_export` loads the scratch folder with `from_pretrained(torch_dtype=...)`
#: (transformers 4.57 calls that argument deprecated) and reloads its image processor (transformers' slow-processor
#: notice; the saved processor is ours, written afterwards), and calls any opset below its default of 17 "lower than
#: the recommended minimum" (16 is supported, see `DEFAULT_OPSET`; lower ones are refused before).
FOREIGN_NOISE: dict[str, tuple[str, ...]] = {
    "transformers.modeling_utils": ("`torch_dtype` is deprecated",),
    "transformers.configuration_utils": ("`torch_dtype` is deprecated",),
    "transformers.models.auto.image_processing_auto": ("Using a slow image processor as `use_fast` is unset",),
    "optimum.exporters.onnx.convert": ("is lower than the recommended minimum opset",),
}
BACKENDS = ("auto", "optimum", "torch")

RFDetrExportable = RFDetrForObjectDetection | RFDetrForInstanceSegmentation


def is_segmentation(config: RFDetrConfig) -> bool:
    """Whether `config` describes a segmentation model (`RFDetrForInstanceSegmentation`)."""
    return bool(getattr(config, "segmentation_head", False))


def output_axes(model: nn.Module) -> dict[str, dict[int, str]]:
    """The graph's outputs and their dynamic axes: `OUTPUTS`, plus `MASK_OUTPUTS` for an
    `RFDetrForInstanceSegmentation` (the class decides: an `RFDetrForObjectDetection` built from a Seg config has no
    mask head, and exports a detector)."""
    return {**OUTPUTS, **(MASK_OUTPUTS if isinstance(model, RFDetrForInstanceSegmentation) else {})}


def export_task(model: nn.Module) -> str:
    """Optimum's task for `model`: "image-segmentation" (`RFDetrForInstanceSegmentation`) or "object-detection"."""
    return SEGMENTATION_TASK if isinstance(model, RFDetrForInstanceSegmentation) else DETECTION_TASK


@dataclass
class ExportReport:
    """What `export_onnx` did; also written to `export_report.json` beside the model."""

    backend: str
    backend_reason: str
    opset: int
    input_size: tuple[int, int]
    files: list[str]
    fp16: bool = False
    #: With `quantize=True`: the module-name patterns kept in float32 in `model_quantized.onnx`, and the weight nodes
    #: (MatMul / Conv / Gemm) they matched, which the int8 graph leaves unquantised.
    float_modules: list[str] = field(default_factory=list)
    float_nodes: list[str] = field(default_factory=list)
    #: Per file: max |ORT - PyTorch| of logits, pred_boxes (and pred_masks) at each validated batch size, on random
    #: inputs (checked for the float32 model.onnx only, see `validation_method`).
    validation: dict[str, dict[str, float]] = field(default_factory=dict)
    #: The largest difference accepted for model.onnx per output and batch size (`validation_tolerances`): `atol`, and
    #: for mask logits `atol + MASK_RTOL * max |mask logit|` of that batch.
    tolerances: dict[str, float] = field(default_factory=dict)
    #: Per file: the detection check on the bundled demo scene at each validated batch size (see `_validate`): how
    #: many PyTorch detections it compared, the largest score drift and the smallest IoU of the matched pairs.
    detections: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Per file: what decided whether it passed (float16 and int8 files: the detections, not per-query differences).
    validation_method: dict[str, str] = field(default_factory=dict)


def export_input_size(config: RFDetrConfig, resolution: int | tuple[int, int] | None = None) -> tuple[int, int]:
    """The (height, width) to export at: `resolution` (default `config.resolution`), checked against the block size."""
    height, width = (resolution, resolution) if isinstance(resolution, int) else resolution or (config.resolution,) * 2
    for name, value in (("height", height), ("width", width)):
        if value <= 0 or value % config.block_size:
            raise ValueError(
                f"cannot export at {name} {value}: the input size must be a positive multiple of the block size "
                f"{config.block_size} (patch_size {config.patch_size} x num_windows {config.num_windows}); "
                f"for example {max(1, round(value / config.block_size)) * config.block_size}"
            )
    return height, width


@contextmanager
def inference_graph(model: RFDetrExportable, height: int, width: int) -> Iterator[RFDetrExportable]:
    """Put `model` in the state it is exported in, for inputs of (height, width), and restore it afterwards.

    Eval mode (one query group); the position embedding for the (height / patch, width / patch) grid computed once
    in PyTorch (bicubic with anti-aliasing has no ONNX form), so that the exporter records it as a constant.
    """
    embeddings = model.model.backbone.embeddings
    grid = (height // model.config.patch_size, width // model.config.patch_size)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        position_embeddings = embeddings.interpolate_pos_encoding(*grid).detach().clone()

    def fixed_position_embeddings(grid_height: int, grid_width: int) -> torch.Tensor:
        if (grid_height, grid_width) != grid:
            raise ValueError(
                f"the model is being exported for a {grid[0]} x {grid[1]} patch grid ({height} x {width} pixels) "
                f"but was called with a {grid_height} x {grid_width} grid"
            )
        return position_embeddings

    embeddings.interpolate_pos_encoding = fixed_position_embeddings
    try:
        yield model
    finally:
        del embeddings.interpolate_pos_encoding
        model.train(was_training)


class _DropMessages(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


@contextmanager
def quiet_export() -> Iterator[None]:
    """Silence, for the duration of an export, what says nothing about it.

    - `torch.jit.TracerWarning`s raised in `hf_rfdetr` modules (`OWN_MODULES`), and only those: every Python value the
      tracer freezes there derives from shapes the export fixes, never from pixel values: the channel count and the
      image-size checks (`check_inputs`), the patch grid (`inference_graph`), the levels' sizes of the two-stage
      proposals, the number of proposals (`min(num_queries, sequence length)`), the single query group of the
      grouped heads (eval mode) and the mask head's decoder layers. Only the batch size stays dynamic, and nothing
      frozen depends on it (validation runs batch 1 and 3 through a graph traced at batch 2).
    - The `FOREIGN_NOISE` log lines of transformers and Optimum.
    """
    filters = [(logging.getLogger(name), _DropMessages(fragments)) for name, fragments in FOREIGN_NOISE.items()]
    for named_logger, drop in filters:
        named_logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=OWN_MODULES)
            yield
    finally:
        for named_logger, drop in filters:
            named_logger.removeFilter(drop)


class RFDetrOnnxGraph(nn.Module):
    """The exported computation: pixel_values (B, 3, H, W) -> (logits (B, Q, num_labels), pred_boxes (B, Q, 4)), and
    pred_masks (B, Q, H // r, W // r) for a segmentation model (the names and order of `output_axes`)."""

    def __init__(self, model: RFDetrExportable) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(pixel_values=pixel_values)
        return tuple(outputs[name] for name in output_axes(self.model))


def optimum_status() -> tuple[bool, str]:
    """Whether Optimum's ONNX exporter can be used here, and why (not)."""
    try:
        import optimum.exporters.onnx  # noqa: F401
    except Exception as error:  # ImportError, or optimum-onnx refusing this transformers version
        import transformers

        return False, (
            f"optimum-onnx is not usable with transformers {transformers.__version__} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else error!r}); it needs "
            "transformers < 4.58 (pip install 'hf-rfdetr[onnx]')"
        )
    return True, "optimum-onnx is installed"


def export_onnx(
    model: RFDetrExportable | str | Path,
    output_dir: str | Path,
    *,
    image_processor: RFDetrImageProcessor | None = None,
    resolution: int | tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    quantize: bool = False,
    validate: bool = False,
    atol: float = 1e-4,
    backend: str = "auto",
    device: str | torch.device = "cpu",
    source: str | None = None,
) -> Path:
    """Export an RF-DETR detector or segmentation model to `output_dir/model.onnx`, with its config and image processor
    beside it.

    Args:
        model: an `RFDetrForObjectDetection` or `RFDetrForInstanceSegmentation` (graph outputs `logits`, `pred_boxes`
            and `pred_masks`), or a Hub id / local folder to load one from (`config.segmentation_head` chooses).
        output_dir: folder to write (created): `model.onnx`, `config.json`, `preprocessor_config.json`,
            `export_report.json`, `model_quantized.onnx` with `quantize=True`, and a model card `README.md` (what the
            folder holds, the graph, how to run it, the source model; a README.md that is not an earlier export's
            card is kept). An earlier export's files there (`model.onnx`, `model_quantized.onnx`, their external
            data, `export_report.json`, its card) are deleted first, with a warning naming them
            (`remove_previous_export`), so that none of them outlives the export it described.
        image_processor: saved beside the model (default: the folder's, or one derived from the config).
        resolution: export input size, an int or (height, width), multiples of `config.block_size` (default:
            `config.resolution`). The batch size stays dynamic.
        opset: ONNX opset, at least 16 (GridSample); 16 works on both exporters, 17 (the default) keeps each
            LayerNorm one `LayerNormalization` node.
        fp16: export the float16 model (weights, inputs and outputs in float16), for GPUs.
        quantize: also write `model_quantized.onnx`, dynamically int8-quantised for CPUs by onnxruntime: the
            backbone's linear layers and the decoder's projections in int8; the layers whose int8 error changes
            which detections pass the threshold (`hf_rfdetr.onnx.quantization.FLOAT_MODULES`: the projector's
            convolutions, the two-stage and final class / box heads, the reference-point head, the deformable
            attention's sampling offsets and attention weights) stay float32. The report lists those nodes. For a
            segmentation model the mask head stays float32 as well (`SEGMENTATION_FLOAT_MODULES`).
        validate: run every written file in onnxruntime (CPU) at batch sizes 1 and 3 and compare with PyTorch,
            otherwise `ValueError`: the float32 graph must agree query by query to `atol` (mask logits: to
            `atol + MASK_RTOL * max |mask logit|`, see `validation_tolerances`); every file's detections of the
            bundled demo scene must match PyTorch's (class, IoU >= 0.7, score within 0.05, int8 0.1; float16 and
            int8 reorder near-tied proposals, so their per-query differences are not comparable). The differences
            and what decided go into the report. A file that fails is left in `output_dir` for inspection, without
            `export_report.json` or card, and the error says so.
        backend: "optimum", "torch" or "auto" (Optimum when it can be imported, else torch.onnx). Which one ran,
            and why, is logged and recorded in the report.
        device: where to trace the model.
        source: the source model the card names (default: `model` when it is a Hub id / folder, else the folder or
            Hub id the model was loaded from, else its class and variant); the facade passes the checkpoint name,
            Hub id, folder or file the user gave it (for a name: not the cached COCO folder it was loaded from).

    Returns:
        `output_dir` as a `Path`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    require("ort", "ONNX export", ("onnx", "onnxruntime") if validate or quantize else ("onnx",))
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old: RF-DETR's deformable attention needs GridSample (opset >= 16)")
    if opset < DEFAULT_OPSET:
        logger.info(
            "opset %d: supported; each LayerNorm becomes primitive ops (LayerNormalization is opset %d)",
            opset,
            DEFAULT_OPSET,
        )
    if fp16 and quantize:
        raise ValueError("fp16 (GPUs) and quantize (int8, CPUs) are separate targets: export them to two folders")
    if source is None and isinstance(model, (str, Path)):
        source = str(model)
    model, image_processor = _load(model, image_processor)
    source = source or _describe(model)
    with float32_forward(model):  # an optimize()d model exports its float32 graph, and stays optimised
        folder = _export_loaded(
            model, image_processor, Path(output_dir), resolution, opset, fp16, quantize, validate, atol, backend, device
        )
    from .model_card import write_onnx_card

    if write_onnx_card(folder, source) is None:
        logger.warning("%s already has a README.md that is not an ONNX export card: kept, not replaced", folder)
    return folder


def _describe(model: RFDetrExportable) -> str:
    """The source model of an export from a model object, for the card: its folder or Hub id when it was loaded from
    one, else its class and variant."""
    name = getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "")
    if name:
        return str(name)
    variant = f" ({model.config.variant})" if model.config.variant else ""
    return f"an in-memory {type(model).__name__}{variant}"


def _export_loaded(
    model: RFDetrExportable,
    image_processor: RFDetrImageProcessor,
    output_dir: Path,
    resolution: int | tuple[int, int] | None,
    opset: int,
    fp16: bool,
    quantize: bool,
    validate: bool,
    atol: float,
    backend: str,
    device: str | torch.device,
) -> Path:
    """`export_onnx` for a loaded model in its float32 forward."""
    height, width = export_input_size(model.config, resolution)
    use_optimum, reason = _choose_backend(backend, square=height == width)
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_previous_export(output_dir)
    onnx_path = output_dir / ONNX_FILE
    if use_optimum:
        logger.warning("exporting with Optimum (optimum.exporters.onnx.main_export); %s", reason)
        _export_with_optimum(model, image_processor, output_dir, height, width, opset, device, fp16)
    else:
        logger.warning("exporting with torch.onnx (TorchScript exporter, as Optimum uses): %s", reason)
        dtype = torch.float16 if fp16 else torch.float32
        _export_with_torch(copy.deepcopy(model).to(device, dtype), onnx_path, height, width, opset)
    _save_companions(model, image_processor, output_dir, height, width)
    report = ExportReport(
        backend="optimum" if use_optimum else "torch",
        backend_reason=reason,
        opset=opset,
        input_size=(height, width),
        files=[ONNX_FILE],
        fp16=fp16,
    )
    if quantize:
        float_modules = float_modules_for(model)
        report.float_nodes = quantize_dynamic_int8(onnx_path, output_dir / QUANTIZED_FILE, model, float_modules)
        report.float_modules = list(float_modules)
        report.files.append(QUANTIZED_FILE)
    if validate:
        try:
            report.validation = validate_export(
                model,
                output_dir,
                report.files,
                height,
                width,
                atol,
                fp16,
                report.tolerances,
                report.detections,
                report.validation_method,
            )
        except ValueError as error:
            written = ", ".join([*report.files, "config.json", PROCESSOR_FILE])
            raise ValueError(
                f"{error};\n{output_dir} now holds this export's unvalidated files ({written}), left for inspection, "
                f"and no {REPORT_FILE} or README.md card vouching for them: do not use them as a validated export"
            ) from error
    (output_dir / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2) + "\n")
    return output_dir


def previous_export_files(folder: Path) -> list[Path]:
    """The files of `folder` that an export writes and an earlier export may have left there, which a new export
    would not all replace (`remove_previous_export`): `model.onnx`, `model_quantized.onnx` and their external-data
    files (the locations their tensors name, and Optimum's `<file>_data`), `export_report.json`, and a README.md that
    is an earlier export's card (`hf_rfdetr.onnx.model_card.is_onnx_card`; any other README.md is the user's or the
    source model's, and stays). config.json and preprocessor_config.json are rewritten by every export."""
    from .model_card import is_onnx_card

    found: dict[Path, None] = {}
    for name in (ONNX_FILE, QUANTIZED_FILE):
        graph = folder / name
        for candidate in (graph, *(folder / location for location in _external_data_locations(graph))):
            # only files directly in the folder: an external-data location is a path relative to the graph
            if candidate.parent.resolve() == folder.resolve() and candidate.is_file():
                found[candidate] = None
        optimum_data = folder / f"{name}_data"
        if optimum_data.is_file():
            found[optimum_data] = None
    if (folder / REPORT_FILE).is_file():
        found[folder / REPORT_FILE] = None
    card = folder / "README.md"
    if card.is_file() and is_onnx_card(card.read_text(encoding="utf-8", errors="replace")):
        found[card] = None
    return list(found)


def remove_previous_export(folder: Path) -> list[Path]:
    """Delete `previous_export_files(folder)` before an export writes there, and log what went: otherwise a re-export
    that quantises no more, or fails validation, leaves the earlier int8 graph (for the earlier input size), report
    and card beside the new files, vouching for files they do not describe. `export_onnx` (and so `hf-rfdetr export`
    and the facade's `export`) and `python -m hf_rfdetr.onnx.optimum_cli export onnx` call it."""
    removed = previous_export_files(folder)
    for path in removed:
        path.unlink()
    if removed:
        logger.warning(
            "removed the earlier export's files from %s before exporting: %s",
            folder,
            ", ".join(path.name for path in removed),
        )
    return removed


def _external_data_locations(graph: Path) -> list[str]:
    """The external-data files (paths relative to the graph) that the tensors of the ONNX file `graph` name; none
    when it is missing or unreadable."""
    if not graph.is_file():
        return []
    try:
        import onnx
        from onnx.external_data_helper import ExternalDataInfo, uses_external_data

        proto = onnx.load(str(graph), load_external_data=False)
    except Exception:  # not installed, or not a readable ONNX file: nothing it names is known
        return []
    tensors = list(proto.graph.initializer)
    for node in proto.graph.node:
        for attribute in node.attribute:
            tensors += [attribute.t] if attribute.HasField("t") else []
            tensors += list(attribute.tensors)
    return list(dict.fromkeys(ExternalDataInfo(t).location for t in tensors if uses_external_data(t)))


def _load(
    model: RFDetrExportable | str | Path, image_processor: RFDetrImageProcessor | None
) -> tuple[RFDetrExportable, RFDetrImageProcessor]:
    if isinstance(model, (str, Path)):
        source = _resolve_source(model)
        config = RFDetrConfig.from_pretrained(source)
        model_class = RFDetrForInstanceSegmentation if is_segmentation(config) else RFDetrForObjectDetection
        model = model_class.from_pretrained(source, config=config)
        if image_processor is None:
            try:
                image_processor = RFDetrImageProcessor.from_pretrained(source)
            except OSError:  # a folder with weights and config only
                image_processor = None
    if not isinstance(model, (RFDetrForObjectDetection, RFDetrForInstanceSegmentation)):
        raise TypeError(
            "expected an RFDetrForObjectDetection or RFDetrForInstanceSegmentation, a Hub id or a folder, got "
            f"{type(model).__name__}"
        )
    return model, image_processor or RFDetrImageProcessor.from_config(model.config)


def _resolve_source(model: str | Path) -> str:
    """The folder or Hub id to load, resolved as every other entry point does (`hf_rfdetr.pretrained`): a checkpoint
    name gives its cached COCO folder, a transformers `rf_detr` folder or repository its cached conversion.

    Raises:
        FileNotFoundError: a local path (absolute, `.`/`~`-relative, or with more than one `/`) that does not exist.
        ValueError: an unknown checkpoint name (the message lists the known ones).
    """
    from ..pretrained_weights import pretrained

    text, path = str(model), Path(model).expanduser()
    if path.exists():
        return pretrained(path)
    if path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1:  # a path, not a Hub id "org/name"
        raise FileNotFoundError(f"model folder {text!r} does not exist")
    return pretrained(text)


def _choose_backend(backend: str, square: bool) -> tuple[bool, str]:
    available, reason = optimum_status()
    if backend == "optimum" and not available:
        raise ValueError(f"backend='optimum' was asked for, but {reason}; use backend='torch' or 'auto'")
    if backend == "torch":
        return False, "backend='torch' was asked for"
    if not square:  # Optimum's dummy inputs come from the config's one `resolution`
        if backend == "optimum":
            raise ValueError("Optimum exports square inputs only (config.resolution); use backend='torch'")
        return False, "non-square export sizes go through torch.onnx (Optimum's inputs are square)"
    if not available:
        return False, reason
    return True, reason


def _export_with_torch(model: RFDetrExportable, path: Path, height: int, width: int, opset: int) -> None:
    # Batch 2 when tracing, as Optimum's dummy inputs: batch-dependent shapes must stay symbolic.
    dummy = torch.rand(2, model.config.num_channels, height, width, device=model.device, dtype=model.dtype)
    outputs = output_axes(model)
    with inference_graph(model, height, width), torch.no_grad(), quiet_export():
        torch.onnx.export(
            RFDetrOnnxGraph(model).eval(),
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUTS),
            output_names=list(outputs),
            dynamic_axes={**INPUTS, **outputs},
            do_constant_folding=True,
        )


def _export_with_optimum(
    model: RFDetrExportable,
    image_processor: RFDetrImageProcessor,
    output_dir: Path,
    height: int,
    width: int,
    opset: int,
    device: str | torch.device,
    fp16: bool,
) -> None:
    from optimum.exporters.onnx import main_export

    from .optimum import register_optimum

    register_optimum()
    with tempfile.TemporaryDirectory() as scratch, quiet_export():
        model.save_pretrained(scratch)
        _save_companions(model, image_processor, Path(scratch), height, width)  # the export size in config.json
        main_export(
            scratch,
            output=output_dir,
            task=export_task(model),
            opset=opset,
            device=str(device),
            dtype="fp16" if fp16 else "fp32",
            library_name="transformers",
            do_validation=False,  # export_onnx(validate=True) compares, the same way for both backends
        )


def _save_companions(
    model: RFDetrExportable, image_processor: RFDetrImageProcessor, folder: Path, height: int, width: int
) -> None:
    """config.json and preprocessor_config.json for an export at (height, width).

    The graph takes exactly (height, width) and no `pixel_mask`, so the saved processor resizes every image to that
    size (squashing it, as the original's `predict`): an aspect-keeping resize with padding would give other input
    sizes, or padded inputs whose boxes the graph, without the mask, would place on the padded canvas."""
    config = copy.deepcopy(model.config)
    if height == width:
        config.resolution = height
    config.save_pretrained(folder)
    processor = RFDetrImageProcessor.from_dict(image_processor.to_dict())
    if processor.keep_aspect_ratio or processor.pad_size is not None:
        logger.warning(
            "the exported graph takes fixed %dx%d inputs without a pixel mask: its processor resizes to that size "
            "(keep_aspect_ratio=False, no pad_size) instead of the source processor's keep_aspect_ratio=%s, "
            "pad_size=%s",
            height,
            width,
            processor.keep_aspect_ratio,
            processor.pad_size,
        )
    processor.size = {"height": height, "width": width}
    processor.keep_aspect_ratio = False
    processor.pad_size = None
    processor.do_resize = True
    processor.save_pretrained(folder)
