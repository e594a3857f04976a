"""SL-SAM arms of several tensors: toggled, perturbed and updated together, one bandit norm
per arm; the per-tensor default unchanged."""

import dataclasses

import pytest
import torch
from builders import loss_of, make_batches, make_model, train

from slsam_kernels import SLSAM, arms_by_module
from slsam_kernels.backends.reference import bandit_update, grad_sqnorms


def make_slsam(model, **kwargs):
    return SLSAM(model.parameters(), torch.optim.AdamW, lr=1e-2, seed=0, **kwargs)


def test_arms_by_module_groups_each_modules_own_tensors():
    model = make_model()
    model.fc2.bias.requires_grad_(False)
    arms = arms_by_module(model)
    assert [[id(p) for p in arm] for arm in arms] == [
        [id(model.scale)],
        [id(model.fc1.weight), id(model.fc1.bias)],
        [id(model.fc2.weight)],
        [id(model.fc3.weight), id(model.fc3.bias)],
    ]


def test_one_tensor_per_arm_given_explicitly_is_the_default_bit_for_bit():
    batches = make_batches(6)
    default_model, explicit_model = make_model(), make_model()
    default = make_slsam(default_model)
    explicit = make_slsam(explicit_model, arms=list(explicit_model.parameters()))
    train(default_model, default, batches)
    train(explicit_model, explicit, batches)
    assert torch.equal(default.probs, explicit.probs)
    for a, b in zip(default_model.parameters(), explicit_model.parameters()):
        assert torch.equal(a, b)


def test_an_arm_is_toggled_whole_and_the_bandit_sees_its_l2_norm():
    model = make_model()
    opt = make_slsam(model, arms=arms_by_module(model), sample_ratio=0.5, bandit_lr=0.5)
    assert opt.num_arms == 4 and opt.arms[1] == (model.fc1.weight, model.fc1.bias)
    for _ in range(4):
        mask = opt.sample()
        for arm, active in zip(opt.arms, mask.tolist()):
            assert all(p.requires_grad == active for p in arm)
    numels = torch.tensor([5.0, 78.0, 98.0, 24.0])
    assert opt.active_param_fraction == pytest.approx(float(numels[mask].sum() / numels.sum()))
    probs = opt.probs
    batch = make_batches(1)[0]
    loss_of(model, batch).backward()
    norms = [
        torch.cat([p.grad.flatten() for p in arm]).norm()
        for arm in opt.arms
        if arm[0].grad is not None
    ]
    opt.step(lambda: loss_of(model, batch).backward())
    active_idx = mask.nonzero().squeeze(1)
    expected = bandit_update(probs, torch.stack(norms), active_idx, opt.budget, 0.5, opt.p_min)
    torch.testing.assert_close(opt.probs, expected.float())
    assert not torch.equal(opt.probs, probs)


def test_modules_as_arms_and_frozen_tensors_left_out():
    model = make_model()
    model.fc3.requires_grad_(False)
    opt = make_slsam(
        model, arms=[model.scale, model.fc1, [model.fc2.weight, model.fc2.bias], model.fc3]
    )
    assert opt.num_arms == 3  # fc3 is frozen, so it is no arm
    for _ in range(3):
        train(model, opt, make_batches(1))
        assert not any(p.requires_grad for p in model.fc3.parameters())


@pytest.mark.parametrize(
    "arms_of, error, words",
    [
        pytest.param(lambda m: [m.fc1, m.fc2, m.fc3], ValueError, "belong to no arm", id="missing"),
        pytest.param(lambda m: [m, m.fc1], ValueError, "is in arms 0 and 1", id="twice"),
        pytest.param(
            lambda m: [*m.parameters(), torch.nn.Parameter(torch.ones(2))],
            ValueError,
            "not given",
            id="foreign",
        ),
        pytest.param(lambda m: m, TypeError, "arms must be a list", id="a-module"),
        pytest.param(lambda m: [m, "fc1"], TypeError, "arm 1 must be", id="a-string"),
    ],
)
def test_bad_arms(arms_of, error, words):
    model = make_model()
    with pytest.raises(error, match=words):
        make_slsam(model, arms=arms_of(model))
    assert all(p.requires_grad for p in model.parameters())


def test_an_arms_squared_norm_adds_its_tensors_in_param_group_order_bit_for_bit():
    """The per-arm sum is one fixed sequence of fp32 additions (0 + the first member's squared
    norm + the next ...), in param-group order whatever order the arm lists them in: the same
    bits on every device (a scatter-add with atomics, as index_add_ on CUDA, is not)."""
    model = make_model()
    m = model
    arms = [
        [m.fc3.bias, m.fc1.weight, m.fc2.bias, m.fc1.bias, m.fc3.weight],
        [m.fc2.weight, m.scale],
    ]
    opt = make_slsam(model, arms=arms, sample_ratio=1.0, backend="reference")
    seen = {}
    bandit = opt._ops.bandit_update

    def capture(probs, norms, active_idx, *args, **kwargs):
        seen["norms"], seen["active_idx"] = norms.clone(), active_idx.clone()
        return bandit(probs, norms, active_idx, *args, **kwargs)

    opt._ops = dataclasses.replace(opt._ops, bandit_update=capture)
    batch = make_batches(1)[0]
    loss_of(model, batch).backward()
    params = list(model.parameters())
    # the first pass's squared norms, scaled apart so that the order of the additions shows
    for i, p in enumerate(params):
        p.grad.mul_(3.0 ** (i - 3))
    sq = grad_sqnorms([p.grad for p in params])
    opt.step(lambda: loss_of(model, batch).backward())
    expected = []
    for arm in arms:
        total = torch.zeros((), dtype=torch.float32)
        for i, p in enumerate(params):
            if any(p is q for q in arm):
                total = total + sq[i]
        expected.append(total.sqrt())
    assert seen["active_idx"].tolist() == [0, 1]
    assert torch.equal(seen["norms"], torch.stack(expected))
