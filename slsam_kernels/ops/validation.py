"""Input checks shared by the public ops: clear errors before any tensor is written."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..backends.reference.bandit import DEFAULT_EXPLORATION, DEFAULT_LR, ROBUST, RULES


def common_device(tensors: Sequence[torch.Tensor]) -> torch.device:
    """The one device all ``tensors`` live on; ``ValueError`` if they are spread out."""
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        names = ", ".join(sorted(str(d) for d in devices))
        raise ValueError(f"all tensors must be on one device, got {names}; move them with .to()")
    return devices.pop()


def check_lists(**lists: Sequence[torch.Tensor] | None) -> None:
    """Check that the named tensor lists are lists of tensors of equal length and matching
    shapes; lists named ``backups`` must also match the first list's dtypes."""
    given = {name: seq for name, seq in lists.items() if seq is not None}
    first_name, first = next(iter(given.items()))
    for name, seq in given.items():
        if isinstance(seq, torch.Tensor) or not all(isinstance(t, torch.Tensor) for t in seq):
            raise TypeError(f"{name} must be a sequence of tensors")
        if len(seq) != len(first):
            raise ValueError(
                f"{name} has {len(seq)} tensors but {first_name} has {len(first)}; "
                "pass one per tensor"
            )
        for i, (a, b) in enumerate(zip(first, seq, strict=True)):
            if a.shape != b.shape:
                raise ValueError(
                    f"{name}[{i}] has shape {tuple(b.shape)}, {first_name}[{i}] has "
                    f"{tuple(a.shape)}; they must match"
                )
            if name == "backups" and a.dtype != b.dtype:
                raise TypeError(f"backups[{i}] must have dtype {a.dtype}, got {b.dtype}")
    if given:
        common_device([t for seq in given.values() for t in seq] or [torch.empty(0)])


def check_scales(scales: torch.Tensor, count: int, device: torch.device) -> None:
    """``scales`` must be an fp32 tensor with one entry per tensor, on ``device``."""
    if not isinstance(scales, torch.Tensor) or scales.dtype != torch.float32:
        raise TypeError("scales must be a float32 tensor with one entry per tensor")
    if scales.shape != (count,):
        raise ValueError(f"scales must have shape ({count},), got {tuple(scales.shape)}")
    if scales.device != device:
        raise ValueError(f"scales is on {scales.device} but the tensors are on {device}")


def bandit_options(
    rule: Any,
    lr: Any,
    exploration: Any,
    *,
    names: tuple[str, str, str] = ("rule", "lr", "exploration"),
) -> tuple[float, float]:
    """Check a bandit rule and its options; return its ``(lr, exploration)``, with None
    meaning the rule's default. ``exploration`` belongs to the robust rule (the paper rule
    runs with 0). ``names`` are the caller's names of the three arguments, for the errors."""
    rule_name, lr_name, exploration_name = names
    if rule not in RULES:
        raise ValueError(f"{rule_name} must be one of {', '.join(map(repr, RULES))}, got {rule!r}")
    lr = DEFAULT_LR[rule] if lr is None else _nonnegative_float(lr_name, lr)
    if rule != ROBUST:
        if exploration is not None:
            raise ValueError(
                f"{exploration_name} applies to {rule_name}={ROBUST!r} only; leave it None for "
                f"{rule_name}={rule!r}"
            )
        return lr, 0.0
    if exploration is None:
        return lr, DEFAULT_EXPLORATION
    exploration = _nonnegative_float(exploration_name, exploration)
    if exploration > 1:
        raise ValueError(f"{exploration_name} must be in [0, 1], got {exploration}")
    return lr, exploration


def _nonnegative_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(value)


def check_draw_probabilities(probs: Any) -> None:
    """Keep-probabilities to draw from or update: a non-empty 1-D floating-point tensor,
    finite, in [0, 1], at least one above 0 (else no draw can ever select an arm)."""
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        raise TypeError("probs must be a floating-point tensor")
    if probs.dim() != 1 or probs.numel() == 0:
        raise ValueError("probs must be a non-empty 1-D tensor")
    p = probs.detach()
    if not bool((torch.isfinite(p) & (p >= 0) & (p <= 1)).all()):
        raise ValueError(
            "probs must be finite and in [0, 1]: got NaN, inf or an out-of-range value"
        )
    if not bool((p > 0).any()):
        raise ValueError("every probability is 0: no draw can select an arm")


def check_bandit_inputs(probs: Any, active_norms: Any, active_idx: Any, budget: Any) -> None:
    """The bandit update's inputs: valid probabilities, one finite norm >= 0 per active arm,
    active indices in range and distinct, a budget in (0, number of arms]."""
    check_draw_probabilities(probs)
    for name, t in (("active_norms", active_norms), ("active_idx", active_idx)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a tensor")
    if active_idx.dim() != 1 or active_norms.shape != active_idx.shape:
        raise ValueError("active_idx and active_norms must be 1-D, one norm per index")
    if active_idx.numel() == 0:
        raise ValueError("active_idx is empty: the bandit needs at least one active arm")
    if active_idx.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"active_idx must be an integer tensor, got {active_idx.dtype}")
    n = probs.numel()
    idx = active_idx.detach().cpu()
    if bool(((idx < 0) | (idx >= n)).any()):
        raise ValueError(f"active_idx must lie in [0, {n}), one index per arm of probs")
    if idx.unique().numel() != idx.numel():
        raise ValueError("active_idx lists an arm twice: pass each active arm once")
    norms = active_norms.detach()
    if not bool((torch.isfinite(norms) & (norms >= 0)).all()):
        raise ValueError("active_norms must be finite and >= 0: got NaN, inf or a negative norm")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget <= n:
        raise ValueError(f"budget must be a number in (0, {n}], got {budget!r}")
