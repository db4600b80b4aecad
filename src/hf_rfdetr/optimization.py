"""A faster inference forward for a loaded RF-DETR, in place: `hf_rfdetr.optimize(model)` and `hf_rfdetr.restore(model)`.

    >>> from hf_rfdetr import RFDetrForObjectDetection, optimize
    >>> model = optimize(RFDetrForObjectDetection.from_pretrained(folder).eval())  # bf16 backbone where it pays

What it does (chosen by measurement, see `benchmarks/cpu_fast_path.py` and `tests/test_optimize.py`):

- The DINOv2 backbone, about 85% of the CPU time, runs under `torch.autocast` in bfloat16 (its matrix products and
  attention); the projector, the two-stage selection, the decoder and the box refinement stay float32, where bf16
  moves the scores by up to 0.1 and changes detections. On the bundled demo checkpoint the backbone-only bf16
  path moves the scores by at most 0.001 and keeps every detection (scene, mirrored, flipped and rotated copies).
- The weights are not touched: autocast casts each backbone weight once per forward (about 2 % of the time). Storing
  the backbone weights in bf16 instead measured no faster (within 4 % on Nano and Base, noise level on a loaded
  machine), would round them for good (training or
  exporting afterwards would start from rounded weights) and would make `restore` inexact. Nothing is copied, so
  the resident memory does not grow (the original's `optimize_for_inference` deep-copies the model, rfdetr #1080).
- `dtype="auto"` picks bfloat16 only on CPUs with native bf16 instructions (AVX512-BF16 or AMX; Arm's BF16):
  elsewhere oneDNN emulates bf16, slower than float32, so the model stays float32. On CUDA it picks bfloat16 where the GPU
  supports it, else float16.
- int8 dynamic quantisation of the backbone linears (`torch.ao.quantization.quantize_dynamic`, VNNI) was measured and
  left out: about 10 % faster than the bf16 path on Base (loaded machine), but it adds a detection at threshold 0.3
  on the rotated demo image (score error 0.37 there).
- `torch.compile` is an option (`compile=True`), off by default: on CPU in float32 it took long to compile and gained
  0 to 8 % over eager (issue 13: Nano 243 vs 241 ms, Base 606 vs 659 ms).

In eval mode the model already runs one Group DETR query group (the training groups are skipped), so the inference
graph needs no change for that.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["OptimizationSettings", "has_native_bf16", "is_optimized", "optimize", "resolve_dtype", "restore"]

_STATE = "_hf_rfdetr_optimization"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class OptimizationSettings:
    """What `optimize` did to a model (`model._hf_rfdetr_optimization`).

    Attributes:
        dtype: the autocast dtype (torch.float32: none).
        backbone_only: autocast covers the backbone only (True) or the whole forward (False).
        compiled: the forward goes through `torch.compile`.
    """

    dtype: torch.dtype
    backbone_only: bool
    compiled: bool


def has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX on x86, the BF16 extension on Arm)."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, probe, None)
        if check is not None and check():
            return True
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = set(cpuinfo.read_text(errors="ignore").split())
        return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def resolve_dtype(dtype: torch.dtype | str, device: torch.device) -> torch.dtype:
    """The autocast dtype for `dtype` ("auto", a name or a torch dtype) on `device`.

    Raises:
        ValueError: a dtype other than float32, bfloat16, float16 or "auto".
    """
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and has_native_bf16() else torch.float32
    resolved = _DTYPES.get(dtype) if isinstance(dtype, str) else dtype
    if resolved not in _DTYPES.values():
        raise ValueError(
            f"dtype must be 'auto' or a floating-point torch dtype such as torch.bfloat16 (float32, bfloat16, "
            f"float16), got {dtype!r}"
        )
    return resolved


def _to_float32(value):
    """`value` with its floating-point tensors (also inside outputs, dicts, lists, tuples) cast to float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):  # ModelOutput too: updated in place, keeping its class
        for key, item in value.items():
            value[key] = _to_float32(item)
        return value
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple (the backbone's output)
        return type(value)(*(_to_float32(item) for item in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float32(item) for item in value)
    return value


def _autocast_forward(device_type: str, dtype: torch.dtype):
    """A forward (to bind to a module instance) that runs its class's forward under autocast and casts the outputs
    back to float32 (the backbone's feature maps for the projector, or the model's logits and boxes). It looks the
    class's forward up at call time, so a deep copy of the module runs its own weights."""

    def run(self, *args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            outputs = type(self).forward(self, *args, **kwargs)
        return _to_float32(outputs)

    return run


def optimize(
    model: nn.Module,
    *,
    dtype: torch.dtype | str = "auto",
    backbone_only: bool = True,
    compile: bool = False,
) -> nn.Module:
    """Make `model` (an `RFDetrForObjectDetection`) faster for inference, in place, and return it.

    Args:
        model: the model; its weights and their dtype are left as they are (nothing is copied).
        dtype: "auto" (bfloat16 on CPUs with native bf16 and on CUDA, float32 otherwise), or a dtype (or its name)
            to run in: torch.bfloat16, torch.float16, torch.float32 (no autocast).
        backbone_only: autocast the backbone only (default: the detections stay those of float32), or the whole
            forward (False: faster by a few percent, scores move by up to 0.1).
        compile: also replace `model.forward` by `torch.compile(model.forward)` (slow to compile, little gain on CPU).

    Returns:
        `model`, with `is_optimized(model)` True; `restore(model)` undoes it exactly.

    Raises:
        ValueError: an unknown dtype, or a model without `model.model.backbone` when `backbone_only`.
    """
    restore(model)
    device = next(model.parameters()).device
    resolved = resolve_dtype(dtype, device)
    if resolved != torch.float32:
        if backbone_only:
            backbone = _backbone(model)
            backbone.forward = types.MethodType(_autocast_forward(device.type, resolved), backbone)
        else:
            model.forward = types.MethodType(_autocast_forward(device.type, resolved), model)
    if compile:
        model.forward = torch.compile(model.forward)
    setattr(model, _STATE, OptimizationSettings(resolved, backbone_only, compile))
    return model


def is_optimized(model: nn.Module) -> bool:
    """Whether `optimize` changed `model` (and `restore` has not undone it)."""
    return getattr(model, _STATE, None) is not None


def restore(model: nn.Module) -> nn.Module:
    """Undo `optimize`: the plain float32 eager forward again (exact: the weights were never changed)."""
    if not is_optimized(model):
        return model
    for module in (model, getattr(getattr(model, "model", model), "backbone", None)):
        if module is not None and "forward" in vars(module):
            del module.forward  # the instance attribute set by `optimize`; the class's forward shows again
    delattr(model, _STATE)
    return model


def _backbone(model: nn.Module) -> nn.Module:
    """`model.model.backbone` (RFDetrForObjectDetection) or `model.backbone` (RFDetrModel)."""
    backbone = getattr(getattr(model, "model", model), "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ValueError(
            f"optimize(backbone_only=True) needs an RFDetrForObjectDetection or RFDetrModel (a .backbone module); got "
            f"{type(model).__name__}. Pass backbone_only=False to autocast its whole forward"
        )
    return backbone
