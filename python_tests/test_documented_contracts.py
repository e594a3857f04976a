"""Contracts that survived mutation testing (``make mutation``) until these tests pinned them:
stale gradients of inactive arms, the arms' documented types, checkpoint round trips, RST's
plain steps, the robust bandit's exploration floor, clipping and skipped steps, the backup
arena, and the argument checks' messages."""

from __future__ import annotations

import pytest
import torch
from builders import loss_of, make_batches, make_model

from slsam_kernels import RST, SAM, SLSAM, ops
from slsam_kernels.backends.reference import grad_sqnorms
from slsam_kernels.optim.checkpoint import check_generator_state


def make_slsam(model: torch.nn.Module, **kwargs) -> SLSAM:
    kwargs = {"lr": 1e-2, "seed": 0, **kwargs}
    return SLSAM(model.parameters(), torch.optim.AdamW, **kwargs)


def every_arm(opt: SLSAM) -> torch.Tensor:
    return torch.ones(opt.num_arms, dtype=torch.bool)


# SLSAM.sample: "Inactive arms lose any stale .grad".


def test_sample_drops_the_stale_gradients_of_inactive_arms_only():
    model = make_model()
    opt = make_slsam(model)
    opt.sample(every_arm(opt))
    loss_of(model, make_batches(1)[0]).backward()  # every arm now holds a gradient
    mask = torch.tensor([1, 0, 0, 1, 1, 0, 1], dtype=torch.bool)
    opt.sample(mask)
    for p, active in zip(model.parameters(), mask.tolist()):
        assert (p.grad is not None) == active
        assert p.requires_grad == active


# SLSAM's documented attributes and checkpoints.


def test_per_tensor_arms_are_the_tensors_themselves():
    model = make_model()
    opt = make_slsam(model)
    assert all(arm is p for arm, p in zip(opt.arms, model.parameters(), strict=True))


def test_loaded_probabilities_are_fp32_and_independent_of_the_state_dict():
    model = make_model()
    opt = make_slsam(model)
    state = opt.state_dict()
    wanted = torch.linspace(0.2, 0.8, opt.num_arms, dtype=torch.float64)
    state["sharpness_aware"]["probs"] = wanted.clone()
    opt.load_state_dict(state)
    assert opt.probs.dtype == torch.float32
    torch.testing.assert_close(opt.probs, wanted.float(), rtol=0, atol=0)
    state["sharpness_aware"]["probs"] = opt.state_dict()["sharpness_aware"]["probs"]
    opt.load_state_dict(state)
    state["sharpness_aware"]["probs"].fill_(0.01)  # the caller's tensor, not the optimizer's
    torch.testing.assert_close(opt.probs, wanted.float(), rtol=0, atol=0)


def test_sam_loads_a_plain_base_optimizer_state_dict():
    base_model, sam_model = make_model(), make_model()
    base = torch.optim.AdamW(base_model.parameters(), lr=1e-2)
    loss_of(base_model, make_batches(1)[0]).backward()
    base.step()
    sam = SAM(sam_model.parameters(), torch.optim.AdamW, lr=1e-2)
    sam.load_state_dict(base.state_dict())
    assert torch.equal(
        sam.state[sam_model.scale]["exp_avg"], base.state[base_model.scale]["exp_avg"]
    )


def test_robust_exploration_keeps_every_probability_above_its_floor():
    # fc1's weight and bias get no gradient at all (norm 0, loss 1 every step), so with a large
    # eta they fall straight to the floor gamma * s, and without exploration far below it.
    model = make_model()
    gamma, ratio = 0.5, 0.5
    opt = make_slsam(
        model, bandit="robust", bandit_lr=5.0, exploration=gamma, sample_ratio=ratio, seed=3
    )
    for batch in make_batches(6):
        opt.sample(every_arm(opt))
        x, y = batch
        # fc1 is skipped in the forward, so its arms get no gradient
        out = model.fc3(torch.tanh(model.fc2(torch.zeros(16, 13) + x.sum(1, keepdim=True))))
        torch.nn.functional.cross_entropy(out, y).backward()
        opt.first_step(zero_grad=True)
        out = model.fc3(torch.tanh(model.fc2(torch.zeros(16, 13) + x.sum(1, keepdim=True))))
        torch.nn.functional.cross_entropy(out, y).backward()
        opt.second_step(zero_grad=True)
    probs = opt.probs
    assert probs.min().item() >= gamma * ratio - 1e-6
    assert probs[1:3].max().item() <= gamma * ratio + 1e-3  # fc1 sits at the floor
    torch.testing.assert_close(probs.sum(), torch.tensor(ratio * opt.num_arms))


