"""SLSAM gives back the requires_grad flags it takes over: release(), idempotent, run at garbage
collection; a released SLSAM refuses to step; no optimizer is built over flags a live SLSAM
holds; a tensor unfrozen after construction is trained every step, with one warning."""

from __future__ import annotations

import gc
import warnings
import weakref

import pytest
import torch
from bar_testing import make_lora_net
from builders import loss_of, make_batches, make_model, train

from slsam_kernels import BAR, RST, SAM, SLSAM


def build(params, **kwargs) -> SLSAM:
    return SLSAM(params, torch.optim.AdamW, lr=1e-2, sample_ratio=0.3, seed=0, **kwargs)


def flags(model: torch.nn.Module) -> list[bool]:
    return [p.requires_grad for p in model.parameters()]


def test_release_makes_every_arm_require_grad_again_and_drops_stale_grads():
    model = make_model()
    model.scale.requires_grad_(False)  # the user's own freeze: no arm, left as it is
    opt = build(model.parameters())
    train(model, opt, make_batches(3))
    loss_of(model, make_batches(1, seed=9)[0]).backward()  # grads on the active arms only
    frozen = [p for p in opt.arms if not p.requires_grad]
    assert frozen, "the test needs an arm frozen by the draw"
    for p in frozen:  # a stale gradient, as a user's manual write would leave
        p.grad = torch.ones_like(p)
    active_grads = {p: p.grad.clone() for p in opt.arms if p.requires_grad}
    weights = [p.detach().clone() for p in model.parameters()]
    opt.release()
    assert flags(model) == [False] + [True] * (len(weights) - 1)
    assert sum(p.requires_grad for p in model.parameters()) == len(opt.arms)
    assert all(p.grad is None for p in frozen)
    for p, grad in active_grads.items():
        assert torch.equal(p.grad, grad)
    for p, w in zip(model.parameters(), weights, strict=True):
        assert torch.equal(p, w)
    assert opt.released


def test_release_twice_changes_nothing_the_second_time():
    model = make_model()
    opt = build(model.parameters())
    opt.release()
    model.fc1.weight.requires_grad_(False)  # the user's own choice after the release
    opt.release()
    assert not model.fc1.weight.requires_grad
    assert sum(flags(model)) == len(flags(model)) - 1


@pytest.mark.parametrize("cycle", [False, True], ids=["refcount", "cycle"])
def test_a_collected_slsam_gives_the_flags_back(cycle):
    model = make_model()
    opt = build(model.parameters())
    train(model, opt, make_batches(2))
    assert not all(flags(model))
    if cycle:
        opt.self_reference = opt  # freed by the cycle collector only
    collected = weakref.ref(opt)
    del opt
    gc.collect()
    assert collected() is None, "the flag registry must not keep the optimizer alive"
    assert all(flags(model))
    SAM(model.parameters(), torch.optim.AdamW, lr=1e-2)  # the flags are free again


def test_an_slsam_dropped_in_a_reference_cycle_does_not_block_a_new_optimizer():
    model = make_model()
    opt = build(model.parameters())
    opt.self_reference = opt  # as a trainer that wraps opt.step leaves it
    gc.disable()  # only the check's own collection may free it
    try:
        del opt
        SAM(model.parameters(), torch.optim.AdamW, lr=1e-2)
    finally:
        gc.enable()
    assert all(flags(model))


def test_a_released_slsam_refuses_to_step_sample_or_load():
    model = make_model()
    opt = build(model.parameters())
    train(model, opt, make_batches(1))
    saved = opt.state_dict()
    opt.release()
    batch = make_batches(1, seed=5)[0]
    weights = [p.detach().clone() for p in model.parameters()]
    calls = []

    def closure():
        calls.append(1)
        loss_of(model, batch).backward()

    with pytest.raises(RuntimeError, match=r"was released .* cannot step: build a new SLSAM"):
        opt.step(closure)
    assert not calls, "the closure must not run for a refused step"
    loss_of(model, batch).backward()
    with pytest.raises(RuntimeError, match="cannot step"):
        opt.first_step()
    with pytest.raises(RuntimeError, match="cannot sample"):
        opt.sample()
    with pytest.raises(RuntimeError, match="cannot load a checkpoint"):
        opt.load_state_dict(saved)
    assert all(flags(model))
    for p, w in zip(model.parameters(), weights, strict=True):
        assert torch.equal(p, w)
    assert torch.equal(
        opt.state_dict()["sharpness_aware"]["probs"], saved["sharpness_aware"]["probs"]
    )


def test_release_between_the_passes_is_refused():
    model = make_model()
    opt = build(model.parameters())
    loss_of(model, make_batches(1)[0]).backward()
    opt.first_step()
    before = flags(model)
    with pytest.raises(RuntimeError, match=r"^release\(\) between first_step\(\) and second_step"):
        opt.release()
    assert flags(model) == before and not opt.released


def slsam_on(model):
    return build(model.parameters())


def sam_on(model):
    return SAM(model.parameters(), torch.optim.AdamW, lr=1e-2)


def rst_on(model):
    return RST(model.parameters(), torch.optim.AdamW, lr=1e-2, seed=0)


def bar_on(model):
    return BAR(model.parameters(), torch.optim.AdamW, model.pairs(), lr=1e-2)


@pytest.mark.parametrize("second", [slsam_on, sam_on, rst_on, bar_on], ids=lambda f: f.__name__)
def test_no_optimizer_is_built_over_the_arms_of_a_live_slsam(second):
    model = make_lora_net()
    first = slsam_on(model)
    before = flags(model)
    with pytest.raises(ValueError, match=r"arm of a live SLSAM.*call that SLSAM's release\(\)"):
        second(model)
    assert flags(model) == before
    first.release()
    rebuilt = second(model)
    if isinstance(rebuilt, SLSAM):
        assert rebuilt.num_arms == first.num_arms  # every arm again, not the active ones


def test_a_tensor_unfrozen_after_construction_is_trained_every_step_with_one_warning():
    model = make_model()
    model.scale.requires_grad_(False)
    opt = build(model.parameters())
    arms = opt.num_arms
    model.scale.requires_grad_(True)
    for step, batch in enumerate(make_batches(3)):
        before = model.scale.detach().clone()
        loss_of(model, batch).backward()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            opt.step(lambda batch=batch: loss_of(model, batch).backward())
        opt.zero_grad()
        unfrozen = [w for w in caught if "frozen when this SLSAM was built" in str(w.message)]
        assert len(unfrozen) == (1 if step == 0 else 0)
        assert all(w.filename == __file__ for w in unfrozen)  # points at the caller's line
        assert not torch.equal(model.scale, before)
        assert model.scale.requires_grad
    assert opt.num_arms == arms
    opt.release()
    assert model.scale.requires_grad
