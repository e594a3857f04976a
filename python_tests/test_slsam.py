"""SL-SAM: exactness against SAM, inactive tensors untouched, sampling, checkpoints."""

import io

import pytest
import torch
from builders import assert_states_equal, loss_of, make_batches, make_model, snapshot, train

from slsam_kernels import SAM, SLSAM


def make_slsam(model, **kwargs):
    kwargs = {"lr": 1e-2, "seed": 0, **kwargs}
    return SLSAM(model.parameters(), torch.optim.AdamW, **kwargs)


def mask_of(*bits):
    return torch.tensor(bits, dtype=torch.bool)


def test_every_arm_active_takes_exactly_the_sam_step():
    batches = make_batches(5)
    sam_model, sl_model = make_model(), make_model()
    sam = SAM(sam_model.parameters(), torch.optim.AdamW, lr=1e-2)
    slsam = make_slsam(sl_model, sample_ratio=0.3)
    train(sam_model, sam, batches)
    for batch in batches:
        slsam.sample(torch.ones(slsam.num_arms, dtype=torch.bool))
        loss_of(sl_model, batch).backward()
        slsam.step(lambda batch=batch: loss_of(sl_model, batch).backward())
        slsam.zero_grad()
    for a, b in zip(sam_model.parameters(), sl_model.parameters()):
        assert torch.equal(a, b)
    assert_states_equal(sam.state_dict()["state"], slsam.state_dict()["state"])


def test_sample_ratio_one_is_sam():
    batches = make_batches(4)
    sam_model, sl_model = make_model(), make_model()
    train(sam_model, SAM(sam_model.parameters(), torch.optim.AdamW, lr=1e-2), batches)
    slsam = make_slsam(sl_model, sample_ratio=1.0)
    train(sl_model, slsam, batches)
    assert slsam.active_mask.all() and torch.equal(slsam.probs, torch.ones(slsam.num_arms))
    for a, b in zip(sam_model.parameters(), sl_model.parameters()):
        assert torch.equal(a, b)


def test_inactive_tensors_are_untouched():
    model = make_model()
    opt = make_slsam(model)
    batches = make_batches(2)
    opt.sample(torch.ones(opt.num_arms, dtype=torch.bool))
    train(model, opt, batches[:1])  # every arm now has AdamW state
    mask = mask_of(1, 0, 1, 0, 0, 1, 0)
    opt.sample(mask)
    params_before, state_before = snapshot(model, opt)
    arms = list(model.parameters())
    assert [p.requires_grad for p in arms] == mask.tolist()
    loss_of(model, batches[1]).backward()
    assert all((p.grad is None) != active for p, active in zip(arms, mask.tolist()))
    opt.step(lambda: loss_of(model, batches[1]).backward())
    params_after, state_after = snapshot(model, opt)
    for i, active in enumerate(mask.tolist()):
        same_value = torch.equal(params_before[i], params_after[i])
        same_state = all(torch.equal(state_before[i][k], state_after[i][k]) for k in state_after[i])
        assert same_value != active and same_state != active, f"arm {i}"
        assert sorted(state_after[i]) == ["exp_avg", "exp_avg_sq", "step"]
        if not active:
            assert arms[i].grad is None


def test_frozen_tensor_is_never_an_arm_and_never_unfrozen():
    model = make_model()
    model.fc1.weight.requires_grad_(False)
    frozen = model.fc1.weight.detach().clone()
    opt = make_slsam(model, sample_ratio=0.9)
    assert opt.num_arms == 6 and all(a is not model.fc1.weight for a in opt.arms)
    for _ in range(5):
        train(model, opt, make_batches(1))
        assert not model.fc1.weight.requires_grad
    assert torch.equal(model.fc1.weight, frozen)
    assert model.fc1.weight not in opt.state


def test_backups_cover_only_the_active_tensors_and_are_reused():
    model = make_model()
    opt = make_slsam(model)
    mask = mask_of(0, 1, 0, 0, 1, 1, 0)
    pointers = [p.data_ptr() for p in model.parameters()]
    active_bytes = sum(p.numel() * 4 for p, m in zip(model.parameters(), mask) if m)
    buffer_pointers = set()
    for batch in make_batches(4):
        opt.sample(mask)
        loss_of(model, batch).backward()
        opt.first_step(zero_grad=True)
        buffer_pointers |= {b.data_ptr() for b in opt._perturbation.backups}
        loss_of(model, batch).backward()
        opt.second_step(zero_grad=True)
    assert active_bytes <= opt.backup_nbytes < active_bytes + 3 * 64
    assert len(buffer_pointers) == int(mask.sum())  # the same buffer slices every step
    assert [p.data_ptr() for p in model.parameters()] == pointers  # no p.data rebinding


def test_sampling_is_seeded_and_its_mean_matches_the_budget():
    def masks(seed, steps):
        model = make_model()
        opt = make_slsam(model, sample_ratio=0.4, seed=seed, bandit_lr=0.0)
        out = [opt.active_mask]
        for _ in range(steps):
            out.append(opt.sample())
        return torch.stack(out)

    first, again, other = masks(11, 400), masks(11, 400), masks(12, 400)
    assert torch.equal(first, again) and not torch.equal(first, other)
    # bandit_lr = 0 keeps p = 0.4, so the mean active count is B = 0.4 * 7 = 2.8 (std ~1.3 per
    # draw; the redraw of empty sets adds 0.6^7 * 2.8 ~ 0.08).
    assert abs(first.sum(1).double().mean().item() - 2.8) < 0.3


