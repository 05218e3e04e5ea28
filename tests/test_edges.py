"""Sobel edges: against scipy.ndimage as an independent oracle, plus fixed normalisation."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from catdiff.data import EDGE_MODES, SOBEL_MAX, apply_edges, gaussian_blur, sobel
from catdiff.errors import UserError


def scipy_magnitude(img: np.ndarray) -> np.ndarray:
    """Oracle: hypot of scipy's Sobel derivatives; mode="nearest" is replicate padding."""
    return np.hypot(
        ndimage.sobel(img, axis=0, mode="nearest"), ndimage.sobel(img, axis=1, mode="nearest")
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sobel_matches_scipy(dtype):
    rng = np.random.default_rng(0)
    x = rng.random((3, 2, 17, 23))
    expected = np.stack([np.stack([scipy_magnitude(ch) for ch in img]) for img in x])
    got = sobel(torch.from_numpy(x).to(dtype))
    assert got.shape == x.shape and got.dtype == dtype
    np.testing.assert_allclose(got.double().numpy(), expected, atol=1e-5, rtol=0)


def test_vertical_step_gives_vertical_line():
    x = torch.zeros(1, 1, 10, 12)
    x[..., 6:] = 1.0
    mag = sobel(x)[0, 0]
    # Only the two columns either side of the step respond, equally on every row
    # (replicate padding: no response at the top and bottom borders either).
    assert torch.allclose(mag[:, 5:7], torch.full((10, 2), 4.0))
    assert mag[:, :5].abs().max() == 0 and mag[:, 7:].abs().max() == 0


def test_sobel_max_is_the_largest_reachable_magnitude():
    # Every binary 3x3 patch (the extremes of a convex function on [0, 1]^9), as 3x3 images:
    # with replicate padding the centre pixel sees exactly the patch.
    patches = torch.tensor(list(itertools.product([0.0, 1.0], repeat=9))).view(-1, 1, 3, 3)
    centre = sobel(patches)[:, 0, 1, 1]
    assert centre.max().item() == pytest.approx(SOBEL_MAX)
    edges = apply_edges((patches * 255).to(torch.uint8), "sobel")
    assert edges[:, 0, 1, 1].max().item() == 255


def test_apply_edges_shapes_and_channels():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.integers(0, 256, (5, 1, 16, 16), dtype=np.uint8))
    assert apply_edges(images, "none") is images
    edges = apply_edges(images, "sobel")
    assert edges.shape == (5, 1, 16, 16) and edges.dtype == torch.uint8
    both = apply_edges(images, "sobel+gray")
    assert both.shape == (5, 2, 16, 16) and both.dtype == torch.uint8
    assert torch.equal(both[:, :1], images) and torch.equal(both[:, 1:], edges)
    expected = np.rint(scipy_magnitude(images[2, 0].double().numpy() / 255) / SOBEL_MAX * 255)
    np.testing.assert_array_equal(edges[2, 0].numpy(), expected)
    assert set(EDGE_MODES) == {"none", "sobel", "sobel+gray"}


def test_apply_edges_normalisation_is_fixed_not_per_image():
    bright = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    bright[..., 4:] = 200
    dark = bright // 2  # same picture, half the contrast
    e_bright, e_dark = apply_edges(torch.cat([bright, dark]), "sobel").chunk(2)
    assert e_bright.max().item() == round(4 * 200 / 255 / SOBEL_MAX * 255)  # 4 = step response
    assert e_dark.max().item() == pytest.approx(e_bright.max().item() / 2, abs=1)


def test_apply_edges_chunking_does_not_change_result():
    images = torch.from_numpy(
        np.random.default_rng(2).integers(0, 256, (7, 1, 9, 9), dtype=np.uint8)
    )
    assert torch.equal(
        apply_edges(images, "sobel", blur_sigma=1.0, chunk_size=3),
        apply_edges(images, "sobel", blur_sigma=1.0),
    )


def test_gaussian_blur_matches_scipy_and_weakens_edges():
    x = np.random.default_rng(3).random((1, 1, 15, 13))
    got = gaussian_blur(torch.from_numpy(x), 1.0)[0, 0].numpy()
    # scipy's radius is int(truncate * sigma + 0.5) = 3, ours ceil(3 sigma) = 3.
    np.testing.assert_allclose(
        got, ndimage.gaussian_filter(x[0, 0], 1.0, mode="nearest", truncate=3.0), atol=1e-10
    )
    step = torch.zeros(1, 1, 12, 12, dtype=torch.uint8)
    step[..., 6:] = 255
    assert apply_edges(step, "sobel", blur_sigma=1.5).max() < apply_edges(step, "sobel").max()
    assert torch.equal(gaussian_blur(torch.from_numpy(x), 0.0), torch.from_numpy(x))
    assert math.isclose(
        gaussian_blur(torch.full((1, 1, 5, 5), 0.3), 2.0).std().item(), 0.0, abs_tol=1e-7
    )


def test_apply_edges_user_errors():
    images = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(UserError, match="data.edges") as info:
        apply_edges(images, "canny")
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="data.channels"):
        apply_edges(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "sobel")
    with pytest.raises(UserError, match="data.edge_blur"):
        apply_edges(images, "sobel", blur_sigma=-1.0)


def test_blurred_edges_match_scipy_end_to_end():
    images = torch.from_numpy(
        np.random.default_rng(4).integers(0, 256, (3, 1, 14, 14), dtype=np.uint8)
    )
    got = apply_edges(images, "sobel", blur_sigma=1.0)
    for img, edge in zip(images, got):
        blurred = ndimage.gaussian_filter(
            img[0].double().numpy() / 255, 1.0, mode="nearest", truncate=3.0
        )
        expected = np.clip(np.rint(scipy_magnitude(blurred) / SOBEL_MAX * 255), 0, 255)
        assert np.abs(edge[0].numpy().astype(int) - expected).max() <= 1  # float32 rounding


def test_grids_of_edge_models_show_gray_and_edges_side_by_side():
    from catdiff.images import grid, to_uint8

    gray_and_edges = torch.stack([torch.full((2, 6, 5), -1.0), torch.full((2, 6, 5), 1.0)], 1)
    picture = grid(gray_and_edges, nrow=2, pad=1)  # 2 images, each 2 panels of 5 px
    assert picture.shape == (1 + 6 + 1, 1 + 2 * (10 + 1))
    first = picture[1:7, 1:11]
    assert (first[:, :5] == 0).all() and (first[:, 5:] == 255).all()  # gray | edges
    edges_only = grid(torch.ones(3, 1, 6, 5), nrow=3)
    assert edges_only.ndim == 2 and edges_only.max() == to_uint8(torch.ones(1)).item()
