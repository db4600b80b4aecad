"""RF-DETR's registration with transformers' Auto classes, its object-detection pipeline and Optimum.

`import hf_rfdetr` calls `install()`, which must stay cheap: importing the model, the image processor or the pipeline
means importing `transformers.modeling_utils`, torchvision and `torch._dynamo` (seconds), and `hf-rfdetr --help` must
not import torch at all. So each part is registered when the transformers (or Optimum) module it extends has been
imported: at once for a module that is already imported, otherwise right after that module has executed, through an
import hook (a `sys.meta_path` finder that wraps the module's loader). A registration imports transformers modules
itself, so it never runs in the middle of importing one: the Auto modules are often imported by another transformers
module (`from transformers import DetrForObjectDetection` imports `modeling_layers`, which imports `modeling_auto`),
and registering then would import that module half-initialised. It runs once every transformers, Optimum and
hf_rfdetr module being imported has finished. Either way, by the time `AutoConfig`,
`AutoModelForObjectDetection`, `AutoImageProcessor`, `pipeline` or Optimum's `TasksManager` can be used, RF-DETR is
registered with it; the hook removes itself once every part is done.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType

__all__ = ["install", "register_all"]


def register_config() -> None:
    """`AutoConfig` knows model_type "rfdetr"; saved configs carry `auto_map` for `trust_remote_code`."""
    from transformers.models.auto.configuration_auto import AutoConfig

    from .models.rfdetr.configuration_rfdetr import RFDetrConfig

    AutoConfig.register(RFDetrConfig.model_type, RFDetrConfig, exist_ok=True)
    RFDetrConfig.register_for_auto_class()


def register_models() -> None:
    """`AutoModel` / `AutoModelForObjectDetection` / `AutoModelForInstanceSegmentation` /
    `AutoModelForImageSegmentation` build our classes, and transformers' names tables list them."""
    from transformers.models.auto import modeling_auto

    from .models.rfdetr.configuration_rfdetr import RFDetrConfig
    from .models.rfdetr.modeling_rfdetr import RFDetrForInstanceSegmentation, RFDetrForObjectDetection, RFDetrModel

    register_config()
    modeling_auto.AutoModel.register(RFDetrConfig, RFDetrModel, exist_ok=True)
    modeling_auto.AutoModelForObjectDetection.register(RFDetrConfig, RFDetrForObjectDetection, exist_ok=True)
    # The object-detection pipeline checks the model's class name against this names table only (not registered
    # classes); the onnxruntime runner serves the pipeline too. Pinned by tests/test_transformers_internals.py.
    modeling_auto.MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES.setdefault(
        RFDetrConfig.model_type, (RFDetrForObjectDetection.__name__, "RFDetrOnnxModel")
    )
    # The base-model names table, as for built-in models: what transformers (and its test mixins) read to tell a
    # base model (no head, no loss) from a model with a head.
    modeling_auto.MODEL_MAPPING_NAMES.setdefault(RFDetrConfig.model_type, RFDetrModel.__name__)
    RFDetrModel.register_for_auto_class("AutoModel")
    RFDetrForObjectDetection.register_for_auto_class("AutoModelForObjectDetection")
    # Segmentation: `pipeline("image-segmentation")` loads through AutoModelForImageSegmentation and checks the class
    # name against the merged image/semantic/instance/universal segmentation names tables.
    modeling_auto.AutoModelForInstanceSegmentation.register(RFDetrConfig, RFDetrForInstanceSegmentation, exist_ok=True)
    modeling_auto.AutoModelForImageSegmentation.register(RFDetrConfig, RFDetrForInstanceSegmentation, exist_ok=True)
    # The onnxruntime runner of a Seg export serves `pipeline("image-segmentation")` too.
    modeling_auto.MODEL_FOR_INSTANCE_SEGMENTATION_MAPPING_NAMES.setdefault(
        RFDetrConfig.model_type, (RFDetrForInstanceSegmentation.__name__, "RFDetrOnnxModel")
    )
    RFDetrForInstanceSegmentation.register_for_auto_class("AutoModelForInstanceSegmentation")


def register_image_processor() -> None:
    """`AutoImageProcessor` builds `RFDetrImageProcessor` (the torchvision backend in transformers 5.x)."""
    from transformers.models.auto.image_processing_auto import AutoImageProcessor

    from .models.rfdetr.configuration_rfdetr import RFDetrConfig
    from .models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor

    register_config()
    try:  # transformers 5.x: one class per backend; ours is torchvision-based (no PIL/numpy-only implementation)
        AutoImageProcessor.register(
            RFDetrConfig, image_processor_classes={"torchvision": RFDetrImageProcessor}, exist_ok=True
        )
    except TypeError:  # transformers 4.57
        AutoImageProcessor.register(RFDetrConfig, slow_image_processor_class=RFDetrImageProcessor, exist_ok=True)
    RFDetrImageProcessor.register_for_auto_class("AutoImageProcessor")


