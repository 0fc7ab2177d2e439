"""Trajectory Regularized training (TRAdam, TRSGD) and pix2pix labels->photo."""

__version__ = "0.1.0"