@pytest.mark.parametrize("optimizer", [SAM, SLSAM], ids=["SAM", "SLSAM"])
def test_per_rank_ascent_is_rejected_without_torch_distributed(optimizer):
    with pytest.raises(ValueError, match=r"needs torch.distributed initialised"):
        optimizer(make_model().parameters(), torch.optim.SGD, lr=0.1, ascent="per_rank")


@pytest.mark.parametrize("optimizer", [SLSAM, RST], ids=["SLSAM", "RST"])
def test_a_bool_seed_is_rejected(optimizer):
    with pytest.raises(TypeError, match=r"seed must be an int or None, got bool"):
        optimizer(make_model().parameters(), torch.optim.SGD, lr=0.1, seed=True)


# always_active: a single module or tensor, a list, frozen tensors skipped.


@pytest.mark.parametrize(
    "spec_of, always",
    [
        pytest.param(lambda m: m.fc3, ("weight", "bias"), id="module"),
        pytest.param(lambda m: m.fc3.weight, ("weight",), id="tensor"),
        pytest.param(lambda m: [m.fc3], ("weight", "bias"), id="list-of-modules"),
        pytest.param(
            lambda m: [m.fc3.weight, m.fc3.bias], ("weight", "bias"), id="list-of-tensors"
        ),
    ],
)
def test_always_active_takes_a_single_module_a_single_tensor_or_a_list(spec_of, always):
    model = make_model()
    opt = make_slsam(model, always_active=spec_of(model))
    chosen = [getattr(model.fc3, name) for name in always]
    assert opt.num_arms == 7 - len(chosen)
    assert all(arm is not p for arm in opt.arms for p in chosen)
    for _ in range(10):
        opt.sample()
        assert all(p.requires_grad for p in chosen)


def test_always_active_skips_a_frozen_tensor_and_keeps_the_rest_of_the_module():
    model = make_model()
    model.fc3.weight.requires_grad_(False)
    opt = make_slsam(model, always_active=model.fc3)
    assert opt.num_arms == 5
    assert model.fc3.bias.requires_grad and not model.fc3.weight.requires_grad
    assert all(arm is not model.fc3.bias for arm in opt.arms)


def test_arms_must_be_a_list_not_an_iterator():
    model = make_model()
    with pytest.raises(TypeError, match=r"arms must be a list"):
        make_slsam(model, arms=iter([[p] for p in model.parameters()]))


# RST.


def test_rst_schedule_may_return_zero_and_a_plain_step_returns_none():
    model = make_model()
    opt = RST(model.parameters(), torch.optim.SGD, lr=0.1, sam_prob=lambda i: 0.0, seed=0)
    assert opt.last_step_was_sam is None
    batch = make_batches(1)[0]
    loss_of(model, batch).backward()
    assert opt.step(lambda: loss_of(model, batch).backward()) is None
    assert opt.last_step_was_sam is False and opt.step_index == 1


def test_rst_rejects_a_wrong_scaler_whichever_step_it_takes():
    model = make_model()
    opt = RST(model.parameters(), torch.optim.SGD, lr=0.1, sam_prob=0.0, seed=0)
    loss_of(model, make_batches(1)[0]).backward()
    words = r"^scaler must be a torch\.amp\.GradScaler or None, got str$"
    with pytest.raises(TypeError, match=words):
        opt.step(lambda: None, scaler="not a scaler")
    assert opt.step_index == 0


