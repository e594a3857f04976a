"""The closure-only step: ``opt.step(closure)`` with no first backward done runs the first pass
through the closure too, as a framework that owns the closure calls it; today's form (the
caller's first backward) keeps working; gradients zeroed in place by others are refused."""

import pytest
import torch
from builders import loss_of, make_batches, make_model, snapshot

from slsam_kernels import RST, SAM, SLSAM

SGD = {"lr": 0.1, "momentum": 0.9}
OPTIMIZERS = [
    pytest.param(lambda ps: SAM(ps, torch.optim.SGD, **SGD), id="SAM"),
    pytest.param(lambda ps: SLSAM(ps, torch.optim.SGD, seed=0, **SGD), id="SLSAM"),
    pytest.param(lambda ps: RST(ps, torch.optim.SGD, sam_prob=1.0, seed=0, **SGD), id="RST"),
]
RST_HALF = [
    pytest.param(lambda ps: RST(ps, torch.optim.SGD, sam_prob=0.5, seed=0, **SGD), id="RST-0.5")
]


def manual_steps(build, batches):
    """The reference: first_step / second_step by hand."""
    model = make_model()
    opt = build(model.parameters())
    for batch in batches:
        loss_of(model, batch).backward()
        opt.first_step(zero_grad=True)
        loss_of(model, batch).backward()
        opt.second_step(zero_grad=True)
    return model


def caller_first_pass_steps(build, batches):
    """Today's form: the caller's first backward, then ``step(closure)``."""
    model = make_model()
    opt = build(model.parameters())
    for batch in batches:
        loss_of(model, batch).backward()
        opt.step(lambda batch=batch: loss_of(model, batch).backward())
        opt.zero_grad()
    return model


def closure_only_steps(build, batches, zero_inside=False):
    """``opt.step(closure)`` alone; ``zero_inside``: the closure zeroes the gradients itself
    and nobody else does (Lightning's and skorch's closures)."""
    model = make_model()
    opt = build(model.parameters())
    for batch in batches:

        def closure(batch=batch):
            if zero_inside:
                opt.zero_grad()
            loss = loss_of(model, batch)
            loss.backward()
            return loss

        opt.step(closure)
        if not zero_inside:
            opt.zero_grad()
    return model


@pytest.mark.parametrize("zero_inside", [False, True], ids=["zero-after", "zero-inside"])
@pytest.mark.parametrize("build", OPTIMIZERS)
def test_closure_only_steps_equal_the_two_pass_recipe(build, zero_inside):
    batches = make_batches(6)
    expected = manual_steps(build, batches)
    got = closure_only_steps(build, batches, zero_inside)
    for a, b in zip(expected.parameters(), got.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("zero_inside", [False, True], ids=["zero-after", "zero-inside"])
@pytest.mark.parametrize("build", OPTIMIZERS + RST_HALF)
def test_closure_only_steps_equal_the_callers_first_pass(build, zero_inside):
    batches = make_batches(6)
    expected = caller_first_pass_steps(build, batches)
    got = closure_only_steps(build, batches, zero_inside)
    for a, b in zip(expected.parameters(), got.parameters()):
        assert torch.equal(a, b)


def test_the_closure_runs_at_w_then_at_the_perturbed_weights_and_returns_the_first_loss():
    model = make_model()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    batch = make_batches(1)[0]
    start, _ = snapshot(model)
    seen = []

    def closure():
        seen.append(([p.detach().clone() for p in model.parameters()], opt.is_perturbed))
        loss = loss_of(model, batch)
        loss.backward()
        return loss.detach()

    loss = opt.step(closure)
    assert len(seen) == 2
    (at_first, perturbed_first), (at_second, perturbed_second) = seen
    assert all(torch.equal(a, b) for a, b in zip(at_first, start)) and not perturbed_first
    assert all(not torch.equal(a, b) for a, b in zip(at_second, start)) and perturbed_second
    assert loss == loss_of(make_model(), batch).detach()


def test_the_first_backward_done_by_the_caller_runs_the_closure_once():
    model = make_model()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    batch = make_batches(1)[0]
    calls = []
    loss_of(model, batch).backward()
    assert not opt.first_pass_pending()
    opt.step(lambda: calls.append(loss_of(model, batch).backward()))
    assert len(calls) == 1
    assert opt.first_pass_pending()  # the descent's gradients are left, unchanged since


def test_gradients_zeroed_in_place_by_others_are_refused_and_nothing_changes():
    model = make_model()
    opt = SAM(model.parameters(), torch.optim.SGD, **SGD)
    batch = make_batches(1)[0]
    loss_of(model, batch).backward()
    opt.step(lambda: loss_of(model, batch).backward())
    model.zero_grad(set_to_none=False)  # not through the optimizer: looks like a backward
    before, _ = snapshot(model, opt)
    with pytest.raises(ValueError, match=r"zero everywhere.*zero_grad\(set_to_none=False\)"):
        opt.step(lambda: loss_of(model, batch).backward())
    after, _ = snapshot(model, opt)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert not opt.is_perturbed
    opt.zero_grad(set_to_none=False)  # through the optimizer: the closure-only form again
    assert opt.first_pass_pending()
    opt.step(lambda: loss_of(model, batch).backward())


@pytest.mark.parametrize("build", OPTIMIZERS)
def test_zero_gradients_from_a_real_backward_give_a_zero_ascent_and_a_base_step(build):
    # PEFT's zero-initialised lora_B makes lora_A's gradients exactly 0: an active set of such
    # tensors has a zero ascent, which SAM's rho g / ||g|| turns into no perturbation at all.
    model = make_model()
    opt = build(model.parameters())
    batch = make_batches(1)[0]
    at_second = []

    def closure():
        at_second.append([p.detach().clone() for p in model.parameters()])
        loss = loss_of(model, batch)
        loss.backward()
        return loss

    start = [p.detach().clone() for p in model.parameters()]
    sum(p.sum() * 0 for p in model.parameters()).backward()  # a real backward writing zeros
    opt.step(closure)
    assert all(torch.equal(a, b) for a, b in zip(at_second[0], start))  # zero perturbation
    assert any(not torch.equal(p, s) for p, s in zip(model.parameters(), start))  # stepped


def test_a_closure_only_closure_without_backward_is_refused():
    model = make_model()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(RuntimeError, match="wrote no gradient"):
        opt.step(lambda: loss_of(model, make_batches(1)[0]))
    assert not opt.is_perturbed


@pytest.mark.parametrize("build", OPTIMIZERS + RST_HALF)
def test_closure_only_with_a_grad_scaler_equals_the_scaled_recipe(build):
    batches = make_batches(4)
    results = [scaled_steps(build, batches, closure_only) for closure_only in (False, True)]
    for a, b in zip(*results):
        assert torch.equal(a, b)


def scaled_steps(build, batches, closure_only):
    """The GradScaler recipe, the first backward by the caller or through the closure."""
    model = make_model()
    opt = build(model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    for batch in batches:

        def closure(batch=batch):
            scaler.scale(loss_of(model, batch)).backward()

        if not closure_only:
            closure()
        opt.step(closure, scaler=scaler)
        scaler.update()
        opt.zero_grad()
    return list(model.parameters())
