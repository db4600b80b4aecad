"""The optional dependencies of hf_rfdetr, and the error that names the extra to install when one is missing.

`pip install hf-rfdetr` runs inference (the facade, `hf-rfdetr predict`, the pipeline, drawing, video through
supervision). Training and COCO evaluation need the `train` extra; ONNX export and onnxruntime inference need the
`ort` extra (or `onnx`, which adds Optimum's exporter and pins transformers 4.57). Each entry point calls `require`
before it loads a model or writes a file, so a missing package costs one clear line, not a half-done run.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "MissingExtraError", "require"]

#: extra -> the importable modules it provides (pyproject.toml's [project.optional-dependencies]).
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("accelerate", "datasets", "pycocotools", "scipy"),
    "ort": ("onnx", "onnxruntime"),
}


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is missing; the message names the packages and the `pip install` that adds them."""


def require(extra: str, feature: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise `MissingExtraError` if any of `modules` (default: every module of `extra`) cannot be imported.

    Args:
        extra: the pyproject extra that installs them ("train", "ort").
        feature: what needs them, for the message (e.g. "hf-rfdetr train").
        modules: the modules this feature needs, a subset of `EXTRAS[extra]`.
    """
    missing = [name for name in (modules or EXTRAS[extra]) if importlib.util.find_spec(name) is None]
    if missing:
        error = MissingExtraError(
            f"{feature} needs {', '.join(missing)}, which the default install leaves out: "
            f'pip install "hf-rfdetr[{extra}]"'
        )
        error.name = missing[0]
        raise error
