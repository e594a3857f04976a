"""The yardstick of the fp32 bandits (Triton's): the float64 reference, with twice the error
of the same formulation in plain fp32 ops, plus one fp32 epsilon, as the fused steps are
bounded."""

from __future__ import annotations

import numpy as np
import torch

from slsam_kernels.backends.reference.bandit import (
    PROB_FLOOR,
    ROBUST,
    SUFFIX_SUM_FLOOR,
    bandit_update_float64,
)


def _fp32_projection(v: torch.Tensor, budget: float) -> torch.Tensor:
    """The capped projection in fp32 throughout, its sums accumulated in fp32 (torch's CPU
    cumsum accumulates fp32 in double, numpy's in fp32), over the values ascending."""
    ascending = np.sort(v.numpy())
    n = len(ascending)
    prefix = np.maximum(np.add.accumulate(ascending, dtype=np.float32), SUFFIX_SUM_FLOOR)
    remaining = np.float32(budget) - np.arange(n - 1, -1, -1, dtype=np.float32)
    stops = np.flatnonzero(ascending * remaining <= prefix)
    if len(stops) == 0:
        return torch.ones_like(v)
    stop = stops[-1]
    scaled = v * torch.tensor(remaining[stop] / prefix[stop])
    return torch.where(v > float(ascending[stop]), 1.0, scaled)


def _fp32_twin(probs, norms, idx, budget, lr, rule="paper", exploration=0.0) -> torch.Tensor:
    """The kernel's formulation (losses from the ratios, no (L/p_min)^2 term) in plain fp32
    on the CPU: what fp32 costs this computation, the yardstick of the bound."""
    p, n, i = probs.cpu().float(), norms.cpu().float(), idx.cpu()
    ratio = n / p[i]
    if rule == ROBUST:
        top = ratio.max()
        relative = ratio / (top if top > 0 else 1.0)
        loss = 1 - relative * relative if top > 0 else torch.zeros_like(ratio)
    else:
        loss = (ratio * ratio).max() - ratio * ratio
    v = p.clone()
    v[i] = p[i] * torch.exp(-lr * loss / p[i])
    mixed = (1 - exploration) * _fp32_projection(v, budget) + exploration * (budget / len(p))
    return mixed.clamp(PROB_FLOOR, 1.0)


def assert_bounded_by_float64(got, probs, norms, idx, budget, lr, **rule) -> None:
    """The kernel's largest error against the float64 reference is at most twice what fp32
    torch ops computing the same formulation make, plus one fp32 epsilon (as the fused steps
    are bounded); an arm capped at 1 on one side only must lie within that bound of 1."""
    truth = bandit_update_float64(probs, norms, idx, budget, lr, **rule)
    twin = _fp32_twin(probs, norms, idx, budget, lr, **rule)
    bound = 2 * float((twin.double() - truth).abs().max()) + torch.finfo(torch.float32).eps
    error = (got.cpu().double() - truth).abs()
    assert float(error.max()) <= bound, f"error {float(error.max()):.3g} > bound {bound:.3g}"
    capped_once = (got.cpu() == 1) != (truth == 1)
    assert bool(((truth[capped_once] - 1).abs() <= bound).all()), "capped differently"
