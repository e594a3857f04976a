"""Bad input raises a clear error that names the fix, and changes nothing."""

import math
import warnings

import pytest
import torch
from builders import loss_of, make_batches, make_model, snapshot

from slsam_kernels import RST, SAM, SLSAM

OPTIMIZERS = [pytest.param(c, id=c.__name__) for c in (SAM, SLSAM, RST)]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        pytest.param({"rho": -0.1}, ValueError, "rho must be finite and >= 0", id="negative-rho"),
        pytest.param({"rho": math.nan}, ValueError, "rho must be finite", id="nan-rho"),
        pytest.param({"rho": math.inf}, ValueError, "rho must be finite", id="inf-rho"),
        pytest.param({"rho": "0.05"}, TypeError, "rho must be a float", id="str-rho"),
        pytest.param({"backend": "fastest"}, ValueError, "choose one of", id="backend"),
    ],
)
def test_bad_arguments(optimizer, kwargs, error, words):
    model = make_model()
    with pytest.raises(error, match=words):
        optimizer(model.parameters(), torch.optim.SGD, lr=0.1, **kwargs)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    "kwargs, words",
    [
        pytest.param({"sample_ratio": 0.0}, r"sample_ratio must be in \(0, 1\]", id="ratio-0"),
        pytest.param(
            {"sample_ratio": -0.1}, r"sample_ratio must be in \(0, 1\], got -0.1$", id="ratio-neg"
        ),
        pytest.param(
            {"sample_ratio": math.nan},
            r"sample_ratio must be in \(0, 1\], got nan$",
            id="ratio-nan",
        ),
        pytest.param({"sample_ratio": 1.5}, r"sample_ratio must be in \(0, 1\]", id="ratio-1.5"),
        pytest.param({"p_min": 0.0}, r"p_min must be in \(0, 1\]", id="p-min"),
        pytest.param({"bandit_lr": -1.0}, "bandit_lr must be finite and >= 0", id="bandit-lr"),
        pytest.param({"bandit": "exp3"}, "bandit must be one of 'paper', 'robust'", id="rule"),
        pytest.param(
            {"exploration": 0.1}, "exploration applies to bandit='robust' only", id="paper-gamma"
        ),
        pytest.param(
            {"bandit": "robust", "exploration": 1.5},
            r"exploration must be in \[0, 1\]",
            id="gamma-1.5",
        ),
        pytest.param(
            {"bandit": "robust", "exploration": -0.1},
            "exploration must be finite and >= 0",
            id="gamma-negative",
        ),
    ],
)
def test_bad_slsam_arguments(kwargs, words):
    model = make_model()
    with pytest.raises(ValueError, match=words):
        SLSAM(model.parameters(), torch.optim.SGD, lr=0.1, **kwargs)
    assert all(p.requires_grad for p in model.parameters())


def test_bad_rst_arguments():
    model = make_model()
    with pytest.raises(ValueError, match=r"sam_prob must be in \[0, 1\]"):
        RST(model.parameters(), torch.optim.SGD, sam_prob=1.2, lr=0.1)
    with pytest.raises(TypeError, match="seed must be an int"):
        RST(model.parameters(), torch.optim.SGD, seed=0.5, lr=0.1)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_bad_params_and_base_optimizers(optimizer):
    model = make_model()
    with pytest.raises(ValueError, match="params is empty"):
        optimizer([], torch.optim.SGD, lr=0.1)
    with pytest.raises(TypeError, match="not an instance"):
        optimizer(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer subclass"):
        optimizer(model.parameters(), dict, lr=0.1)
    meta = torch.nn.Parameter(torch.zeros(3, device="meta"))
    with pytest.raises(ValueError, match="several devices"):
        optimizer([*model.parameters(), meta], torch.optim.SGD, lr=0.1)
    assert all(p.requires_grad for p in model.parameters())


def test_slsam_needs_a_trainable_tensor():
    model = make_model().requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter requires grad"):
        SLSAM(model.parameters(), torch.optim.SGD, lr=0.1)
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_step_without_closure_and_out_of_order_calls(optimizer):
    model = make_model()
    opt = optimizer(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="needs a closure"):
        opt.step()
    with pytest.raises(ValueError, match=r"call loss\.backward"):
        opt.first_step()
    with pytest.raises(RuntimeError, match="needs a first_step"):
        opt.second_step()
    loss_of(model, make_batches(1)[0]).backward()
    opt.first_step()
    with pytest.raises(RuntimeError, match="called twice"):
        opt.first_step()


def poison_first_grad(model, value):
    grad = next(p for p in model.parameters() if p.grad is not None).grad
    grad.view(-1)[0] = value


@pytest.mark.parametrize("value", [math.inf, math.nan], ids=["inf", "nan"])
@pytest.mark.parametrize("poisoned_pass", ["first", "second"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_non_finite_gradient_skips_the_step(optimizer, poisoned_pass, value):
    model = make_model()
    kwargs = {"sam_prob": 1.0} if optimizer is RST else {}
    opt = optimizer(model.parameters(), torch.optim.AdamW, lr=1e-2, **kwargs)
    batches = make_batches(2)
    loss_of(model, batches[0]).backward()
    opt.step(lambda: loss_of(model, batches[0]).backward())  # AdamW state now exists
    opt.zero_grad()
    before = snapshot(model, opt)

    def closure():
        loss_of(model, batches[1]).backward()
        if poisoned_pass == "second":
            poison_first_grad(model, value)

    loss_of(model, batches[1]).backward()
    if poisoned_pass == "first":
        poison_first_grad(model, value)
    with pytest.warns(RuntimeWarning, match="step was skipped"):
        opt.step(closure)
    assert opt.last_step_skipped
    after = snapshot(model, opt)
    for a, b in zip(before[0], after[0]):
        assert torch.equal(a, b)
    for key in before[1]:
        for name in before[1][key]:
            assert torch.equal(before[1][key][name], after[1][key][name])
    opt.zero_grad()
    loss_of(model, batches[1]).backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step(lambda: loss_of(model, batches[1]).backward())
    assert not opt.last_step_skipped


def test_foreign_state_dict_is_rejected_before_loading():
    model = make_model()
    opt = SLSAM(model.parameters(), torch.optim.AdamW, lr=1e-2, seed=0)
    other = SLSAM(list(make_model().parameters())[:3], torch.optim.AdamW, lr=5.0, seed=0)
    with pytest.raises(ValueError, match=r"lists .* tensors, this optimizer.s 3"):
        other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["lr"] == 5.0


def test_slsam_rejects_new_param_groups_after_construction():
    model = make_model()
    opt = SLSAM(list(model.parameters())[:4], torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="create a new SLSAM"):
        opt.add_param_group({"params": list(model.parameters())[4:]})
    assert len(opt.param_groups) == 1 and opt.num_arms == 4
