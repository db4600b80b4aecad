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
"""`RFDetrPreTrainedModel`: what every RF-DETR model class shares as a transformers model: weight initialisation
(the original's, module by module), loading (transformers' own `rf_detr` folders converted on the fly, damaged weight
files named) and saving (the model card kept on the Hub)."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import logging

from .backbone_rfdetr import RFDetrBackbone, RFDetrEmbeddings, RFDetrEncoderLayer
from .configuration_rfdetr import RFDetrConfig, RFDetrConfigError
from .heads_rfdetr import (
    RFDetrGroupedLayerNorm,
    RFDetrGroupedLinear,
    RFDetrSegmentationHead,
)
from .initialization_rfdetr import RFDetrInit
from .projector_rfdetr import RFDetrChannelLayerNorm

logger = logging.get_logger(__name__)


def _guarded(initializer):
    """Wrap a `torch.nn.init` function so that it leaves tensors transformers already loaded untouched."""

    def initialize(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if getattr(tensor, "_is_hf_initialized", False):
            return tensor
        with torch.no_grad():
            return initializer(tensor, *args, **kwargs)

    return initialize


_zeros = _guarded(nn.init.zeros_)
_ones = _guarded(nn.init.ones_)
_constant = _guarded(nn.init.constant_)
_normal = _guarded(nn.init.normal_)
_trunc_normal = _guarded(nn.init.trunc_normal_)
_uniform = _guarded(nn.init.uniform_)
_copy = _guarded(lambda tensor, source: tensor.copy_(source))


def _fans(module: nn.Linear | nn.Conv2d | nn.ConvTranspose2d | RFDetrGroupedLinear) -> tuple[int, int]:
    """(fan_in, fan_out) of a layer's weight as PyTorch's initialisers compute them; per group for a grouped Linear
    (G, out, in)."""
    if isinstance(module, RFDetrGroupedLinear):
        return module.weight.shape[-1], module.weight.shape[-2]
    return nn.init._calculate_fan_in_and_fan_out(module.weight)


def _damaged_weights_message(source: str | Path, kwargs: dict, error: Exception) -> str:
    """Which `.safetensors` file of a folder (or of the Hub cache) safetensors cannot read, and what to do."""
    subfolder = kwargs.get("subfolder") or ""
    folder = Path(source) / subfolder
    if folder.is_dir():
        files, remedy = sorted(folder.glob("*.safetensors")), "save or copy it again"
    else:
        files, remedy = _cached_safetensors(str(source), subfolder, kwargs), "download it again (force_download=True)"
    damaged = [f"{file} ({file.stat().st_size} bytes)" for file in files if not _safetensors_readable(file)]
    where = ", ".join(damaged) or f"the .safetensors weights of {str(source)!r}"
    return f"{where}: damaged or truncated, safetensors cannot read it ({error}); {remedy}"


def _onnx_only(source: str | Path | None, subfolder: str | None) -> list[str]:
    """The `.onnx` files of a local folder that holds no PyTorch weights (an `export()` folder), else []."""
    folder = Path(str(source)) / (subfolder or "")
    if not folder.is_dir() or any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")):
        return []
    return sorted(path.name for path in folder.glob("*.onnx"))


def _onnx_folder_message(source: str | Path, onnx_files: list[str]) -> str:
    return (
        f"{source} holds an ONNX export ({', '.join(onnx_files)}), not PyTorch weights (model.safetensors): run it "
        f"with hf_rfdetr.RFDetrOnnxModel.from_pretrained({str(source)!r}) (onnxruntime), which pipeline() also takes "
        "as model=, or load the folder the model was exported from"
    )


def _cached_safetensors(repo_id: str, subfolder: str, kwargs: dict) -> list[Path]:
    """The Hub cache's copies of `model.safetensors` and of the shards its index names, for `repo_id`."""
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> Path | None:
        found = try_to_load_from_cache(
            repo_id, f"{subfolder}/{name}" if subfolder else name, kwargs.get("cache_dir"), kwargs.get("revision")
        )
        return Path(found) if isinstance(found, str) else None

    index = cached("model.safetensors.index.json")
    names = ["model.safetensors"]
    if index is not None:
        names += sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
    return [path for path in map(cached, names) if path is not None]


def _safetensors_readable(file: Path) -> bool:
    try:
        with safe_open(str(file), framework="pt") as handle:
            handle.keys()
    except (SafetensorError, OSError):
        return False
    return True