@pytest.mark.parametrize("owner", [SLSAM, RST], ids=["SLSAM", "RST"])
def test_a_checkpoint_without_a_generator_state_names_its_owner(owner):
    opt = owner(make_model().parameters(), torch.optim.SGD, lr=0.1, seed=0)
    state = opt.state_dict()
    state["sharpness_aware"]["generator"] = torch.zeros(8, dtype=torch.float32)
    name = owner.__name__
    with pytest.raises(ValueError, match=rf"{name} state dict has no valid .* saved by {name}"):
        opt.load_state_dict(state)


def test_generator_state_must_be_a_uint8_tensor():
    check_generator_state(torch.Generator().get_state(), "SLSAM")
    for bad in (None, [0, 1], torch.zeros(4, dtype=torch.int64)):
        with pytest.raises(ValueError, match=r"SLSAM state dict has no valid generator state"):
            check_generator_state(bad, "SLSAM")


# Errors that must happen, with the words that name the fix.


def test_calls_between_first_and_second_step_are_rejected():
    model = make_model()
    opt = make_slsam(model)
    opt.sample(every_arm(opt))
    loss_of(model, make_batches(1)[0]).backward()
    opt.first_step()
    with pytest.raises(RuntimeError, match=r"^load_state_dict\(\) between first_step\(\)"):
        opt.load_state_dict(opt.state_dict())
    with pytest.raises(RuntimeError, match=r"^sample\(\) between first_step\(\) and second_"):
        opt.sample()


@pytest.mark.parametrize(
    "build, error, words",
    [
        pytest.param(
            lambda m: make_slsam(m, sample_ratio=-0.5),
            ValueError,
            r"^sample_ratio must be in \(0, 1\], got -0.5$",
            id="negative-sample-ratio",
        ),
        pytest.param(
            lambda m: make_slsam(m, always_active=3),
            TypeError,
            '^always_active must be a module, a tensor, "auto" or a list of them, e.g. '
            r'always_active=\("auto", model.head\)$',
            id="always-active-int",
        ),
        pytest.param(
            lambda m: make_slsam(m, always_active=list(m.parameters())),
            ValueError,
            "so SL-SAM has no arm left to sample: use SAM instead",
            id="always-active-everything",
        ),
        pytest.param(
            lambda m: make_slsam(m, arms=[[p] for p in list(m.parameters())[:-1]]),
            ValueError,
            r"freeze them \(requires_grad_\(False\)\) before building the optimizer$",
            id="arm-missing",
        ),
        pytest.param(
            lambda m: make_slsam(m, arms=[list(make_model(1).parameters())]),
            ValueError,
            "build the arms from the same parameters as the optimizer$",
            id="arm-foreign",
        ),
        pytest.param(
            lambda m: make_slsam(m, arms=m.fc1.weight),
            TypeError,
            r"e\.g\. arms=arms_by_module\(model\) or arms=list\(model\.encoder\.layer\)$",
            id="arms-tensor",
        ),
        pytest.param(
            lambda m: make_slsam(m, always_active=[make_model(1).fc1]),
            ValueError,
            "parameters that are in the optimizer's groups and require grad$",
            id="always-active-foreign",
        ),
    ],
)
def test_error_messages_name_the_fix(build, error, words):
    with pytest.raises(error, match=words):
        build(make_model())


def test_arms_by_module_names_the_wrong_type():
    from slsam_kernels import arms_by_module

    with pytest.raises(TypeError, match=r"^arms_by_module\(\) takes an nn\.Module, got int$"):
        arms_by_module(5)


def test_bad_masks_are_rejected_with_the_rule():
    opt = make_slsam(make_model())
    with pytest.raises(TypeError, match=r"^mask must be a torch.bool tensor with one entry per"):
        opt.sample(torch.ones(opt.num_arms))
    with pytest.raises(ValueError, match=r"^mask selects no arm: at least one arm must be active"):
        opt.sample(torch.zeros(opt.num_arms, dtype=torch.bool))


def test_frozen_model_and_late_param_groups_are_rejected_with_the_fix():
    model = make_model()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match=r"so SL-SAM has no arms: .* train before building the"):
        make_slsam(model)
    opt = make_slsam(make_model(), seed=0)
    with pytest.raises(ValueError, match=r"SLSAM's arms are fixed .* parameter groups instead of"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))]})


