"""Whole optimizers: backend="triton" against backend="reference" over several steps."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from oracle_testing import assert_error_bounded_by_torchs, assert_states_bounded_by_torchs
from torch import nn
from triton_testing import DEVICE, TRITON_MARKS

from slsam_kernels import RST, SAM, SLSAM

pytestmark = TRITON_MARKS

STEPS = 4


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 33), nn.Tanh(), nn.Linear(33, 31), nn.Tanh(), nn.Linear(31, 3)
    ).to(DEVICE)


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        (torch.randn(16, 6, generator=gen).to(DEVICE), torch.randn(16, 3, generator=gen).to(DEVICE))
        for _ in range(STEPS)
    ]


def _masks(num_arms: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    masks = [torch.rand(num_arms, generator=gen) < 0.5 for _ in range(STEPS + 1)]
    for mask in masks:
        mask[0] = True
    return masks


def _train(
    make: Callable[[Any, str], torch.optim.Optimizer],
    backend: str,
    dtype: torch.dtype = torch.float32,
) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = _model().to(dtype)
    optimizer = make(model.parameters(), backend)
    assert optimizer.backend == backend
    masks = _masks(len(list(model.parameters())))
    if isinstance(optimizer, SLSAM):
        optimizer.sample(masks[0])
    for step, (x, y) in enumerate(_batches()):
        x, y = x.to(dtype), y.to(dtype)
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step(lambda x=x, y=y: nn.functional.mse_loss(model(x), y).backward())
        optimizer.zero_grad()
        if isinstance(optimizer, SLSAM):
            optimizer.sample(masks[step + 1])
    return model, optimizer


def _assert_bounded(
    ours: tuple[nn.Module, Any], reference: tuple[nn.Module, Any], oracle: tuple[nn.Module, Any]
) -> None:
    """Triton's error against the float64 ``oracle`` run is at most twice the reference's plus
    one fp32 epsilon, for weights, optimizer state and SL-SAM's probabilities."""
    (model_a, opt_a), (model_b, opt_b), (model_c, opt_c) = ours, reference, oracle
    for (name, p), q, truth in zip(
        model_a.named_parameters(), model_b.parameters(), model_c.parameters(), strict=True
    ):
        assert_error_bounded_by_torchs(p, q, truth, name)
    assert_states_bounded_by_torchs(opt_a, opt_b, opt_c)
    wrapper_a = opt_a.state_dict()["sharpness_aware"]
    wrapper_c = opt_c.state_dict()["sharpness_aware"]
    for key, value in opt_b.state_dict()["sharpness_aware"].items():
        if key == "probs":
            assert_error_bounded_by_torchs(wrapper_a[key], value, wrapper_c[key], key)
        elif isinstance(value, str):
            assert wrapper_a[key] == value, key
        elif key != "generator":  # each backend draws its own random stream
            assert torch.equal(torch.as_tensor(wrapper_a[key]), torch.as_tensor(value)), key


OPTIMIZERS = [
    pytest.param(lambda p, b: SAM(p, torch.optim.AdamW, lr=1e-2, backend=b), id="sam-adamw"),
    pytest.param(
        lambda p, b: SAM(
            p, torch.optim.SGD, rho=0.1, lr=0.05, momentum=0.9, nesterov=True, backend=b
        ),
        id="sam-sgd-nesterov",
    ),
    pytest.param(
        lambda p, b: SAM(p, torch.optim.RMSprop, lr=1e-3, backend=b), id="sam-rmsprop-fallback"
    ),
    pytest.param(
        lambda p, b: SAM(p, torch.optim.AdamW, rho=0.5, adaptive=True, lr=1e-2, backend=b),
        id="asam-adamw",
    ),
    pytest.param(
        lambda p, b: SLSAM(
            p, torch.optim.AdamW, lr=1e-2, bandit_lr=0.5, seed=0, weight_decay=0.1, backend=b
        ),
        id="slsam-adamw",
    ),
    pytest.param(
        lambda p, b: SLSAM(
            p, torch.optim.SGD, lr=0.05, momentum=0.9, adaptive=True, seed=0, backend=b
        ),
        id="slsam-asam-sgd",
    ),
    pytest.param(
        lambda p, b: RST(p, torch.optim.SGD, sam_prob=0.5, seed=3, lr=0.05, backend=b),
        id="rst-sgd",
    ),
]


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_triton_matches_reference(make: Callable[[Any, str], torch.optim.Optimizer]) -> None:
    _assert_bounded(
        _train(make, "triton"),
        _train(make, "reference"),
        _train(make, "reference", torch.float64),
    )


def test_switch_backend_mid_run() -> None:
    """The state stays torch's own, so a checkpoint from one backend resumes on the other."""

    def make(params: Any, backend: str) -> SLSAM:
        return SLSAM(params, torch.optim.AdamW, lr=1e-2, bandit_lr=0.5, seed=0, backend=backend)

    model, optimizer = _train(make, "triton")
    resumed = _model()
    resumed.load_state_dict(model.state_dict())  # every tensor an arm again, as when built
    other = make(resumed.parameters(), "reference")
    # deep copy: torch's load_state_dict shares the tensors of an in-process state dict
    other.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    torch.testing.assert_close(other.probs, optimizer.probs, rtol=0, atol=0)
    assert torch.equal(other.active_mask, optimizer.active_mask)
    x, y = _batches()[0]
    for opt, net in ((optimizer, model), (other, resumed)):
        nn.functional.mse_loss(net(x), y).backward()
        opt.step(lambda net=net: nn.functional.mse_loss(net(x), y).backward())
    for p, q in zip(model.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_seeded_slsam_repeats_on_triton() -> None:
    def make(params: Any, backend: str) -> SLSAM:
        return SLSAM(params, torch.optim.SGD, lr=0.05, sample_ratio=0.4, seed=5, backend=backend)

    model = _model()
    first = make(model.parameters(), "triton").active_mask
    assert torch.equal(first, make(_model().parameters(), "triton").active_mask)


@pytest.mark.parametrize(
    "make", [p for p in OPTIMIZERS if "rmsprop" not in p.id and "rst" not in p.id]
)
def test_fused_path_replaces_the_base_step(
    make: Callable[[Any, str], torch.optim.Optimizer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """AdamW and SGD take the fused restore + step: their own step() never runs."""

    def refuse(self: torch.optim.Optimizer, closure: Any = None) -> None:
        raise AssertionError("the base optimizer's step() ran instead of the fused kernel")

    monkeypatch.setattr(torch.optim.AdamW, "step", refuse)
    monkeypatch.setattr(torch.optim.SGD, "step", refuse)
    _train(make, "triton")
