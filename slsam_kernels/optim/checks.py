"""Constructor argument checks: each error names the fix, and runs before anything changes."""

from __future__ import annotations

import math
from typing import Any

import torch


def check_base_optimizer(base_optimizer: Any) -> None:
    """The base optimizer must be a ``torch.optim.Optimizer`` subclass (the class, not an
    instance)."""
    if isinstance(base_optimizer, torch.optim.Optimizer):
        raise TypeError(
            "base_optimizer must be an optimizer class such as torch.optim.AdamW, not an "
            "instance; pass its keyword arguments (lr=..., ...) to this constructor"
        )
    if not (isinstance(base_optimizer, type) and issubclass(base_optimizer, torch.optim.Optimizer)):
        raise TypeError(
            f"base_optimizer must be a torch.optim.Optimizer subclass such as "
            f"torch.optim.AdamW, got {base_optimizer!r}"
        )


def check_real(name: str, value: Any) -> None:
    """``value`` must be a real number (an int or a float, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")


def check_nonnegative_finite(name: str, value: Any) -> None:
    """``value`` must be a real number, finite and >= 0."""
    check_real(name, value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value}")


def check_max_grad_norm(value: Any) -> None:
    """``max_grad_norm`` must be None (no clipping) or a finite float > 0."""
    if value is None:
        return
    check_nonnegative_finite("max_grad_norm", value)
    if value == 0:
        raise ValueError("max_grad_norm must be > 0; pass None to turn clipping off")


def check_dense_grads(params: list[torch.Tensor]) -> None:
    """Sparse gradients (``nn.Embedding(sparse=True)``) are refused, before anything changes,
    on every backend alike."""
    for i, p in enumerate(params):
        if p.grad is not None and p.grad.layout != torch.strided:
            raise TypeError(
                f"parameter {i} with a gradient has a {p.grad.layout} gradient: these optimizers "
                "need dense gradients; build the layer dense, e.g. nn.Embedding(..., "
                "sparse=False)"
            )


def check_scaler(scaler: Any) -> None:
    """``scaler`` must be None or a ``torch.amp.GradScaler``."""
    if scaler is not None and not isinstance(scaler, torch.amp.GradScaler):
        raise TypeError(
            f"scaler must be a torch.amp.GradScaler or None, got {type(scaler).__name__}"
        )


def check_unit_interval(name: str, value: Any, *, include_zero: bool) -> None:
    """``value`` must lie in [0, 1] (or (0, 1] when ``include_zero`` is false); the error
    names the interval whichever side it misses."""
    check_real(name, value)
    low_ok = value >= 0 if include_zero else value > 0
    if not (low_ok and value <= 1):  # NaN fails both comparisons
        interval = "[0, 1]" if include_zero else "(0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value}")


#: The seeds torch.Generator.manual_seed takes.
SEED_RANGE = (-(2**63), 2**64 - 1)


def check_seed(seed: Any) -> None:
    """``seed`` must be None or an int that ``torch.Generator.manual_seed`` takes."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ValueError(
            f"seed must be in [-2**63, 2**64 - 1] (torch.Generator's range), got {seed}; "
            "reduce it, e.g. seed % 2**63"
        )


def param_groups_of(params: Any) -> list[dict[str, Any]]:
    """Materialise ``params`` (tensors or param-group dicts) and check it is non-empty and on
    one device."""
    if isinstance(params, torch.Tensor):
        raise TypeError("params must be an iterable of tensors or dicts, e.g. model.parameters()")
    groups = list(params)
    if not groups:
        raise ValueError("params is empty: pass model.parameters() or a list of param groups")
    if not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    groups = [dict(g, params=_tensor_list(g.get("params"))) for g in groups]
    tensors = [p for g in groups for p in g["params"]]
    if not tensors:
        raise ValueError("params holds no tensors: pass model.parameters() or param groups")
    _check_each_tensor_once(groups)
    _check_tensor_kinds(groups)
    devices = {p.device for p in tensors}
    if len(devices) > 1:
        names = ", ".join(sorted(str(d) for d in devices))
        raise ValueError(
            f"parameters are on several devices ({names}); build one optimizer per device "
            "or move the model with model.to(device) first"
        )
    return groups


def positions(groups: list[dict[str, Any]]) -> list[tuple[str, torch.Tensor]]:
    """``("parameter j of group i", tensor)`` for every tensor, in param-group order."""
    return [
        (f"parameter {j} of group {i}", p)
        for i, g in enumerate(groups)
        for j, p in enumerate(g["params"])
    ]


def _check_each_tensor_once(groups: list[dict[str, Any]]) -> None:
    """A tensor listed twice would be perturbed (and stepped) twice."""
    first_seen: dict[int, str] = {}
    for where, p in positions(groups):
        if id(p) in first_seen:
            raise ValueError(
                f"{where} is the same tensor as {first_seen[id(p)]}: list each tensor once "
                "(model.parameters() yields a shared or tied weight once)"
            )
        first_seen[id(p)] = where


def _check_tensor_kinds(groups: list[dict[str, Any]]) -> None:
    """Dense, real floating-point tensors only, the same rule for every backend."""
    for where, p in positions(groups):
        if p.is_complex():
            raise TypeError(
                f"{where} is complex ({p.dtype}): the sharpness-aware optimizers take real "
                "tensors; store it as a real parameter (torch.view_as_real) and form the "
                "complex tensor in forward (torch.view_as_complex)"
            )
        if p.layout != torch.strided:
            raise TypeError(
                f"{where} has layout {p.layout}: the sharpness-aware optimizers take dense "
                "parameters"
            )
        if not p.is_floating_point():
            raise TypeError(f"{where} has dtype {p.dtype}: parameters must be floating point")


def _tensor_list(params: Any) -> list[torch.Tensor]:
    if isinstance(params, torch.Tensor):
        return [params]
    if params is None:
        raise ValueError("a param group needs a 'params' entry")
    tensors = list(params)
    for p in tensors:
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"params must hold tensors, got {type(p).__name__}")
    return tensors