# The reference ops.


def test_reference_grad_sqnorms_of_nothing_is_an_empty_fp32_tensor():
    out = grad_sqnorms([])
    assert out.shape == (0,) and out.dtype == torch.float32
    assert ops.grad_sqnorms([], backend="reference").shape == (0,)


# The descent: clipping and skipped steps.


def linear_problem(coefficients: list[float]) -> tuple[torch.nn.Parameter, torch.Tensor]:
    """A parameter whose loss ``(w * c).sum()`` has the constant gradient ``c``."""
    return torch.nn.Parameter(torch.ones(len(coefficients))), torch.tensor(coefficients)


def test_clipping_matches_clip_grad_norm_where_its_epsilon_matters():
    # ||g|| = 1.5e-6 is of the order of the 1e-6 epsilon: coef = 1e-7 / (1.5e-6 + 1e-6).
    w, c = linear_problem([1.2e-6, 0.9e-6])
    opt = RST([w], torch.optim.SGD, lr=1.0, sam_prob=0.0, seed=0, max_grad_norm=1e-7)
    (w * c).sum().backward()
    opt.step(lambda: None)
    twin = torch.nn.Parameter(torch.ones(2))
    twin.grad = c.clone()
    torch.nn.utils.clip_grad_norm_([twin], 1e-7)
    torch.testing.assert_close(w.detach(), torch.ones(2) - twin.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(twin.grad, c * (1e-7 / 2.5e-6), rtol=1e-5, atol=0)


def test_an_overflowing_ascent_norm_skips_the_step():
    # Finite first-pass gradients whose squared norm overflows fp32: the ascent norm is inf.
    w, c = linear_problem([1e20, 1e20])
    opt = SAM([w], torch.optim.SGD, lr=0.1)
    (w * c).sum().backward()
    opt.first_step(zero_grad=True)
    (w * torch.ones(2)).sum().backward()
    with pytest.warns(RuntimeWarning, match=r"^SAM: a gradient held inf or NaN, so this step"):
        opt.second_step()
    assert opt.last_step_skipped
    assert torch.equal(w.detach(), torch.ones(2))


def test_a_second_pass_without_any_gradient_restores_and_is_not_a_skip():
    w, _ = linear_problem([1.0, 2.0])
    sam = SAM([w], torch.optim.SGD, lr=0.1)
    (w * 3).sum().backward()
    sam.first_step(zero_grad=True)
    sam.second_step()  # the second pass produced no gradient: restore, no step
    assert torch.equal(w.detach(), torch.ones(2)) and not sam.last_step_skipped


def test_step_without_closure_names_the_optimizer_and_the_alternative():
    opt = SAM(make_model().parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match=r"^SAM\.step\(\) needs a closure .* yourself$"):
        opt.step()


# The backup arena: exact size, the parameter's dtype, aligned slices.


def test_backup_arena_holds_exactly_what_it_needs_in_the_parameters_dtype():
    from slsam_kernels.optim.backup import BackupArena

    arena = BackupArena()
    params = [torch.zeros(10, dtype=torch.bfloat16), torch.zeros(3, 5, dtype=torch.bfloat16)]
    views = arena.views(params)
    assert [v.dtype for v in views] == [torch.bfloat16, torch.bfloat16]
    assert [v.shape for v in views] == [p.shape for p in params]
    assert views[1].data_ptr() - views[0].data_ptr() == 64  # the next 64-byte boundary
    assert arena.nbytes == 2 * (32 + 15)


def test_a_param_groups_own_rho_is_checked_and_a_fresh_optimizer_has_skipped_nothing():
    model = make_model()
    groups = [{"params": [model.scale], "rho": -1.0}, {"params": list(model.fc1.parameters())}]
    with pytest.raises(ValueError, match=r"^rho must be finite and >= 0, got -1\.0$"):
        SAM(groups, torch.optim.SGD, lr=0.1)
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    assert opt.last_step_skipped is False and opt.ascent == "global"
    with opt.first_pass(model):  # the global ascent needs no no_sync(): a no-op context
        loss_of(model, make_batches(1)[0]).backward()
    assert model.scale.grad is not None
