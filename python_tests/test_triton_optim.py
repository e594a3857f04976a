"""Whole optimizers: backend="triton" against backend="reference" over several steps."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
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
    make: Callable[[Any, str], torch.optim.Optimizer], backend: str
) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = _model()
    optimizer = make(model.parameters(), backend)
    assert optimizer.backend == backend
    masks = _masks(len(list(model.parameters())))
    if isinstance(optimizer, SLSAM):
        optimizer.sample(masks[0])
    for step, (x, y) in enumerate(_batches()):
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step(lambda x=x, y=y: nn.functional.mse_loss(model(x), y).backward())
        optimizer.zero_grad()
        if isinstance(optimizer, SLSAM):
            optimizer.sample(masks[step + 1])
    return model, optimizer


def _assert_same(a: tuple[nn.Module, Any], b: tuple[nn.Module, Any]) -> None:
    (model_a, opt_a), (model_b, opt_b) = a, b
    for (name, p), q in zip(model_a.named_parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)
    state_a, state_b = opt_a.state_dict(), opt_b.state_dict()
    assert state_a["state"].keys() == state_b["state"].keys()
    for index, buffers in state_b["state"].items():
        assert buffers.keys() == state_a["state"][index].keys()
        for key, value in buffers.items():
            got = state_a["state"][index][key]
            assert (got.dtype, got.device) == (value.dtype, value.device), key
            torch.testing.assert_close(got, value, msg=f"state[{index}][{key}]")
    wrapper_a = state_a["sharpness_aware"]
    for key, value in state_b["sharpness_aware"].items():
        if key == "probs":
            torch.testing.assert_close(wrapper_a[key], value, rtol=1e-5, atol=1e-6)
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
    _assert_same(_train(make, "triton"), _train(make, "reference"))


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
