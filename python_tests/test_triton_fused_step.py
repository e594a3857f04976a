"""Fused restore + Adam/AdamW/SGD step against torch's own optimizers after a plain restore,
per dtype and with split param groups (which cases it takes: test_fused_step_contract.py)."""

from __future__ import annotations

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

from slsam_kernels.ops import bind

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
    pytest.param(torch.optim.Adam, {"lr": 1e-2, "weight_decay": 0.1}, id="adam-l2"),
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
        assert bind("triton", torch.device(DEVICE)).fused_restore_step(fused_opt, fused_w, backups)
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
    if dtype == torch.float16 and optimizer_cls is not torch.optim.SGD:
        pytest.skip("torch's fp16 Adam underflows eps=1e-8 to 0; no meaningful comparison")
    runs = _run(optimizer_cls, kwargs, dtype, split)
    for i, (ours, theirs, truth) in enumerate(
        zip(runs.fused_w, runs.plain_w, runs.oracle_w, strict=True)
    ):
        assert_error_bounded_by_torchs(ours, theirs, truth, f"param {i}")
    assert_states_bounded_by_torchs(runs.fused_opt, runs.plain_opt, runs.oracle_opt)
