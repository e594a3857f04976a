"""The ``"cpp"`` backend: multi-threaded C++ loops for CPU tensors."""

from __future__ import annotations

from .loader import LOAD_ERROR
from .ops import (
    bandit_update,
    fused_restore_step,
    grad_sqnorms,
    perturb_,
    restore_,
    sample_active,
)

UNAVAILABLE_REASON = LOAD_ERROR

__all__ = [
    "UNAVAILABLE_REASON",
    "bandit_update",
    "fused_restore_step",
    "grad_sqnorms",
    "perturb_",
    "restore_",
    "sample_active",
]
