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
"""Stage 4: the prediction heads. Box and class heads on the decoder's queries, the per-group two-stage heads
that Group DETR batches through grouped weights, and the mask head of the segmentation variants.

Shapes: hidden states (..., d_model) -> class logits (..., num_labels) or box deltas (..., 4); grouped layers take a
leading group dimension (G, ..., C). Boxes are normalised cxcywh, refined from a reference box by `apply_box_delta`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .initialization_rfdetr import RFDetrInit


class RFDetrMLPHead(nn.Module):
    """A stack of Linear layers with ReLU between them: (..., input_dim) -> (..., output_dim)."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        zero_init_output: bool = False,
        init_mode: RFDetrInit = RFDetrInit.TORCH_DEFAULT,
    ) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(d_in, d_out) for d_in, d_out in zip(dims[:-1], dims[1:]))
        for layer in self.layers:
            layer.init_mode = init_mode
        if zero_init_output:  # box heads start at the reference box (zero delta)
            self.layers[-1].init_mode = RFDetrInit.ZEROS

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            hidden_states = F.relu(layer(hidden_states))
        return self.layers[-1](hidden_states)


class RFDetrGroupedLinear(nn.Module):
    """`num_groups` independent Linear layers applied in one batched matmul: (G, ..., in) -> (G, ..., out).

    Group DETR gives every query group its own two-stage heads; at inference only group 0 runs.
    """

    def __init__(
        self,
        num_groups: int,
        in_features: int,
        out_features: int,
        init_mode: RFDetrInit = RFDetrInit.TORCH_DEFAULT,
        identical_groups: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_groups, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(num_groups, out_features))
        #: How `_init_weights` draws group 0 (and every group, unless `identical_groups`).
        self.init_mode = init_mode
        #: Every group starts as a copy of group 0 (the original deep-copies one head per group).
        self.identical_groups = identical_groups

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        groups = hidden_states.shape[0]
        if groups == 1:  # inference: exactly `nn.Linear` on group 0
            return F.linear(hidden_states, self.weight[0], self.bias[0])
        flat = hidden_states.reshape(groups, -1, hidden_states.shape[-1])
        out = torch.baddbmm(self.bias[:groups, None], flat, self.weight[:groups].transpose(1, 2))
        return out.reshape(*hidden_states.shape[:-1], out.shape[-1])


class RFDetrGroupedLayerNorm(nn.Module):
    """`num_groups` LayerNorms sharing the normalisation pass: (G, ..., C) -> (G, ..., C)."""

    def __init__(self, num_groups: int, channels: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_groups, channels))
        self.bias = nn.Parameter(torch.zeros(num_groups, channels))
        self.eps = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        groups = hidden_states.shape[0]
        if groups == 1:  # inference: exactly `nn.LayerNorm` on group 0
            return F.layer_norm(hidden_states, self.weight.shape[-1:], self.weight[0], self.bias[0], self.eps)
        shape = (groups,) + (1,) * (hidden_states.ndim - 2) + (hidden_states.shape[-1],)
        normed = F.layer_norm(hidden_states, self.weight.shape[-1:], eps=self.eps)
        return normed * self.weight[:groups].reshape(shape) + self.bias[:groups].reshape(shape)


class RFDetrGroupedMLPHead(nn.Module):
    """Per-group MLP heads (ReLU between layers), batched over the leading group dimension."""

    def __init__(
        self,
        num_groups: int,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        identical_groups: bool = False,
    ) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(
            RFDetrGroupedLinear(num_groups, d_in, d_out, identical_groups=identical_groups)
            for d_in, d_out in zip(dims[:-1], dims[1:])
        )
        self.layers[-1].init_mode = RFDetrInit.ZEROS  # box heads start at the proposal (zero delta)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            hidden_states = F.relu(layer(hidden_states))
        return self.layers[-1](hidden_states)


