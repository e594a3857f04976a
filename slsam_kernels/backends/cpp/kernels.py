"""The backend protocol on top of ``slsam_kernels._C``. A call the extension cannot take
(tensors laid out differently, which it reports by returning False before writing anything)
runs on the reference path instead."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import reference
from ..reference.bandit import DEFAULT_LR, PAPER, ROBUST
from .fused_step import fused_restore_step
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
) -> None:
    """Back up each ``w`` exactly, then ``w += scale_i * g`` (ASAM: ``scale_i * g * w * w``)."""
    if not C.perturb_(list(params), list(grads), list(backups), scales, adaptive):
        reference.perturb_(params, grads, backups, scales, adaptive)


def restore_(params: Sequence[torch.Tensor], backups: Sequence[torch.Tensor]) -> None:
    """Copy each backup back into its parameter, bit for bit."""
    if not C.restore_(list(params), list(backups)):
        reference.restore_(params, backups)


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


sample_active = reference.sample_active

__all__ = [
    "bandit_update",
    "fused_restore_step",
    "grad_sqnorms",
    "perturb_",
    "restore_",
    "sample_active",
]
