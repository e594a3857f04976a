"""Fused restore + AdamW/SGD step against torch's own optimizers after a plain restore."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import torch
from oracle_testing import (
    assert_error_bounded_by_torchs,
    assert_states_bounded_by_torchs,
    float64_oracle,
)
from triton_testing import DEVICE, TRITON_MARKS

from slsam_kernels import triton as triton_backend

pytestmark = TRITON_MARKS

SIZES = [1, 127, 1025, 0, 4099]
STEPS = 4

CONFIGS = [
    pytest.param(torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 0.1}, id="adamw"),
    pytest.param(
        torch.optim.AdamW,
        {"lr": 3e-3, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.0, "foreach": False},
        id="adamw-betas-nodecay",
    ),
    pytest.param(
        torch.optim.AdamW,
        {"lr": 1e-2, "betas": (0.3, 0.9), "weight_decay": 0.05},
        id="adamw-beta1-below-half",
    ),
    pytest.param(torch.optim.SGD, {"lr": 0.1}, id="sgd"),
    pytest.param(torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}, id="sgd-momentum"),
    pytest.param(
        torch.optim.SGD,
        {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01},
        id="sgd-dampening-decay",
    ),
    pytest.param(
        torch.optim.SGD,
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
        id="sgd-nesterov",
    ),
]


def _groups(params: list[torch.Tensor], split: bool) -> list[dict[str, Any]]:
    if not split:
        return [{"params": params}]
    return [{"params": params[:2], "lr": 0.02}, {"params": params[2:]}]


class _Runs(NamedTuple):
    """The fused step, restore + torch's step, and torch's step in float64, same inputs."""

    fused_w: list[torch.Tensor]
    fused_opt: torch.optim.Optimizer
    plain_w: list[torch.Tensor]
    plain_opt: torch.optim.Optimizer
    oracle_w: list[torch.Tensor]
    oracle_opt: torch.optim.Optimizer


def _make(
    optimizer_cls: type[torch.optim.Optimizer], kwargs: dict[str, Any], split: bool
) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer]:
    def make(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        optimizer = optimizer_cls(_groups(params, split), **kwargs)
        if split and "momentum" in kwargs:
            optimizer.param_groups[0]["momentum"] = 0.0
        return optimizer

    return make


def _run(
    optimizer_cls: type[torch.optim.Optimizer],
    kwargs: dict[str, Any],
    dtype: torch.dtype,
    split: bool,
) -> _Runs:
    """The same grads through the fused step, through restore + ``optimizer.step()`` and
    through ``optimizer.step()`` in float64."""
    make = _make(optimizer_cls, kwargs, split)
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(n, generator=gen).to(DEVICE, dtype) for n in SIZES]
    fused_w = [w.clone() for w in start]
    plain_w = [w.clone() for w in start]
    fused_opt, plain_opt = make(fused_w), make(plain_w)
    grads_per_step = []
    for _ in range(STEPS):
        grads = [torch.randn(n, generator=gen).to(DEVICE, dtype) for n in SIZES]
        backups = [w.clone() for w in fused_w]
        for w, v, g in zip(fused_w, plain_w, grads, strict=True):
            w.grad, v.grad = g.clone(), g.clone()
            w.fill_(float("nan"))  # the fused step must read the backup, never w
        assert triton_backend.fused_restore_step(fused_opt, fused_w, backups)
        plain_opt.step()
        grads_per_step.append(grads)
    return _Runs(
        fused_w, fused_opt, plain_w, plain_opt, *float64_oracle(make, start, grads_per_step)
    )


@pytest.mark.parametrize(("optimizer_cls", "kwargs"), CONFIGS)
@pytest.mark.parametrize("split", [False, True], ids=["one-group", "two-groups"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_error_bounded_by_torchs(
    optimizer_cls: type[torch.optim.Optimizer],
    kwargs: dict[str, Any],
    split: bool,
    dtype: torch.dtype,
) -> None:
    """torch rounds every intermediate to ``dtype``; the kernel rounds once at the store.
    Against torch's step in float64, the kernel's error may be at most twice torch's own plus
    one epsilon of ``dtype``, for the weights and every state tensor."""
    if dtype == torch.float16 and optimizer_cls is torch.optim.AdamW:
        pytest.skip("torch's fp16 AdamW underflows eps=1e-8 to 0; no meaningful comparison")
    runs = _run(optimizer_cls, kwargs, dtype, split)
    for i, (ours, theirs, truth) in enumerate(
        zip(runs.fused_w, runs.plain_w, runs.oracle_w, strict=True)
    ):
        assert_error_bounded_by_torchs(ours, theirs, truth, f"param {i}")
    assert_states_bounded_by_torchs(runs.fused_opt, runs.plain_opt, runs.oracle_opt)


def test_param_without_grad_is_restored_only() -> None:
    w = [torch.randn(10, device=DEVICE), torch.randn(20, device=DEVICE)]
    optimizer = torch.optim.AdamW(w, lr=0.1)
    backups = [t.clone() for t in w]
    w[0].grad = torch.randn(10, device=DEVICE)
    w[1].add_(1.0)
    assert triton_backend.fused_restore_step(optimizer, w, backups)
    assert torch.equal(w[1], backups[1]) and len(optimizer.state[w[1]]) == 0
    assert not torch.equal(w[0], backups[0]) and int(optimizer.state[w[0]]["step"]) == 1


def _stepped(optimizer: torch.optim.Optimizer, **flags: Any) -> torch.optim.Optimizer:
    """``optimizer`` after one plain step (so state exists), then with ``flags`` set on its
    groups (capturable=True cannot step on the CPU, so it is set afterwards)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = torch.randn_like(p)
    optimizer.step()
    for group in optimizer.param_groups:
        group.update(flags)
    return optimizer


