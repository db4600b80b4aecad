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
"""Stage 1: the DINOv2 encoder with windowed attention.

pixel_values (B, C, H, W) -> patch embedding + interpolated position embedding -> blocks that alternate windowed
and global self-attention -> the hidden states after the blocks named by `out_feature_indexes`, layer-normed, as
feature maps (B, backbone_hidden_size, H / patch_size, W / patch_size).

Windowing splits the patch grid into `num_windows x num_windows` row-major windows that become extra batch
entries (B * num_windows**2, 1 + tokens per window, C), each with its own copy of the CLS token. A global block
views that tensor as (B, num_windows**2 * (1 + tokens per window), C), so it also attends across the CLS copies.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth
from transformers.activations import ACT2FN
from transformers.modeling_layers import (
    GradientCheckpointingLayer,  # gradient_checkpointing_enable() reaches the blocks
)

from .configuration_rfdetr import RFDetrConfig
from .initialization_rfdetr import RFDetrInit


class RFDetrPatchEmbeddings(nn.Module):
    """(B, C, H, W) -> (B, H/p * W/p, hidden) with one strided convolution."""

    def __init__(self, config: RFDetrConfig) -> None:
        super().__init__()
        self.num_channels = config.num_channels
        self.projection = nn.Conv2d(
            config.num_channels, config.backbone_hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )
        self.projection.init_mode = RFDetrInit.TRUNC_NORMAL  # DINOv2's initialisation

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


class RFDetrEmbeddings(nn.Module):
    """Patch embedding, CLS token and the learned position embedding (interpolated to the input grid)."""

    def __init__(self, config: RFDetrConfig) -> None:
        super().__init__()
        hidden = config.backbone_hidden_size
        self.patch_size = config.patch_size
        self.num_windows = config.num_windows
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
        # Kept for checkpoint compatibility with DINOv2 / the original (masked image modelling). Unused, so frozen:
        # a trainable parameter without gradients breaks DistributedDataParallel.
        self.mask_token = nn.Parameter(torch.zeros(1, hidden), requires_grad=False)
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.positional_encoding_size**2 + 1, hidden))
        self.patch_embeddings = RFDetrPatchEmbeddings(config)

    def interpolate_pos_encoding(self, height: int, width: int) -> torch.Tensor:
        """The position embedding for a (height, width) patch grid: (1, 1 + height * width, hidden).

        Bicubic with antialiasing, computed in float32, as DINOv2 and the original do; the stored grid is used as is
        when it already has the requested (square) size.
        """
        grid = self.position_embeddings.shape[1] - 1
        side = int(grid**0.5)
        if height == width == side:
            return self.position_embeddings
        cls_pos, patch_pos = self.position_embeddings[:, :1], self.position_embeddings[:, 1:]
        patch_pos = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(
            patch_pos.float(), size=(height, width), mode="bicubic", align_corners=False, antialias=True
        ).to(patch_pos.dtype)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, height * width, -1)
        return torch.cat((cls_pos, patch_pos), dim=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> windowed tokens (B * num_windows**2, 1 + H/p * W/p / num_windows**2, hidden)."""
        batch_size = pixel_values.shape[0]
        height, width = pixel_values.shape[-2] // self.patch_size, pixel_values.shape[-1] // self.patch_size
        patches = self.patch_embeddings(pixel_values.to(self.patch_embeddings.projection.weight.dtype))
        tokens = torch.cat((self.cls_token.expand(batch_size, -1, -1), patches), dim=1)
        tokens = tokens + self.interpolate_pos_encoding(height, width)
        if self.num_windows == 1:
            return tokens
        return window_partition(tokens, height, width, self.num_windows)


def window_partition(tokens: torch.Tensor, height: int, width: int, num_windows: int) -> torch.Tensor:
    """(B, 1 + height * width, C) -> (B * num_windows**2, 1 + height * width / num_windows**2, C), row-major windows,
    each window with its own copy of the CLS token."""
    batch_size, _, channels = tokens.shape
    cls_token, patches = tokens[:, :1], tokens[:, 1:]
    win_h, win_w = height // num_windows, width // num_windows
    patches = patches.reshape(batch_size, num_windows, win_h, num_windows, win_w, channels)
    patches = patches.permute(0, 1, 3, 2, 4, 5).reshape(batch_size * num_windows**2, win_h * win_w, channels)
    cls_token = cls_token[:, None].expand(-1, num_windows**2, -1, -1).reshape(-1, 1, channels)
    return torch.cat((cls_token, patches), dim=1)


