"""Trajectory Regularized training (TRAdam, TRSGD) and pix2pix labels->photo.

``from pix2pix_tr import Translator`` gives a trained generator in one call (see
:mod:`pix2pix_tr.inference.translator`); it is imported on first use, so ``import pix2pix_tr.optim`` stays light.
"""

__version__ = "0.1.0"

__all__ = ["Translator", "__version__"]


def __getattr__(name: str):
    if name == "Translator":
        from pix2pix_tr.inference.translator import Translator

        return Translator
    raise AttributeError(f"module 'pix2pix_tr' has no attribute {name!r}")
