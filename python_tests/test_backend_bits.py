"""Every fast backend gives the same bits for the same plan.

The fused restore + step of each planned optimizer (torch's for-loop roundings, and on CPU
tensors ``fused=True``'s round-once numerics), in fp32, bf16 and fp16, over a first step that
creates the state and later ones that read it, from SAM's backups or in place with BAR's
prescale: cpp is the anchor, and triton and cuda must equal it bit for bit (the per-element
maths is written once, csrc/common/elementwise.h, and the Triton kernels round where it does).

The bandit update, both rules: the backends that compute it on the host in float64 (the
reference, cpp, and cuda, which binds the reference's) equal each other bit for bit. Triton's
runs in fp32 on the device by design; the backend contract bounds it against the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from backend_testing import backend_params, device_of, unavailable_reason

from slsam_kernels import ops
from slsam_kernels.ops import bind

SIZES = (1, 37, 1100, 2900)
STEPS = 3

AdamW, Adam, SGD = torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD
Make = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


@dataclass(frozen=True)
class Case:
    """An optimizer the planner fuses; ``prescaled``: BAR's in-place step with a factor per
    tensor instead of SAM's restore; ``cpu_only``: fused on CPU tensors only (fused=True)."""

    make: Make
    prescaled: bool = False
    cpu_only: bool = False


CASES = [
    pytest.param(Case(lambda ps: AdamW(ps, lr=1e-2, weight_decay=0.1)), id="adamw"),
    pytest.param(
        Case(lambda ps: AdamW(ps, lr=1e-2, weight_decay=0.1, fused=True), cpu_only=True),
        id="adamw-torch-fused",
    ),
    pytest.param(Case(lambda ps: Adam(ps, lr=1e-2, weight_decay=0.1)), id="adam-l2"),
    pytest.param(
        Case(lambda ps: Adam(ps, lr=1e-2, weight_decay=0.1, fused=True), cpu_only=True),
        id="adam-l2-torch-fused",
    ),
    # 1 - beta1 >= 0.5: torch's lerp takes its other formula
    pytest.param(Case(lambda ps: AdamW(ps, lr=1e-2, betas=(0.3, 0.99))), id="adamw-low-beta1"),
    pytest.param(
        Case(lambda ps: AdamW(ps, lr=1e-2, weight_decay=0.1), prescaled=True), id="adamw-bar"
    ),
    pytest.param(Case(lambda ps: SGD(ps, lr=0.1, weight_decay=0.01)), id="sgd-wd"),
    pytest.param(Case(lambda ps: SGD(ps, lr=0.05, momentum=0.9)), id="sgd-momentum"),
    pytest.param(
        Case(lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
        id="sgd-nesterov-wd",
    ),
    pytest.param(
        Case(lambda ps: SGD(ps, lr=0.05, momentum=0.8, dampening=0.3, weight_decay=1e-2)),
        id="sgd-dampening-wd",
    ),
    pytest.param(
        Case(lambda ps: SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-2), prescaled=True),
        id="sgd-momentum-bar",
    ),
]
DTYPES = [
    pytest.param(torch.float32, id="fp32"),
    pytest.param(torch.bfloat16, id="bf16"),
    pytest.param(torch.float16, id="fp16"),
]


def _stepped(backend: str, case: Case, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Params and optimizer state after ``STEPS`` fused steps on ``backend``, on the CPU."""
    device = torch.device(device_of(backend))
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(n, generator=gen).to(device, dtype) for n in SIZES]
    optimizer = case.make(params)
    fused_restore_step = bind(backend, device).fused_restore_step
    for _ in range(STEPS):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen).to(device, dtype)
        if case.prescaled:
            backups = params
            prescales = (0.9 + 0.2 * torch.rand(len(params), generator=gen)).tolist()
        else:
            backups = [p.clone() for p in params]
            for p in params:
                p.add_(0.05 * torch.randn(p.shape, generator=gen).to(device, dtype))
            prescales = None
        assert fused_restore_step(optimizer, params, backups, prescales), "declined"
    result = {f"param {i}": p.detach().cpu() for i, p in enumerate(params)}
    for i, p in enumerate(params):
        for key, value in optimizer.state[p].items():
            result[f"state[{i}][{key!r}]"] = value.cpu()
    return result


def _inexact_fma_reason(backend: str) -> str:
    """Why ``backend``'s tl.fma is not one rounding here; empty when it is."""
    if backend != "triton" or device_of(backend) != "cpu":
        return ""
    import triton

    if tuple(int(part) for part in triton.__version__.split(".")[:2]) >= (3, 9):
        return ""
    return (
        f"triton {triton.__version__}'s interpreter computes tl.fma as a * b + c in fp32 "
        "(two roundings); 3.9's rounds once, as a GPU does"
    )


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _assert_same_bits(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
    differing = {
        key: f"{int((_bits(got[key]) != _bits(value)).sum())} of {value.numel()}"
        for key, value in want.items()
        if not torch.equal(_bits(got[key]), _bits(value))
    }
    assert not differing, f"elements whose bits differ: {differing}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", backend_params("triton", "cuda", device=False))
@pytest.mark.skipif(bool(unavailable_reason("cpp")), reason=unavailable_reason("cpp"))
def test_fused_steps_equal_cpps_bits(backend: str, case: Case, dtype: torch.dtype) -> None:
    if case.cpu_only and device_of(backend) != "cpu":
        pytest.skip("torch keeps a fused=True step on the GPU; the planner declines it there")
    if reason := _inexact_fma_reason(backend):
        pytest.skip(reason)
    _assert_same_bits(_stepped(backend, case, dtype), _stepped("cpp", case, dtype))


RULES = [
    pytest.param("paper", None, id="paper"),
    pytest.param("robust", 0.1, id="robust"),
    pytest.param("robust", 0.0, id="robust-no-exploration"),
]


def _bandit_inputs(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    num_arms = int(torch.randint(1, 700, (1,), generator=gen))
    num_active = int(torch.randint(1, num_arms + 1, (1,), generator=gen))
    probs = torch.rand(num_arms, generator=gen) * 0.9 + 0.05
    idx = torch.randperm(num_arms, generator=gen)[:num_active].sort().values
    norms = torch.rand(num_active, generator=gen) * 3
    budget = (float(torch.rand(1, generator=gen)) * 0.9 + 0.05) * num_arms
    return probs, norms, idx, budget


@pytest.mark.parametrize(("rule", "exploration"), RULES)
@pytest.mark.parametrize("backend", backend_params("cpp", "cuda", device=False))
def test_host_bandit_updates_equal_the_references_bits(
    backend: str, rule: str, exploration: float | None
) -> None:
    gen = torch.Generator().manual_seed(0)
    device = torch.device(device_of(backend))
    for _ in range(20):
        probs, norms, idx, budget = _bandit_inputs(gen)
        lr = float(torch.rand(1, generator=gen)) * (5.0 if rule == "paper" else 1.0)
        args = (norms, idx, budget, lr)
        kwargs = {"rule": rule, "exploration": exploration}
        got = ops.bandit_update(probs.to(device), *args, **kwargs, backend=backend)
        want = ops.bandit_update(probs, *args, **kwargs, backend="reference")
        assert not torch.equal(want, probs), "the update changed nothing"
        _assert_same_bits({"probs": got.cpu()}, {"probs": want})
