"""A faster inference forward for a loaded RF-DETR, in place: `hf_rfdetr.optimize(model)` and `hf_rfdetr.restore(model)`.

    >>> from hf_rfdetr import RFDetrForObjectDetection, optimize
    >>> model = optimize(RFDetrForObjectDetection.from_pretrained(folder).eval())  # int8 or bf16 backbone where it pays

What it does (chosen by measurement, see `benchmarks/cpu_fast_path.py` and `tests/test_optimize.py`):

- The DINOv2 backbone is about 85% of the CPU time, and its linear layers are most of that. On CPUs with int8 dot
  products (AVX512-VNNI, AVX-VNNI) `quantize="auto"` runs them in int8: weights quantised per output channel
  (symmetric) once, activations per tensor at each call (`torch.ops.quantized.linear_dynamic`, fbgemm). So do the
  decoder layers' feed-forward layers (fc1, fc2: most of the decoder's time; another 5% of a Nano forward, 3.5% of
  Base's). GELU and the layer norms stay float32, and so does the rest after the backbone (projector, two-stage
  selection, the decoder's attention, class and box heads, box refinement). On the bundled demo checkpoint and its
  mirrored, flipped and rotated copies this moves the scores by at most 0.004 (0.0014 with the backbone alone; 0.007
  with 7-bit activations, as without VNNI) and keeps every detection; over 32 rotated, mirrored and cropped copies it
  changes a detection in 3, where near-tied two-stage proposals swap (`tests/test_optimize.py::test_drift_census`).
  On a 2-core AMD EPYC (VNNI, BF16) the backbone alone in int8 made the forward 0.51x rfdetr's on Nano and 0.53x on
  Base, and 0.8x the bf16 backbone path (`benchmarks/cpu_fast_path.py`).
- With int8 on CPUs with VNNI (8-bit activations) and native bf16, `bf16_attention="auto"` runs the backbone's
  attention as two bf16 matrix products around a float32-accumulated softmax (`_bf16_attention_forward`):
  `scaled_dot_product_attention`'s CPU kernel is no faster in bf16 than in float32. In place it made the int8 forward
  3.5-7% faster on Nano and 9-13% on Base (`benchmarks/fast_path_breakdown.py`), with the same drift census as int8
  alone (changed detections in 3 of 32 copies, other ones). With the bf16 backbone it changed 2 copies instead of 1,
  and that path runs on CPUs without VNNI, where its speed is unmeasured, so "auto" leaves it off there.
- On the CPU `channels_last="auto"` runs the projector's convolutions on channels-last inputs
  (`RFDetrMultiScaleProjector.set_memory_format`): oneDNN's NHWC kernels read them without the reorders its NCHW path
  makes (a 3x3 convolution of Base's C2f: 2.2 against 3.2 ms), and the backbone's feature maps already come
  channels-last (`window_unpartition`). The float32 outputs move by about 1e-5; the float32 model keeps the
  contiguous layout, and with it the original's kernels and rounding.
- Elsewhere the backbone runs under `torch.autocast` in bfloat16 (`dtype="auto"` picks bfloat16 only on CPUs with
  native bf16 instructions, AVX512-BF16 / AMX / Arm BF16: oneDNN emulates it elsewhere, slower than float32; on CUDA
  bfloat16 where supported, else float16). The rest stays float32, where bf16 moves the scores by up to 0.1 and
  changes detections.
- The weights are not touched: the int8 copies of those linears (a quarter of their float32 size) sit beside
  them and are rebuilt if a weight changes; autocast casts each weight once per forward. Nothing is copied, so the
  resident memory grows by at most that quarter (the original's `optimize_for_inference` deep-copies the model,
  rfdetr #1080), and `restore` is exact. The int8 path runs only without autograd (`torch.no_grad`,
  `torch.inference_mode`, as `pipeline` and `predict` call it) and in eval mode; otherwise the float32 weights run.
- On Linux with glibc, `tune_allocator=True` (the default, on CPU) keeps freed memory in the process: glibc hands
  large freed buffers back to the system at once, and each forward page-faults its working set back in (Base int8:
  up to 40,000 faults, 160 MB, per forward). With each model in its own process (`benchmarks/separate_processes.py`,
  2-core AMD EPYC) the int8 Base forward took 353 ms against 450 ms with glibc's defaults (369 against 419 ms in a
  second run), Nano 130 against 139 ms (then no difference), for 25-125 MB more resident memory. It is a setting of
  the whole process (`keep_freed_memory()`), which `restore` leaves as it is.
- `torch.compile` is an option (`compile=True`), off by default: on CPU it took 5-30 s to compile and did not pay.
  In float32 it gained 0 to 8% over eager (issue 13: Nano 243 vs 241 ms, Base 606 vs 659 ms); with the int8 backbone
  (each int8 linear one opaque operator, `torch.ops.hf_rfdetr.int8_linear`, so the graph does not break) Nano took
  154 ms compiled against 143 ms eager, Base 354 against 361 ms: inductor's fused pointwise and layer-norm kernels were
  no faster here than eager's.

In eval mode the model already runs one Group DETR query group (the training groups are skipped), so the inference
graph needs no change for that.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import platform
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

__all__ = [
    "OptimizationSettings",
    "float32_forward",
    "has_int8_dot_products",
    "has_native_bf16",
    "int8_linears",
    "is_optimized",
    "keep_freed_memory",
    "optimize",
    "resolve_dtype",
    "restore",
]

_STATE = "_hf_rfdetr_optimization"
_INT8 = "_hf_rfdetr_int8"  # marks a quantised nn.Linear (its int8 copy: `_PACKED`)
_BF16_ATTENTION = "_hf_rfdetr_bf16_attention"  # marks a backbone self-attention running `_bf16_attention_forward`
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class OptimizationSettings:
    """What `optimize` did to a model (`model._hf_rfdetr_optimization`).

    Attributes:
        dtype: the autocast dtype (torch.float32: none).
        backbone_only: autocast covers the backbone only (True) or the whole forward (False).
        compiled: the forward goes through `torch.compile`.
        int8: the backbone's linear layers and the decoder's feed-forward layers run in int8 (without autograd, in
            eval mode).
        allocator_tuned: `keep_freed_memory()` applied glibc's settings to this process.
        bf16_attention: the backbone's attention products run in bfloat16 (without autograd, in eval mode).
        channels_last: the projector's convolutions read channels-last inputs (`set_memory_format`).
    """

    dtype: torch.dtype
    backbone_only: bool
    compiled: bool
    int8: bool = False
    allocator_tuned: bool = False
    bf16_attention: bool = False
    channels_last: bool = False


def has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX on x86, the BF16 extension on Arm)."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, probe, None)
        if check is not None and check():
            return True
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})


@functools.cache
def _cpu_flags() -> frozenset[str]:
    cpuinfo = Path("/proc/cpuinfo")
    return frozenset(cpuinfo.read_text(errors="ignore").split() if cpuinfo.is_file() else ())


def has_int8_dot_products() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX512-VNNI or AVX-VNNI) and PyTorch its int8 linear
    kernels (fbgemm / x86 quantized engine)."""
    engines = set(getattr(torch.backends.quantized, "supported_engines", ()))
    if not engines & {"fbgemm", "x86"} or not _has_int8_kernels():
        return False
    return bool(_cpu_flags() & {"avx512_vnni", "avx_vnni"})


