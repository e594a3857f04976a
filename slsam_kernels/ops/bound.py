"""A backend's operations, resolved once for a device, and the one fallback: whatever the
backend declines runs on the reference. Also the one fused step: plan, launch, commit, and
restore what is only restored."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch

from ..backends import reference
from . import registry
from .fused_plan import plan
from .protocol import Backend


@dataclass(frozen=True)
class BoundOps:
    """The operations of one resolved backend. Callers pass inputs they built consistently.

    ``fused_restore_step(optimizer, params, backups, prescales=None) -> bool`` restores
    ``params`` from ``backups`` (each then scaled by its ``prescales`` entry: BAR, which passes
    the params as their own backups) and takes ``optimizer``'s step in one pass when the
    planner and the backend take that optimizer's configuration, returning True; otherwise it
    changes nothing and returns False.

    ``bandit_update`` and ``sample_active`` have the signatures of the reference functions
    (:mod:`slsam_kernels.backends.reference.bandit`; ``rule=`` and ``exploration=`` come
    checked and resolved by :func:`slsam_kernels.ops.validation.bandit_options`).
    ``bandit_device`` is where the probabilities live for them: the tensors' device, or the
    CPU for a backend whose bandit runs on the host (the reference's and the CUDA
    extension's); ``host_bandit`` is True in the latter case (then the active indices stay on
    the host).
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
    name = registry.resolve(backend, device)
    impl: Backend = registry.module(name)
    return BoundOps(
        name,
        impl.grad_sqnorms,
        partial(_perturb_, impl),
        partial(_restore_, impl),
        partial(fused_restore_step, impl),
        partial(_bandit_update, impl),
        impl.sample_active,
        device if impl.PROBS_ON_DEVICE else torch.device("cpu"),
        not impl.PROBS_ON_DEVICE,
    )


def _pick(tensors: Sequence[torch.Tensor], positions: Sequence[int]) -> list[torch.Tensor]:
    return [tensors[i] for i in positions]


def _perturb_(
    impl: Backend,
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    backups: Sequence[torch.Tensor],
    scales: torch.Tensor,
    adaptive: bool = False,
) -> None:
    declined = impl.perturb_(params, grads, backups, scales, adaptive)
    if declined:
        reference.perturb_(
            _pick(params, declined),
            _pick(grads, declined),
            _pick(backups, declined),
            scales[list(declined)],
            adaptive,
        )


def _restore_(
    impl: Backend, params: Sequence[torch.Tensor], backups: Sequence[torch.Tensor]
) -> None:
    declined = impl.restore_(params, backups)
    if declined:
        reference.restore_(_pick(params, declined), _pick(backups, declined))


def _bandit_update(impl: Backend, *args: object, **kwargs: object) -> torch.Tensor:
    probs = impl.bandit_update(*args, **kwargs)
    return reference.bandit_update(*args, **kwargs) if probs is None else probs


@torch.no_grad()
def fused_restore_step(
    impl: Backend,
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.Tensor],
    backups: Sequence[torch.Tensor],
    prescales: Sequence[float] | None = None,
) -> bool:
    """Restore ``params`` from ``backups`` (each stepped one first scaled by its ``prescales``
    entry) and take ``optimizer``'s step in one pass on backend ``impl``: True when done,
    False (with nothing changed) when the backend has no fused steps (nothing is planned), or
    when the planner or the backend declines."""
    if impl.launch_fused is None:
        return False
    fused = plan(optimizer, params, backups, prescales)
    if fused is None or not impl.launch_fused(fused):
        return False
    fused.commit()
    if fused.restore_params:
        _restore_(impl, fused.restore_params, fused.restore_backups)
    return True
