"""Checks of a checkpoint against the optimizer that loads it, all made before anything is
loaded, so a refused checkpoint changes nothing. Each error names what is wrong and the fix."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

#: Per-element buffers of torch's own optimizers: each has its parameter's shape.
ELEMENTWISE_STATE = (
    "exp_avg",
    "exp_avg_sq",
    "max_exp_avg_sq",
    "momentum_buffer",
    "square_avg",
    "grad_avg",
    "acc_delta",
    "sum",
    "ax",
    "prev",
    "exp_inf",
)


def check_state_dict(state_dict: Any, param_groups: list[dict[str, Any]]) -> None:
    """``state_dict``'s base-optimizer part fits ``param_groups``: a dict with ``state`` and
    ``param_groups``, as many groups and tensors per group, and per-element state of each
    tensor's shape."""
    if not isinstance(state_dict, Mapping):
        what = type(state_dict).__name__
        raise TypeError(
            f"load_state_dict takes the dict that state_dict() returned, got a {what}; "
            "for a file, pass torch.load(path)"
        )
    for key, kind in (("state", Mapping), ("param_groups", list)):
        if not isinstance(state_dict.get(key), kind):
            raise ValueError(
                f"the state dict has no valid {key!r} entry ({kind.__name__}): pass what "
                "state_dict() returned"
            )
    saved_groups = state_dict["param_groups"]
    if len(saved_groups) != len(param_groups):
        raise ValueError(
            f"the state dict has {len(saved_groups)} param groups, this optimizer "
            f"{len(param_groups)}: build the optimizer over the param groups it was saved with"
        )
    owner: dict[Any, tuple[str, torch.Tensor]] = {}
    for i, (saved, ours) in enumerate(zip(saved_groups, param_groups, strict=True)):
        ids = saved.get("params") if isinstance(saved, Mapping) else None
        if not isinstance(ids, list) or len(ids) != len(ours["params"]):
            count = len(ids) if isinstance(ids, list) else "no"
            raise ValueError(
                f"param group {i} of the state dict lists {count} tensors, this optimizer's "
                f"{len(ours['params'])}: the checkpoint is from another model"
            )
        for j, (saved_id, p) in enumerate(zip(ids, ours["params"], strict=True)):
            owner[saved_id] = (f"parameter {j} of group {i}", p)
    for key, buffers in state_dict["state"].items():
        if key not in owner:
            raise ValueError(f"state entry {key!r} belongs to no tensor of the param groups")
        if not isinstance(buffers, Mapping):
            raise ValueError(f"state entry {key!r} must be a dict of buffers")
        where, p = owner[key]
        for name in ELEMENTWISE_STATE:
            value = buffers.get(name)
            if isinstance(value, torch.Tensor) and value.shape != p.shape:
                raise ValueError(
                    f"state[{key!r}][{name!r}] has shape {tuple(value.shape)}, but {where} has "
                    f"shape {tuple(p.shape)}: the checkpoint is from another model"
                )


def check_kind(saved: tuple[Any, Any], ours: tuple[str, str]) -> None:
    """A checkpoint's ``(kind, base optimizer class name)`` is this optimizer's."""
    if tuple(saved) != ours:
        raise ValueError(
            f"this state dict is from {_described(*saved)}, this optimizer is "
            f"{_described(*ours)}: build {_described(*saved)} to resume it"
        )


def _described(kind: Any, base: Any) -> str:
    article = "an" if kind in ("SLSAM", "RST") else "a"  # spelt out: "an ess-el-SAM"
    return f"{article} {kind} (base {base})"


def check_base_groups(saved_groups: list[Any], base_optimizer: torch.optim.Optimizer) -> None:
    """Every saved param group has the hyperparameters ``base_optimizer`` steps with, once its
    class has filled in those its newer versions added (as its ``load_state_dict`` does): a
    state dict of another base optimizer would load, then fail inside torch (for example
    ``KeyError: 'step'`` on loading SGD state into AdamW) or at the next step."""
    base_class = type(base_optimizer)
    for i, saved in enumerate(saved_groups):
        missing = sorted(set(base_optimizer.defaults) - set(_as_loaded(base_class, saved)))
        if missing:
            names = ", ".join(repr(k) for k in missing)
            raise ValueError(
                f"param group {i} of the state dict has no {names}, which "
                f"{base_class.__name__} steps with: it was saved by another base optimizer; "
                "load it into an optimizer built over the base optimizer that saved it"
            )


def _as_loaded(base_class: type[torch.optim.Optimizer], group: Mapping) -> Mapping:
    """``group`` with the defaults ``base_class.__setstate__`` fills in on loading."""
    scratch = base_class.__new__(base_class)
    try:
        base_class.__setstate__(
            scratch, {"defaults": {}, "state": {}, "param_groups": [dict(group)]}
        )
    except Exception:  # a __setstate__ that needs more than torch's own: take the group as is
        return group
    return scratch.param_groups[0]


def check_generator_state(state: Any, owner: str) -> None:
    """A generator state that ``torch.Generator.set_state`` takes (tried on a scratch
    generator), on any device: accelerate's ``prepare`` and ``torch.load(map_location=...)``
    move it with the rest of the state dict, and it is loaded from the CPU."""
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8:
        raise ValueError(
            f"{owner} state dict has no valid generator state; was it saved by {owner}?"
        )
    try:
        torch.Generator().set_state(state.cpu())
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"{owner} state dict holds a corrupt generator state ({exc}); was it saved by {owner}?"
        ) from None


def check_saved_probabilities(probs: Any, num_arms: int, budget: float) -> None:
    """The keep-probabilities of a saved SL-SAM state: one per arm, finite, in [0, 1], summing
    to this SLSAM's budget."""
    if not isinstance(probs, torch.Tensor) or probs.shape != (num_arms,):
        raise ValueError(f"this state dict is not from an SLSAM over the same {num_arms} arms")
    if not probs.is_floating_point():
        raise ValueError(f"the bandit probabilities must be floating point, got {probs.dtype}")
    p = probs.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or bool((p > 1).any()):
        raise ValueError(
            "the bandit probabilities must be finite and in [0, 1]: the checkpoint is corrupt"
        )
    total = float(p.sum())
    if not math.isclose(total, budget, rel_tol=1e-4, abs_tol=1e-4):
        raise ValueError(
            f"the bandit probabilities sum to {total:.6g}, but this SLSAM's budget "
            f"sample_ratio * arms is {budget:.6g}: build it with the sample_ratio it was "
            "saved with"
        )
