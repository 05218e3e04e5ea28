"""catdiff against diffusers' standard recipe (issue "Beat the peer").

* :mod:`experiments.vs_diffusers.peer` trains and samples the peer: diffusers ``UNet2DModel`` +
  ``DDPMScheduler`` + ``EMAModel`` as ``examples/unconditional_image_generation`` would.
* :mod:`experiments.vs_diffusers.score` scores snapshots of either run with catdiff's metrics.
* :mod:`experiments.vs_diffusers.report` writes ``experiments/vs_diffusers/REPORT.md``.
"""
