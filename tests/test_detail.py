"""The detail ratio (catdiff.metrics.detail): smoother samples score below 1, noisier above."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from catdiff.metrics.detail import detail_ratio, laplacian_energy


def _faces(n: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 1, 28, 28), generator=g)
    return F.avg_pool2d(x, 3, 1, 1).mul(255).round().to(torch.uint8)  # some texture, not noise


def test_laplacian_energy_matches_the_formula_on_a_checkerboard() -> None:
    # a 0/255 checkerboard: every interior Laplacian response is +-4 (pixels in [0, 1])
    board = ((torch.arange(6)[:, None] + torch.arange(6)[None, :]) % 2 * 255).to(torch.uint8)
    assert laplacian_energy(board.view(1, 1, 6, 6)) == pytest.approx(16.0)
    assert laplacian_energy(torch.full((2, 3, 8, 8), 77, dtype=torch.uint8)) == 0.0


def test_blurring_lowers_the_ratio_and_noise_raises_it() -> None:
    faces = _faces()
    assert detail_ratio(faces, faces) == pytest.approx(1.0)
    blurred = F.avg_pool2d(faces.float(), 3, 1, 1).round().to(torch.uint8)
    assert detail_ratio(blurred, faces) < 0.5
    g = torch.Generator().manual_seed(1)
    noisy = (faces.float() + 20 * torch.randn(faces.shape, generator=g)).clamp(0, 255)
    assert detail_ratio(noisy.round().to(torch.uint8), faces) > 1.5
    # batching does not change the value
    assert laplacian_energy(faces, batch_size=5) == pytest.approx(laplacian_energy(faces))


def test_detail_ratio_takes_uint8_images_only() -> None:
    with pytest.raises(ValueError, match="uint8 images"):
        laplacian_energy(torch.zeros(2, 1, 8, 8))
