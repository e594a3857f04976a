"""Fast, exact SAM and Sparse Layer SAM (SL-SAM) optimizers for PyTorch."""

from ._version import __version__
from .optim import RST, SAM, SLSAM, SharpnessAwareOptimizer, arms_by_module

__all__ = ["RST", "SAM", "SLSAM", "SharpnessAwareOptimizer", "__version__", "arms_by_module"]