def _has_int8_kernels() -> bool:
    """PyTorch marks its quantized tensors deprecated (to be removed in a future release; the project pins torch
    2.14.1): without them, "auto" falls back to the bf16 path and `quantize=True` is refused."""
    return hasattr(torch, "quantize_per_channel") and hasattr(torch.ops.quantized, "linear_dynamic")


# glibc's mallopt parameters (malloc.h) and the trim threshold `keep_freed_memory` sets, well above a forward's working
# set.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_TRIM_THRESHOLD_BYTES = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Keep freed memory in this process instead of handing it back to the system at once (glibc on Linux).

    glibc serves buffers above its mmap threshold (128 KiB to 32 MiB, adjusted as the process runs) with fresh pages,
    unmaps them when they are freed, and returns freed memory at the top of the heap to the system once it exceeds its
    trim threshold; the next forward page-faults the same working set back in (about 40,000 faults, 160 MB, per
    forward of Base on the CPU; a Nano training step at batch 2, 125,000). This serves every buffer from the heap
    (`M_MMAP_MAX` 0, as `MALLOC_MMAP_MAX_=0` would before start; glibc still maps a request that its heap cannot
    hold) and sets the trim threshold to 1 GiB (`MALLOC_TRIM_THRESHOLD_=1073741824`): memory a forward or training
    step freed is reused by the next one, and up to 1 GiB of it stays resident while unused.

    It is a setting of the whole process and stays (undoing it would leave glibc's dynamic thresholds off, worse than
    either); `optimize` calls it by default, and `RFDetrTrainer` when it trains on the CPU. Elsewhere (macOS, Windows,
    musl) it does nothing.

    Returns:
        Whether the settings were applied (glibc accepted both).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    heap_only = mallopt(_M_MMAP_MAX, 0) == 1
    trim_set = mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) == 1
    return heap_only and trim_set


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
    quantize: bool | str = "auto",
    backbone_only: bool = True,
    compile: bool = False,
    tune_allocator: bool = True,
    bf16_attention: bool | str = "auto",
    channels_last: bool | str = "auto",
) -> nn.Module:
    """Make `model` (an `RFDetrForObjectDetection` or `RFDetrForInstanceSegmentation`) faster for inference, in
    place, and return it.

    Args:
        model: the model; its weights and their dtype are left as they are (nothing is copied).
        dtype: "auto" (bfloat16 on CPUs with native bf16 and on CUDA, float32 otherwise; float32 in the backbone when
            it runs int8), or a dtype (or its name) to autocast to: torch.bfloat16, torch.float16, torch.float32 (none).
        quantize: int8 for the backbone's linear layers and the decoder's feed-forward layers (`int8_linears`):
            "auto" (on a CPU with int8 dot products, when `dtype` is "auto"), True (any CPU with PyTorch's int8
            kernels) or False.
        backbone_only: autocast the backbone only (default: the detections stay those of float32), or the whole
            forward (False: faster by a few percent, scores move by up to 0.1).
        compile: also replace `model.forward` by `torch.compile(model.forward)` (slow to compile, no gain on CPU).
        tune_allocator: for a model on the CPU, keep freed memory in the process (`keep_freed_memory()`, glibc on
            Linux: a process-wide setting that `restore` leaves in place), so that each forward does not page-fault
            its working set back in.
        bf16_attention: the backbone's attention as two bfloat16 matrix products around a softmax
            (`_bf16_attention_forward`) instead of `scaled_dot_product_attention`: "auto" (with int8 on a CPU with
            int8 dot products and native bf16), True or False.
        channels_last: the projector's convolutions on channels-last inputs
            (`RFDetrMultiScaleProjector.set_memory_format`): "auto" (on the CPU, where oneDNN's NHWC kernels need no
            reorders: 1-3% off an int8 forward), True or False. The float32 outputs move by about 1e-5.

    Returns:
        `model`, with `is_optimized(model)` True; `restore(model)` undoes it exactly.

    Raises:
        ValueError: an unknown dtype, `quantize`, `bf16_attention` or `channels_last`, int8 asked for on a GPU or
            without PyTorch's int8 kernels, or a model without `model.model.backbone` when `backbone_only`, `quantize`
            or `bf16_attention` (or `model.model.projector` when `channels_last`).
    """
    restore(model)
    device = next(model.parameters()).device
    int8 = _resolve_quantize(quantize, dtype, device)
    resolved = torch.float32 if int8 and dtype == "auto" and backbone_only else resolve_dtype(dtype, device)
    if int8:
        _quantize_linears(int8_linears(model))
    if resolved != torch.float32:
        target = _stage(model, "backbone", "backbone_only=True") if backbone_only else model
        target.forward = types.MethodType(_autocast_forward(device.type, resolved), target)
    attention = _resolve_bf16_attention(bf16_attention, int8, device)
    if attention:
        _bf16_attentions(_stage(model, "backbone", "bf16_attention=True"))
    layout = _resolve_auto(channels_last, "channels_last", device.type == "cpu")
    if layout:
        _stage(model, "projector", "channels_last=True").set_memory_format(torch.channels_last)
    if compile:
        model.forward = torch.compile(model.forward)
    tuned = tune_allocator and device.type == "cpu" and keep_freed_memory()
    setattr(model, _STATE, OptimizationSettings(resolved, backbone_only, compile, int8, tuned, attention, layout))
    return model


