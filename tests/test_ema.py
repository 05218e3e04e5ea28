"""EMA of weights: the average itself, warm-up, frozen copy, checkpoint round trip."""

import pytest
import torch
from torch import nn

from catdiff.models import EMA


def set_weights(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_closed_form_average_without_warmup() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    initial = [p.detach().clone() for p in model.parameters()]
    d = 0.9
    ema = EMA(model, decay=d, warmup=False)
    values = [1.0, -2.0, 0.5, 3.0, 4.0]
    for v in values:
        set_weights(model, v)
        ema.update(model)
    k = len(values)
    # ema_k = d^k ema_0 + (1 - d) * sum_i d^(k-i) p_i
    tail = (1 - d) * sum(d ** (k - i) * v for i, v in enumerate(values, start=1))
    for p0, p in zip(initial, ema.model.parameters(), strict=True):
        torch.testing.assert_close(p, d**k * p0 + tail)
    assert ema.num_updates.item() == k
    assert ema.effective_decay() == d


def test_warmup_schedule() -> None:
    model = nn.Linear(2, 2)
    set_weights(model, 0.0)
    ema = EMA(model, decay=0.5, warmup=True)
    seen = []
    for _ in range(12):
        seen.append(ema.effective_decay())
        ema.update(model)
    expected = [min(0.5, (1 + n) / (10 + n)) for n in range(12)]
    assert seen == pytest.approx(expected)
    assert seen[0] == pytest.approx(0.1) and seen[-1] == 0.5

    # The first update really uses d = 0.1: ema = 0.1 * ema_0 + 0.9 * p.
    fresh = EMA(model, decay=0.999)
    set_weights(model, 10.0)
    fresh.update(model)
    for p in fresh.model.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 9.0))


def test_copy_is_frozen_separate_and_always_eval() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    owner = nn.ModuleDict({"net": model, "ema": EMA(model)})
    ema = owner["ema"]
    assert all(not p.requires_grad for p in ema.model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert all(
        a.data_ptr() != b.data_ptr()
        for a, b in zip(ema.model.parameters(), model.parameters(), strict=True)
    )
    owner.train()
    assert model.training and not ema.model.training
    x = torch.randn(4, 2)
    torch.testing.assert_close(ema(x), ema.model(x))
    torch.testing.assert_close(ema(x), ema(x))  # no dropout in the copy


def test_update_is_one_fused_lerp_and_copies_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4))
    ema = EMA(model, decay=0.9, warmup=False)
    model.train()
    model(torch.randn(8, 2) * 3 + 1)  # changes BatchNorm running stats
    calls = []
    real_lerp = torch._foreach_lerp_
    monkeypatch.setattr(
        torch, "_foreach_lerp_", lambda *args: calls.append(len(args[0])) or real_lerp(*args)
    )
    ema.update(model)
    assert calls == [4]  # all four float parameters in one call
    bn, ema_bn = model[1], ema.model[1]
    torch.testing.assert_close(ema_bn.running_mean, bn.running_mean)
    torch.testing.assert_close(ema_bn.running_var, bn.running_var)
    assert ema_bn.num_batches_tracked.item() == 1


def test_state_dict_round_trip() -> None:
    def make_owner(seed: int) -> nn.ModuleDict:
        torch.manual_seed(seed)
        net = nn.Linear(3, 3)
        return nn.ModuleDict({"net": net, "ema": EMA(net, decay=0.99)})

    owner = make_owner(0)
    for step in range(3):
        set_weights(owner["net"], float(step))
        owner["ema"].update(owner["net"])
    state = owner.state_dict()
    assert {"ema.num_updates", "ema.model.weight", "ema.model.bias"} <= set(state)
    assert state["ema.num_updates"].dtype == torch.long

    restored = make_owner(1)
    restored.load_state_dict(state)
    assert restored["ema"].num_updates.item() == 3
    for a, b in zip(restored["ema"].parameters(), owner["ema"].parameters(), strict=True):
        torch.testing.assert_close(a, b)
    # The warm-up continues from the loaded count, not from 0.
    assert restored["ema"].effective_decay() == pytest.approx(4 / 13)
    restored["ema"].update(restored["net"])
    assert restored["ema"].num_updates.item() == 4
    assert restored["ema"].effective_decay() == pytest.approx(5 / 14)
