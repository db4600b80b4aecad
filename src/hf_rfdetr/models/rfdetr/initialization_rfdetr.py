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
"""The initialisation tags of RF-DETR's layers, read by `RFDetrPreTrainedModel._init_weights`.

A module that creates a Linear, Conv or grouped Linear layer whose initialisation differs from PyTorch's default sets
`layer.init_mode = RFDetrInit.<MODE>` on it; untagged layers get `RFDetrInit.TORCH_DEFAULT`. Each mode reproduces
what the original rfdetr 1.11.2 leaves on the corresponding layer of a freshly built model (checked per parameter
against the original by tests/test_initialization.py).
"""

from __future__ import annotations

from enum import Enum


class RFDetrInit(str, Enum):
    """How `_init_weights` initialises the weight and bias of a tagged Linear / Conv / `RFDetrGroupedLinear`.

    Bounds are those of the layer's own (out, in) matrix (per group for grouped layers); fan_in of a convolution is
    in_channels / groups * kernel area, as PyTorch computes it.
    """

    #: PyTorch's `reset_parameters`: weight and bias uniform in +-1 / sqrt(fan_in) (Kaiming-uniform with a = sqrt(5)).
    #: The original's projector, class and box heads, mask head.
    TORCH_DEFAULT = "torch_default"
    #: DINOv2 (transformers' `Dinov2PreTrainedModel._init_weights`): weight trunc-normal(0, config.init_std), zero bias.
    TRUNC_NORMAL = "trunc_normal"
    #: Xavier-uniform weight, PyTorch's default bias: the original's `Transformer._reset_parameters` re-initialises
    #: every matrix of the decoder and the two-stage projection, and leaves the biases.
    XAVIER = "xavier"
    #: Xavier-uniform weight, zero bias: the deformable attention's value / output projections (`MSDeformAttn`) and
    #: the self-attention's output projection (`nn.MultiheadAttention` zeroes its biases).
    XAVIER_ZERO_BIAS = "xavier_zero_bias"
    #: A slice of `nn.MultiheadAttention`'s packed (3 d, d) in-projection: Xavier-uniform over the packed matrix
    #: (bound sqrt(6 / (d + 3 d))), zero bias.
    PACKED_IN_PROJECTION = "packed_in_projection"
    #: Zero weight and bias: box-delta outputs, the deformable attention's weights.
    ZEROS = "zeros"
    #: PyTorch's default weight, bias at the focal prior -log((1 - p) / p), p = config.initializer_bias_prior_prob.
    PRIOR = "prior"
    #: Zero weight; bias: the deformable attention's initial sampling grid (each head its own direction).
    DEFORMABLE_OFFSETS = "deformable_offsets"
    #: A copy of group 0 of the `RFDetrGroupedLinear` named by the layer's `init_source` (a submodule path from the
    #: model whose `_init_weights` sees the layer, registered before it): the original builds its two-stage heads as
    #: copies of the decoder heads, one per group; here the decoder heads copy the (identical) groups.
    COPY = "copy"