def _deformable_offset_bias(heads_levels_points: tuple[int, int, int]) -> torch.Tensor:
    """Initial sampling offsets: each head looks in its own direction, point i at distance i + 1."""
    heads, levels, points = heads_levels_points
    thetas = torch.arange(heads, dtype=torch.float32) * (2.0 * math.pi / heads)
    directions = torch.stack((thetas.cos(), thetas.sin()), dim=-1)
    directions = directions / directions.abs().max(-1, keepdim=True).values
    distance = torch.arange(1, points + 1, dtype=torch.float32)[:, None]
    grid = directions[:, None, None, :] * distance[None, None, :, :]
    return grid.expand(heads, levels, points, 2).flatten()


class RFDetrPreTrainedModel(PreTrainedModel):
    config_class = RFDetrConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    # Attention runs through `scaled_dot_product_attention` by default ("sdpa"); `attn_implementation="eager"` (or
    # `output_attentions=True`) computes the weights explicitly and returns them.
    _supports_sdpa = True
    _no_split_modules = ["RFDetrEncoderLayer", "RFDetrDecoderLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise the parameters a module owns directly, as the original rfdetr 1.11.2 initialises a fresh model.

        transformers (5.x and 4.57) calls this per module, children before their parent in registration order, and
        again for weights missing from a checkpoint (loaded tensors are flagged and left alone); transformers 5 calls
        it only for modules with parameters of their own (for custom-code models). So the special cases are tagged by
        their creators on the module that owns the weights (`init_mode`, an `RFDetrInit`).
        """
        mode = getattr(module, "init_mode", RFDetrInit.TORCH_DEFAULT)
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, RFDetrGroupedLinear)):
            self._init_layer(module, RFDetrInit(mode))
        elif isinstance(module, RFDetrSegmentationHead):
            _zeros(module.bias)
        elif isinstance(module, (nn.LayerNorm, RFDetrChannelLayerNorm, RFDetrGroupedLayerNorm)):
            _ones(module.weight)
            _zeros(module.bias)
        elif isinstance(module, nn.Embedding):
            if mode == RFDetrInit.ZEROS:
                _zeros(module.weight)
            else:
                _normal(module.weight, std=1.0)
        elif isinstance(module, RFDetrEmbeddings):
            _trunc_normal(module.cls_token, std=self.config.init_std)
            _trunc_normal(module.position_embeddings, std=self.config.init_std)
            _zeros(module.mask_token)
        elif isinstance(module, RFDetrEncoderLayer):
            _constant(module.layer_scale1, self.config.backbone_layerscale_value)
            _constant(module.layer_scale2, self.config.backbone_layerscale_value)

    def _init_layer(
        self, module: nn.Linear | nn.Conv2d | nn.ConvTranspose2d | RFDetrGroupedLinear, mode: RFDetrInit
    ) -> None:
        """A Linear, convolution or grouped Linear by its `RFDetrInit` mode (see there for what each reproduces)."""
        weight, bias = module.weight, module.bias
        if mode == RFDetrInit.COPY:  # the decoder heads: group 0 of the (identical) two-stage heads
            source = self.get_submodule(module.init_source)
            _copy(weight, source.weight[0])
            _copy(bias, source.bias[0])
            return
        fan_in, fan_out = _fans(module)
        default_bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        if mode in (RFDetrInit.TORCH_DEFAULT, RFDetrInit.PRIOR):
            _uniform(weight, -default_bound, default_bound)
        elif mode == RFDetrInit.TRUNC_NORMAL:
            _trunc_normal(weight, std=self.config.init_std)
        elif mode in (RFDetrInit.XAVIER, RFDetrInit.XAVIER_ZERO_BIAS):
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            _uniform(weight, -bound, bound)
        elif mode == RFDetrInit.PACKED_IN_PROJECTION:  # a slice of a (3 d, d) matrix, d = fan_in
            bound = math.sqrt(6.0 / (fan_in + 3 * fan_in))
            _uniform(weight, -bound, bound)
        else:  # ZEROS, DEFORMABLE_OFFSETS
            _zeros(weight)
        if bias is not None:
            if mode in (RFDetrInit.TORCH_DEFAULT, RFDetrInit.XAVIER):
                _uniform(bias, -default_bound, default_bound)
            elif mode == RFDetrInit.PRIOR:
                prior = self.config.initializer_bias_prior_prob
                _constant(bias, -math.log((1 - prior) / prior))
            elif mode == RFDetrInit.DEFORMABLE_OFFSETS:
                _copy(bias, _deformable_offset_bias(module.heads_levels_points))
            else:  # TRUNC_NORMAL, XAVIER_ZERO_BIAS, PACKED_IN_PROJECTION, ZEROS
                _zeros(bias)
        if getattr(module, "identical_groups", False):
            _copy(weight, weight[:1].expand_as(weight).clone())
            _copy(bias, bias[:1].expand_as(bias).clone())

    def _upload_modified_files(self, working_dir, repo_id: str, *args, **kwargs):
        """`push_to_hub` hook: replace transformers' generic README.md by the RF-DETR model card before uploading.

        transformers (4.57 and 5.x) writes the saved files and a README.md into `working_dir`, then calls this to
        upload them. The card is rendered by `hf_rfdetr.model_card` when the package is installed (not under
        `trust_remote_code` alone), and only when the README.md is transformers' generic card or one the generator
        wrote: a card the user wrote on the Hub is kept.
        """
        try:  # an absolute import by name: the remote-code copy of this file must not depend on model_card.py
            model_card = importlib.import_module("hf_rfdetr.model_card")
        except ImportError:
            model_card = None
        readme = Path(working_dir) / "README.md"
        existing = readme.read_text(encoding="utf-8") if readme.is_file() else ""
        if model_card is not None and model_card.is_generated_card(existing):
            config_file = Path(working_dir) / "config.json"
            remote_code = config_file.is_file() and "auto_map" in json.loads(config_file.read_text())
            card = model_card.render_model_card(
                self.config,
                sum(parameter.numel() for parameter in self.parameters()),
                repo_id=repo_id,
                source="uploaded with `model.push_to_hub`",
                remote_code=remote_code,
            )
            readme.write_text(card, encoding="utf-8")
        return super()._upload_modified_files(working_dir, repo_id, *args, **kwargs)

    #: Auto classes the saved `auto_map` names besides the saved class's own (transformers writes only that one):
    #: `AutoModel` (the image-feature-extraction pipeline) builds the base model from any RF-DETR folder.
    _also_auto_mapped: dict[str, str] = {"AutoModel": "RFDetrModel"}

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`; a class registered for `trust_remote_code` (`import hf_rfdetr` does it)
        also writes `_also_auto_mapped` into the saved `auto_map`, so that those Auto classes load the folder with
        `trust_remote_code=True` alone."""
        if self._auto_class is not None:
            module = type(self).__module__.split(".")[-1]
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map |= {auto_class: f"{module}.{name}" for auto_class, name in self._also_auto_mapped.items()}
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    def __init__(self, config: RFDetrConfig, *inputs, **kwargs) -> None:
        config.validate()  # value ranges and consistency (the configuration itself checks only types)
        super().__init__(config, *inputs, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`; every loader (Auto classes, pipeline, the `RFDETR` facade, the
        `hf-rfdetr` commands) comes through here.

        A folder or Hub repository of transformers' own RF-DETR (model_type "rf_detr", detection or segmentation) is
        first converted into a cached folder of this package (`hf_rfdetr.pretrained_weights`, transformers 5.x),
        keeping its labels; saving the result writes this package's format. A damaged or truncated `.safetensors`
        file raises `OSError` naming the file (safetensors' own `SafetensorError` names none), and a configuration no
        model can be built from raises `RFDetrConfigError` naming its `config.json`.
        """
        if pretrained_model_name_or_path is not None and kwargs.get("config") is None:
            try:  # by name: the remote-code copy of this file loads without the package (and converts nothing)
                weights = importlib.import_module("hf_rfdetr.pretrained_weights")
            except ImportError:
                weights = None
            if weights is not None:
                source = str(pretrained_model_name_or_path)
                pretrained_model_name_or_path = weights.as_rfdetr_checkpoint(
                    source,
                    revision=kwargs.get("revision"),
                    token=kwargs.get("token"),
                    subfolder=kwargs.get("subfolder"),
                )
                if pretrained_model_name_or_path != source:  # converted: the cached folder holds the model at its top
                    kwargs.pop("subfolder", None)
        try:
            loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as error:
            raise OSError(_damaged_weights_message(pretrained_model_name_or_path, kwargs, error)) from error
        except OSError as error:
            onnx_files = _onnx_only(pretrained_model_name_or_path, kwargs.get("subfolder"))
            if not onnx_files:
                raise
            raise OSError(_onnx_folder_message(pretrained_model_name_or_path, onnx_files)) from error
        except RFDetrConfigError as error:
            raise error.located(pretrained_model_name_or_path) from None
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, loading_info) with output_loading_info
        for module in model.modules():
            if isinstance(module, RFDetrBackbone):
                module.freeze_unused()  # transformers 5 loads the frozen parameters back as trainable ones
        return loaded
