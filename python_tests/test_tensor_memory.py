"""The tensor memory meter and the peak breakdown against allocations of known size."""

from __future__ import annotations

import pytest
import torch

from slsam_kernels import SAM, SLSAM
from slsam_kernels.apps.measure.memory_breakdown import MemoryBreakdown
from slsam_kernels.apps.measure.tensor_memory import TensorMemoryMeter


@pytest.mark.parametrize("nbytes", [1, 4096, 3 * 2**20 + 7])
def test_peak_moves_by_an_allocation_that_is_freed(nbytes: int) -> None:
    with TensorMemoryMeter() as meter:
        block = torch.empty(nbytes, dtype=torch.uint8)
        del block
        after_free = meter.current_bytes
    assert meter.peak_above_start_bytes == nbytes
    assert after_free == meter.start_bytes


def test_views_count_once_and_frees_of_older_tensors_lower_the_level() -> None:
    old = torch.zeros(1000)  # 4000 bytes live at entry
    with TensorMemoryMeter() as meter:
        base = torch.empty(2000)
        views = [base[10:], base.view(20, 100), base[::2]]
        assert meter.current_bytes - meter.start_bytes == 8000
        old.add_(1)
        del old
        assert meter.current_bytes - meter.start_bytes == 4000
        del views, base
    assert meter.peak_above_start_bytes == 8000


def test_in_place_resize_is_followed() -> None:
    grow = torch.empty(10)
    with TensorMemoryMeter() as meter:
        grow.resize_(1010)
    assert meter.peak_above_start_bytes == 4000


def test_backward_temporaries_and_gradients_are_counted() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 64, requires_grad=True)  # 64 KiB
    with TensorMemoryMeter() as meter:
        y = x.exp()  # saved for the backward: 64 KiB
        (y * 3).sum().backward()  # y * 3, then grad(y) and x.grad: 64 KiB each
    assert meter.peak_above_start_bytes >= 3 * x.nbytes
    assert x.grad is not None
    assert meter.peak_above_start_bytes <= 4 * x.nbytes + 64


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(128, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128)
    )


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    def closure() -> torch.Tensor:
        loss = model(x).square().mean()
        loss.backward()
        return loss

    closure()
    opt.step(closure)
    opt.zero_grad()


def test_breakdown_of_a_warm_sam_step_names_weights_state_and_backups() -> None:
    model = _model()
    opt = SAM(model.parameters(), torch.optim.AdamW, lr=1e-3)
    x = torch.randn(64, 128, generator=torch.Generator().manual_seed(1))
    _step(model, opt, x)
    weights = sum(p.nbytes for p in model.parameters())
    with MemoryBreakdown(model.parameters(), opt) as breakdown:
        _step(model, opt, x)
    parts = breakdown.parts
    assert parts["weights"] == weights
    assert parts["optimizer state"] >= 2 * weights  # exp_avg and exp_avg_sq
    assert parts["weight backups"] >= weights
    assert parts["saved activations"] > 0
    assert sum(parts.values()) == breakdown.meter.peak_bytes


def test_slsam_backs_up_and_grads_only_its_active_tensors() -> None:
    model = _model()
    opt = SLSAM(model.parameters(), torch.optim.AdamW, sample_ratio=0.25, seed=0, lr=1e-3)
    opt.sample(torch.tensor([False, False, False, True]))  # only the last bias
    x = torch.randn(64, 128, generator=torch.Generator().manual_seed(1))
    with MemoryBreakdown(model.parameters(), opt) as breakdown:
        _step(model, opt, x)
    bias = model[2].bias
    assert breakdown.parts["weight backups"] <= bias.nbytes + 64
    assert breakdown.parts["gradients"] <= bias.nbytes


def test_fake_tensors_left_by_tracing_are_not_counted():
    """torch.compile leaves fake tensors reachable from gc; they hold no memory."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fake = torch.empty(1000, 1000)
    meter = TensorMemoryMeter()
    assert meter.entry_of(fake) is None
    assert meter.entry_of(torch.ones(3)) is not None