def _with_hook(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    optimizer = _stepped(torch.optim.SGD(params, lr=0.1))
    optimizer.register_step_post_hook(lambda *args: None)
    return optimizer


def _with_patched_step(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    optimizer = _stepped(torch.optim.SGD(params, lr=0.1))
    optimizer.step = optimizer.step  # an instance-level wrapper, as some schedulers install
    return optimizer


def _with_scaler_tensors(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    optimizer = _stepped(torch.optim.AdamW(params))
    optimizer.found_inf = torch.zeros(())  # what GradScaler hands a fused optimizer
    return optimizer


UNSUPPORTED = [
    pytest.param(lambda p: _stepped(torch.optim.AdamW(p, amsgrad=True)), id="amsgrad"),
    pytest.param(lambda p: _stepped(torch.optim.AdamW(p, maximize=True)), id="maximize"),
    pytest.param(lambda p: _stepped(torch.optim.AdamW(p), capturable=True), id="capturable"),
    pytest.param(lambda p: _stepped(torch.optim.AdamW(p), fused=True), id="fused-adamw"),
    pytest.param(
        lambda p: _stepped(torch.optim.AdamW(p, differentiable=True)), id="differentiable"
    ),
    pytest.param(lambda p: _stepped(torch.optim.AdamW(p, lr=torch.tensor(0.01))), id="tensor-lr"),
    pytest.param(lambda p: _stepped(torch.optim.Adam(p)), id="adam"),
    pytest.param(lambda p: _stepped(torch.optim.RMSprop(p)), id="rmsprop"),
    pytest.param(lambda p: _stepped(torch.optim.SGD(p, lr=0.1, maximize=True)), id="sgd-maximize"),
    pytest.param(_with_hook, id="step-hook"),
    pytest.param(_with_patched_step, id="patched-step"),
    pytest.param(_with_scaler_tensors, id="grad-scaler"),
]


@pytest.mark.parametrize("make_optimizer", UNSUPPORTED)
def test_unsupported_returns_false_and_changes_nothing(make_optimizer: Any) -> None:
    w = [torch.randn(n, device=DEVICE) for n in (5, 300)]
    optimizer = make_optimizer(w)
    backups = [t.clone() + 1 for t in w]
    before = copy.deepcopy((w, [t.grad for t in w], optimizer.state_dict()))
    assert not triton_backend.fused_restore_step(optimizer, w, backups)
    after = (w, [t.grad for t in w], optimizer.state_dict())
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_grad_outside_params_returns_false() -> None:
    w = [torch.randn(5, device=DEVICE), torch.randn(7, device=DEVICE)]
    optimizer = torch.optim.SGD(w, lr=0.1, momentum=0.9)
    for t in w:
        t.grad = torch.randn_like(t)
    assert not triton_backend.fused_restore_step(optimizer, w[:1], [w[0].clone()])
    assert not optimizer.state


def test_param_outside_optimizer_returns_false() -> None:
    w = torch.randn(5, device=DEVICE)
    stranger = torch.randn(3, device=DEVICE)
    optimizer = torch.optim.SGD([w], lr=0.1)
    w.grad, stranger.grad = torch.randn_like(w), torch.randn_like(stranger)
    original = w.clone()
    assert not triton_backend.fused_restore_step(optimizer, [w, stranger], [w + 1, stranger + 1])
    assert torch.equal(w, original)


def test_rejection_after_a_supported_group_leaves_no_state() -> None:
    w = [torch.randn(5, device=DEVICE), torch.randn(7, device=DEVICE)]
    optimizer = torch.optim.AdamW([{"params": w[:1]}, {"params": w[1:], "amsgrad": True}])
    for t in w:
        t.grad = torch.randn_like(t)
    assert not triton_backend.fused_restore_step(optimizer, w, [t.clone() for t in w])
    assert len(optimizer.state) == 0
