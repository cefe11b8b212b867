"""Latent and style-space edits: directions (InterFaceGAN), GANSpace, StyleCLIP, animation.

The direction functions are re-exported here because release 0.1 had them in a module of this name.
"""
from .directions import LatentDirection, apply_direction, direction_from_tensor, load_direction, sweep_direction

__all__ = ["LatentDirection", "apply_direction", "direction_from_tensor", "load_direction", "sweep_direction"]