def apply_box_delta(delta: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Box reparameterisation: cxcy = d_xy * ref_wh + ref_cxcy, wh = exp(d_wh) * ref_wh. (..., 4) -> (..., 4)."""
    center = delta[..., :2] * reference[..., 2:] + reference[..., :2]
    size = delta[..., 2:].exp() * reference[..., 2:]
    return torch.cat((center, size), dim=-1)


class RFDetrMaskFactors(NamedTuple):
    """Per-query mask logits in factored form, as the segmentation head produces them for training.

    logits[b, q] = sum_c spatial_features[b, c] * query_features[b, q, c] + bias: the matcher and the losses evaluate
    this only at sampled points of matched queries, so the dense (B, Q, h, w) logits of all Group DETR queries are never
    materialised.
    """

    spatial_features: torch.Tensor  # (B, C, h, w), h, w = input size // mask_downsample_ratio
    query_features: torch.Tensor  # (B, Q, C)
    bias: torch.Tensor  # (1,)

    def dense(self) -> torch.Tensor:
        """The mask logits (B, Q, h, w)."""
        return torch.einsum("bchw,bqc->bqhw", self.spatial_features, self.query_features) + self.bias


class RFDetrDepthwiseConvBlock(nn.Module):
    """A ConvNeXt block without its second linear layer: depthwise 3x3 conv -> LayerNorm (eps 1e-6) -> Linear ->
    GELU, plus the input. (B, C, h, w) -> (B, C, h, w). The original's `DepthwiseConvBlock`, with its weight names."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        update = self.dwconv(hidden_states).permute(0, 2, 3, 1)  # (B, h, w, C)
        update = F.gelu(self.pwconv1(self.norm(update)))
        return hidden_states + update.permute(0, 3, 1, 2)


class RFDetrQueryMLPBlock(nn.Module):
    """Pre-norm residual MLP on the query features: x + Linear(GELU(Linear(LayerNorm(x)))), hidden 4 * dim, the
    LayerNorm at PyTorch's default eps 1e-5. (..., C) -> (..., C). The original's `MLPBlock`, with its weight names."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.layers = nn.ModuleList([nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim)])

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        update = self.norm_in(hidden_states)
        for layer in self.layers:
            update = layer(update)
        return hidden_states + update


class RFDetrSegmentationHead(nn.Module):
    """The mask head of the RF-DETR Seg variants (the original's `SegmentationHead`, same weight names).

    The projector's first level map (B, C, H / p, W / p) is upsampled bilinearly to (h, w) = (H // r, W // r), r =
    `mask_downsample_ratio`, then refined by one depthwise-conv block per decoder layer, applied cumulatively: the
    masks of decoder layer i use the map after blocks 0..i. Each layer's queries go through a residual MLP; a mask
    logit is the dot product of the projected pixel and query features plus one learned scalar `bias`. The two-stage
    proposals use the upsampled map without any block (but with `spatial_features_proj`, as the original).
    """

    def __init__(self, dim: int, num_blocks: int, downsample_ratio: int) -> None:
        super().__init__()
        self.downsample_ratio = downsample_ratio
        self.blocks = nn.ModuleList(RFDetrDepthwiseConvBlock(dim) for _ in range(num_blocks))
        self.spatial_features_proj = nn.Conv2d(dim, dim, kernel_size=1)
        self.query_features_block = RFDetrQueryMLPBlock(dim)
        self.query_features_proj = nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(
        self,
        spatial_features: torch.Tensor,
        query_features: torch.Tensor,
        image_size: tuple[int, int],
        all_layers: bool = True,
        skip_blocks: bool = False,
    ) -> list[RFDetrMaskFactors]:
        """Factored mask logits.

        Args:
            spatial_features: (B, C, H / p, W / p) the projector's first level map.
            query_features: (L', B, Q, C) the query features of the layers to predict masks for: every decoder layer
                (L' = number of blocks) with `all_layers`, else only the last one (L' = 1, after all blocks);
                with `skip_blocks` the two-stage proposals (L' = 1, no block).
            image_size: (H, W) of the network input; masks are (H // r, W // r).

        Returns:
            one `RFDetrMaskFactors` per entry of `query_features`.
        """
        size = (image_size[0] // self.downsample_ratio, image_size[1] // self.downsample_ratio)
        spatial = F.interpolate(spatial_features, size=size, mode="bilinear", align_corners=False)
        maps = [spatial]
        if not skip_blocks:
            maps = []
            for block in self.blocks:
                spatial = block(spatial)
                maps.append(spatial)
            if not all_layers:
                maps = maps[-1:]
        if len(maps) != len(query_features):
            raise ValueError(
                f"the mask head got query features of {len(query_features)} decoder layers for {len(maps)} spatial "
                f"maps ({len(self.blocks)} blocks, all_layers={all_layers}, skip_blocks={skip_blocks})"
            )
        queries = self.query_features_proj(self.query_features_block(query_features))
        return [RFDetrMaskFactors(self.spatial_features_proj(m), q, self.bias) for m, q in zip(maps, queries)]
