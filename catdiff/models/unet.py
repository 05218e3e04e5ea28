"""The DDPM noise-prediction UNet (Ho et al. 2020), sized for small grayscale images.

Layout for the defaults (28 px, ``channel_mults=(1, 2, 2)``, two ResBlocks per level)::

    conv_in 32 @28 -> [Res 32, Res 32] @28 -> down -> [Res 64, Res 64] @14 -> down
      -> [Res+Attn 64, Res+Attn 64] @7 -> middle: Res, Attn, Res @7
      -> [3 x Res+Attn 64] @7 -> up -> [3 x Res 64] @14 -> up -> [3 x Res 32] @28 -> conv_out

Every encoder output (conv_in, each ResBlock, each downsample) is concatenated onto the input of
one decoder ResBlock, so each decoder level has ``num_res_blocks + 1`` blocks, as in DDPM.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from catdiff.errors import UserError
from catdiff.models.blocks import (
    Downsample,
    ResBlock,
    SelfAttention,
    Upsample,
    timestep_embedding,
)

_COMMON_SIZES = (28, 32, 64)


def count_parameters(model: nn.Module) -> int:
    """Number of (distinct) parameters of ``model``, trainable or not."""
    return sum(p.numel() for p in model.parameters())


class ResAttn(nn.Module):
    """A ResBlock, optionally followed by self-attention (at the levels in ``attention_levels``)."""

    def __init__(self, res: ResBlock, attn: SelfAttention | None = None) -> None:
        super().__init__()
        self.res = res
        self.attn = attn

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.res(x, emb)
        return x if self.attn is None else self.attn(x)


class UNet(nn.Module):
    """Predicts the noise eps (or whatever the diffusion targets) from a noisy image and t.

    Level i works at ``base_channels * channel_mults[i]`` channels and ``image_size / 2**i``
    pixels; ``attention_levels`` (0 = full resolution) get self-attention after each ResBlock
    (the middle always does); the time embedding MLP is ``4 * base_channels`` wide, as in DDPM.
    ``out_channels`` None means ``in_channels``.
    """

    def __init__(
        self,
        image_size: int = 28,
        in_channels: int = 1,
        out_channels: int | None = None,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_levels: Sequence[int] = (2,),
        attention_heads: int = 4,
        dropout: float = 0.0,
        norm_groups: int = 8,
    ) -> None:
        super().__init__()
        channel_mults = tuple(channel_mults)
        attention_levels = tuple(attention_levels)
        _check_config(
            image_size,
            in_channels,
            base_channels,
            channel_mults,
            num_res_blocks,
            attention_levels,
            attention_heads,
            dropout,
            norm_groups,
        )
        self.image_size = image_size
        self.in_channels = in_channels
        self.out_channels = in_channels if out_channels is None else out_channels
        self.base_channels = base_channels
        emb_channels = 4 * base_channels
        levels = len(channel_mults)

        def res_attn(c_in: int, c_out: int, level: int) -> ResAttn:
            res = ResBlock(c_in, c_out, emb_channels, dropout, norm_groups)
            use_attn = level in attention_levels
            attn = SelfAttention(c_out, attention_heads, norm_groups) if use_attn else None
            return ResAttn(res, attn)

        self.time_mlp = nn.Sequential(
            nn.Linear(base_channels, emb_channels),
            nn.SiLU(),
            nn.Linear(emb_channels, emb_channels),
        )
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        self.down = nn.ModuleList()
        skip_channels = [base_channels]
        c = base_channels
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(res_attn(c, base_channels * mult, level))
                c = base_channels * mult
                skip_channels.append(c)
            if level != levels - 1:
                self.down.append(Downsample(c))
                skip_channels.append(c)

        self.mid_res1 = ResBlock(c, c, emb_channels, dropout, norm_groups)
        self.mid_attn = SelfAttention(c, attention_heads, norm_groups)
        self.mid_res2 = ResBlock(c, c, emb_channels, dropout, norm_groups)

        # Decoder: consumes the skips last-in first-out.
        self.up = nn.ModuleList()
        for level in reversed(range(levels)):
            for _ in range(num_res_blocks + 1):
                c_out = base_channels * channel_mults[level]
                self.up.append(res_attn(c + skip_channels.pop(), c_out, level))
                c = c_out
            if level != 0:
                self.up.append(Upsample(c))

        self.norm_out = nn.GroupNorm(norm_groups, c)
        self.conv_out = nn.Conv2d(c, self.out_channels, 3, padding=1)
        # Zero-init the last conv, as DDPM: the net starts by predicting 0.
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """x: (B, in_channels, S, S), t: (B,) or scalar -> (B, out_channels, S, S)."""
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            raise UserError(
                f"UNet got input of shape {tuple(x.shape)} but expects "
                f"(B, {self.in_channels}, {self.image_size}, {self.image_size}); "
                "set model.image_size and model.in_channels to match the data"
            )
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        elif t.shape != (x.shape[0],):
            raise ValueError(
                f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}"
            )
        emb = timestep_embedding(t, self.base_channels).to(x.dtype)
        emb = F.silu(self.time_mlp(emb))  # once here, not in every ResBlock's projection

        h = self.conv_in(x)
        skips = [h]
        for block in self.down:
            h = block(h) if isinstance(block, Downsample) else block(h, emb)
            skips.append(h)

        h = self.mid_res2(self.mid_attn(self.mid_res1(h, emb)), emb)

        for block in self.up:
            if isinstance(block, Upsample):
                h = block(h)
            else:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)

        return self.conv_out(F.silu(self.norm_out(h)))


def _check_config(
    image_size: int,
    in_channels: int,
    base_channels: int,
    channel_mults: tuple[int, ...],
    num_res_blocks: int,
    attention_levels: tuple[int, ...],
    attention_heads: int,
    dropout: float,
    norm_groups: int,
) -> None:
    """Raise a one-line UserError naming the ``model.*`` key of the first bad value."""
    if in_channels < 1:
        raise UserError(f"model.in_channels={in_channels} must be at least 1")
    if base_channels < 1:
        raise UserError(f"model.base_channels={base_channels} must be at least 1")
    if not channel_mults or any(m < 1 for m in channel_mults):
        raise UserError(
            f"model.channel_mults={list(channel_mults)} must be a non-empty list of positive ints"
        )
    if num_res_blocks < 1:
        raise UserError(f"model.num_res_blocks={num_res_blocks} must be at least 1")
    if not 0.0 <= dropout < 1.0:
        raise UserError(f"model.dropout={dropout} must be in [0, 1)")
    levels = len(channel_mults)
    factor = 2 ** (levels - 1)
    if image_size < factor or image_size % factor:
        fits = [s for s in _COMMON_SIZES if s % factor == 0]
        sizes = ", ".join(map(str, fits[:-1])) + f" or {fits[-1]}" if len(fits) > 1 else ""
        hint = f"use {sizes}" if sizes else f"use a multiple of {factor}"
        raise UserError(
            f"model.image_size={image_size} must be divisible by 2**(levels-1)={factor} for "
            f"model.channel_mults with {levels} levels; {hint}, or change model.channel_mults"
        )
    widths = [base_channels] + [base_channels * m for m in channel_mults]
    if norm_groups < 1 or any(w % norm_groups for w in widths):
        raise UserError(
            f"model.norm_groups={norm_groups} must divide every level's channel count {widths} "
            "(model.base_channels * model.channel_mults); change one of them"
        )
    bad = [i for i in attention_levels if not 0 <= i < levels]
    if bad:
        raise UserError(
            f"model.attention_levels={list(attention_levels)} has indices {bad} outside "
            f"0..{levels - 1} (one per entry of model.channel_mults)"
        )
    attn_widths = [base_channels * channel_mults[i] for i in attention_levels]
    attn_widths.append(base_channels * channel_mults[-1])  # the middle block
    if attention_heads < 1 or any(w % attention_heads for w in attn_widths):
        raise UserError(
            f"model.attention_heads={attention_heads} must divide the channel count of every "
            f"attention layer {sorted(set(attn_widths))}; change model.attention_heads"
        )
