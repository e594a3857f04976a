"""Every Triton launch runs with its tensors' CUDA device current (tensors on cuda:1 while
device 0 is current would otherwise be launched on the wrong device)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch
from triton_testing import DEVICE, TRITON_MARKS

from slsam_kernels import ops
from slsam_kernels.backends import reference
from slsam_kernels.backends import triton_kernels as triton_backend
from slsam_kernels.backends.triton_kernels import _tables

pytestmark = TRITON_MARKS


def _every_op(device: str) -> None:
    """One call of each operation of the backend, the fused Adam and SGD steps included."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(n, generator=gen).to(device) for n in (5, 1030)]
    grads = [torch.randn(p.shape, generator=gen).to(device) for p in params]
    backups = [torch.empty_like(p) for p in params]
    triton_backend.grad_sqnorms(grads)
    triton_backend.perturb_(params, grads, backups, torch.full((2,), 0.1, device=device))
    triton_backend.restore_(params, backups)
    for optimizer in (torch.optim.AdamW, torch.optim.SGD):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        fused_restore_step = ops.bind("triton", torch.device(device)).fused_restore_step
        assert fused_restore_step(optimizer(params, lr=0.1), params, backups)
    probs = torch.full((7,), 0.5, device=device)
    idx = torch.tensor([1, 4], device=device)
    triton_backend.bandit_update(probs, torch.ones(2, device=device), idx, 3.5)
    triton_backend.sample_active(probs, torch.Generator().manual_seed(1))


@pytest.mark.skipif(torch.cuda.is_available(), reason="counts the interpreter's launches")
def test_every_launch_runs_inside_the_device_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    from triton.runtime import interpreter

    state = {"guards": 0, "launches": 0, "unguarded": 0}
    guard = _tables.device_guard

    @contextlib.contextmanager
    def counting_guard(t: torch.Tensor) -> Iterator[None]:
        state["guards"] += 1
        with guard(t):
            yield
        state["guards"] -= 1

    launch = interpreter.GridExecutor.__call__

    def counting_launch(self, *args, **kwargs):
        state["launches"] += 1
        state["unguarded"] += state["guards"] == 0
        return launch(self, *args, **kwargs)

    monkeypatch.setattr(_tables, "device_guard", counting_guard)
    monkeypatch.setattr(interpreter.GridExecutor, "__call__", counting_launch)
    _every_op(DEVICE)
    # grad_sqnorms 2, perturb, restore, Adam, SGD, bandit, draw
    assert state["launches"] >= 8
    assert state["unguarded"] == 0


def test_the_guard_enters_the_tensors_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    entered = []

    @contextlib.contextmanager
    def recording_device(device: torch.device) -> Iterator[None]:
        entered.append(device)
        yield

    monkeypatch.setattr(torch.cuda, "device", recording_device)
    on_cuda1 = SimpleNamespace(device=torch.device("cuda:1"))  # all the guard reads
    with _tables.device_guard(on_cuda1):
        pass
    with _tables.device_guard(torch.empty(3)):
        pass
    assert entered == [torch.device("cuda:1")]


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_tensors_on_the_second_device_with_the_first_current() -> None:
    torch.cuda.set_device(0)
    _every_op("cuda:1")
    grads = [torch.randn(n, device="cuda:1") for n in (3, 2049)]
    torch.testing.assert_close(
        triton_backend.grad_sqnorms(grads), reference.grad_sqnorms(grads), rtol=1e-6, atol=0
    )
