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
"""Stage 2: the multi-scale projector (LW-DETR).

The backbone taps, each (B, backbone_hidden_size, h, w), are resampled to every pyramid level of
`projector_scale` (P3: 2x up, P4: as is, P5: 2x down), concatenated on channels, and fused by a C2f block and a
channel LayerNorm into one (B, d_model, h_l, w_l) map per level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_rfdetr import RFDetrConfig

#: Scale of each pyramid level relative to the ViT's patch grid.
LEVEL_SCALE = {"P3": 2.0, "P4": 1.0, "P5": 0.5}


class RFDetrChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states.permute(0, 2, 3, 1)
        hidden_states = F.layer_norm(hidden_states, self.weight.shape, self.weight, self.bias, self.eps)
        return hidden_states.permute(0, 3, 1, 2)


class RFDetrConvNormAct(nn.Module):
    """Conv (no bias) -> channel LayerNorm -> activation, on an input laid out in `memory_format`."""

    #: The layout the convolution reads (`RFDetrMultiScaleProjector.set_memory_format`).
    memory_format: torch.memory_format = torch.contiguous_format

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, activation: str, eps: float
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        )
        self.norm = RFDetrChannelLayerNorm(out_channels, eps)
        self.activation = nn.SiLU() if activation == "silu" else nn.ReLU()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # The channel LayerNorm leaves a channels-last layout. A contiguous input keeps the convolution kernel (and
        # its rounding) the same as the original's; channels-last spares oneDNN's reorders.
        return self.activation(self.norm(self.conv(hidden_states.contiguous(memory_format=self.memory_format))))


class RFDetrBottleneck(nn.Module):
    """Two 3x3 ConvNormAct (no shortcut, as the projector uses it)."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.cv1 = RFDetrConvNormAct(channels, channels, 3, 1, "silu", eps)
        self.cv2 = RFDetrConvNormAct(channels, channels, 3, 1, "silu", eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.cv2(self.cv1(hidden_states))


class RFDetrC2f(nn.Module):
    """CSP block with two convolutions (YOLOv8's C2f): (B, in, h, w) -> (B, out, h, w)."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, eps: float) -> None:
        super().__init__()
        self.hidden = out_channels // 2
        self.cv1 = RFDetrConvNormAct(in_channels, 2 * self.hidden, 1, 1, "silu", eps)
        self.cv2 = RFDetrConvNormAct((2 + num_blocks) * self.hidden, out_channels, 1, 1, "silu", eps)
        self.bottlenecks = nn.ModuleList(RFDetrBottleneck(self.hidden, eps) for _ in range(num_blocks))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(hidden_states).split(self.hidden, dim=1))
        for bottleneck in self.bottlenecks:
            parts.append(bottleneck(parts[-1]))
        return self.cv2(torch.cat(parts, dim=1))


def _sampler(scale: float, channels: int, eps: float) -> nn.Module:
    """Resamples one backbone tap (B, channels, h, w) to a pyramid level."""
    if scale == 2.0:
        return nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2)
    if scale == 0.5:
        return RFDetrConvNormAct(channels, channels, 3, 2, "relu", eps)
    return nn.Identity()


class RFDetrProjectorLevel(nn.Module):
    """One pyramid level: resample every tap, concatenate, C2f, LayerNorm."""

    #: The layout of the taps as the samplers read them (`RFDetrMultiScaleProjector.set_memory_format`).
    memory_format: torch.memory_format = torch.contiguous_format

    def __init__(self, config: RFDetrConfig, scale: float) -> None:
        super().__init__()
        taps, channels = len(config.out_feature_indexes), config.backbone_hidden_size
        eps = config.projector_layer_norm_eps
        self.samplers = nn.ModuleList(_sampler(scale, channels, eps) for _ in range(taps))
        fused_channels = taps * (channels // 2 if scale == 2.0 else channels)
        self.c2f = RFDetrC2f(fused_channels, config.d_model, config.projector_num_blocks, eps)
        self.norm = RFDetrChannelLayerNorm(config.d_model, eps)

    def forward(self, feature_maps: list[torch.Tensor]) -> torch.Tensor:
        taps = [feature_map.contiguous(memory_format=self.memory_format) for feature_map in feature_maps]
        resampled = [sampler(tap) for sampler, tap in zip(self.samplers, taps)]
        return self.norm(self.c2f(torch.cat(resampled, dim=1)))


class RFDetrMultiScaleProjector(nn.Module):
    """Backbone taps -> one (B, d_model, h_l, w_l) map per `projector_scale` level, finest first."""

    def __init__(self, config: RFDetrConfig) -> None:
        super().__init__()
        self.levels = nn.ModuleList(RFDetrProjectorLevel(config, LEVEL_SCALE[name]) for name in config.projector_scale)

    def forward(self, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [level(feature_maps) for level in self.levels]

    def set_memory_format(self, memory_format: torch.memory_format) -> None:
        """Lay out every convolution's input in `memory_format`: torch.contiguous_format (the default: the original's
        kernels and rounding) or torch.channels_last (oneDNN's NHWC kernels, without reorders: on a 2-core AMD EPYC a
        3x3 convolution of Base's C2f took 2.2 against 3.2 ms; the outputs move by about 1e-5)."""
        for module in self.modules():
            if isinstance(module, (RFDetrConvNormAct, RFDetrProjectorLevel)):
                if memory_format == torch.contiguous_format:
                    vars(module).pop("memory_format", None)  # the class default again
                else:
                    module.memory_format = memory_format
