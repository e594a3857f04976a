"""The SL-SAM bandit kernels against the float64 host reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from triton_testing import DEVICE, TRITON_MARKS

from slsam_kernels import ops
from slsam_kernels import triton as triton_backend
from slsam_kernels.reference.bandit import (
    PROB_FLOOR,
    ROBUST,
    SUFFIX_SUM_FLOOR,
    bandit_update_float64,
)

pytestmark = TRITON_MARKS


CASES = [
    pytest.param(1, 1.0, 1e-3, 1, id="one-arm"),
    pytest.param(7, 0.5, 1e-3, 7, id="all-active"),
    pytest.param(100, 0.2, 1e-3, 1, id="one-active"),
    pytest.param(129, 0.9, 0.5, 60, id="many-capped"),
    pytest.param(50, 0.3, 5.0, 20, id="large-lr"),
    pytest.param(1000, 0.5, 1.0, 300, id="1000-arms"),
]


def _inputs(num_arms: int, num_active: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    probs = torch.rand(num_arms, generator=gen) * 0.9 + 0.05
    idx = torch.randperm(num_arms, generator=gen)[:num_active].sort().values
    norms = torch.rand(num_active, generator=gen) * 3
    return probs.to(DEVICE), norms.to(DEVICE), idx.to(DEVICE)


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


def _assert_bounded_by_float64(got, probs, norms, idx, budget, lr, **rule) -> None:
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


@pytest.mark.parametrize(("num_arms", "ratio", "lr", "num_active"), CASES)
def test_bandit_update_matches_reference(
    num_arms: int, ratio: float, lr: float, num_active: int
) -> None:
    probs, norms, idx = _inputs(num_arms, num_active, seed=num_arms)
    budget = ratio * num_arms
    got = triton_backend.bandit_update(probs, norms, idx, budget, lr, 1e-3)
    assert got.device == probs.device and got.dtype == torch.float32
    _assert_bounded_by_float64(got, probs, norms, idx, budget, lr)
    if lr > 0.1:
        assert not torch.equal(got, probs), "the update changed nothing"


@pytest.mark.parametrize(("num_arms", "ratio", "lr", "num_active"), CASES[1:])
def test_robust_bandit_update_matches_reference(
    num_arms: int, ratio: float, lr: float, num_active: int
) -> None:
    probs, norms, idx = _inputs(num_arms, num_active, seed=num_arms + 1)
    budget = ratio * num_arms
    rule = dict(rule=ROBUST, exploration=0.1)
    got = triton_backend.bandit_update(probs, norms, idx, budget, lr, 1e-3, **rule)
    _assert_bounded_by_float64(got, probs, norms, idx, budget, lr, **rule)


@pytest.mark.slow
def test_bandit_update_4096_arms() -> None:
    probs, norms, idx = _inputs(4096, 1500, seed=4)
    got = triton_backend.bandit_update(probs, norms, idx, 0.3 * 4096, 0.2, 1e-3)
    _assert_bounded_by_float64(got, probs, norms, idx, 0.3 * 4096, 0.2)


def test_tiny_norms_keep_fp32_digits() -> None:
    """With p_min = 1e-3 the reference's reward carries (L/p_min)^2, 1e6 times the terms
    that differ; the kernel subtracts the ratios directly, so small losses survive fp32."""
    probs = torch.tensor([0.5, 0.5, 0.5], device=DEVICE)
    norms = torch.tensor([1.0, 0.999, 0.5], device=DEVICE)
    idx = torch.arange(3, device=DEVICE)
    got = triton_backend.bandit_update(probs, norms, idx, 1.5, 1e-3, 1e-3)
    _assert_bounded_by_float64(got, probs, norms, idx, 1.5, 1e-3)


def test_sample_active_is_seeded_and_follows_probs() -> None:
    probs = torch.linspace(0.0, 1.0, 2000, device=DEVICE)
    first = triton_backend.sample_active(probs, torch.Generator().manual_seed(3))
    again = triton_backend.sample_active(probs, torch.Generator().manual_seed(3))
    other = triton_backend.sample_active(probs, torch.Generator().manual_seed(4))
    assert first.dtype == torch.bool and first.device.type == "cpu"
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert bool(first[-1]) and not bool(first[0])
    # E[active] = sum p = 1000, sd ~ 18
    assert abs(int(first.sum()) - 1000) < 100


def test_sample_active_redraws_an_empty_set() -> None:
    probs = torch.full((3,), 1e-8, device=DEVICE)
    probs[1] = 0.3
    mask = triton_backend.sample_active(probs, torch.Generator().manual_seed(0))
    assert mask.tolist() == [False, True, False]


def test_ops_route_the_bandit_through_the_backend() -> None:
    probs, norms, idx = _inputs(20, 5, seed=9)
    torch.testing.assert_close(
        ops.bandit_update(probs, norms, idx, 10.0, 0.5, backend="triton"),
        ops.bandit_update(probs, norms, idx, 10.0, 0.5, backend="reference"),
        rtol=1e-5,
        atol=1e-6,
    )
    bound = ops.bind("triton", torch.device(DEVICE))
    assert bound.bandit_device == torch.device(DEVICE)
    assert ops.bind("reference", torch.device(DEVICE)).bandit_device == torch.device("cpu")
