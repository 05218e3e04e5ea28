"""catdiff: denoising diffusion (DDPM) experiments on cat faces.

Layers (imports go downward only):
    entry points   catdiff.train / sample            (Hydra)
    glue           catdiff.lightning                 (Lightning)
    pure torch     catdiff.diffusion, catdiff.models, catdiff.data
"""

__version__ = "0.1.0"
