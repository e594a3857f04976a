"""The robust (scale-free) SL-SAM bandit rule: a float64 oracle written from its formulas,
parity of every backend with the reference, the exploration floor and budget, invariance of
the probability trajectory to the scale of the loss, and the checkpoint's record of the rule."""

from __future__ import annotations

import math

import pytest
import torch
from backend_testing import backend_params, device_of, skip_unless_available
from builders import loss_of, make_batches, make_model

from slsam_kernels import SLSAM, ops
from slsam_kernels.backends import reference

SCALES = [10.0**k for k in range(-4, 5)]
SEEDS = [0, 1]
BACKENDS = backend_params(device=False)


def _oracle(
    probs: list[float],
    norms: list[float],
    idx: list[int],
    budget: float,
    eta: float,
    gamma: float,
) -> list[float]:
    """The robust rule in plain float64, from its formulas: loss, EXP3 step, capped
    projection (cap the k largest, the fewest for which the rest fit under 1), mixture, clip."""
    q = [(n / probs[i]) ** 2 for n, i in zip(norms, idx, strict=True)]
    top = max(q)
    v = list(probs)
    for i, qi in zip(idx, q, strict=True):
        loss = 1 - qi / top if top > 0 else 0.0
        v[i] = probs[i] * math.exp(-eta * loss / probs[i])
    order = sorted(range(len(v)), key=lambda i: -v[i])
    for k in range(len(v)):
        rest = order[k:]
        scale = (budget - k) / sum(v[i] for i in rest)
        if v[rest[0]] * scale <= 1:
            break
    proj = [1.0] * len(v)
    for i in rest:
        proj[i] = v[i] * scale
    s = budget / len(v)
    return [min(max((1 - gamma) * x + gamma * s, 1e-8), 1.0) for x in proj]


def _inputs(
    num_arms: int, num_active: int, seed: int, norms: str = "random"
) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    probs = torch.rand(num_arms, generator=gen) * 0.9 + 0.05
    idx = torch.randperm(num_arms, generator=gen)[:num_active].sort().values
    if norms == "zero":
        values = torch.zeros(num_active)
    elif norms == "equal":
        values = torch.full((num_active,), 0.7)
    else:
        values = torch.rand(num_active, generator=gen) * 3
        values[torch.rand(num_active, generator=gen) < 0.2] = 0.0
    return probs, values, idx


def _robust(probs, norms, idx, budget, lr, gamma, backend="reference") -> torch.Tensor:
    device = device_of(backend)
    new = ops.bandit_update(
        probs.to(device),
        norms.to(device),
        idx.to(device),
        budget,
        lr,
        rule="robust",
        exploration=gamma,
        backend=backend,
    )
    assert new.device.type == torch.device(device).type and new.dtype == torch.float32
    return new.cpu()


CASES = [
    pytest.param(1, 1.0, 1, "random", id="one-arm"),
    pytest.param(7, 0.5, 7, "random", id="7-all-active"),
    pytest.param(7, 0.3, 1, "random", id="7-one-active"),
    pytest.param(149, 0.2, 60, "random", id="149"),
    pytest.param(149, 0.9, 100, "random", id="149-many-capped"),
    pytest.param(1000, 0.5, 300, "random", id="1000"),
    pytest.param(149, 0.4, 50, "zero", id="zero-norms"),
    pytest.param(149, 0.4, 50, "equal", id="equal-norms"),
]
RATES = [
    pytest.param(0.05, 0.1, id="defaults"),
    pytest.param(2.0, 0.0, id="no-exploration"),
    pytest.param(0.5, 1.0, id="full-exploration"),
]


@pytest.mark.parametrize(("lr", "gamma"), RATES)
@pytest.mark.parametrize(("num_arms", "ratio", "num_active", "norms"), CASES)
def test_reference_matches_the_oracle(num_arms, ratio, num_active, norms, lr, gamma):
    seed = num_arms + num_active
    probs, values, idx = _inputs(num_arms, num_active, seed, norms)
    budget = ratio * num_arms
    want = _oracle(
        probs.double().tolist(), values.double().tolist(), idx.tolist(), budget, lr, gamma
    )
    got = _robust(probs, values, idx, budget, lr, gamma)
    torch.testing.assert_close(
        got, torch.tensor(want, dtype=torch.float32), rtol=1e-6, atol=0, msg=f"seed {seed}"
    )


