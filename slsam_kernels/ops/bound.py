"""A backend's operations, resolved once for a device."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import reference
from . import backends


@dataclass(frozen=True)
class BoundOps:
    """The operations of one resolved backend. Callers pass inputs they built consistently.

    ``fused_restore_step(optimizer, params, backups, prescales=None) -> bool`` restores
    ``params`` from ``backups`` (each then scaled by its ``prescales`` entry: BAR, which passes
    the params as their own backups) and takes ``optimizer``'s step in one pass when the
    backend supports that optimizer's configuration, returning True; otherwise it changes
    nothing and returns False.

    ``bandit_update`` and ``sample_active`` have the signatures of the reference functions
    (:mod:`slsam_kernels.reference.bandit`; ``rule=`` and ``exploration=`` come checked and
    resolved by :func:`slsam_kernels.ops.validation.bandit_options`); a backend may provide
    them (optional: the reference is the default) to keep the SL-SAM probabilities on the
    device. ``bandit_device`` is where the probabilities live for them: the tensors' device
    when the backend provides its own, else the CPU, where the reference computes them;
    ``host_bandit`` is True in the latter case (then the active indices stay on the host).
    """

    name: str
    grad_sqnorms: Callable[..., torch.Tensor]
    perturb_: Callable[..., None]
    restore_: Callable[..., None]
    fused_restore_step: Callable[..., bool]
    bandit_update: Callable[..., torch.Tensor]
    sample_active: Callable[..., torch.Tensor]
    bandit_device: torch.device
    host_bandit: bool


def bind(backend: str, device: torch.device) -> BoundOps:
    """Resolve ``backend`` for ``device`` and return its operations."""
    name = backends.resolve(backend, device)
    impl = backends.module(name)
    fused = getattr(impl, "fused_restore_step", _no_fused_restore_step)
    # the reference's bandit computes on the host, so its probabilities live there
    own_bandit = (
        impl is not reference and hasattr(impl, "bandit_update") and hasattr(impl, "sample_active")
    )
    bandit = impl if own_bandit else reference
    return BoundOps(
        name,
        impl.grad_sqnorms,
        impl.perturb_,
        impl.restore_,
        fused,
        bandit.bandit_update,
        bandit.sample_active,
        device if own_bandit else torch.device("cpu"),
        not own_bandit,
    )


def _no_fused_restore_step(
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    backups: list[torch.Tensor],
    prescales: list[float] | None = None,
) -> bool:
    """The fallback: the caller restores and lets ``optimizer`` step on its own."""
    return False
