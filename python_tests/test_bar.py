"""BAR step for step against a hand-written loop of its rules, the fused backends against the
reference, and BAR's checks, skips, scaler, clipping and checkpoints."""

from __future__ import annotations

import copy
import dataclasses
import warnings

import pytest
import torch
from backend_testing import backend_params
from bar_testing import (
    balancedness,
    lora_batches,
    lora_loss,
    make_lora_net,
    rescale_by_hand,
    schedule_value,
)
from builders import snapshot
from oracle_testing import assert_error_bounded_by_torchs

from slsam_kernels import BAR, schedules

STEPS = 6
BASES = [
    pytest.param(torch.optim.AdamW, {"lr": 0.05, "weight_decay": 0.1}, id="adamw"),
    pytest.param(torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}, id="sgd"),
]
FUSED_BACKENDS = backend_params("cpp", "triton", "cuda", device=False, cpu_only=True)


def hand_written_run(base, options, variant, schedule, mu, batches, max_grad_norm=None):
    """The rules of BAR as the issue states them, with StepLR halving the lr every 2 steps."""
    model = make_lora_net()
    opt = base(model.parameters(), **options)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for t, batch in enumerate(batches):
        lora_loss(model, batch).backward()
        with torch.no_grad():
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            a = mu * schedule_value(schedule, t, len(batches))
            rescale_by_hand(model.pairs(), variant, a, opt.param_groups[0]["lr"])
        opt.step()
        opt.zero_grad()
        scheduler.step()
    return model


def bar_run(base, options, variant, schedule, mu, batches, backend="reference", **kwargs):
    model = make_lora_net()
    opt = BAR(
        model.parameters(),
        base,
        model.pairs(),
        mu=mu,
        variant=variant,
        schedule=schedule,
        total_steps=len(batches),
        backend=backend,
        **kwargs,
        **options,
    )
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for batch in batches:
        lora_loss(model, batch).backward()
        opt.step()
        opt.zero_grad()
        scheduler.step()
    return model, opt


@pytest.mark.parametrize("variant", ["nbar", "obar"])
@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
@pytest.mark.parametrize(("base", "options"), BASES)
def test_reference_follows_the_rules_step_for_step(base, options, variant, schedule):
    batches = lora_batches(STEPS)
    expected = hand_written_run(base, options, variant, schedule, 1.0, batches)
    model, opt = bar_run(base, options, variant, schedule, 1.0, batches)
    assert opt.steps_taken == STEPS
    for (name, p), q in zip(model.named_parameters(), expected.parameters(), strict=True):
        assert torch.equal(p, q), name
    # the rescale changed the run: without it (mu = 0) the weights differ
    plain, _ = bar_run(base, options, variant, schedule, 0.0, batches)
    assert not torch.equal(plain.x1, model.x1)


