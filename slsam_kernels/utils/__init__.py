"""Helpers for training loops around the optimizers."""

from .batchnorm import frozen_bn_stats

__all__ = ["frozen_bn_stats"]