def window_unpartition(tokens: torch.Tensor, height: int, width: int, num_windows: int) -> torch.Tensor:
    """Windowed patch tokens without CLS (B * num_windows**2, height * width / num_windows**2, C) -> (B, C, H, W).

    The map has channels-last strides: the windows are stitched into a (B, H, W, C) tensor (a copy that moves whole
    channel vectors, several times faster than one that moves channels to the front) and permuted to (B, C, H, W)
    without a copy. The projector lays it out as its convolutions want (`RFDetrProjectorLevel`).
    """
    channels = tokens.shape[-1]
    win_h, win_w = height // num_windows, width // num_windows
    tokens = tokens.reshape(-1, num_windows, num_windows, win_h, win_w, channels)
    return tokens.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels).permute(0, 3, 1, 2)


def multi_head_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, eager: bool, dropout: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """query, key, value (N, heads, T, head_dim) -> attended (N, heads, T, head_dim) and the weights.

    `eager=False` runs `scaled_dot_product_attention` (fused kernels, no weights: None); `eager=True` computes
    softmax(q k^T / sqrt(head_dim)) explicitly and also returns the weights (N, heads, T_q, T_k), for
    `output_attentions` or `attn_implementation="eager"`. Like SDPA's math kernel, the eager path computes half and
    bfloat16 inputs in float32 (the two stay within rounding of each other, which the two-stage top-k needs).
    """
    if not eager:
        return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout), None
    dtype = query.dtype
    query, key, value = query.float(), key.float(), value.float()
    weights = torch.matmul(query * query.shape[-1] ** -0.5, key.transpose(-2, -1)).softmax(dim=-1)
    attended = torch.matmul(F.dropout(weights, dropout, training=dropout > 0), value)
    return attended.to(dtype), weights.to(dtype)


class RFDetrSelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (see `multi_head_attention` for the two paths)."""

    def __init__(self, config: RFDetrConfig) -> None:
        super().__init__()
        self.num_heads = config.backbone_num_attention_heads
        self.qkv = nn.Linear(config.backbone_hidden_size, 3 * config.backbone_hidden_size)
        self.proj = nn.Linear(config.backbone_hidden_size, config.backbone_hidden_size)
        self.qkv.init_mode = self.proj.init_mode = RFDetrInit.TRUNC_NORMAL  # DINOv2's initialisation

    def forward(self, hidden_states: torch.Tensor, eager: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, T, C) -> (N, T, C) and, when `eager`, the attention weights (N, heads, T, T)."""
        batch_size, length, channels = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch_size, length, 3, self.num_heads, channels // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended, weights = multi_head_attention(query, key, value, eager)
        return self.proj(attended.transpose(1, 2).reshape(batch_size, length, channels)), weights


class RFDetrMLP(nn.Module):
    """The ViT feed-forward block: Linear -> activation -> Linear."""

    def __init__(self, config: RFDetrConfig) -> None:
        super().__init__()
        hidden = config.backbone_hidden_size
        self.fc1 = nn.Linear(hidden, hidden * config.backbone_mlp_ratio)
        self.activation = ACT2FN[config.backbone_hidden_act]
        self.fc2 = nn.Linear(hidden * config.backbone_mlp_ratio, hidden)
        self.fc1.init_mode = self.fc2.init_mode = RFDetrInit.TRUNC_NORMAL  # DINOv2's initialisation

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(hidden_states)))


