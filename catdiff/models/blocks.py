"""Building blocks of the DDPM UNet (Ho et al. 2020, appendix B; their PixelCNN++-style backbone).

Every block takes and returns (B, C, H, W) tensors and is indifferent to the memory format:
feed it ``channels_last`` tensors and they stay ``channels_last`` (no hidden layout copies).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps (Vaswani et al. 2017, as in DDPM).

    Args:
        t: (B,) timesteps, integer or float.
        dim: embedding width (even).
        max_period: the longest wavelength, 10000 as in the Transformer.

    Returns:
        (B, dim) float32 tensor ``[sin(t * f_0..f_{h-1}), cos(t * f_0..f_{h-1})]`` with
        ``f_i = max_period ** (-i / (h - 1))``, ``h = dim // 2`` (DDPM's ``get_timestep_embedding``).
    """
    half = dim // 2
    # Always float32: sin/cos of t up to ~1000 need more mantissa than bf16 has.
    exponent = torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1)
    freqs = torch.exp(-math.log(max_period) * exponent)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ResBlock(nn.Module):
    """Residual block: (GroupNorm, SiLU, conv3x3), + time embedding, (GroupNorm, SiLU, dropout, conv3x3).

    The time embedding (already passed through SiLU by the caller, shared by all blocks) is
    projected by a Linear to ``out_channels`` and added after the first conv, as in DDPM. A 1x1
    conv maps the skip path when the channel count changes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        dropout: float = 0.0,
        norm_groups: int = 8,
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_channels, out_channels)
        self.norm2 = nn.GroupNorm(norm_groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, H, W); emb: (B, emb_channels) after SiLU. Returns (B, C_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


def low_precision_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for bf16/fp16 q, k, v on CPU: matmuls in their dtype, softmax in fp32.

    torch 2.14's CPU ``scaled_dot_product_attention`` has no fast bf16 path at these sizes (a
    few heads over 7 x 7 = 49 positions), and casting q, k, v to fp32 around it costs copies.
    Two batched matmuls in bf16 use the fast bf16 matmul kernels; the softmax (exponentials and
    a sum over the positions, which bf16's 8-bit significand would round coarsely) runs in
    fp32, as autocast runs it. The timings are in the
    README's Speed section ("bf16 attention on CPU").
    """
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))
    return torch.matmul(scores.float().softmax(dim=-1).to(v.dtype), v)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions, pre-GroupNorm, residual (as in DDPM).

    Works on (B, H*W, C) tokens: for ``channels_last`` input that view is free, and the two
    Linears are single matmuls over all positions; attention itself is
    ``F.scaled_dot_product_attention`` (a fused kernel), except in bf16 on CPU, where
    :func:`low_precision_attention` is faster.
    """

    def __init__(self, channels: int, heads: int = 4, norm_groups: int = 8) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        qkv = self.qkv(tokens).unflatten(-1, (3, self.heads, c // self.heads))
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, HW, C/heads)
        if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
            out = low_precision_attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = self.proj(out.transpose(1, 2).flatten(2))  # (B, HW, C)
        # (B, C, H, W) view with channels_last strides; adds fine to either layout of x.
        return x + out.transpose(1, 2).unflatten(2, (h, w))


class Downsample(nn.Module):
    """Halve H and W with a stride-2 conv3x3 (DDPM's ``resamp_with_conv``); 28 -> 14 -> 7."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling, then conv3x3 (avoids checkerboard artefacts)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