def test_hand_worked_example():
    # p = 0.5 x 4, B = 2, active {0, 1, 2} with n = (1, 0.5, 0): q = (4, 1, 0), l = (0, 0.75, 1);
    # eta = ln2 / 2 gives v = 0.5 * 2^-l = (0.5, 0.5 * 2^-0.75, 0.25, 0.5), sum 1.547302; no cap,
    # so proj = 2 v / sum, then p = 0.9 proj + 0.1 * 0.5.
    got = _robust(
        torch.full((4,), 0.5),
        torch.tensor([1.0, 0.5, 0.0]),
        torch.tensor([0, 1, 2]),
        2.0,
        math.log(2) / 2,
        0.1,
    )
    v = torch.tensor([0.5, 0.5 * 2**-0.75, 0.25, 0.5], dtype=torch.float64)
    torch.testing.assert_close(got, (0.9 * 2 * v / v.sum() + 0.05).float())
    torch.testing.assert_close(got, torch.tensor([0.631658, 0.395856, 0.340829, 0.631658]))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.id != "reference"])
@pytest.mark.parametrize(("lr", "gamma"), RATES)
@pytest.mark.parametrize(("num_arms", "ratio", "num_active", "norms"), CASES)
def test_backend_matches_reference(num_arms, ratio, num_active, norms, lr, gamma, backend):
    seed = 7 * num_arms + num_active
    probs, values, idx = _inputs(num_arms, num_active, seed, norms)
    budget = ratio * num_arms
    got = _robust(probs, values, idx, budget, lr, gamma, backend)
    want = _robust(probs, values, idx, budget, lr, gamma)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=f"seed {seed}")
    assert torch.equal(got == 1, want == 1), f"a different set of arms was capped (seed {seed})"
    if norms == "random" and num_active > 1:
        assert not torch.equal(got, probs), f"the update changed nothing (seed {seed})"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gamma", [0.1, 0.3])
def test_exploration_floor_and_budget_hold(gamma, backend):
    seed, num_arms, ratio = 11, 257, 0.3
    gen = torch.Generator().manual_seed(seed)
    budget = ratio * num_arms
    probs = torch.full((num_arms,), ratio)
    for step in range(15):
        active = (torch.rand(num_arms, generator=gen) <= probs).nonzero().squeeze(1)
        if active.numel() == 0:
            continue
        # norms spread over six orders of magnitude, a fresh overall scale each step
        spread = 10 ** (6 * torch.rand(active.numel(), generator=gen) - 3)
        norms = spread * 10 ** torch.randn(1, generator=gen)
        probs = _robust(probs, norms, active, budget, 1.0, gamma, backend)
        where = f"seed {seed}, step {step}"
        assert probs.min() >= gamma * ratio * (1 - 1e-6), where
        assert probs.max() <= 1, where
        torch.testing.assert_close(
            probs.double().sum(),
            torch.tensor(budget, dtype=torch.float64),
            rtol=1e-5,
            atol=0,
            msg=where,
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_update_ignores_the_scale_of_the_norms(backend):
    seed = 5
    probs, norms, idx = _inputs(149, 70, seed)
    want = _robust(probs, norms, idx, 50.0, 0.5, 0.1, backend)
    for scale in SCALES:
        got = _robust(probs, norms * scale, idx, 50.0, 0.5, 0.1, backend)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=0, msg=f"seed {seed}, x{scale:g}")


