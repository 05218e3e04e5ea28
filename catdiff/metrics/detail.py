"""Are samples as finely detailed as real faces? The Laplacian-energy ratio.

A sampler with few steps, or a network weak at the lowest noise levels, gives samples that are
smoother than the data: right shapes, too little fine texture. KID sees that, but does not say
it. This measures it directly: the mean squared response of the 5-point Laplacian (pixels in
[0, 1], valid positions only) of the samples over the same for the reference faces. 1.0 is as
much fine detail as the faces, below 1 smoother, above 1 noisier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def laplacian_energy(images: Tensor, batch_size: int = 1024) -> float:
    """Mean squared 5-point Laplacian of uint8 images (N, C, H, W), each channel on its own."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError("laplacian_energy takes uint8 images (N, C, H, W)")
    kernel = _LAPLACIAN.view(1, 1, 3, 3)
    total, count = 0.0, 0
    for chunk in images.split(batch_size):
        x = chunk.flatten(0, 1).unsqueeze(1).double() / 255.0
        response = F.conv2d(x, kernel.double())
        total += response.square().sum().item()
        count += response.numel()
    return total / count


def detail_ratio(samples: Tensor, reference: Tensor) -> float:
    """Laplacian energy of ``samples`` over that of ``reference`` (1.0: as detailed)."""
    return laplacian_energy(samples) / laplacian_energy(reference)