def test_clipping_comes_before_the_rescale():
    batches = lora_batches(STEPS)
    base, options = torch.optim.AdamW, {"lr": 0.05}
    expected = hand_written_run(base, options, "nbar", "linear", 1.0, batches, max_grad_norm=0.1)
    model, _ = bar_run(base, options, "nbar", "linear", 1.0, batches, max_grad_norm=0.1)
    unclipped, _ = bar_run(base, options, "nbar", "linear", 1.0, batches)
    # clip_grad_norm_ sums the norms in another order: its coefficient may differ in the last bit
    for p, q in zip(model.parameters(), expected.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(model.x1, unclipped.x1, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", FUSED_BACKENDS)
@pytest.mark.parametrize("variant", ["nbar", "obar"])
@pytest.mark.parametrize(("base", "options"), BASES)
def test_fused_backends_match_the_reference(backend, base, options, variant):
    batches = lora_batches(STEPS)
    model, opt = bar_run(base, options, variant, "cosine", 2.0, batches, backend=backend)
    assert opt.backend == backend
    expected, _ = bar_run(base, options, variant, "cosine", 2.0, batches)
    oracle_model = make_lora_net().double()
    oracle = BAR(
        oracle_model.parameters(),
        base,
        oracle_model.pairs(),
        mu=2.0,
        variant=variant,
        schedule="cosine",
        total_steps=STEPS,
        backend="reference",
        **options,
    )
    scheduler = torch.optim.lr_scheduler.StepLR(oracle, step_size=2, gamma=0.5)
    for batch in batches:
        lora_loss(oracle_model, tuple(t.double() for t in batch)).backward()
        oracle.step()
        oracle.zero_grad()
        scheduler.step()
    for (name, p), q, truth in zip(
        model.named_parameters(), expected.parameters(), oracle_model.parameters(), strict=True
    ):
        assert_error_bounded_by_torchs(p, q, truth, name)


@pytest.mark.parametrize("backend", FUSED_BACKENDS)
def test_the_fused_step_takes_the_rescale(backend):
    """On a fused backend one fused call steps everything, the factor inside: the base
    optimizer's own step does not run too (its step counters would read 2)."""
    model = make_lora_net()
    opt = BAR(model.parameters(), torch.optim.AdamW, model.pairs(), mu=1.0, backend=backend, lr=0.1)
    fused_results = []

    def spy(*args):
        fused_results.append(opt_ops.fused_restore_step(*args))
        return fused_results[-1]

    opt_ops = opt._ops
    opt._ops = dataclasses.replace(opt_ops, fused_restore_step=spy)
    before = model.x1.detach().clone()
    lora_loss(model, lora_batches(1)[0]).backward()
    opt.step()
    assert fused_results == [True]
    assert all(float(state["step"]) == 1 for state in opt.state.values())
    assert not torch.equal(model.x1, before)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("backend", FUSED_BACKENDS)
def test_fused_low_precision_rescale_rounds_as_torch(backend, dtype):
    """Plain SGD with zero gradients leaves only the rescale, which must round as torch's
    w.mul_(c) does (bit for bit), at sizes around the kernels' blocks."""
    gen = torch.Generator().manual_seed(3)
    xs = [
        torch.randn(37, 3, generator=gen).to(dtype),
        torch.randn(3, 1029, generator=gen).to(dtype),
    ]
    for w in xs:
        w.grad = torch.zeros_like(w)
    expected = [w.clone() for w in xs]
    for w, e in zip(xs, expected, strict=True):
        e.grad = w.grad.clone()
    opt = BAR(xs, torch.optim.SGD, [tuple(xs)], mu=1.0, backend=backend, lr=0.3)
    assert opt.backend == backend
    opt.step()
    rescale_by_hand([tuple(expected)], "nbar", 1.0, 0.3)
    for w, e in zip(xs, expected, strict=True):
        assert torch.equal(w, e)
    assert not torch.equal(xs[0], xs[0].grad)


def test_nbar_and_obar_balance_where_adamw_does_not():
    """The paper's observation on a toy problem: AdamW leaves |B| where it is, BAR drives it
    toward 0."""
    batches = lora_batches(40)
    plain, _ = bar_run(torch.optim.AdamW, {"lr": 0.05}, "nbar", "constant", 0.0, batches)
    start = balancedness(make_lora_net().pairs())
    assert balancedness(plain.pairs()) > 0.9 * start
    for variant in ("nbar", "obar"):
        model, _ = bar_run(torch.optim.AdamW, {"lr": 0.05}, variant, "constant", 2.0, batches)
        assert balancedness(model.pairs()) < 0.5 * balancedness(plain.pairs())


def test_non_finite_gradient_skips_the_step_rescale_included():
    model = make_lora_net()
    opt = BAR(model.parameters(), torch.optim.AdamW, model.pairs(), mu=1.0, lr=0.1)
    lora_loss(model, lora_batches(1)[0]).backward()
    opt.step()
    opt.zero_grad()
    before = snapshot(model, opt)
    lora_loss(model, lora_batches(1)[0]).backward()
    model.y2.grad[0, 0] = float("nan")
    with pytest.warns(RuntimeWarning, match="skipped"):
        opt.step()
    assert opt.last_step_skipped and opt.steps_taken == 1
    assert_unchanged(model, opt, before)


def test_grad_scaler_compares_unscaled_norms_and_steps_as_unscaled():
    batches = lora_batches(3)
    expected, _ = bar_run(torch.optim.AdamW, {"lr": 0.05}, "nbar", "constant", 1.0, batches)
    model = make_lora_net()
    opt = BAR(model.parameters(), torch.optim.AdamW, model.pairs(), mu=1.0, lr=0.05)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    for batch in batches:
        scaler.scale(lora_loss(model, batch)).backward()
        opt.step(scaler=scaler)
        scaler.update()
        opt.zero_grad()
        scheduler.step()
    for p, q in zip(model.parameters(), expected.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert not torch.equal(model.x1, make_lora_net().x1)


def test_scaler_step_form_works_too():
    model = make_lora_net()
    opt = BAR(model.parameters(), torch.optim.AdamW, model.pairs(), mu=1.0, lr=0.05)
    scaler = torch.amp.GradScaler("cpu")
    before = model.x1.detach().clone()
    scaler.scale(lora_loss(model, lora_batches(1)[0])).backward()
    scaler.step(opt)
    scaler.update()
    assert opt.steps_taken == 1 and not torch.equal(model.x1, before)


def test_resume_is_bit_identical():
    batches = lora_batches(STEPS)
    through, _ = bar_run(
        torch.optim.AdamW, {"lr": 0.05}, "obar", "linear", 1.0, batches, backend="auto"
    )
    model = make_lora_net()

    def build(m):
        return BAR(
            m.parameters(),
            torch.optim.AdamW,
            m.pairs(),
            mu=1.0,
            variant="obar",
            schedule="linear",
            total_steps=STEPS,
            lr=0.05,
        )

    opt = build(model)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for batch in batches[:3]:
        lora_loss(model, batch).backward()
        opt.step()
        opt.zero_grad()
        scheduler.step()
    saved = copy.deepcopy((model.state_dict(), opt.state_dict(), scheduler.state_dict()))
    resumed = make_lora_net(seed=5)
    resumed.load_state_dict(saved[0])
    opt2 = build(resumed)
    opt2.load_state_dict(saved[1])
    scheduler2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=2, gamma=0.5)
    scheduler2.load_state_dict(saved[2])
    assert opt2.steps_taken == 3
    for batch in batches[3:]:
        lora_loss(resumed, batch).backward()
        opt2.step()
        opt2.zero_grad()
        scheduler2.step()
    for p, q in zip(resumed.parameters(), through.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_foreign_checkpoint_is_refused_unchanged():
    model = make_lora_net()
    opt = BAR(model.parameters(), torch.optim.AdamW, model.pairs(), lr=0.05)
    state = opt.state_dict()
    state["sharpness_aware"] = {"steps_taken": -1}
    with pytest.raises(ValueError, match="steps_taken"):
        opt.load_state_dict(state)
    assert opt.steps_taken == 0


def assert_unchanged(model, opt, before) -> None:
    params, state = snapshot(model, opt)
    assert all(torch.equal(p, q) for p, q in zip(params, before[0], strict=True))
    assert state.keys() == before[1].keys()
    for index, buffers in before[1].items():
        assert all(torch.equal(state[index][k], v) for k, v in buffers.items())


def bad_pairs(model):
    x1, y1, x2, y2 = model.x1, model.y1, model.x2, model.y2
    outside = torch.nn.Parameter(torch.randn(3, 7))
    return [
        pytest.param([], ValueError, "empty", id="no-pairs"),
        pytest.param(x1, TypeError, "list of", id="a-tensor"),
        pytest.param([(x1, y1), (x1, y2)], ValueError, "one pair only", id="tensor-in-two"),
        pytest.param([(x1, outside)], ValueError, "not in params", id="not-in-params"),
        pytest.param([(x1, x2)], ValueError, "factorisation", id="shapes"),
        pytest.param([(x1,)], TypeError, "two tensors", id="one-tensor"),
        pytest.param([(x1, "y")], TypeError, "not a tensor", id="not-a-tensor"),
        pytest.param([(x2, y2), (x1, x1)], ValueError, "one pair only", id="x-twice"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_bad_pairs_are_refused(case):
    model = make_lora_net()
    pairs, error, match = bad_pairs(model)[case].values
    with pytest.raises(error, match=match):
        BAR(model.parameters(), torch.optim.AdamW, pairs, lr=0.1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mu": -0.1}, ValueError, "mu must be finite and >= 0"),
        ({"variant": "bar"}, ValueError, "unknown variant"),
        ({"schedule": "step"}, ValueError, "unknown schedule"),
        ({"schedule": "linear"}, ValueError, "pass total_steps"),
        ({"schedule": "cosine", "total_steps": 0}, ValueError, "total_steps must be > 0"),
        ({"schedule": 3}, TypeError, "schedule must be a name"),
    ],
)
def test_bad_options_are_refused(kwargs, error, match):
    model = make_lora_net()
    with pytest.raises(error, match=match):
        BAR(model.parameters(), torch.optim.AdamW, model.pairs(), lr=0.1, **kwargs)


def test_a_pair_split_over_learning_rates_is_refused():
    model = make_lora_net()
    groups = [
        {"params": [model.x1, model.x2, model.bias], "lr": 0.1},
        {"params": [model.y1, model.y2], "lr": 0.01},
    ]
    with pytest.raises(ValueError, match="different learning rates"):
        BAR(groups, torch.optim.AdamW, model.pairs())
    groups[1]["lr"] = 0.1  # same lr in two groups is fine
    BAR(groups, torch.optim.AdamW, model.pairs())


def test_a_bad_schedule_value_raises_before_anything_changes():
    model = make_lora_net()
    opt = BAR(model.parameters(), torch.optim.AdamW, model.pairs(), schedule=lambda t: -1.0, lr=0.1)
    lora_loss(model, lora_batches(1)[0]).backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    before = snapshot(model, opt)
    with pytest.raises(ValueError, match=r"schedule\(0\) must be finite and >= 0"):
        opt.step()
    assert_unchanged(model, opt, before)
    after = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.equal(g, h) for g, h in zip(grads, after, strict=True))
    assert opt.steps_taken == 0


def test_closure_is_called_and_its_loss_returned():
    model = make_lora_net()
    opt = BAR(model.parameters(), torch.optim.SGD, model.pairs(), lr=0.1)
    batch = lora_batches(1)[0]

    def closure():
        loss = lora_loss(model, batch)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss is not None and loss.isfinite() and opt.steps_taken == 1


def test_lr_scheduler_attaches_without_warnings():
    model = make_lora_net()
    opt = BAR(model.parameters(), torch.optim.AdamW, model.pairs(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lora_loss(model, lora_batches(1)[0]).backward()
        opt.step()
        scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.075)


def test_a_callable_schedule_is_called_with_the_steps_taken():
    calls = []
    model = make_lora_net()
    opt = BAR(
        model.parameters(),
        torch.optim.SGD,
        model.pairs(),
        schedule=lambda t: calls.append(t) or 1.0,
        lr=0.1,
    )
    for batch in lora_batches(3):
        lora_loss(model, batch).backward()
        opt.step()
        opt.zero_grad()
    assert calls == [0, 1, 2]


def test_named_schedules_are_the_schedules_module_s():
    assert schedules.named("linear", 5) == schedules.linear(5)
    assert schedules.named("cosine", 5) == schedules.cosine(5)
    assert schedules.named("constant", None) == schedules.constant(1.0)
