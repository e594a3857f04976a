"""torch.optim front ends: SAM (and ASAM), SL-SAM, RST and BAR."""

from .arms import arms_by_module, auto_always_active_fraction
from .bar import BAR
from .pairs import lora_pairs
from .rst import RST
from .sam import SAM
from .sharpness_aware import SharpnessAwareOptimizer
from .slsam import SLSAM

__all__ = [
    "BAR",
    "RST",
    "SAM",
    "SLSAM",
    "SharpnessAwareOptimizer",
    "arms_by_module",
    "auto_always_active_fraction",
    "lora_pairs",
]
