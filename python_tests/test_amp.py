"""Mixed precision: bf16 autocast as is; fp16-style loss scaling with torch.amp.GradScaler,
where an inf or NaN in either pass skips the step and lowers the scale."""

import pytest
import torch
from builders import assert_states_equal, loss_of, make_batches, make_model, snapshot

from slsam_kernels import RST, SAM, SLSAM

SGD = {"lr": 0.1, "momentum": 0.9}
OPTIMIZERS = [
    pytest.param(lambda ps: SAM(ps, torch.optim.SGD, **SGD), id="SAM"),
    pytest.param(lambda ps: SLSAM(ps, torch.optim.SGD, seed=0, **SGD), id="SLSAM"),
    pytest.param(lambda ps: RST(ps, torch.optim.SGD, sam_prob=1.0, seed=0, **SGD), id="RST"),
]


def bf16_loss(model, batch):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return loss_of(model, batch)


@pytest.mark.parametrize("build", OPTIMIZERS)
def test_bf16_autocast_keeps_fp32_weights_and_follows_the_fp32_run(build):
    batches = make_batches(5)
    amp_model, fp32_model = make_model(), make_model()
    amp_opt, fp32_opt = build(amp_model.parameters()), build(fp32_model.parameters())
    start, _ = snapshot(amp_model)
    for batch in batches:
        bf16_loss(amp_model, batch).backward()
        amp_opt.step(lambda batch=batch: bf16_loss(amp_model, batch).backward())
        amp_opt.zero_grad()
        loss_of(fp32_model, batch).backward()
        fp32_opt.step(lambda batch=batch: loss_of(fp32_model, batch).backward())
        fp32_opt.zero_grad()
    assert all(p.dtype == torch.float32 for p in amp_model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(start, amp_model.parameters()))
    flat = torch.nn.utils.parameters_to_vector
    moved = (flat(fp32_model.parameters()) - flat(start)).norm()
    apart = (flat(amp_model.parameters()) - flat(fp32_model.parameters())).norm()
    assert apart < 0.05 * moved  # measured: 0.4% to 0.5%


def test_bf16_autocast_restores_the_weights_exactly():
    model = make_model()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.0)
    before, _ = snapshot(model)
    batch = make_batches(1)[0]
    bf16_loss(model, batch).backward()
    opt.first_step(zero_grad=True)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    bf16_loss(model, batch).backward()
    opt.second_step(zero_grad=True)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def scaled_steps(build, batches, scaler, inject=None):
    """The documented recipe; ``inject`` = (step, pass) puts an inf into one gradient."""
    model = make_model()
    opt = build(model.parameters())
    for i, batch in enumerate(batches):
        scaler.scale(loss_of(model, batch)).backward()
        if inject == (i, 1):
            poison(model)

        def closure(batch=batch, i=i):
            scaler.scale(loss_of(model, batch)).backward()
            if inject == (i, 2):
                poison(model)

        opt.step(closure, scaler=scaler)
        scaler.update()
        opt.zero_grad()
    return model, opt


def poison(model):
    grad = next(p.grad for p in model.parameters() if p.grad is not None)
    grad.view(-1)[0] = float("inf")


@pytest.mark.parametrize("build", OPTIMIZERS)
def test_scaled_step_equals_the_unscaled_step(build):
    # Power-of-two scales make scaling and unscaling exact in fp32: bit-identical runs.
    batches = make_batches(4)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=2)
    scaled, _ = scaled_steps(build, batches, scaler)
    plain, _ = scaled_steps(build, batches, torch.amp.GradScaler("cpu", enabled=False))
    assert scaler.get_scale() == 2.0**14  # two growth intervals passed without an inf
    for a, b in zip(scaled.parameters(), plain.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("which_pass", [1, 2], ids=["inf-first-pass", "inf-second-pass"])
@pytest.mark.parametrize("build", OPTIMIZERS)
def test_inf_in_either_pass_skips_the_step_and_lowers_the_scale(build, which_pass):
    batches = make_batches(3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    model, opt = scaled_steps(build, batches[:2], scaler)
    params, state = snapshot(model, opt)
    probs = opt.probs if isinstance(opt, SLSAM) else None
    scaler.scale(loss_of(model, batches[2])).backward()
    if which_pass == 1:
        poison(model)

    def closure():
        scaler.scale(loss_of(model, batches[2])).backward()
        if which_pass == 2:
            poison(model)

    with pytest.warns(RuntimeWarning, match="skipped"):
        opt.step(closure, scaler=scaler)
    scaler.update()
    assert opt.last_step_skipped
    assert scaler.get_scale() == 2.0**11
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters()))
    assert_states_equal(state, opt.state_dict()["state"])
    if probs is not None:
        assert torch.equal(probs, opt.probs)


def test_rst_plain_step_with_an_inf_is_skipped_too():
    model = make_model()
    opt = RST(model.parameters(), torch.optim.SGD, lr=0.1, sam_prob=0.0, seed=0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    before, _ = snapshot(model)
    scaler.scale(loss_of(model, make_batches(1)[0])).backward()
    poison(model)
    with pytest.warns(RuntimeWarning, match="skipped"):
        opt.step(lambda: pytest.fail("a plain step runs no closure"), scaler=scaler)
    scaler.update()
    assert scaler.get_scale() == 2.0**7
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_scaler_misuse_is_rejected():
    model = make_model()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    batch = make_batches(1)[0]
    scaler.scale(loss_of(model, batch)).backward()
    with pytest.raises(TypeError, match="GradScaler"):
        opt.first_step(scaler="amp")
    before, _ = snapshot(model)
    opt.first_step(scaler=scaler)
    with pytest.raises(ValueError, match=r"same\s+GradScaler"):
        opt.second_step()
    opt.second_step(scaler=scaler)
    assert not opt.last_step_skipped
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
