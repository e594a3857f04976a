"""One public function per fused operation, the same signature on every backend.

Each function validates its inputs, resolves ``backend`` (see :mod:`slsam_kernels.ops.registry`)
and runs that backend's implementation (every backend module implements
:class:`~slsam_kernels.ops.protocol.Backend`); what the backend declines runs on the reference.
Optimizers resolve once with :func:`bind` and call the bound functions, which skip the per-call
validation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..backends.upload import upload
from . import registry
from .bound import BoundOps, bind
from .validation import (
    bandit_options,
    check_bandit_inputs,
    check_draw_probabilities,
    check_lists,
    check_scales,
    common_device,
)


def grad_sqnorms(
    grads: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor] | None = None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Per-tensor squared L2 norms ``||g_i||^2`` (``||w_i * g_i||^2`` with ``weights``), fp32."""
    check_lists(grads=grads, weights=weights)
    if not grads:
        return torch.zeros(0, dtype=torch.float32)
    return bind(backend, common_device(grads)).grad_sqnorms(grads, weights)


def perturb_(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    backups: Sequence[torch.Tensor],
    scales: torch.Tensor,
    adaptive: bool = False,
    *,
    backend: str = "auto",
) -> None:
    """Back up each ``w`` exactly, then ``w += scale_i * g`` (ASAM: ``scale_i * w^2 * g``)."""
    check_lists(params=params, grads=grads, backups=backups)
    if not params:
        return
    check_scales(scales, len(params), common_device(params))
    bind(backend, common_device(params)).perturb_(params, grads, backups, scales, adaptive)


def restore_(
    params: Sequence[torch.Tensor], backups: Sequence[torch.Tensor], *, backend: str = "auto"
) -> None:
    """Copy each backup back into its parameter, bit-exactly."""
    check_lists(params=params, backups=backups)
    if params:
        bind(backend, common_device(params)).restore_(params, backups)


def bandit_update(
    probs: torch.Tensor,
    active_norms: torch.Tensor,
    active_idx: torch.Tensor,
    budget: float,
    lr: float | None = None,
    p_min: float = 1e-3,
    *,
    rule: str = "paper",
    exploration: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """The SL-SAM bandit update; returns the new probabilities, on ``probs``' device.

    ``rule`` is ``"paper"`` (the paper's update) or ``"robust"`` (scale free, with the
    exploration mixture ``exploration``), as :mod:`slsam_kernels.backends.reference.bandit` states
    them; ``lr`` and ``exploration`` left None take the rule's defaults (``lr``: 1e-3 for
    the paper rule, 0.05 for the robust one; ``exploration``: 0.1, robust rule only).
    """
    lr, exploration = bandit_options(rule, lr, exploration)
    check_bandit_inputs(probs, active_norms, active_idx, budget)
    bound = bind(backend, probs.device)
    return bound.bandit_update(
        probs, active_norms, active_idx, budget, lr, p_min, rule=rule, exploration=exploration
    )


def sample_active(
    probs: torch.Tensor, generator: torch.Generator, *, backend: str = "auto"
) -> torch.Tensor:
    """Draw the active set: arm i is active iff ``u_i <= p_i``; never empty. Bool mask, CPU.
    Each backend has its own random stream; the reference draws ``torch.rand`` from
    ``generator``."""
    check_draw_probabilities(probs)
    return bind(backend, probs.device).sample_active(probs, generator)


__all__ = [
    "BoundOps",
    "bandit_update",
    "bind",
    "grad_sqnorms",
    "perturb_",
    "registry",
    "restore_",
    "sample_active",
    "upload",
]
