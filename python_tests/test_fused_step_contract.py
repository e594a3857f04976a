"""The fused restore + step contract, the same on every backend
(:mod:`slsam_kernels.ops.fused_plan` states its rules): each case below is fused (True) or
declined (False) alike everywhere; a fused step leaves params and state as torch's restore +
``optimizer.step()`` would (within the float64 oracle's bound, with torch's state keys,
dtypes and devices); a decline changes nothing.

The reference backend never fuses: its restore + ``optimizer.step()`` fallback is what the
others are held to, so it declines every case.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from backend_testing import backend_params
from oracle_testing import (
    assert_error_bounded_by_torchs,
    assert_states_bounded_by_torchs,
    float64_oracle,
)

from slsam_kernels.ops import bind

Make = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


# fused on CPU tensors, declined on a GPU (fused_plan: torch keeps such a `step` on the device)
CPU_ONLY = "cpu only"


@dataclass(frozen=True)
class Case:
    """One optimizer configuration or situation and whether a fusing backend takes it."""

    make: Make
    fused: bool | str  # True, False or CPU_ONLY
    warm: bool = True  # one plain step first, so the state exists
    after_warm: Callable[[torch.optim.Optimizer], Any] | None = None
    dtype: torch.dtype = torch.float32
    layout: str = "flat"  # "channels_last": 4-D params; "strided": every other element
    with_grad: tuple[bool, ...] = (True, True, True)
    passed: int | None = None  # how many params (the first ones) are handed over; None: all
    stranger: bool = False  # also hand over a tensor with a grad that is not in the optimizer


def _hook(opt: torch.optim.Optimizer) -> None:
    opt.register_step_post_hook(lambda *args: None)


def _patch(opt: torch.optim.Optimizer) -> None:
    opt.step = opt.step  # an instance-level wrapper, as some schedulers install


def _scaler(opt: torch.optim.Optimizer) -> None:
    opt.found_inf = torch.zeros(())  # what GradScaler hands a fused optimizer


def _capturable(opt: torch.optim.Optimizer) -> None:
    for group in opt.param_groups:  # set after the warm step: capturable cannot step on a CPU
        group["capturable"] = True


AdamW, Adam, SGD = torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD
CASES = [
    pytest.param(Case(lambda ps: AdamW(ps, lr=1e-2, weight_decay=0.1), True), id="adamw"),
    pytest.param(Case(lambda ps: AdamW(ps, lr=1e-2), True, warm=False), id="adamw-new-state"),
    pytest.param(Case(lambda ps: AdamW(ps, foreach=True), True), id="adamw-foreach"),
    pytest.param(Case(lambda ps: Adam(ps, lr=1e-2, weight_decay=0.1), True), id="adam-l2"),
    pytest.param(Case(lambda ps: Adam(ps, lr=1e-2), True, warm=False), id="adam-new-state"),
    pytest.param(Case(lambda ps: SGD(ps, lr=0.1), True), id="sgd"),
    pytest.param(
        Case(lambda ps: SGD(ps, lr=0.1, momentum=0.9), True, warm=False), id="sgd-new-momentum"
    ),
    pytest.param(
        Case(lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2), True),
        id="sgd-nesterov-wd",
    ),
    pytest.param(
        Case(lambda ps: SGD(ps, lr=0.05, momentum=0.8, dampening=0.3), True), id="sgd-dampening"
    ),
    pytest.param(
        Case(
            lambda ps: AdamW(
                [{"params": ps[:1], "lr": 0.02}, {"params": ps[1:]}], weight_decay=0.3
            ),
            True,
        ),
        id="adamw-two-groups",
    ),
    pytest.param(
        Case(
            lambda ps: SGD([{"params": ps[:2], "momentum": 0.9}, {"params": ps[2:]}], lr=0.1), True
        ),
        id="sgd-groups-with-and-without-momentum",
    ),
    pytest.param(
        Case(lambda ps: AdamW(ps, lr=1e-2), True, with_grad=(True, False, True)),
        id="param-without-grad",
    ),
    pytest.param(
        Case(lambda ps: AdamW(ps, lr=1e-2), True, layout="channels_last"), id="channels-last"
    ),
    pytest.param(
        Case(lambda ps: SGD(ps, lr=0.1), True, with_grad=(False,) * 3, passed=0),
        id="empty-list-no-grads",
    ),
    pytest.param(Case(lambda ps: AdamW(ps, amsgrad=True), False), id="amsgrad"),
    pytest.param(Case(lambda ps: AdamW(ps, maximize=True), False), id="adamw-maximize"),
    pytest.param(Case(lambda ps: SGD(ps, lr=0.1, maximize=True), False), id="sgd-maximize"),
    pytest.param(Case(lambda ps: AdamW(ps, fused=True), CPU_ONLY), id="adamw-torch-fused"),
    pytest.param(
        Case(lambda ps: Adam(ps, lr=1e-2, weight_decay=0.1, fused=True), CPU_ONLY, warm=False),
        id="adam-l2-torch-fused-new-state",
    ),
    pytest.param(
        Case(lambda ps: AdamW(ps, lr=1e-2, fused=True), CPU_ONLY, dtype=torch.bfloat16),
        id="adamw-torch-fused-bf16",
    ),
    pytest.param(Case(lambda ps: SGD(ps, lr=0.1, fused=True), False), id="sgd-torch-fused"),
    pytest.param(Case(lambda ps: AdamW(ps, differentiable=True), False), id="differentiable"),
    pytest.param(Case(AdamW, False, after_warm=_capturable), id="capturable"),
    pytest.param(
        Case(lambda ps: AdamW(ps, lr=torch.tensor(1e-2), foreach=False), False), id="tensor-lr"
    ),
    pytest.param(Case(torch.optim.RMSprop, False), id="rmsprop"),
    pytest.param(Case(AdamW, False, after_warm=_hook), id="step-hook"),
    pytest.param(Case(lambda ps: SGD(ps, lr=0.1), False, after_warm=_patch), id="patched-step"),
    pytest.param(Case(AdamW, False, after_warm=_scaler), id="grad-scaler-tensors"),
    pytest.param(Case(lambda ps: SGD(ps, lr=0.1), False, stranger=True), id="param-not-in-opt"),
    pytest.param(
        Case(lambda ps: SGD(ps, lr=0.1, momentum=0.9), False, warm=False, passed=1),
        id="stepped-param-without-backup",
    ),
    pytest.param(Case(AdamW, False, dtype=torch.float64), id="float64"),
    pytest.param(Case(AdamW, False, layout="strided"), id="non-dense-params"),
    pytest.param(
        Case(
            lambda ps: AdamW([{"params": ps[:2]}, {"params": ps[2:], "amsgrad": True}]),
            False,
            warm=False,
        ),
        id="second-group-unsupported",
    ),
]


def _like(t: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
    """A new tensor with ``t``'s layout (strides included), holding ``values`` or ``t``."""
    out = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
    return out.copy_(t if values is None else values)


