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
"""Stage 3: two-stage query selection and the LW-DETR decoder with multi-scale deformable cross-attention.

Shapes: memory (B, S, d_model) is the projector's maps flattened (S = sum of h_l * w_l); queries (B, Q, d_model)
with Q = num_queries (x group_detr while training); reference boxes (B, Q, 4) normalised cxcywh.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .backbone_rfdetr import multi_head_attention
from .configuration_rfdetr import RFDetrConfig
from .heads_rfdetr import RFDetrMLPHead
from .initialization_rfdetr import RFDetrInit


def box_sine_embedding(boxes: torch.Tensor, dim: int) -> torch.Tensor:
    """Sine embedding of (..., 4) cxcywh boxes in the order y, x, w, h: (..., 4 * dim), temperature 10000."""
    dim_t = torch.arange(dim, dtype=boxes.dtype, device=boxes.device)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / dim)
    coords = boxes[..., [1, 0, 2, 3]] * (2 * math.pi)
    angles = coords[..., None] / dim_t
    embedding = torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)
    return embedding.flatten(-2)


def encoder_proposals(
    memory: torch.Tensor, spatial_shapes: list[tuple[int, int]], padding_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor boxes for two-stage selection, one per memory position.

    Returns the memory with invalid positions zeroed (B, S, C) and proposals (B, S, 4) cxcywh: centres at the cell
    centres of each level (normalised by the valid, unpadded extent), sizes 0.05 * 2**level; proposals outside
    (0.01, 0.99) or on padding are invalid and zero.
    """
    batch_size = memory.shape[0]
    proposals, start = [], 0
    for level, (height, width) in enumerate(spatial_shapes):
        grid_y, grid_x = torch.meshgrid(
            torch.arange(height, dtype=torch.float32, device=memory.device),
            torch.arange(width, dtype=torch.float32, device=memory.device),
            indexing="ij",
        )
        grid = torch.stack((grid_x, grid_y), dim=-1)[None] + 0.5  # 1, h, w, 2
        if padding_mask is None:
            scale = torch.tensor([width, height], dtype=torch.float32, device=memory.device).reshape(1, 1, 1, 2)
        else:
            level_mask = padding_mask[:, start : start + height * width].reshape(batch_size, height, width)
            valid = torch.stack(((~level_mask[:, 0, :]).sum(1), (~level_mask[:, :, 0]).sum(1)), dim=-1)
            scale = valid.float().reshape(batch_size, 1, 1, 2)
        centers = (grid / scale).flatten(1, 2)
        sizes = torch.full_like(centers, 0.05 * 2.0**level)
        proposals.append(torch.cat((centers, sizes), dim=-1).expand(batch_size, -1, -1))
        start += height * width
    proposals = torch.cat(proposals, dim=1)
    invalid = ~((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
    if padding_mask is not None:
        invalid = invalid | padding_mask[..., None]
    return memory.masked_fill(invalid, 0.0), proposals.masked_fill(invalid, 0.0).to(memory.dtype)


class RFDetrMultiscaleDeformableAttention(nn.Module):
    """Multi-scale deformable attention with box references (Deformable DETR, LW-DETR variant).

    Each query samples `n_points` locations per head and level around its reference box
    (location = ref_cxcy + offset / n_points * ref_wh * 0.5) with bilinear `grid_sample`, and mixes them with softmax
    weights over levels x points.
    """

    def __init__(self, d_model: int, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.sampling_offsets.init_mode = RFDetrInit.DEFORMABLE_OFFSETS
        self.sampling_offsets.heads_levels_points = (n_heads, n_levels, n_points)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.attention_weights.init_mode = RFDetrInit.ZEROS
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.value_proj.init_mode = self.output_proj.init_mode = RFDetrInit.XAVIER_ZERO_BIAS

    def forward(
        self,
        query: torch.Tensor,
        reference_boxes: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
        padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, Q, C), reference_boxes (B, Q, 1 or n_levels, 4), memory (B, S, C) -> (B, Q, C) and the sampling
        weights (B, Q, heads, levels, points) (softmax over levels x points).

        The sampling (locations, weights, `grid_sample`, the weighted sum) runs in float32 (float64 in a float64
        model) whatever the model's dtype, as autocast runs it: bfloat16 would round the locations to 1/256 of the
        feature map, and PyTorch's bfloat16 / float16 `grid_sample` on the CPU returns NaN for some inputs. Float32
        models are unaffected."""
        batch_size, num_queries, _ = query.shape
        heads, levels, points = self.n_heads, self.n_levels, self.n_points
        head_dim = self.d_model // heads
        value = self.value_proj(memory)
        dtype, sampling = value.dtype, torch.promote_types(value.dtype, torch.float32)  # float32, or float64
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        # (B * heads, head_dim, S): one grid_sample batch entry per image and head.
        value = value.to(sampling).reshape(batch_size, -1, heads, head_dim).permute(0, 2, 3, 1).flatten(0, 1)

        offsets = self.sampling_offsets(query).to(sampling).view(batch_size, num_queries, heads, levels, points, 2)
        weights = self.attention_weights(query).to(sampling).view(batch_size, num_queries, heads, levels * points)
        weights = weights.softmax(-1)
        attention_weights = weights.view(batch_size, num_queries, heads, levels, points)
        boxes = reference_boxes.to(sampling)[:, :, None, :, None, :]
        locations = boxes[..., :2] + offsets / points * boxes[..., 2:] * 0.5
        # grid_sample wants (B * heads, Q, levels * points, 2) in [-1, 1].
        grids = (2 * locations - 1).permute(0, 2, 1, 3, 4, 5).flatten(0, 1)

        sampled, start = [], 0
        for level, (height, width) in enumerate(spatial_shapes):
            level_value = value[..., start : start + height * width].unflatten(-1, (height, width))
            sampled.append(
                F.grid_sample(
                    level_value, grids[:, :, level], mode="bilinear", padding_mode="zeros", align_corners=False
                )
            )
            start += height * width
        # (B * heads, head_dim, Q, levels * points)
        sampled = sampled[0] if levels == 1 else torch.cat(sampled, dim=-1)
        weights = weights.transpose(1, 2).flatten(0, 1)[:, None]  # (B * heads, 1, Q, levels * points)
        output = (sampled * weights).sum(-1)  # (B * heads, head_dim, Q)
        output = output.reshape(batch_size, heads * head_dim, num_queries).transpose(1, 2).to(dtype)
        return self.output_proj(output), attention_weights.to(dtype)


class RFDetrGroupSelfAttention(nn.Module):
    """Self-attention among queries of the same Group DETR group (q = k = tgt + pos, v = tgt), via SDPA or, when
    `eager`, explicitly with the weights returned (see `multi_head_attention`)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.qk_proj = nn.Linear(d_model, 2 * d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        # The original's `nn.MultiheadAttention`: qk_proj and v_proj are slices of its packed in-projection.
        self.qk_proj.init_mode = self.v_proj.init_mode = RFDetrInit.PACKED_IN_PROJECTION
        self.out_proj.init_mode = RFDetrInit.XAVIER_ZERO_BIAS

    def forward(
        self, hidden_states: torch.Tensor, position: torch.Tensor, num_groups: int, eager: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states, position (B, G * Q, C) -> (B, G * Q, C); attention never crosses groups. The weights
        (B * G, heads, Q, Q) come back when `eager` (G = 1 at inference), else None."""
        batch_size, length, channels = hidden_states.shape
        head_dim = channels // self.num_heads
        grouped = (batch_size * num_groups, length // num_groups, self.num_heads, head_dim)
        query, key = self.qk_proj(hidden_states + position).reshape(*grouped[:2], 2, *grouped[2:]).unbind(2)
        value = self.v_proj(hidden_states).reshape(grouped)
        attended, weights = multi_head_attention(
            query.transpose(1, 2),
            key.transpose(1, 2),
            value.transpose(1, 2),
            eager,
            dropout=self.dropout if self.training else 0.0,
        )
        return self.out_proj(attended.transpose(1, 2).reshape(batch_size, length, channels)), weights


class RFDetrDecoderLayer(nn.Module):
    """Post-norm decoder layer: group self-attention, deformable cross-attention, feed-forward."""

    def __init__(self, config: RFDetrConfig) -> None:
        super().__init__()
        d_model, eps = config.d_model, config.layer_norm_eps
        self.dropout = config.dropout
        self.self_attn = RFDetrGroupSelfAttention(d_model, config.decoder_self_attention_heads, config.dropout)
        self.self_attn_norm = nn.LayerNorm(d_model, eps=eps)
        self.cross_attn = RFDetrMultiscaleDeformableAttention(
            d_model, config.num_feature_levels, config.decoder_cross_attention_heads, config.decoder_n_points
        )
        self.cross_attn_norm = nn.LayerNorm(d_model, eps=eps)
        self.fc1 = nn.Linear(d_model, config.decoder_ffn_dim)
        self.activation = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu}[config.decoder_activation_function]
        self.fc2 = nn.Linear(config.decoder_ffn_dim, d_model)
        self.fc1.init_mode = self.fc2.init_mode = RFDetrInit.XAVIER
        self.ffn_norm = nn.LayerNorm(d_model, eps=eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        query_pos: torch.Tensor,
        reference_boxes: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
        padding_mask: torch.Tensor | None,
        num_groups: int,
        eager: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(B, Q, C) -> (B, Q, C), the self-attention weights (when `eager`) and the cross-attention sampling
        weights (B, Q, heads, levels, points)."""
        attended, self_weights = self.self_attn(hidden_states, query_pos, num_groups, eager)
        hidden_states = self.self_attn_norm(hidden_states + self._dropout(attended))
        attended, cross_weights = self.cross_attn(
            hidden_states + query_pos, reference_boxes, memory, spatial_shapes, padding_mask
        )
        hidden_states = self.cross_attn_norm(hidden_states + self._dropout(attended))
        feed_forward = self.fc2(self._dropout(self.activation(self.fc1(hidden_states))))
        return self.ffn_norm(hidden_states + self._dropout(feed_forward)), self_weights, cross_weights

    def _dropout(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.dropout(hidden_states, self.dropout, self.training)


class RFDetrDecoderOutput(NamedTuple):
    """What [`RFDetrDecoder`] returns.

    intermediate: (L, B, Q, C) every layer's normed output.
    hidden_states: with `output_hidden_states`, the queries and every layer's (un-normed) output, L + 1 of
        (B, Q, C); else None.
    attentions: with `output_attentions`, every layer's self-attention weights (B * G, heads, Q / G, Q / G); else None.
    cross_attentions: with `output_attentions`, every layer's deformable sampling weights (B, Q, heads, levels,
        points); else None.
    """

    intermediate: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None


class RFDetrDecoder(nn.Module):
    """The decoder stack with lite reference refinement: the query position embedding is computed once from the
    reference boxes, which stay fixed across layers. Returns every layer's normed output (L, B, Q, C), and the
    hidden states and attention weights when asked for (see `RFDetrDecoderOutput`)."""

    def __init__(self, config: RFDetrConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(RFDetrDecoderLayer(config) for _ in range(config.decoder_layers))
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ref_point_head = RFDetrMLPHead(
            2 * config.d_model, config.d_model, config.d_model, 2, init_mode=RFDetrInit.XAVIER
        )
        self.sine_dim = config.d_model // 2

    def forward(
        self,
        queries: torch.Tensor,
        reference_boxes: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
        padding_mask: torch.Tensor | None,
        num_groups: int,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        eager: bool = False,
    ) -> RFDetrDecoderOutput:
        """queries (B, Q, C), reference_boxes (B, Q, levels, 4) scaled to the valid extent -> (L, B, Q, C), and the
        hidden states / attention weights when asked for. `eager` selects explicit self-attention instead of SDPA;
        `output_attentions` implies it."""
        query_pos = self.ref_point_head(box_sine_embedding(reference_boxes[:, :, 0], self.sine_dim))
        hidden_states, intermediate = queries, []
        all_hidden_states, self_attentions, cross_attentions = [queries], [], []
        for layer in self.layers:
            hidden_states, self_weights, cross_weights = layer(
                hidden_states,
                query_pos,
                reference_boxes,
                memory,
                spatial_shapes,
                padding_mask,
                num_groups,
                eager or output_attentions,
            )
            intermediate.append(self.norm(hidden_states))
            all_hidden_states.append(hidden_states)
            self_attentions.append(self_weights)
            cross_attentions.append(cross_weights)
        return RFDetrDecoderOutput(
            torch.stack(intermediate),
            tuple(all_hidden_states) if output_hidden_states else None,
            tuple(self_attentions) if output_attentions else None,
            tuple(cross_attentions) if output_attentions else None,
        )