class RFDetrEncoderLayer(GradientCheckpointingLayer):
    """A pre-norm DINOv2 block with layer scale; attention is windowed or global (over all windows of an image)."""

    def __init__(self, config: RFDetrConfig, drop_path_rate: float) -> None:
        super().__init__()
        hidden = config.backbone_hidden_size
        self.num_windows = config.num_windows
        # Stochastic depth: while training, each row (an image's window) drops the residual branch with probability
        # `drop_path_rate` and the kept rows are scaled by 1 / (1 - drop_path_rate), as the original's drop_path.
        self.drop_path = StochasticDepth(drop_path_rate, "row")
        self.norm1 = nn.LayerNorm(hidden, eps=config.backbone_layer_norm_eps)
        self.attention = RFDetrSelfAttention(config)
        self.layer_scale1 = nn.Parameter(torch.full((hidden,), config.backbone_layerscale_value))
        self.norm2 = nn.LayerNorm(hidden, eps=config.backbone_layer_norm_eps)
        self.mlp = RFDetrMLP(config)
        self.layer_scale2 = nn.Parameter(torch.full((hidden,), config.backbone_layerscale_value))

    def forward(
        self, hidden_states: torch.Tensor, global_attention: bool = False, eager: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B * num_windows**2, T, C) -> same shape; a global block attends over (B, num_windows**2 * T, C).

        Also returns the attention weights when `eager`: (B * num_windows**2, heads, T, T) for a windowed block,
        (B, heads, num_windows**2 * T, num_windows**2 * T) for a global one.
        """
        attention_input = self.norm1(hidden_states)
        if global_attention and self.num_windows > 1:
            windows, length, channels = hidden_states.shape
            images = windows // self.num_windows**2
            attended, weights = self.attention(attention_input.reshape(images, -1, channels), eager)
            attended = attended.reshape(windows, length, channels)
        else:
            attended, weights = self.attention(attention_input, eager)
        hidden_states = hidden_states + self.drop_path(attended * self.layer_scale1)
        feed_forward = self.mlp(self.norm2(hidden_states)) * self.layer_scale2
        return hidden_states + self.drop_path(feed_forward), weights


class RFDetrBackboneOutput(NamedTuple):
    """What [`RFDetrBackbone`] returns.

    feature_maps: one (B, backbone_hidden_size, H / patch_size, W / patch_size) map per `out_feature_indexes` entry.
    hidden_states: with `output_hidden_states`, the embeddings and the output of every block that runs, as the blocks
        see them: (B * num_windows**2, 1 + tokens per window, backbone_hidden_size); else None.
    attentions: with `output_attentions`, every block's attention weights (see `RFDetrEncoderLayer`); else None.
    """

    feature_maps: list[torch.Tensor]
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class RFDetrBackbone(nn.Module):
    """The windowed DINOv2 encoder: pixel_values (B, C, H, W) -> one feature map per `out_feature_indexes` entry,
    each (B, backbone_hidden_size, H / patch_size, W / patch_size)."""

    def __init__(self, config: RFDetrConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = RFDetrEmbeddings(config)
        depth = config.backbone_num_hidden_layers
        rates = [config.drop_path_rate * index / max(1, depth - 1) for index in range(depth)]  # stochastic depth ramp
        self.layers = nn.ModuleList(RFDetrEncoderLayer(config, rate) for rate in rates)
        self.layernorm = nn.LayerNorm(config.backbone_hidden_size, eps=config.backbone_layer_norm_eps)
        # A tap `k` is the state after block k-1. The tapped block positions (0-based, as in the original) use
        # global attention; the others are windowed.
        self.global_attention_blocks = frozenset(config.out_feature_indexes)
        self.num_blocks_run = config.out_feature_indexes[-1]
        self.out_feature_indexes = tuple(config.out_feature_indexes)
        self.freeze_unused()

    def freeze_unused(self) -> None:
        """Freeze the parameters that never get a gradient, so that DistributedDataParallel sees no trainable
        parameter without one: the mask token and the blocks after the last tap (Base's block 11), both kept for
        checkpoint compatibility. Called at construction and again after loading weights (transformers 5 replaces the
        parameters it loads by trainable ones)."""
        self.embeddings.mask_token.requires_grad_(False)
        for layer in self.layers[self.num_blocks_run :]:
            layer.requires_grad_(False)

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        eager: bool = False,
    ) -> RFDetrBackboneOutput:
        """pixel_values (B, C, H, W) -> feature maps (and hidden states / attention weights when asked for).

        `eager` selects explicit attention instead of SDPA; `output_attentions` implies it.
        """
        height = pixel_values.shape[-2] // self.config.patch_size
        width = pixel_values.shape[-1] // self.config.patch_size
        hidden_states = self.embeddings(pixel_values)
        feature_maps, all_hidden_states, all_attentions = [], [hidden_states], []
        for index, layer in enumerate(self.layers[: self.num_blocks_run]):
            hidden_states, weights = layer(
                hidden_states, index in self.global_attention_blocks, eager or output_attentions
            )
            all_hidden_states.append(hidden_states)
            all_attentions.append(weights)
            if index + 1 in self.out_feature_indexes:
                feature_maps.append(self._to_feature_map(hidden_states, height, width))
        return RFDetrBackboneOutput(
            feature_maps,
            tuple(all_hidden_states) if output_hidden_states else None,
            tuple(all_attentions) if output_attentions else None,
        )

    def _to_feature_map(self, hidden_states: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Windowed tokens (B * nw**2, 1 + T, C) -> layer-normed patch features (B, C, height, width), channels-last
        strides (`window_unpartition`)."""
        patches = self.layernorm(hidden_states)[:, 1:]
        return window_unpartition(patches, height, width, self.config.num_windows)
