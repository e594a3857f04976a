"""Fast, exact SAM, Sparse Layer SAM (SL-SAM), RST and BAR optimizers for PyTorch."""

from . import schedules
from ._version import __version__
from .optim import (
    BAR,
    RST,
    SAM,
    SLSAM,
    SharpnessAwareOptimizer,
    arms_by_module,
    auto_always_active_fraction,
    lora_pairs,
)

__all__ = [
    "BAR",
    "RST",
    "SAM",
    "SLSAM",
    "SharpnessAwareOptimizer",
    "__version__",
    "arms_by_module",
    "auto_always_active_fraction",
    "lora_pairs",
    "schedules",
]
