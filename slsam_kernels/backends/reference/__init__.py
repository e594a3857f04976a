"""Pure-torch reference implementations: plain loops, the ground truth for every fast path."""

from .bandit import bandit_update, sample_active
from .norms import grad_sqnorms
from .perturb import perturb_, restore_

UNAVAILABLE_REASON = ""
# The bandit computes on the host: a GPU run keeps its probabilities there, so the draw and the
# update need no device round trip.
PROBS_ON_DEVICE = False
# No fused restore + step: the optimizer restores, then takes its own step (torch's for-loop
# step is the ground truth the fast backends' fused steps are held to).
launch_fused = None

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
