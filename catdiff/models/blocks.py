"""Building blocks of the DDPM UNet (Ho et al. 2020, appendix B); (B, C, H, W) in and out,
in either memory format (``channels_last`` stays ``channels_last``)."""

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) float32 of (B,) timesteps (Vaswani et al. 2017, as in DDPM):
    ``[sin(t * f_0..f_{h-1}), cos(t * f_0..f_{h-1})]``, ``f_i = max_period ** (-i / (h - 1))``,
    ``h = dim // 2``."""
    half = dim // 2
    # Always float32: sin/cos of t up to ~1000 need more mantissa than bf16 has.
    exponent = torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1)
    freqs = torch.exp(-math.log(max_period) * exponent)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ResBlock(nn.Module):
    """(GroupNorm, SiLU, conv3x3), + Linear(time embedding), (GroupNorm, SiLU, dropout, conv3x3),
    plus the skip path (a 1x1 conv when the channel count changes), as in DDPM."""

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
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


def low_precision_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for bf16/fp16 on CPU: matmuls in their dtype, softmax in fp32
    (bf16's 8-bit significand rounds a sum of exponentials coarsely). torch's CPU
    ``scaled_dot_product_attention`` has no fast bf16 path at these sizes."""
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))
    return torch.matmul(scores.float().softmax(dim=-1).to(v.dtype), v)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions, pre-GroupNorm, residual (as in DDPM),
    on (B, H*W, C) tokens (a free view of ``channels_last`` input)."""

    def __init__(self, channels: int, heads: int = 4, norm_groups: int = 8) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