def is_optimized(model: nn.Module) -> bool:
    """Whether `optimize` changed `model` (and `restore` has not undone it)."""
    return getattr(model, _STATE, None) is not None


def restore(model: nn.Module) -> nn.Module:
    """Undo `optimize`: the plain float32 eager forward again (exact: the weights were never changed)."""
    if not is_optimized(model):
        return model
    quantized = [module for module in model.modules() if _INT8 in vars(module)]
    attentions = [module for module in model.modules() if _BF16_ATTENTION in vars(module)]
    for module in (model, getattr(getattr(model, "model", model), "backbone", None), *quantized, *attentions):
        if module is not None and "forward" in vars(module):
            del module.forward  # the instance attribute set by `optimize`; the class's forward shows again
    for module in quantized:
        delattr(module, _INT8)
        _PACKED.pop(module.weight, None)
    for module in attentions:
        delattr(module, _BF16_ATTENTION)
    if getattr(model, _STATE).channels_last:
        _stage(model, "projector", "channels_last=True").set_memory_format(torch.contiguous_format)
    delattr(model, _STATE)
    return model


@contextlib.contextmanager
def float32_forward(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block `model` runs its plain float32 forward (for export, tracing, a float32 reference); after it,
    `model` is optimised again as it was (nothing to do for a model that was not)."""
    settings = getattr(model, _STATE, None)
    restore(model)
    try:
        yield model
    finally:
        if settings is not None:
            optimize(
                model,
                dtype=settings.dtype,
                quantize=settings.int8,
                backbone_only=settings.backbone_only,
                compile=settings.compiled,
                tune_allocator=settings.allocator_tuned,
                bf16_attention=settings.bf16_attention,
                channels_last=settings.channels_last,
            )


def _resolve_quantize(quantize: bool | str, dtype: torch.dtype | str, device: torch.device) -> bool:
    """Whether `int8_linears` run int8 (see `optimize`)."""
    if quantize == "auto":
        return dtype == "auto" and device.type == "cpu" and has_int8_dot_products()
    if not isinstance(quantize, bool):
        raise ValueError(f'quantize must be "auto", True or False, got {quantize!r}')
    if quantize and (device.type != "cpu" or not _has_int8_kernels()):
        raise ValueError(
            f"quantize=True needs the model on the CPU and PyTorch's int8 linear kernels (fbgemm / x86); the model is "
            f"on {device.type}. Pass quantize=False (or dtype=torch.float16 / torch.bfloat16 on a GPU)"
        )
    return quantize


def int8_linears(model: nn.Module) -> list[nn.Linear]:
    """The linear layers `optimize(model, quantize=True)` runs in int8: every one of the backbone's, and the
    feed-forward layers (fc1, fc2) of each decoder layer. The decoder's attention projections, sampling offsets and
    weights, and the heads stay float32: they place the samples and boxes."""
    backbone = _stage(model, "backbone", "quantize=True")
    decoder = getattr(getattr(model, "model", model), "decoder", None)
    feed_forward = [linear for layer in getattr(decoder, "layers", []) for linear in (layer.fc1, layer.fc2)]
    return [module for module in backbone.modules() if isinstance(module, nn.Linear)] + feed_forward


def _quantize_linears(linears: list[nn.Linear]) -> None:
    """Give each of `linears` an int8 forward (weights packed now, see `int8_linear`)."""
    for linear in linears:
        _packed_int8(linear.weight, linear.bias)
        setattr(linear, _INT8, True)
        linear.forward = types.MethodType(_int8_linear_forward, linear)


@dataclass
class _PackedInt8:
    """A linear layer's weight quantised per output channel, symmetric (scale = max |w| / 127), packed for fbgemm with
    its bias; the versions of the weight and bias it was packed from (to notice a changed weight), and whether
    activations use 7 bits (`reduce_range`: without VNNI, fbgemm's int16 intermediate sums could saturate)."""

    packed: torch.ScriptObject
    versions: tuple[int, int]
    reduce_range: bool


#: weight tensor -> its int8 copy; held weakly, so that the copy goes with the weight (a freed or deep-copied model).
_PACKED: WeakIdKeyDictionary = WeakIdKeyDictionary()


def _versions(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[int, int]:
    return _version(weight), _version(bias)


def _version(tensor: torch.Tensor | None) -> int:
    """The tensor's version counter (bumped by each in-place change); -1 for None and for inference tensors (a model
    built or loaded under `torch.inference_mode`), which keep none: an in-place change to one of those, possible only
    inside inference mode, leaves its int8 copy as it was (`restore` and `optimize` again rebuild it)."""
    return -1 if tensor is None or tensor.is_inference() else tensor._version


def _packed_int8(weight: torch.Tensor, bias: torch.Tensor | None) -> _PackedInt8:
    """The int8 copy of (`weight`, `bias`), packed now if there is none or they changed since it was packed."""
    entry = _PACKED.get(weight)
    if entry is not None and entry.versions == _versions(weight, bias):
        return entry
    matrix = weight.detach().float()
    scales = (matrix.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():  # quantized tensors are deprecated in PyTorch (see `_has_int8_kernels`)
        warnings.simplefilter("ignore")
        quantized = torch.quantize_per_channel(matrix, scales, zero_points, 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(quantized, None if bias is None else bias.detach().float())
    entry = _PACKED[weight] = _PackedInt8(packed, _versions(weight, bias), not has_int8_dot_products())
    return entry


@torch.library.custom_op("hf_rfdetr::int8_linear", mutates_args=())
def int8_linear(hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """(..., in_features) -> (..., out_features) float32: `weight` (out_features, in_features) in int8, per output
    channel, and the activations in int8 per tensor, quantised at each call (fbgemm, int32 accumulation).

    An operator of its own (`torch.ops.hf_rfdetr.int8_linear`), so that `torch.compile` sees one opaque call per
    linear layer instead of breaking its graph at the packing check. Eager forwards call `_int8_linear` directly: the
    operator's Python dispatch costs about 50 us a call, 2-3% of an int8 Nano forward (48 linears).
    """
    return _int8_linear(hidden_states, weight, bias)


def _int8_linear(hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The computation of `int8_linear`."""
    entry = _packed_int8(weight, bias)
    return torch.ops.quantized.linear_dynamic(hidden_states.float().contiguous(), entry.packed, entry.reduce_range)


@int8_linear.register_fake
def _(hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return hidden_states.new_empty((*hidden_states.shape[:-1], weight.shape[0]), dtype=torch.float32)


def _inference_only(module: nn.Module, hidden_states: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `module` runs a fast forward: eval mode, and autograd needs no gradient (of `weight` or the input)."""
    needs_grad = torch.is_grad_enabled() and (weight.requires_grad or hidden_states.requires_grad)
    return not (module.training or needs_grad)


def _int8_linear_forward(self: nn.Linear, hidden_states: torch.Tensor) -> torch.Tensor:
    """`int8_linear` in eval mode without autograd; the float32 linear in training mode or when autograd may need
    gradients."""
    if not _inference_only(self, hidden_states, self.weight):
        return F.linear(hidden_states, self.weight, self.bias)
    run = int8_linear if torch.compiler.is_compiling() else _int8_linear
    return run(hidden_states, self.weight, self.bias).to(hidden_states.dtype)


def _resolve_bf16_attention(bf16_attention: bool | str, int8: bool, device: torch.device) -> bool:
    """Whether the backbone's attention runs `_bf16_attention_forward` (see `optimize`)."""
    # with 8-bit activations only (see `_bf16_attention_forward`)
    auto = int8 and device.type == "cpu" and has_int8_dot_products() and has_native_bf16()
    return _resolve_auto(bf16_attention, "bf16_attention", auto)


def _resolve_auto(option: bool | str, name: str, auto: bool) -> bool:
    """An option of `optimize` that is "auto" (then `auto`), True or False."""
    if option == "auto":
        return auto
    if not isinstance(option, bool):
        raise ValueError(f'{name} must be "auto", True or False, got {option!r}')
    return option


#: The most attention scores (batch x heads x queries x keys) `_bf16_attention_forward` computes at once, 128 MB in
#: bf16 (Base's global blocks at batch 4); a larger block runs `scaled_dot_product_attention`, which holds none.
MAX_BF16_SCORES = 1 << 26


def _bf16_attentions(backbone: nn.Module) -> None:
    """Give each of the backbone's self-attention modules the bf16 forward."""
    from .models.rfdetr.backbone_rfdetr import RFDetrSelfAttention

    for module in backbone.modules():
        if isinstance(module, RFDetrSelfAttention):
            setattr(module, _BF16_ATTENTION, True)
            module.forward = types.MethodType(_bf16_attention_forward, module)


def _bf16_attention_forward(
    self: nn.Module, hidden_states: torch.Tensor, eager: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`RFDetrSelfAttention.forward` with softmax(q k^T / sqrt(head_dim)) v as two bfloat16 matrix products (float32
    accumulation; scores and weights rounded to bf16): (N, T, C) -> (N, T, C) in the input's dtype.

    `scaled_dot_product_attention`'s CPU kernel runs float32 or bf16 alike at about 100 GFLOP/s here; bf16 matrix
    products reach 230-400. On a 2-core AMD EPYC (AVX512-BF16), with freed memory kept (`keep_freed_memory`), Base's
    windowed attention (16 windows x 6 heads x 101 tokens) took 2.0 against 4.4 ms, its global attention (6 x 1616)
    20 against 29 ms, Nano's 0.8 against 1.3 and 3.1 against 5.1 ms.

    Rounding the scores to bf16 (0.06 for a score of 30) is within the int8 linears' own drift: over 32 rotated,
    mirrored and cropped copies of the demo image (`tests/test_optimize.py::test_drift_census`), int8 reordered the
    two-stage proposals of 7 and changed a detection in 3, and int8 with this the same 7 and 3 (other copies). The
    bf16 backbone reordered 2 and changed 1 alone, 3 and 2 with this; its speed there is unmeasured on CPUs without
    VNNI (where that path runs), so "auto" pairs this with int8 only, and with its 8-bit activations only: with the
    7-bit ones fbgemm needs without VNNI (simulated), int8 changed 3 copies, and 5 with this.

    A block with more than `MAX_BF16_SCORES` scores, explicit attention (`eager`), training and autograd run the
    class's forward.
    """
    batch_size, length, channels = hidden_states.shape
    too_large = batch_size * self.num_heads * length * length > MAX_BF16_SCORES
    if eager or too_large or not _inference_only(self, hidden_states, self.qkv.weight):
        return type(self).forward(self, hidden_states, eager)
    head_dim = channels // self.num_heads
    qkv = self.qkv(hidden_states)
    query, key, value = (
        qkv.to(torch.bfloat16).reshape(batch_size, length, 3, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
    )
    with torch.autocast(hidden_states.device.type, enabled=False):
        attended = bf16_attention(query, key, value)
    return self.proj(attended.transpose(1, 2).reshape(batch_size, length, channels).to(qkv.dtype)), None


def bf16_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """bf16 query, key, value (N, heads, T, head_dim) -> softmax(q k^T / sqrt(head_dim)) v (N, heads, T, head_dim)."""
    weights = torch.matmul(query * query.shape[-1] ** -0.5, key.transpose(-2, -1)).softmax(dim=-1)
    return torch.matmul(weights, value)


#: What to pass to `optimize` for a model without the stage an option changes (`_stage`).
_WITHOUT_STAGE = {
    "backbone": "backbone_only=False, quantize=False and bf16_attention=False to autocast its whole forward",
    "projector": "channels_last=False",
}


def _stage(model: nn.Module, name: str, option: str) -> nn.Module:
    """`model.model.<name>` (RFDetrForObjectDetection) or `model.<name>` (RFDetrModel): the backbone or projector
    that `option` of `optimize` changes."""
    stage = getattr(getattr(model, "model", model), name, None)
    if not isinstance(stage, nn.Module):
        raise ValueError(
            f"optimize({option}) needs an RFDetrForObjectDetection or RFDetrModel (a .{name} module); got "
            f"{type(model).__name__}. Pass {_WITHOUT_STAGE[name]}"
        )
    return stage
