"""Restore + base-optimizer step in one pass on the extension's loops (CPU) and kernels (CUDA).

:func:`slsam_kernels.ops.fused_plan.plan` decides whether the step may be fused and lays out
the tensors, the lazily created state and the coefficient table (``AdamScalars`` and
``SgdScalars`` in csrc/common/elementwise.h); this module only hands the plan to ``_C``, which
reads ``w`` from the backup and, for Adam, adds 1 to each ``step``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...ops.fused_plan import FusedPlan, plan
from .. import reference
from .loader import C


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
    if fused is None or (fused.params and not _launch(fused)):
        return False
    fused.commit()
    if fused.restore_params and not C.restore_(fused.restore_params, fused.restore_backups):
        reference.restore_(fused.restore_params, fused.restore_backups)
    return True


def _launch(fused: FusedPlan) -> bool:
    """The kernels of ``fused``; False when ``_C`` refuses the layout (before writing)."""
    if fused.kind == "adam":
        return C.adam_restore_step_(
            fused.params,
            fused.grads,
            fused.backups,
            fused.exp_avgs,
            fused.exp_avg_sqs,
            fused.steps,
            fused.table(),
        )
    return C.sgd_restore_step_(
        fused.params, fused.grads, fused.backups, fused.momentum_buffers, fused.table()
    )
