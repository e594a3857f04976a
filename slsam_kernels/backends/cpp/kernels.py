"""The backend protocol's operations on top of ``slsam_kernels._C``, for the ``"cpp"`` and
``"cuda"`` backends. A call the extension cannot take (tensors laid out differently, which it
reports by returning False before writing anything) is declined as a whole."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..plan import FusedPlan
from ..reference.bandit import DEFAULT_LR, PAPER, ROBUST
from .loader import C


def grad_sqnorms(
    grads: Sequence[torch.Tensor], weights: Sequence[torch.Tensor] | None = None
) -> torch.Tensor:
    """Per-tensor ``||g_i||^2`` (``||w_i * g_i||^2`` with ``weights``), fp32, deterministic."""
    return C.grad_sqnorms(list(grads), None if weights is None else list(weights))


def perturb_(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    backups: Sequence[torch.Tensor],
    scales: torch.Tensor,
    adaptive: bool = False,
) -> range:
    """Back up each ``w`` exactly, then ``w += scale_i * g`` (ASAM: ``scale_i * g * w * w``).
    Returns the positions it declined: none, or all of them (nothing written)."""
    done = C.perturb_(list(params), list(grads), list(backups), scales, adaptive)
    return range(0 if done else len(params))


def restore_(params: Sequence[torch.Tensor], backups: Sequence[torch.Tensor]) -> range:
    """Copy each backup back into its parameter, bit for bit. Returns the positions it
    declined: none, or all of them (nothing written)."""
    return range(0 if C.restore_(list(params), list(backups)) else len(params))


def launch_fused(plan: FusedPlan) -> bool:
    """The restore + step kernels of ``plan`` (its stepped tensors; the caller restores the
    rest); the extension reads ``w`` from the backup and, for Adam, adds 1 to each ``step``.
    False when ``_C`` refuses the layout (before writing)."""
    if plan.kind == "adam":
        return C.adam_restore_step_(
            plan.params,
            plan.grads,
            plan.backups,
            plan.exp_avgs,
            plan.exp_avg_sqs,
            plan.steps,
            plan.table(),
        )
    return C.sgd_restore_step_(
        plan.params, plan.grads, plan.backups, plan.momentum_buffers, plan.table()
    )


def bandit_update(
    probs: torch.Tensor,
    active_norms: torch.Tensor,
    active_idx: torch.Tensor,
    budget: float,
    lr: float = DEFAULT_LR[PAPER],
    p_min: float = 1e-3,
    *,
    rule: str = PAPER,
    exploration: float = 0.0,
) -> torch.Tensor:
    """:func:`slsam_kernels.backends.reference.bandit_update`, in double on the host, in one
    call (the reference spends ~35 torch ops); the probabilities live on the CPU."""
    return C.bandit_update(
        probs.detach().to("cpu", torch.float32).contiguous(),
        active_norms.detach().to("cpu", torch.float32).contiguous(),
        active_idx.detach().to("cpu", torch.int64).contiguous(),
        float(budget),
        float(lr),
        float(p_min),
        rule == ROBUST,
        float(exploration),
    )
