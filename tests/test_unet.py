"""UNet and its blocks: shapes, t-dependence, config errors, gradients, size, bf16, layout."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from catdiff.errors import UserError
from catdiff.models import UNet, count_parameters
from catdiff.models.blocks import SelfAttention, low_precision_attention, timestep_embedding

torch.set_num_threads(2)  # the machine has 2 cores shared by several people


def tiny_unet(**overrides) -> UNet:
    """A few-thousand-parameter UNet with the default structure (3 levels, attention at 2)."""
    kwargs = dict(base_channels=8, num_res_blocks=1, norm_groups=4, attention_heads=2)
    kwargs.update(overrides)
    torch.manual_seed(0)
    return UNet(**kwargs)


def unzero_output(model: UNet) -> UNet:
    """Undo the zero-init of the last conv, which makes every output exactly 0 at init."""
    torch.manual_seed(1)
    nn.init.normal_(model.conv_out.weight, std=0.1)
    nn.init.normal_(model.conv_out.bias, std=0.1)
    return model


@pytest.mark.parametrize("image_size", [28, 32, 64])
@pytest.mark.parametrize("in_channels", [1, 2])
def test_output_shape(image_size: int, in_channels: int) -> None:
    model = tiny_unet(image_size=image_size, in_channels=in_channels)
    x = torch.randn(2, in_channels, image_size, image_size)
    out = model(x, torch.tensor([0, 999]))
    assert out.shape == (2, in_channels, image_size, image_size)
    assert out.dtype == torch.float32


def test_out_channels_can_differ_from_in_channels() -> None:
    model = tiny_unet(in_channels=2, out_channels=3)
    assert model(torch.randn(2, 2, 28, 28), 5).shape == (2, 3, 28, 28)


def test_output_is_zero_at_init() -> None:
    model = tiny_unet()
    out = model(torch.randn(2, 1, 28, 28), torch.tensor([3, 700]))
    assert torch.count_nonzero(out) == 0


def test_output_depends_on_t() -> None:
    model = unzero_output(tiny_unet()).eval()
    x = torch.randn(1, 1, 28, 28).expand(2, -1, -1, -1)
    out = model(x, torch.tensor([10, 500]))
    assert not torch.allclose(out[0], out[1], atol=1e-4)
    # Same t for both copies of x gives the same output.
    same = model(x, torch.tensor([10, 10]))
    torch.testing.assert_close(same[0], same[1])


def test_scalar_and_float_t_match_batched_long_t() -> None:
    model = unzero_output(tiny_unet()).eval()
    x = torch.randn(3, 1, 28, 28)
    expected = model(x, torch.full((3,), 42, dtype=torch.long))
    torch.testing.assert_close(model(x, 42), expected)
    torch.testing.assert_close(model(x, torch.tensor(42.0)), expected)
    with pytest.raises(ValueError, match="t must be"):
        model(x, torch.tensor([1, 2]))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (dict(image_size=30), "model.image_size"),
        (dict(image_size=28, channel_mults=(1, 2, 2, 2)), "model.image_size"),
        (dict(norm_groups=3), "model.norm_groups"),
        (dict(attention_levels=(3,)), "model.attention_levels"),
        (dict(attention_levels=(-1,)), "model.attention_levels"),
        (dict(attention_heads=3), "model.attention_heads"),
        (dict(channel_mults=()), "model.channel_mults"),
        (dict(num_res_blocks=0), "model.num_res_blocks"),
    ],
)
def test_bad_config_raises_one_line_user_error(overrides: dict, key: str) -> None:
    with pytest.raises(UserError) as info:
        tiny_unet(**overrides)
    message = str(info.value)
    assert key in message
    assert "\n" not in message


def test_image_size_error_names_sizes_that_work() -> None:
    with pytest.raises(UserError, match=r"2\*\*\(levels-1\)=4 .* use 28, 32 or 64"):
        tiny_unet(image_size=30)


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (2, 1, 28, 32), (2, 2, 28, 28), (1, 28, 28)])
def test_wrong_input_shape_raises_user_error(shape: tuple[int, ...]) -> None:
    model = tiny_unet()
    with pytest.raises(UserError, match="model.image_size") as info:
        model(torch.randn(shape), 0)
    assert "\n" not in str(info.value)


def test_gradients_reach_every_parameter() -> None:
    model = unzero_output(tiny_unet())
    x = torch.randn(2, 1, 28, 28)
    model(x, torch.tensor([1, 900])).square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert no_grad == []


def test_default_config_size() -> None:
    # Same architecture as diffusers' UNet2DModel (32, 64, 64), 2 layers/block, attention at
    # 7x7: 1.62M parameters.
    assert 1_200_000 <= count_parameters(UNet()) <= 2_000_000


def test_count_parameters() -> None:
    assert count_parameters(nn.Linear(3, 2)) == 8


def test_bf16_autocast_close_to_fp32_and_trains() -> None:
    model = unzero_output(tiny_unet())
    x = torch.randn(2, 1, 28, 28)
    t = torch.tensor([5, 600])
    reference = model(x, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.05)
    out.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())
    # A model cast to bf16 outright (no autocast) runs too, e.g. for cheap sampling.
    out = model.to(torch.bfloat16)(x.to(torch.bfloat16), t)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.1)


def test_channels_last_matches_and_stays_channels_last() -> None:
    model = unzero_output(tiny_unet(in_channels=2)).eval()
    x = torch.randn(2, 2, 28, 28)
    t = torch.tensor([5, 600])
    reference = model(x, t)
    model = model.to(memory_format=torch.channels_last)
    not_channels_last = []

    def check_layout(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if not inputs[0].is_contiguous(memory_format=torch.channels_last):
            not_channels_last.append(module)

    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.GroupNorm):
            module.register_forward_pre_hook(check_layout)
    out = model(x.to(memory_format=torch.channels_last), t)
    assert not_channels_last == []  # no hidden layout copies inside
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-4)


def test_timestep_embedding_closed_form() -> None:
    t = torch.tensor([0, 1, 250])
    emb = timestep_embedding(t, 8)
    assert emb.shape == (3, 8)
    freqs = [10000.0 ** (-i / 3) for i in range(4)]  # f_i = 10000^(-i/(half-1))
    expected = [[math.sin(s * f) for f in freqs] + [math.cos(s * f) for f in freqs] for s in t]
    torch.testing.assert_close(emb, torch.tensor(expected))


def test_self_attention_matches_torch_multihead_attention() -> None:
    torch.manual_seed(0)
    attn = SelfAttention(channels=16, heads=4, norm_groups=4).eval()
    mha = nn.MultiheadAttention(16, num_heads=4, batch_first=True).eval()
    with torch.no_grad():  # both stack the q, k, v projections in this order
        mha.in_proj_weight.copy_(attn.qkv.weight)
        mha.in_proj_bias.copy_(attn.qkv.bias)
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
    x = torch.randn(2, 16, 5, 3)
    tokens = attn.norm(x).flatten(2).transpose(1, 2)
    expected = x + mha(tokens, tokens, tokens, need_weights=False)[0].transpose(1, 2).reshape(
        x.shape
    )
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["autocast", "cast"])
def test_self_attention_in_bf16_on_cpu_matches_fp32(mode: str) -> None:
    """bf16 on CPU takes low_precision_attention (explicit matmuls, fp32 softmax): under
    autocast (training) and with the weights cast (bf16 sampling) it must agree with the fp32
    fused kernel to bf16 accuracy, and its gradients must flow."""
    torch.manual_seed(0)
    attn = SelfAttention(channels=16, heads=4, norm_groups=4)
    x = torch.randn(3, 16, 7, 7, requires_grad=True)
    expected = attn(x)
    if mode == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = attn(x)
    else:
        out = copy.deepcopy(attn).to(torch.bfloat16)(x.bfloat16())
    # autocast adds the bf16 attention onto the fp32 input: the residual sum is fp32
    assert out.dtype == (torch.float32 if mode == "autocast" else torch.bfloat16)
    torch.testing.assert_close(out.float(), expected, atol=0.05, rtol=0.02)
    out.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_low_precision_attention_is_attention() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 8) for _ in range(3))
    expected = F.scaled_dot_product_attention(q, k, v)
    got = low_precision_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, atol=0.03, rtol=0.02)