def test_trained_sequence_is_seeded_and_manual_path_equals_closure_path():
    batches = make_batches(6)
    a, b = make_model(), make_model()
    opt_a, opt_b = make_slsam(a, seed=5), make_slsam(b, seed=5)
    masks_a, masks_b = [], []
    for batch in batches:
        masks_a.append(opt_a.active_mask)
        train(a, opt_a, [batch])
        masks_b.append(opt_b.active_mask)
        loss_of(b, batch).backward()
        opt_b.first_step(zero_grad=True)
        loss_of(b, batch).backward()
        opt_b.second_step(zero_grad=True)
    assert all(torch.equal(x, y) for x, y in zip(masks_a, masks_b))
    assert len({tuple(m.tolist()) for m in masks_a}) > 1
    assert torch.equal(opt_a.probs, opt_b.probs) and not torch.equal(
        opt_a.probs, torch.full((7,), 0.5)
    )
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_state_dict_resume_is_bit_identical():
    batches = make_batches(8)
    model = make_model()
    opt = make_slsam(model, seed=3)
    train(model, opt, batches[:4])
    saved = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, saved)
    train(model, opt, batches[4:])

    saved.seek(0)
    checkpoint = torch.load(saved)
    resumed_model = make_model(seed=99)
    resumed = make_slsam(resumed_model, seed=1234)
    resumed_model.load_state_dict(checkpoint["model"])
    resumed.load_state_dict(checkpoint["opt"])
    train(resumed_model, resumed, batches[4:])
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(opt.probs, resumed.probs)
    assert torch.equal(opt.active_mask, resumed.active_mask)
    assert_states_equal(opt.state_dict()["state"], resumed.state_dict()["state"])


def test_active_param_fraction_counts_elements():
    model = make_model()
    opt = make_slsam(model)
    sizes = [p.numel() for p in model.parameters()]
    opt.sample(mask_of(0, 1, 0, 0, 0, 0, 1))
    assert opt.active_param_fraction == pytest.approx((sizes[1] + sizes[6]) / sum(sizes))


@pytest.mark.parametrize(
    "mask, error",
    [
        pytest.param(torch.ones(7, dtype=torch.int64), TypeError, id="int-dtype"),
        pytest.param([True] * 7, TypeError, id="list"),
        pytest.param(torch.ones(6, dtype=torch.bool), ValueError, id="short"),
        pytest.param(torch.zeros(7, dtype=torch.bool), ValueError, id="empty-set"),
    ],
)
def test_bad_mask_raises_and_changes_nothing(mask, error):
    model = make_model()
    opt = make_slsam(model)
    before = (opt.active_mask, [p.requires_grad for p in model.parameters()])
    with pytest.raises(error, match="mask"):
        opt.sample(mask)
    assert torch.equal(opt.active_mask, before[0])
    assert [p.requires_grad for p in model.parameters()] == before[1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("optimizer", [SAM, SLSAM], ids=lambda c: c.__name__)
def test_restore_is_bit_exact(optimizer, dtype):
    model = make_model(dtype=dtype)
    opt = optimizer(model.parameters(), torch.optim.SGD, lr=0.0, rho=0.5)
    if isinstance(opt, SLSAM):
        opt.sample(mask_of(1, 1, 0, 1, 1, 0, 1))
    before = [p.detach().clone() for p in model.parameters()]
    batch = make_batches(1, dtype=dtype)[0]
    seen_perturbed = []

    def closure():
        seen_perturbed.append([not torch.equal(p, w) for p, w in zip(model.parameters(), before)])
        loss_of(model, batch).backward()

    loss_of(model, batch).backward()
    opt.step(closure)
    assert sum(seen_perturbed[0]) >= 5
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    for p, w in zip(model.parameters(), before):
        assert p.dtype == dtype and torch.equal(p.view(bits), w.view(bits))


def test_always_active_tensors_step_every_time_as_sam_on_the_union():
    batches = make_batches(3)
    sam_model, sl_model = make_model(), make_model()
    head = list(sl_model.parameters())[-2:]
    opt = make_slsam(sl_model, always_active=head, sample_ratio=0.5)
    assert opt.num_arms == 5 and {id(a) for a in opt.arms}.isdisjoint(map(id, head))
    arm_mask = mask_of(1, 0, 0, 1, 0)
    for p, active in zip(sam_model.parameters(), [*arm_mask.tolist(), True, True]):
        p.requires_grad_(active)
    sam = SAM(sam_model.parameters(), torch.optim.AdamW, lr=1e-2)
    head_before = [p.detach().clone() for p in head]
    for batch in batches:
        opt.sample(arm_mask)
        sl_model.zero_grad()
        loss_of(sl_model, batch).backward()
        opt.step(lambda batch=batch: loss_of(sl_model, batch).backward())
        assert all(p.requires_grad for p in head)
    train(sam_model, sam, batches)
    for a, b in zip(sam_model.parameters(), sl_model.parameters()):
        assert torch.equal(a, b)
    assert all(not torch.equal(p, before) for p, before in zip(head, head_before))
    assert opt.probs.shape == (5,)
    sizes = [p.numel() for p in sl_model.parameters()]
    opt.sample(mask_of(0, 1, 0, 0, 0))
    assert opt.active_param_fraction == pytest.approx((sizes[1] + sizes[5] + sizes[6]) / sum(sizes))


@pytest.mark.parametrize(
    "pick, error, match",
    [
        pytest.param(lambda m: list(m.parameters()), ValueError, "no arm left", id="everything"),
        pytest.param(lambda m: [torch.nn.Parameter(torch.ones(2))], ValueError, "does not train"),
        pytest.param(lambda m: [3], TypeError, "always_active entry 0", id="not-a-tensor"),
    ],
)
def test_bad_always_active_raises(pick, error, match):
    model = make_model()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(error, match=match):
        make_slsam(model, always_active=pick(model))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))
    assert all(p.requires_grad for p in model.parameters())
