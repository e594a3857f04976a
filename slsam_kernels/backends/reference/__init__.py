"""Pure-torch reference implementations: plain loops, the ground truth for every fast path."""

from .bandit import bandit_update, sample_active
from .fused import launch_fused
from .norms import grad_sqnorms
from .perturb import perturb_, restore_

UNAVAILABLE_REASON = ""
PROBS_ON_DEVICE = True

__all__ = [
    "PROBS_ON_DEVICE",
    "UNAVAILABLE_REASON",
    "bandit_update",
    "grad_sqnorms",
    "launch_fused",
    "perturb_",
    "restore_",
    "sample_active",
]
