"""No step waits for the GPU more often than its algorithm needs.

:class:`sync_counting.HostSyncCounter` counts, on CPU tensors, what in one step would block
the host on a GPU (its docstring says exactly what is counted). The necessary number: one per
step for the inf/NaN check (which also clips, and refuses a zero ascent in the closure-only
form), plus one for SL-SAM's draw of the next active set (the mask must reach the host to set
``requires_grad``; with the bandit on the host instead, that one is the norms' copy to it).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from bar_testing import lora_batches, lora_loss, make_lora_net
from builders import loss_of, make_batches, make_model
from sync_counting import HostSyncCounter
from triton_testing import TRITON_MARKS

from slsam_kernels import BAR, RST, SAM, SLSAM, arms_by_module
from slsam_kernels.backends import triton_kernels as triton_backend

AdamW = torch.optim.AdamW


def _sam_groups(model: torch.nn.Module) -> list[dict[str, Any]]:
    # ASAM on one group, another rho on the next: the ascent's per-group paths
    params = list(model.parameters())
    return [
        {"params": params[:3], "adaptive": True, "rho": 0.1},
        {"params": params[3:5]},
        {"params": params[5:], "rho": 0.02},
    ]


def _sam(model, backend):
    return SAM(_sam_groups(model), AdamW, rho=0.05, lr=1e-2, backend=backend, max_grad_norm=1.0)


def _slsam(model, backend):
    return SLSAM(model.parameters(), AdamW, sample_ratio=0.5, seed=3, lr=1e-2, backend=backend)


def _slsam_modules(model, backend):
    # arms of several tensors, one always-active tensor, the robust rule, clipping
    return SLSAM(
        model.parameters(),
        AdamW,
        arms=arms_by_module(model)[1:],
        always_active=model.scale,
        bandit="robust",
        seed=3,
        lr=1e-2,
        backend=backend,
        max_grad_norm=0.5,
    )


def _rst(sam_prob):
    def make(model, backend):
        return RST(model.parameters(), AdamW, sam_prob=sam_prob, seed=0, lr=1e-2, backend=backend)

    return make


def _bar(variant):
    def make(model, backend):
        return BAR(model.parameters(), AdamW, model.pairs(), variant=variant, lr=1e-2,
                   backend=backend, max_grad_norm=1.0)  # fmt: skip

    return make


def _device_tensors(model: torch.nn.Module, opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    """What lives on the device: weights, gradients, per-element optimizer state (Adam's
    ``step`` is a CPU scalar in torch's layout), the backups, and probabilities a backend
    keeps on the device."""
    tensors = [p for p in model.parameters()]
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    tensors += [
        v
        for state in opt.state.values()
        for v in state.values()
        if isinstance(v, torch.Tensor) and v.dim() > 0
    ]
    tensors += getattr(opt, "backup_buffers", [])
    if isinstance(opt, SLSAM) and not opt._ops.host_bandit:
        tensors.append(opt._probs)
    return tensors


def _counted_step(model, opt, loss_fn, batch, first_backward: bool) -> list[str]:
    """Two warm-up steps, then one counted ``opt.step(closure)``; ``first_backward``: the
    caller runs the first backward (davda54's form), else the closure runs both passes.
    Returns the syncs: modelled by :class:`HostSyncCounter` on CPU tensors, on a GPU the
    warnings of ``torch.cuda.set_sync_debug_mode`` (the closure's own not counted)."""
    on_cuda = next(model.parameters()).is_cuda

    def closure():
        loss_fn(model, batch).backward()

    for _ in range(2):
        if first_backward or isinstance(opt, BAR):
            closure()
        opt.step(closure) if not isinstance(opt, BAR) else opt.step()
        opt.zero_grad()
    if first_backward or isinstance(opt, BAR):
        closure()
    if on_cuda:
        return _cuda_syncs(opt, closure)
    counter = HostSyncCounter(_device_tensors(model, opt))

    def grads():
        return [p.grad for p in model.parameters() if p.grad is not None]

    with counter:
        if isinstance(opt, BAR):
            opt.step()
        else:
            opt.step(counter.wrap_closure(closure, declare=grads))
    return [f"{what} at {where}" for what, where in counter.syncs]


def _cuda_syncs(opt, closure) -> list[str]:
    def uncounted_closure():
        torch.cuda.set_sync_debug_mode(0)
        try:
            closure()
        finally:
            torch.cuda.set_sync_debug_mode("warn")

    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            opt.step() if isinstance(opt, BAR) else opt.step(uncounted_closure)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return [
        f"{w.filename}:{w.lineno} {w.message}"
        for w in caught
        if "synchronizing CUDA operation" in str(w.message)
    ]


CASES: dict[str, tuple[Callable[..., torch.optim.Optimizer], int]] = {
    "sam": (_sam, 1),
    "slsam": (_slsam, 2),
    "slsam_module_arms": (_slsam_modules, 2),
    "rst_sam_step": (_rst(1.0), 1),
    "rst_plain_step": (_rst(0.0), 1),
    "bar_nbar": (_bar("nbar"), 1),
    "bar_obar": (_bar("obar"), 1),
}


def _check(name: str, backend: str, first_backward: bool, device: str = "cpu") -> None:
    make, expected = CASES[name]
    if name.startswith("bar"):
        model, loss_fn, batch = make_lora_net(), lora_loss, lora_batches(1)[0]
    else:
        model, loss_fn, batch = make_model(), loss_of, make_batches(1)[0]
    model, batch = model.to(device), tuple(t.to(device) for t in batch)
    opt = make(model, backend)
    syncs = _counted_step(model, opt, loss_fn, batch, first_backward)
    listing = "\n".join(f"  {sync}" for sync in syncs)
    assert len(syncs) == expected, (
        f"{name} on {backend}: {len(syncs)} host syncs in one step, {expected} needed:\n{listing}"
    )


@pytest.mark.parametrize("first_backward", [True, False], ids=["davda54_form", "closure_only"])
@pytest.mark.parametrize("name", CASES)
def test_reference_step_syncs_only_where_needed(name: str, first_backward: bool) -> None:
    _check(name, "reference", first_backward)


@pytest.mark.parametrize("name", ["sam", "slsam", "slsam_module_arms"])
@pytest.mark.parametrize("first_backward", [True, False], ids=["davda54_form", "closure_only"])
@pytest.mark.skipif(
    "cpu" not in triton_backend.DEVICE_TYPES,
    reason="the count runs on CPU tensors, which triton takes only under TRITON_INTERPRET=1",
)
def test_triton_step_syncs_only_where_needed(name: str, first_backward: bool) -> None:
    _check(name, "triton", first_backward)


for _mark in TRITON_MARKS:
    test_triton_step_syncs_only_where_needed = _mark(test_triton_step_syncs_only_where_needed)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("name", CASES)
def test_cuda_step_syncs_only_where_needed(name: str, backend: str) -> None:
    """The same counts on a GPU, from torch's own sync debug mode."""
    _check(name, backend, first_backward=True, device="cuda")


def test_counter_sees_each_kind_of_sync() -> None:
    """The counter itself: each blocking pattern counts once, asynchronous ones not at all."""
    w = torch.randn(4)
    counter = HostSyncCounter([w])
    with counter:
        w.sum().item()  # device -> host read
        w.tolist()  # device -> host copy
        w.to("cpu", torch.float64)  # device -> host copy
        w[[0, 2]]  # a list index: blocking upload
        w * torch.tensor([1.0, 2.0, 3.0, 4.0])  # host data in a device op
        w * torch.tensor([1.0, 2.0, 3.0, 4.0]).to(w.device, non_blocking=True)  # async upload
        w * torch.zeros(4)  # a fresh tensor: allocated wherever asked
        (w * 2).max()  # device work
        torch.tensor([1.0, 2.0]).sum().item()  # host work
    kinds = [what for what, _ in counter.syncs]
    assert len(kinds) == 5, kinds
    assert len(counter.uploads) == 1
