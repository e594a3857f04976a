"""Pure-torch reference implementations: plain loops, the ground truth for every fast path."""

from .bandit import bandit_update, sample_active
from .norms import grad_sqnorms
from .perturb import perturb_, restore_

__all__ = ["bandit_update", "grad_sqnorms", "perturb_", "restore_", "sample_active"]
