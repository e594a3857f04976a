"""Fused restore + base-optimizer step: read the backup instead of ``w``, update the
optimizer's state in place (torch's own format), write ``w``; one pass per dtype group. The
plan comes from :func:`slsam_kernels.ops.fused_plan.plan`; this launches :mod:`.adamw` (Adam
and AdamW) or :mod:`.sgd` for it."""

from __future__ import annotations

import torch

from ..plan import FusedPlan
from . import adamw, sgd


@torch.no_grad()
def launch_fused(plan: FusedPlan) -> bool:
    """Launch the kernels of ``plan`` (its stepped tensors; the caller restores the rest).
    Takes every plan: True."""
    (adamw if plan.kind == "adam" else sgd).step(plan)
    return True
