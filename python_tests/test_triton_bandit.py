"""What is Triton's own in the SL-SAM bandit: its fp32 update keeps the digits of small
losses, and past one program's arms (each rule against the reference, and sampling:
test_backend_contract.py)."""

from __future__ import annotations

import pytest
import torch
from bandit_testing import assert_bounded_by_float64
from triton_testing import DEVICE, TRITON_MARKS

from slsam_kernels import ops
from slsam_kernels.backends import reference
from slsam_kernels.backends import triton_kernels as triton_backend
from slsam_kernels.backends.reference.bandit import ROBUST

pytestmark = TRITON_MARKS


def _inputs(num_arms: int, num_active: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    probs = torch.rand(num_arms, generator=gen) * 0.9 + 0.05
    idx = torch.randperm(num_arms, generator=gen)[:num_active].sort().values
    norms = torch.rand(num_active, generator=gen) * 3
    return probs.to(DEVICE), norms.to(DEVICE), idx.to(DEVICE)


CASES = [
    pytest.param(1, 1.0, 1e-3, 1, id="one-arm"),
    pytest.param(7, 0.5, 1e-3, 7, id="all-active"),
    pytest.param(100, 0.2, 1e-3, 1, id="one-active"),
    pytest.param(129, 0.9, 0.5, 60, id="many-capped"),
    pytest.param(50, 0.3, 5.0, 20, id="large-lr"),
    pytest.param(1000, 0.5, 1.0, 300, id="1000-arms"),
]


@pytest.mark.parametrize(("num_arms", "ratio", "lr", "num_active"), CASES)
def test_bandit_update_matches_reference(
    num_arms: int, ratio: float, lr: float, num_active: int
) -> None:
    probs, norms, idx = _inputs(num_arms, num_active, seed=num_arms)
    budget = ratio * num_arms
    got = triton_backend.bandit_update(probs, norms, idx, budget, lr, 1e-3)
    assert got.device == probs.device and got.dtype == torch.float32
    assert_bounded_by_float64(got, probs, norms, idx, budget, lr)
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
    assert_bounded_by_float64(got, probs, norms, idx, budget, lr, **rule)


@pytest.mark.slow
def test_bandit_update_4096_arms() -> None:
    probs, norms, idx = _inputs(4096, 1500, seed=4)
    got = triton_backend.bandit_update(probs, norms, idx, 0.3 * 4096, 0.2, 1e-3)
    assert_bounded_by_float64(got, probs, norms, idx, 0.3 * 4096, 0.2)


def test_tiny_norms_keep_fp32_digits() -> None:
    """With p_min = 1e-3 the reference's reward carries (L/p_min)^2, 1e6 times the terms
    that differ; the kernel subtracts the ratios directly, so small losses survive fp32."""
    probs = torch.tensor([0.5, 0.5, 0.5], device=DEVICE)
    norms = torch.tensor([1.0, 0.999, 0.5], device=DEVICE)
    idx = torch.arange(3, device=DEVICE)
    got = triton_backend.bandit_update(probs, norms, idx, 1.5, 1e-3, 1e-3)
    assert_bounded_by_float64(got, probs, norms, idx, 1.5, 1e-3)


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


def test_more_arms_than_one_program_holds_are_declined_and_run_on_the_reference() -> None:
    from slsam_kernels.backends.triton_kernels.bandit import MAX_ARMS

    probs, norms, idx = _inputs(MAX_ARMS + 1, 40, seed=10)
    probs = probs.to(DEVICE)
    assert triton_backend.bandit_update(probs, norms, idx, 100.0, 0.5, 1e-3) is None
    got = ops.bind("triton", torch.device(DEVICE)).bandit_update(probs, norms, idx, 100.0, 0.5)
    want = reference.bandit_update(probs, norms, idx, 100.0, 0.5)
    assert torch.equal(got, want)
