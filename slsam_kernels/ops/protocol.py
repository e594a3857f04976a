"""The backend protocol: every operation a backend module provides, stated once.

A backend only launches. Where it cannot take a call (a layout its kernels do not address, too
many arms for one program) it declines, writing nothing, and says so in its return value;
:func:`slsam_kernels.ops.bind` hands what was declined to the reference, the one fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch

from ..backends.plan import FusedPlan


@runtime_checkable
class Backend(Protocol):
    """A backend module (``slsam_kernels.backends.reference``, ``.triton_kernels``, ``.cpp``,
    ``.cpp.cuda``), as :mod:`slsam_kernels.ops.registry` loads it."""

    #: Why the backend cannot run here ("" when it can).
    UNAVAILABLE_REASON: str
    #: Whether the SL-SAM probabilities live on the tensors' device for :meth:`bandit_update`
    #: and :meth:`sample_active` (False: on the CPU).
    PROBS_ON_DEVICE: bool
    #: ``launch_fused(plan) -> bool``: launch the fused restore + step of ``plan``'s stepped
    #: tensors, if any (the caller commits the plan and restores the rest); False when it
    #: declines, before writing anything. None for a backend without fused steps (the
    #: reference: the optimizer restores, then takes its own step, the ground truth the fused
    #: steps are held to), for which nothing is planned.
    launch_fused: Callable[[FusedPlan], bool] | None

    def grad_sqnorms(
        self, grads: Sequence[torch.Tensor], weights: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Per-tensor ``||g_i||^2`` (``||w_i * g_i||^2`` with ``weights``), fp32, on the
        tensors' device, deterministic."""
        ...

    def perturb_(
        self,
        params: Sequence[torch.Tensor],
        grads: Sequence[torch.Tensor],
        backups: Sequence[torch.Tensor],
        scales: torch.Tensor,
        adaptive: bool = False,
    ) -> Sequence[int]:
        """Back up each ``w`` exactly, then ``w += scale_i * g`` (ASAM: ``scale_i * g * w * w``),
        computed in fp32 and rounded once. Returns the positions it declined (left alone)."""
        ...

    def restore_(
        self, params: Sequence[torch.Tensor], backups: Sequence[torch.Tensor]
    ) -> Sequence[int]:
        """Copy each backup back into its parameter, bit for bit. Returns the positions it
        declined (left alone)."""
        ...

    def bandit_update(
        self,
        probs: torch.Tensor,
        active_norms: torch.Tensor,
        active_idx: torch.Tensor,
        budget: float,
        lr: float = ...,
        p_min: float = 1e-3,
        *,
        rule: str = ...,
        exploration: float = 0.0,
    ) -> torch.Tensor | None:
        """:func:`slsam_kernels.backends.reference.bandit_update`'s result, fp32, on
        ``probs``' device; None when declined."""
        ...

    def sample_active(self, probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The next active set, a bool mask on the CPU: arm i is active iff ``u_i <= p_i``;
        never empty."""
        ...
