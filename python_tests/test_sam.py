"""SAM and ASAM follow the davda54/sam algorithm, written out independently here."""

import warnings

import pytest
import torch
from builders import loss_of, make_batches, make_model, train

from slsam_kernels import SAM


def expected_sam_trajectory(model, batches, rho, adaptive, lr, momentum):
    """davda54/sam's update as plain math: e = rho * (w^2 if ASAM) * g / ||(|w| if ASAM) g||,
    gradient at w + e, restore w, SGD step with momentum."""
    params = list(model.parameters())
    buffers = [None] * len(params)
    for batch in batches:
        grads = torch.autograd.grad(loss_of(model, batch), params)
        with torch.no_grad():
            scaled = [(p.abs() * g if adaptive else g) for p, g in zip(params, grads)]
            norm = torch.stack([s.norm() for s in scaled]).norm()
            old = [p.clone() for p in params]
            for p, g in zip(params, grads):
                p.add_((p * p if adaptive else 1) * g * rho / (norm + 1e-12))
        grads = torch.autograd.grad(loss_of(model, batch), params)
        with torch.no_grad():
            for i, (p, g, w0) in enumerate(zip(params, grads, old)):
                p.copy_(w0)
                buffers[i] = g.clone() if buffers[i] is None else buffers[i] * momentum + g
                p.sub_(lr * buffers[i])
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
def test_trajectory_matches_the_sam_algorithm(adaptive):
    batches = make_batches(6)
    rho = 0.5 if adaptive else 0.05
    want = expected_sam_trajectory(make_model(), batches, rho, adaptive, lr=0.1, momentum=0.9)
    model = make_model()
    start = [p.detach().clone() for p in model.parameters()]
    opt = SAM(model.parameters(), torch.optim.SGD, rho=rho, adaptive=adaptive, lr=0.1, momentum=0.9)
    train(model, opt, batches)
    for got, w, w0 in zip(model.parameters(), want, start):
        torch.testing.assert_close(got, w, rtol=1e-5, atol=1e-6)
        assert not torch.equal(got, w0)


def test_sam_differs_from_its_base_optimizer():
    batches = make_batches(3)
    plain = make_model()
    base = torch.optim.SGD(plain.parameters(), lr=0.1)
    for batch in batches:
        loss_of(plain, batch).backward()
        base.step()
        base.zero_grad()
    model = make_model()
    train(model, SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1), batches)
    assert any(not torch.allclose(a, b) for a, b in zip(model.parameters(), plain.parameters()))


def test_manual_two_step_equals_closure_step():
    batches = make_batches(4)
    a, b = make_model(), make_model()
    opt_a = SAM(a.parameters(), torch.optim.AdamW, lr=1e-2)
    opt_b = SAM(b.parameters(), torch.optim.AdamW, lr=1e-2)
    train(a, opt_a, batches)
    for batch in batches:
        loss_of(b, batch).backward()
        opt_b.first_step(zero_grad=True)
        loss_of(b, batch).backward()
        opt_b.second_step(zero_grad=True)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_param_groups_are_shared_so_schedulers_drive_the_base_optimizer():
    model = make_model()
    opt = SAM(
        [{"params": model.fc1.parameters(), "rho": 0.1}, {"params": model.fc2.parameters()}],
        torch.optim.SGD,
        lr=1.0,
    )
    assert opt.param_groups is opt.base_optimizer.param_groups
    assert [g["rho"] for g in opt.param_groups] == [0.1, 0.05]
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    batch = make_batches(1)[0]
    loss_of(model, batch).backward()
    opt.step(lambda: loss_of(model, batch).backward())
    scheduler.step()
    assert [g["lr"] for g in opt.base_optimizer.param_groups] == [0.5, 0.5]


def test_manual_path_does_not_trip_the_scheduler_order_warning():
    model = make_model()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    batch = make_batches(1)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss_of(model, batch).backward()
        opt.first_step(zero_grad=True)
        loss_of(model, batch).backward()
        opt.second_step(zero_grad=True)
        scheduler.step()
    assert opt.param_groups[0]["lr"] == 0.5


def test_closure_error_restores_weights():
    model = make_model()
    before = [p.detach().clone() for p in model.parameters()]
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    loss_of(model, make_batches(1)[0]).backward()

    def broken_closure():
        raise KeyError("data loader failed")

    with pytest.raises(KeyError):
        opt.step(broken_closure)
    for p, w0 in zip(model.parameters(), before):
        assert torch.equal(p, w0)
    loss_of(model, make_batches(1)[0]).backward()
    opt.first_step()  # usable again: the failed step left nothing half-done
