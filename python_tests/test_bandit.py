"""The SL-SAM bandit (docs/algorithms.md) on hand-worked examples, and its invariants."""

import math

import pytest
import torch

from slsam_kernels import ops
from slsam_kernels.backends.reference.bandit import capped_projection


def test_update_without_capping_hand_worked():
    # p = 0.4 everywhere, B = 2. Active {0, 2, 3} with n = (0.4, 0.8, 0): q = (n/p)^2 = (1, 4, 0),
    # l = max q - q = (3, 0, 4); with alpha = ln2/10, v = 0.4 * 2^(-l/4) = (0.4 * 2^-0.75, 0.4,
    # 0.2); inactive arms keep 0.4. No arm exceeds 1 after scaling by B / sum(v) = 2 / 1.637841.
    probs = torch.full((5,), 0.4)
    new = ops.bandit_update(
        probs, torch.tensor([0.4, 0.8, 0.0]), torch.tensor([0, 2, 3]), 2.0, math.log(2) / 10
    )
    v = torch.tensor([0.4 * 2**-0.75, 0.4, 0.4, 0.2, 0.4], dtype=torch.float64)
    torch.testing.assert_close(new, (v * 2 / v.sum()).float())
    torch.testing.assert_close(
        new, torch.tensor([0.290435, 0.488448, 0.488448, 0.244224, 0.488448])
    )
    assert new.dtype == torch.float32


def test_update_with_capping_hand_worked():
    # p = (0.9, 0.6, 0.3, 0.2), B = 2. Active {1, 2} with n = (0.6, 0.6): q = (1, 4), l = (3, 0);
    # alpha = ln2/5 halves arm 1: v = (0.9, 0.3, 0.3, 0.2), sum 1.7. Arm 0: 0.9 * 2 > 1.7, so
    # p_0 = 1 and b = 1; then 0.3 * 1 <= 0.8 and the rest scale by 1/0.8.
    new = ops.bandit_update(
        torch.tensor([0.9, 0.6, 0.3, 0.2]),
        torch.tensor([0.6, 0.6]),
        torch.tensor([1, 2]),
        2.0,
        math.log(2) / 5,
    )
    torch.testing.assert_close(new, torch.tensor([1.0, 0.375, 0.375, 0.25]))


@pytest.mark.parametrize(
    "v, budget, want",
    [
        pytest.param(
            [0.9, 0.5, 0.3, 0.2, 0.1],
            3,
            [1, 2 * 0.5 / 1.1, 0.6 / 1.1, 0.4 / 1.1, 0.2 / 1.1],
            id="one-cap",
        ),
        pytest.param([0.1, 0.8, 0.2, 0.9], 3, [1 / 3, 1, 2 / 3, 1], id="two-caps-unsorted"),
        pytest.param([0.5, 0.5, 0.5], 3, [1, 1, 1], id="full-budget"),
        pytest.param([0.2, 0.2], 1, [0.5, 0.5], id="tie"),
    ],
)
def test_capped_projection_hand_worked(v, budget, want):
    got = capped_projection(torch.tensor(v, dtype=torch.float64), budget)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))


@pytest.mark.parametrize("ratio", [0.05, 0.2, 0.5, 0.9, 1.0])
def test_update_invariants_on_random_inputs(ratio):
    gen = torch.Generator().manual_seed(int(ratio * 100))
    n_arms = 257
    budget = ratio * n_arms
    for _ in range(10):
        # Moderate losses: exp(-alpha * l / p) stays well above the suffix-sum floor.
        probs = torch.rand(n_arms, generator=gen) * 0.7 + 0.3
        active = torch.randperm(n_arms, generator=gen)[: int(torch.randint(1, n_arms, ()))]
        norms = torch.rand(active.numel(), generator=gen)
        new = ops.bandit_update(probs, norms, active, budget)
        assert not torch.allclose(new, probs)
        assert new.min() >= 1e-8 and new.max() <= 1
        total = torch.tensor(budget, dtype=torch.float64)
        torch.testing.assert_close(new.double().sum(), total, rtol=1e-5, atol=0)
    probs = torch.full((n_arms,), ratio)
    for _ in range(30):  # many updates in a row drive some arms to the floor: still in range
        active = (torch.rand(n_arms, generator=gen) <= probs).nonzero().squeeze(1)
        norms = torch.rand(active.numel(), generator=gen) * 10 ** torch.randn(1, generator=gen)
        probs = ops.bandit_update(probs, norms, active, budget, lr=1e-2)
        assert probs.min() >= 1e-8 and probs.max() <= 1


def test_budget_is_not_restored_below_the_suffix_sum_floor():
    # docs/algorithms.md: S_j = max(sum, 1e-5). When every unvisited v is tiny the projection scales
    # by b / 1e-5, so the sum falls short of B rather than blowing tiny values up.
    new = capped_projection(torch.tensor([1.0, 1e-9, 1e-9], dtype=torch.float64), 2)
    torch.testing.assert_close(new, torch.tensor([1.0, 1e-4, 1e-4], dtype=torch.float64))


def test_large_gradients_keep_probability():
    probs = torch.full((4,), 0.5)
    new = ops.bandit_update(probs, torch.tensor([10.0, 0.1]), torch.tensor([0, 1]), 2.0, lr=1e-3)
    assert new[0] > new[1]


def test_sampling_mean_matches_budget_and_is_seeded():
    probs = torch.tensor([0.05, 0.2, 0.5, 0.7, 0.95, 1.0, 0.3, 0.3])
    draws = torch.stack(
        [ops.sample_active(probs, torch.Generator().manual_seed(s)) for s in range(3000)]
    )
    counts = draws.sum(1).double()
    std_of_mean = math.sqrt(float((probs * (1 - probs)).sum())) / math.sqrt(len(counts))
    assert abs(counts.mean().item() - probs.sum().item()) < 4 * std_of_mean
    torch.testing.assert_close(draws.double().mean(0), probs.double(), atol=0.04, rtol=0)
    again = ops.sample_active(probs, torch.Generator().manual_seed(7))
    assert torch.equal(again, draws[7])


def test_sampling_never_returns_an_empty_set():
    probs = torch.full((3,), 1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        assert ops.sample_active(probs, gen).any()


def _visiting_projection(v: torch.Tensor, budget: float) -> torch.Tensor:
    """The capped projection arm by arm, as the authors' code visits them."""
    order = torch.argsort(v, descending=True, stable=True)
    v_sorted = v[order]
    suffix_sums = v_sorted.flip(0).cumsum(0).flip(0)
    out, remaining = v.clone(), float(budget)
    for j in range(len(v)):
        suffix = max(float(suffix_sums[j]), 1e-5)
        if float(v_sorted[j]) * remaining <= suffix:
            out[order[j:]] = v_sorted[j:] * remaining / suffix
            break
        out[order[j]] = 1.0
        remaining -= 1.0
    return out


@pytest.mark.parametrize("arms", [1, 7, 149, 1000])
def test_capped_projection_equals_the_arm_by_arm_loop(arms):
    gen = torch.Generator().manual_seed(arms)
    capped = 0
    for budget_ratio in (0.05, 0.2, 0.5, 0.9, 1.0):
        # heavy tails: many arms would exceed 1 and are capped one by one
        v = torch.rand(arms, generator=gen, dtype=torch.float64) ** 6 * 3
        budget = budget_ratio * arms
        got, want = capped_projection(v, budget), _visiting_projection(v, budget)
        assert torch.equal(got, want), (arms, budget_ratio)
        capped += int((want == 1.0).sum())
    assert capped > 0
