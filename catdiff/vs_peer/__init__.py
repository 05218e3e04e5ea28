"""catdiff against diffusers' standard recipe (issue "Beat the peer").

* :mod:`catdiff.vs_peer.peer` trains and samples the peer: diffusers ``UNet2DModel`` +
  ``DDPMScheduler`` + ``EMAModel`` as ``examples/unconditional_image_generation`` would.
* :mod:`catdiff.vs_peer.score` scores snapshots of either run with catdiff's metrics.
* :mod:`catdiff.vs_peer.report` writes ``experiments/vs_diffusers/REPORT.md``.
"""