def _start(case: Case, device: str, gen: torch.Generator) -> list[torch.Tensor]:
    if case.layout == "channels_last":
        shapes = [(2, 3, 4, 5), (4, 3, 2, 2), (7,)]
    else:
        shapes = [(5,), (3, 100), (0,)]
    params = [torch.randn(s, generator=gen).to(device, case.dtype) for s in shapes]
    if case.layout == "channels_last":
        return [
            p.contiguous(memory_format=torch.channels_last) if p.dim() == 4 else p for p in params
        ]
    if case.layout == "strided":
        return [torch.stack([p, p], dim=-1)[..., 0] for p in params]
    return params


def _randn_like(p: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return _like(p, torch.randn(p.shape, generator=gen))


@dataclass
class Inputs:
    """The start params and the gradients and SAM perturbation of the warm and fused steps."""

    start: list[torch.Tensor]
    warm_grads: list[torch.Tensor] | None
    grads: list[torch.Tensor | None]
    noise: list[torch.Tensor]


def _inputs(case: Case, device: str) -> Inputs:
    gen = torch.Generator().manual_seed(0)
    start = _start(case, device, gen)
    warm = [_randn_like(p, gen) for p in start] if case.warm else None
    grads = [_randn_like(p, gen) if g else None for p, g in zip(start, case.with_grad, strict=True)]
    return Inputs(start, warm, grads, [_randn_like(p, gen) for p in start])


def _set_grads(params: list[torch.Tensor], grads: list[torch.Tensor | None]) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = None if g is None else _like(g)


def _optimizer(case: Case, inputs: Inputs) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
    """Copies of the start params, their optimizer after the warm step, the next grads set."""
    params = [_like(p) for p in inputs.start]
    optimizer = case.make(params)
    if inputs.warm_grads is not None:
        _set_grads(params, inputs.warm_grads)
        optimizer.step()
    if case.after_warm is not None:
        case.after_warm(optimizer)
    _set_grads(params, inputs.grads)
    return params, optimizer


def _handed_over(
    case: Case, params: list[torch.Tensor], inputs: Inputs
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The params and backups a SAM step hands over: each param perturbed off its backup."""
    handed = params[: case.passed]
    if case.stranger:
        stranger = torch.randn(4, generator=torch.Generator().manual_seed(1)).to(params[0])
        stranger.grad = torch.ones_like(stranger)
        handed = [*handed, stranger]
    backups = [_like(p) for p in handed]
    for p, e in zip(params[: case.passed], inputs.noise[: case.passed], strict=True):
        p.add_(e)
    return handed, backups


def _assert_identical(after: Any, before: Any, where: str = "") -> None:
    if isinstance(before, torch.Tensor):
        assert isinstance(after, torch.Tensor), where
        assert (after.dtype, after.shape, after.stride()) == (
            before.dtype,
            before.shape,
            before.stride(),
        ), where
        assert torch.equal(after, before), where
    elif isinstance(before, dict):
        assert after.keys() == before.keys(), where
        for key, value in before.items():
            _assert_identical(after[key], value, f"{where}[{key!r}]")
    elif isinstance(before, list | tuple):
        assert len(after) == len(before), where
        for i, (a, b) in enumerate(zip(after, before, strict=True)):
            _assert_identical(a, b, f"{where}[{i}]")
    else:
        assert after == before, where


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("backend", "device"), backend_params())
def test_backends_fuse_and_decline_alike(backend: str, device: str, case: Case) -> None:
    fused_restore_step = bind(backend, torch.device(device)).fused_restore_step
    inputs = _inputs(case, device)
    params, optimizer = _optimizer(case, inputs)
    handed, backups = _handed_over(case, params, inputs)
    everything = [*params, *handed]
    before = copy.deepcopy((everything, [t.grad for t in everything], optimizer.state_dict()))
    fuses = case.fused is True or (case.fused == CPU_ONLY and torch.device(device).type == "cpu")
    if not fuses or backend == "reference":
        assert not fused_restore_step(optimizer, handed, backups)
        after = (everything, [t.grad for t in everything], optimizer.state_dict())
        _assert_identical(after, before)
        return
    assert fused_restore_step(optimizer, handed, backups)
    torch_params, torch_optimizer = _optimizer(case, inputs)
    torch_optimizer.step()
    steps = [inputs.grads] if inputs.warm_grads is None else [inputs.warm_grads, inputs.grads]
    oracle_params, oracle_optimizer = float64_oracle(case.make, inputs.start, steps)
    for i, (ours, theirs, truth) in enumerate(
        zip(params, torch_params, oracle_params, strict=True)
    ):
        assert ours.stride() == theirs.stride(), f"param {i}"
        assert_error_bounded_by_torchs(ours, theirs, truth, f"param {i}")
    assert_states_bounded_by_torchs(optimizer, torch_optimizer, oracle_optimizer)
