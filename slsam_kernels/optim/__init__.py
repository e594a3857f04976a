"""torch.optim front ends: SAM (and ASAM), SL-SAM and RST."""

from .arms import arms_by_module
from .base import SharpnessAwareOptimizer
from .rst import RST
from .sam import SAM
from .slsam import SLSAM

__all__ = ["RST", "SAM", "SLSAM", "SharpnessAwareOptimizer", "arms_by_module"]
