"""catdiff: denoising diffusion (DDPM) experiments on cat faces.

Layers (imports go downward only; the rule and its test: catdiff/ARCHITECTURE.md):
    entry points   catdiff.train, sample, evaluate, report
    glue           catdiff.lightning, config, cli, runtime, resume   (Lightning, Hydra)
    pure torch     catdiff.diffusion, models, data, metrics
    base           catdiff.errors, images, allocator, precision
"""

__version__ = "0.1.0"
