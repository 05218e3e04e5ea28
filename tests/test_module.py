"""DiffusionModule in-process: NaN guard, checkpoints that sampling can read, EMA in state."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from catdiff.data import synthetic_cats
from catdiff.diffusion import DDIMSampler, GaussianDiffusion, make_betas
from catdiff.lightning import DiffusionModule, NonFiniteLossError
from catdiff.lightning.callbacks import LastCheckpoint
from catdiff.models import UNet


class PoisonedAfter(torch.nn.Module):
    """A UNet whose output turns NaN from its ``after``-th training call on."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.net = UNet(
            base_channels=8,
            channel_mults=(1, 2),
            num_res_blocks=1,
            attention_levels=(),
            norm_groups=4,
        )
        self.after, self.calls = after, 0

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.net(x, t)
        if self.training:
            self.calls += 1
            if self.calls >= self.after:
                return out * float("nan")
        return out


def make_module(model: torch.nn.Module, **options) -> DiffusionModule:
    return DiffusionModule(
        model=model,
        diffusion=GaussianDiffusion(make_betas("linear", 20)),
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
        sampler=DDIMSampler(steps=3),
        run_config={"note": "test"},
        **options,
    )


def tiny_unet(attention_levels: tuple[int, ...] = ()) -> UNet:
    """The same few-thousand-parameter UNet on every call (seeded)."""
    torch.manual_seed(0)
    return UNet(
        base_channels=8,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_levels=attention_levels,
        norm_groups=4,
    )


def loader(n: int = 64, batch: int = 8) -> torch.utils.data.DataLoader:
    images = synthetic_cats(n, 28, seed=0).float() / 127.5 - 1
    return torch.utils.data.DataLoader(images, batch_size=batch)


def fit(module: DiffusionModule, tmp_path: Path, max_steps: int) -> Path:
    ckpt_dir = tmp_path / "checkpoints"
    trainer = L.Trainer(
        max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[ModelCheckpoint(dirpath=ckpt_dir, save_last=True, every_n_train_steps=3), LastCheckpoint(ckpt_dir)],
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=loader())
    return ckpt_dir / "last.ckpt"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    module = make_module(PoisonedAfter(after=8))  # steps 1-7 fine, step 8 NaN
    with pytest.raises(NonFiniteLossError, match="step 7"):
        fit(module, tmp_path, max_steps=20)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 6  # the last periodic save before the NaN, not overwritten
    weights = [v for v in ckpt["state_dict"].values() if v.is_floating_point()]
    assert all(torch.isfinite(v).all() for v in weights)


def test_checkpoint_loads_weights_only_with_ema_and_config(tmp_path: Path) -> None:
    module = make_module(PoisonedAfter(after=10**9))
    last = fit(module, tmp_path, max_steps=4)
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] == 4  # saved at the end, though 4 is not a multiple of 3
    assert ckpt["catdiff"] == {"config": {"note": "test"}, "image_shape": [1, 28, 28]}
    assert int(ckpt["state_dict"]["ema.num_updates"]) == 4
    ema = {k for k in ckpt["state_dict"] if k.startswith("ema.model.")}
    raw = {k for k in ckpt["state_dict"] if k.startswith("model.")}
    assert {k.removeprefix("ema.model.") for k in ema} == {k.removeprefix("model.") for k in raw}


def test_sample_uses_ema_weights_and_is_seeded() -> None:
    module = make_module(PoisonedAfter(after=10**9))
    with torch.no_grad():  # make the raw weights differ from the EMA copy
        for p in module.model.parameters():
            p.add_(0.1)
    a, b = module.sample(4, seed=0).x0, module.sample(4, seed=0).x0
    assert torch.equal(a, b)
    assert not torch.equal(a, module.sample(4, seed=1).x0)
    expected = DDIMSampler(steps=3)
    from catdiff.diffusion import sample

    ema_images = sample(expected, module.ema.model, module.diffusion, 4, (1, 28, 28), seed=0).x0
    assert torch.equal(a, ema_images)


@pytest.mark.slow  # torch.compile takes minutes on 2 cores
def test_compiled_training_matches_eager_and_keeps_checkpoint_keys(tmp_path: Path) -> None:
    eager, compiled = make_module(tiny_unet()), make_module(tiny_unet())
    compiled.compile = True
    batch = next(iter(loader()))
    for module in (eager, compiled):
        module.trainer = L.Trainer(
            accelerator="cpu", logger=False, max_steps=1
        )  # for the generator
    losses = [
        m._losses(m._train_net(), batch, torch.Generator().manual_seed(1))[0]
        for m in (eager, compiled)
    ]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-5)
    assert compiled._train_net() is not compiled.model
    assert compiled.state_dict().keys() == eager.state_dict().keys()


def test_channels_last_module_trains_the_same_and_its_checkpoint_samples_anywhere(
    tmp_path: Path,
) -> None:
    """module.channels_last=true: conv weights (raw and EMA) in channels_last, the same losses as
    the default layout, and a checkpoint whose EMA weights load into a plain UNet."""

    plain = make_module(tiny_unet(attention_levels=(1,)))
    fast = make_module(tiny_unet(attention_levels=(1,)), channels_last=True)
    for net in (fast.model, fast.ema.model):
        assert net.down[0].res.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.model.down[0].res.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    batch = next(iter(loader()))
    losses = [m._losses(m.model, batch, torch.Generator().manual_seed(1))[0] for m in (plain, fast)]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-5)

    last = fit(fast, tmp_path, max_steps=3)
    state = torch.load(last, weights_only=True)["state_dict"]
    ema = {k.removeprefix("ema.model."): v for k, v in state.items() if k.startswith("ema.model.")}
    reloaded = tiny_unet(attention_levels=(1,))
    reloaded.load_state_dict(ema)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 17])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x, t), fast.ema.model(x, t), rtol=1e-4, atol=1e-5)