def _trajectory(
    backend: str, bandit: str, scale: float, seed: int, steps: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """SL-SAM on the loss times ``scale``; SGD's lr divided by ``scale`` keeps the weights'
    path the same, so only the bandit could tell the scales apart. Returns the probabilities
    and active masks after each step."""
    model = make_model(seed)
    batches = make_batches(steps, seed=seed + 100)
    opt = SLSAM(
        model.parameters(),
        torch.optim.SGD,
        lr=0.05 / scale,
        momentum=0.9,
        sample_ratio=0.5,
        bandit=bandit,
        bandit_lr=0.2 if bandit == "robust" else None,
        seed=seed,
        backend=backend,
    )
    probs, masks = [], []
    for batch in batches:

        def closure(batch=batch):
            (scale * loss_of(model, batch)).backward()

        closure()
        opt.step(closure)
        opt.zero_grad()
        probs.append(opt.probs)
        masks.append(opt.active_mask)
    return torch.stack(probs), torch.stack(masks)


# one seed under triton's interpreter: 200 steps of it take about 100 s
TRAJECTORY_CASES = [
    *(
        pytest.param(name, seed, marks=skip_unless_available(name), id=f"{name}-{seed}")
        for name in ("reference", "cpp")
        for seed in SEEDS
    ),
    pytest.param(
        "triton",
        SEEDS[0],
        marks=[*skip_unless_available("triton"), pytest.mark.slow],
        id="triton-0",
    ),
]


@pytest.mark.parametrize(("backend", "seed"), TRAJECTORY_CASES)
def test_robust_trajectory_is_scale_invariant(backend, seed):
    want_probs, want_masks = _trajectory(backend, "robust", 1.0, seed)
    assert (want_probs - 0.5).abs().max() > 0.05, f"the bandit barely moved (seed {seed})"
    for scale in SCALES:
        probs, masks = _trajectory(backend, "robust", scale, seed)
        where = f"seed {seed}, loss x{scale:g}, {backend}"
        assert torch.equal(masks, want_masks), f"another active set: {where}"
        torch.testing.assert_close(probs, want_probs, rtol=1e-5, atol=1e-7, msg=where)


@pytest.mark.parametrize("seed", SEEDS)
def test_paper_trajectory_depends_on_the_scale(seed):
    small, _ = _trajectory("reference", "paper", 1e-4, seed)
    large, _ = _trajectory("reference", "paper", 1e4, seed)
    assert (small - 0.5).abs().max() < 1e-3, f"seed {seed}"
    assert (large - small).abs().max() > 0.1, f"seed {seed}"


def test_ops_reject_bad_rule_options():
    probs, norms, idx = _inputs(7, 3, seed=0)
    with pytest.raises(ValueError, match="rule must be one of 'paper', 'robust'"):
        ops.bandit_update(probs, norms, idx, 3.0, rule="exp3")
    with pytest.raises(ValueError, match="exploration applies to rule='robust' only"):
        ops.bandit_update(probs, norms, idx, 3.0, exploration=0.1)
    with pytest.raises(ValueError, match=r"exploration must be in \[0, 1\]"):
        ops.bandit_update(probs, norms, idx, 3.0, rule="robust", exploration=2.0)
    with pytest.raises(ValueError, match="lr must be finite and >= 0"):
        ops.bandit_update(probs, norms, idx, 3.0, -1.0, rule="robust")


def test_rule_defaults():
    probs, norms, idx = _inputs(7, 3, seed=0)
    model = make_model()
    opt = SLSAM(model.parameters(), torch.optim.SGD, lr=0.1, bandit="robust")
    assert (opt.bandit, opt.bandit_lr, opt.exploration) == ("robust", 0.05, 0.1)
    torch.testing.assert_close(
        ops.bandit_update(probs, norms, idx, 3.0, rule="robust"),
        reference.bandit_update(probs, norms, idx, 3.0, 0.05, rule="robust", exploration=0.1),
    )
    paper = SLSAM(make_model().parameters(), torch.optim.SGD, lr=0.1)
    assert (paper.bandit, paper.bandit_lr, paper.exploration) == ("paper", 1e-3, 0.0)


def test_checkpoint_records_the_rule():
    model = make_model()
    robust = SLSAM(model.parameters(), torch.optim.SGD, lr=0.1, bandit="robust", seed=0)
    state = robust.state_dict()
    assert state["sharpness_aware"]["bandit"] == "robust"
    paper = SLSAM(make_model().parameters(), torch.optim.SGD, lr=0.1, seed=0)
    with pytest.raises(ValueError, match="bandit='robust', this one has bandit='paper'"):
        paper.load_state_dict(state)
    SLSAM(make_model().parameters(), torch.optim.SGD, lr=0.1, bandit="robust").load_state_dict(
        state
    )
    # checkpoints from before the rule was recorded are paper-rule ones
    del state["sharpness_aware"]["bandit"]
    paper.load_state_dict(state)
    with pytest.raises(ValueError, match="bandit='paper', this one has bandit='robust'"):
        robust.load_state_dict(state)