def register_no_video_processor() -> None:
    """Tell transformers 5.x that RF-DETR has no video processor.

    Its pipelines also try to load a video processor, which they derive from the `AutoImageProcessor` entry of a
    saved folder's `auto_map`; with no local class registered, that asks the user to trust remote code that does not
    exist. Registering "no class" for our config makes the optional load fail quietly instead.
    """
    from transformers.models.auto.video_processing_auto import AutoVideoProcessor

    from .models.rfdetr.configuration_rfdetr import RFDetrConfig

    register_config()
    try:
        AutoVideoProcessor.register(RFDetrConfig, video_processor_classes={"torchvision": None}, exist_ok=True)
    except TypeError:  # transformers 4.57 has no per-backend registry and no such lookup in its pipelines
        pass


def register_pipeline() -> None:
    """`pipeline("object-detection")` reads images for RF-DETR models with `hf_rfdetr.models.rfdetr.image_io` (EXIF orientation,
    16-bit scaling, pixel limit, file names in errors, `[]` for an empty list); other models are unaffected."""
    from .pipeline_rfdetr import register_pipeline as register

    register_models()  # the pipeline checks class names against the names table
    register()


def register_optimum() -> None:
    """Register RF-DETR's ONNX config with Optimum's `TasksManager`, when `optimum-onnx` is usable."""
    try:
        from .onnx.optimum import register_optimum as register
    except Exception:  # an optimum-onnx that refuses this transformers: export_onnx uses torch.onnx then
        return
    register()


#: module -> the registration to run once it has been imported, in the order `register_all` runs them.
TRIGGERS: dict[str, Callable[[], None]] = {
    "transformers.models.auto.configuration_auto": register_config,
    "transformers.models.auto.modeling_auto": register_models,
    "transformers.models.auto.image_processing_auto": register_image_processor,
    "transformers.models.auto.video_processing_auto": register_no_video_processor,
    "transformers.pipelines": register_pipeline,
    "optimum.exporters.onnx": register_optimum,
    # Our own classes, imported before transformers' Auto modules: a config or processor saved right away must still
    # carry its `auto_map` and code files (`register_for_auto_class`). The model imports the Auto modules itself.
    "hf_rfdetr.models.rfdetr.configuration_rfdetr": register_config,
    "hf_rfdetr.models.rfdetr.image_processing_rfdetr": register_image_processor,
}
#: The packages whose modules the registrations import (every trigger is one of them): a trigger can fire while one
#: of their modules is itself being imported (`transformers.modeling_layers` imports the Auto modules half-way; so does
#: our model, through it), and the registration then waits until every such module has finished, instead of importing
#: one half-initialised.
WATCHED_PACKAGES = ("transformers", "optimum", "hf_rfdetr")


def register_all() -> None:
    """Every registration now (imports the model, the image processor and the pipeline)."""
    for name, register in TRIGGERS.items():
        if name.startswith("optimum.") and importlib.util.find_spec("optimum") is None:
            continue
        register()


def _initializing(name: str) -> bool:
    """Whether module `name` is being imported right now (in `sys.modules`, its code not finished)."""
    module = sys.modules.get(name)
    return module is not None and bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


class _AfterImport(importlib.abc.MetaPathFinder):
    """A `sys.meta_path` finder that runs `TRIGGERS[name]` once module `name` has executed and no module of
    `WATCHED_PACKAGES` is being executed (re-checked after each of those finishes)."""

    def __init__(self, pending: dict[str, Callable[[], None]]) -> None:
        self.pending = pending  # trigger module -> registration, until it has run
        self.executing: list[str] = []  # the watched modules whose code is running, outermost first

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] not in WATCHED_PACKAGES:
            return None
        for finder in sys.meta_path:  # the spec the other finders give, with its loader wrapped
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RegisteringLoader(spec.loader, self)
        return spec

    def run_ready(self) -> None:
        """Run each pending registration whose trigger has been imported, unless a watched module is being executed."""
        if self.executing:
            return
        for name in [name for name in self.pending if name in sys.modules and not _initializing(name)]:
            register = self.pending.pop(name, None)
            if register is not None:
                register()
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, finder: _AfterImport) -> None:
        self.loader, self.finder = loader, finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__.loader = self.loader  # what reloads and introspection should see
        self.finder.executing.append(module.__name__)
        try:
            self.loader.exec_module(module)
        finally:
            self.finder.executing.remove(module.__name__)
        module.__spec__._initializing = False  # set again by importlib afterwards; run_ready must see it finished
        self.finder.run_ready()

    def __getattr__(self, name: str):  # get_resource_reader, is_package, get_code ... of the wrapped loader
        return getattr(self.loader, name)


def install() -> None:
    """Register each part now if its module is imported, else once it is (see the module docstring)."""
    pending = dict(TRIGGERS)
    for name in list(pending):
        if name in sys.modules and not _initializing(name):
            pending.pop(name)()
    if pending and not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(pending))
