"""Fused restore + base-optimizer step: read the backup instead of ``w``, update the
optimizer's state in place (torch's own format), write ``w``; one pass per dtype group.

:func:`slsam_kernels.ops.fused_plan.plan` decides whether the step may be fused and lays out
tensors, state and coefficients; this module launches :mod:`.adamw` (Adam and AdamW) or
:mod:`.sgd` from the plan.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...ops.fused_plan import plan
from . import adamw, sgd
from .restore import restore_


@torch.no_grad()
def fused_restore_step(
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.Tensor],
    backups: Sequence[torch.Tensor],
    prescales: Sequence[float] | None = None,
) -> bool:
    """Restore ``params`` from ``backups`` (each first scaled by its ``prescales`` entry) and
    take ``optimizer``'s step in one pass; True when done, False (with nothing changed) when
    the planner declines."""
    fused = plan(optimizer, params, backups, prescales)
    if fused is None:
        return False
    restore_(fused.restore_params, fused.restore_backups)
    (adamw if fused.kind == "adam" else sgd).step(fused)
    fused.commit()
    return True
