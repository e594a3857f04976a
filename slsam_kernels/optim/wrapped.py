"""What every optimizer here is: a ``torch.optim.Optimizer`` that builds a base optimizer on
the same param groups and state, runs its own work on one resolved backend, skips a descent
with inf/NaN gradients, clips it, and saves its own state beside the base optimizer's."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch

from .. import ops
from . import distributed
from .checkpoint import check_base_groups, check_kind, check_state_dict
from .checks import check_base_optimizer, check_max_grad_norm, param_groups_of
from .release import check_flags_free
from .warn import user_stacklevel

CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s, so both clip alike
WRAPPER_STATE_KEY = "sharpness_aware"
#: Keys of the wrapper state that name what saved it (absent from checkpoints made before).
KIND_KEY, BASE_KEY = "kind", "base_optimizer"


class WrappedOptimizer(torch.optim.Optimizer):
    """Base class: ``base_optimizer(self.param_groups, **base_kwargs)`` shares this
    optimizer's param groups and state, so LR schedulers attach to the wrapper.

    Subclasses add their step; they reject param groups in :meth:`_check_groups` and carry
    their own checkpoint state through the ``_wrapper_state`` hooks."""

    #: The kind a checkpoint records and must match on load (subclasses inherit theirs).
    _checkpoint_kind = "WrappedOptimizer"

    def __init__(
        self,
        params: Any,
        base_optimizer: type[torch.optim.Optimizer],
        *,
        backend: str,
        max_grad_norm: float | None,
        defaults: dict[str, Any],
        **base_kwargs: Any,
    ) -> None:
        check_base_optimizer(base_optimizer)
        check_max_grad_norm(max_grad_norm)
        groups = param_groups_of(params)
        check_flags_free(groups, type(self).__name__)
        device = groups[0]["params"][0].device
        self._ops = ops.bind(backend, device)
        self._sharded = distributed.is_sharded([p for g in groups for p in g["params"]])
        self._device = device
        self._check_groups(groups)
        super().__init__(groups, dict(defaults, **base_kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self._share_base_state()
        self.defaults.update(self.base_optimizer.defaults)
        self.max_grad_norm = max_grad_norm
        self.last_step_skipped = False

    @property
    def backend(self) -> str:
        """The backend that runs this optimizer's operations."""
        return self._ops.name

    def _check_groups(self, groups: list[dict[str, Any]]) -> None:
        """Hook for subclasses: reject param groups before anything is built."""

    def __repr__(self) -> str:
        """torch's listing of the param groups, after this optimizer's own settings."""
        head, _, groups = super().__repr__().partition("\n")
        settings = "".join(f"\n    {key}: {value}" for key, value in self._settings().items())
        return f"{head}\nSettings{settings}\n{groups}"

    def _settings(self) -> dict[str, Any]:
        """What :meth:`__repr__` shows besides the param groups; subclasses add theirs."""
        return {
            "base_optimizer": type(self.base_optimizer).__name__,
            "backend": self.backend,
            "max_grad_norm": self.max_grad_norm,
        }

    def _share_base_state(self) -> None:
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state

    def _all_params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def _local(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return distributed.local(tensors) if self._sharded else tensors

    def _grad_sqnorms(
        self, grads: list[torch.Tensor], weights: list[torch.Tensor] | None
    ) -> torch.Tensor:
        """Per-tensor squared norms; of sharded tensors, summed over the shards."""
        if not self._sharded:
            return self._ops.grad_sqnorms(grads, weights)
        local_weights = None if weights is None else distributed.local(weights)
        local_sq = self._ops.grad_sqnorms(distributed.local(grads), local_weights)
        return distributed.sum_over_shards(local_sq, grads[0])

    def _record_finite(self, finite: bool) -> bool:
        """Record whether this step's gradients were finite; warn when they were not (the
        step is then skipped). Returns ``finite``."""
        self.last_step_skipped = not finite
        if self.last_step_skipped:
            warnings.warn(
                f"{type(self).__name__}: a gradient held inf or NaN, so this step was skipped; "
                "the weights and optimizer state are as they were before it",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )
        return finite

    def _clip_(self, grads: list[torch.Tensor], descent_sq: torch.Tensor) -> None:
        """Scale ``grads`` (total squared norm ``descent_sq``) to at most ``max_grad_norm``,
        as ``torch.nn.utils.clip_grad_norm_`` does; nothing without ``max_grad_norm``."""
        if grads and self.max_grad_norm is not None:
            coef = self.max_grad_norm / (descent_sq.sqrt() + CLIP_EPS)
            torch._foreach_mul_(self._local(grads), coef.clamp(max=1.0))

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state dict, plus this wrapper's own state under
        ``"sharpness_aware"``, which names the kind (``"SLSAM"``, ...) and the base
        optimizer's class that saved it."""
        state = self.base_optimizer.state_dict()
        state[WRAPPER_STATE_KEY] = {
            KIND_KEY: self._checkpoint_kind,
            BASE_KEY: type(self.base_optimizer).__name__,
            **self._wrapper_state(),
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a dict made by :meth:`state_dict` of the same kind of optimizer over the same
        base optimizer class, or a plain state dict of that base optimizer class: then only
        the base optimizer's state is loaded, and a warning names this wrapper's own state
        (such as SL-SAM's bandit), which stays as it is.

        Everything is checked before anything is loaded (types, the kind and base optimizer,
        keys, group sizes, the shapes of per-element state, the wrapper's own state): a
        refused checkpoint raises a ``TypeError``/``ValueError`` naming the problem and
        changes nothing."""
        self._check_loadable()
        own_state = self._own_state_of(state_dict)
        check_state_dict(state_dict, self.param_groups)
        check_base_groups(state_dict["param_groups"], self.base_optimizer)
        if own_state is not None:
            self._check_wrapper_state(own_state)
        base_state = {k: v for k, v in state_dict.items() if k != WRAPPER_STATE_KEY}
        before = self.base_optimizer.state_dict()
        try:
            self.base_optimizer.load_state_dict(base_state)
            self._share_base_state()
            if own_state is not None:
                self._load_wrapper_state(own_state)
        except BaseException:
            # Not reached by any checkpoint the checks above let through; kept so that a
            # failure inside torch cannot leave half a checkpoint loaded.
            self.base_optimizer.load_state_dict(before)
            self._share_base_state()
            raise
        if own_state is None:
            self._warn_own_state_kept()

    def _own_state_of(self, state_dict: Any) -> dict[str, Any] | None:
        """This wrapper's own part of ``state_dict`` (None in a plain base-optimizer state
        dict), once checked to be saved by this kind over this base optimizer class."""
        if not isinstance(state_dict, Mapping) or state_dict.get(WRAPPER_STATE_KEY) is None:
            return None
        wrapper_state = state_dict[WRAPPER_STATE_KEY]
        if not isinstance(wrapper_state, dict):
            raise ValueError(f"the state dict's {WRAPPER_STATE_KEY!r} entry must be a dict")
        ours = (self._checkpoint_kind, type(self.base_optimizer).__name__)
        # A checkpoint from before the kind was recorded is left to the checks of its state.
        saved = (wrapper_state.get(KIND_KEY, ours[0]), wrapper_state.get(BASE_KEY, ours[1]))
        check_kind(saved, ours)
        return {k: v for k, v in wrapper_state.items() if k not in (KIND_KEY, BASE_KEY)}

    def _warn_own_state_kept(self) -> None:
        """After loading a plain base-optimizer state dict: name the state that was kept."""
        kept = ", ".join(self._wrapper_state())
        if kept:
            warnings.warn(
                f"{type(self).__name__}.load_state_dict() got a plain "
                f"{type(self.base_optimizer).__name__} state dict (no {WRAPPER_STATE_KEY!r} "
                f"entry): it loaded the base optimizer's state only and kept its own as it "
                f"was ({kept}); load a state dict saved by {type(self).__name__}.state_dict() "
                "to resume all of it",
                UserWarning,
                stacklevel=user_stacklevel(),
            )

    def _check_loadable(self) -> None:
        """Hook for subclasses: refuse a load in a state that cannot take one."""

    def _wrapper_state(self) -> dict[str, Any]:
        return {}

    def _check_wrapper_state(self, wrapper_state: dict[str, Any]) -> None:
        """Hook for subclasses: reject a foreign or corrupt state before anything is
        loaded."""

    def _load_wrapper_state(self, wrapper_state: dict[str, Any]) -> None:
        """Hook for subclasses."""
