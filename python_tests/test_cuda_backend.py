"""The extension's CUDA kernels (backend ``"cuda"``, CUDA tensors) against the reference path
and torch's own optimizer steps. The same checks run with backend ``"cpp"`` on CPU tensors, so
they run, and cannot rot, where there is no GPU; ``make gpu-check`` runs the CUDA ones."""

from __future__ import annotations

import pytest
import torch
from cpp_testing import DTYPES, assert_bitwise_equal, nan_like, requires_extension
from oracle_testing import (
    assert_error_bounded_by_torchs,
    assert_states_bounded_by_torchs,
    float64_oracle,
)

from slsam_kernels.backends import reference
from slsam_kernels.ops import bind, registry

CUDA = registry.status("cuda")
BACKENDS = [
    pytest.param("cpp", "cpu", id="cpp", marks=requires_extension),
    pytest.param(
        "cuda",
        "cuda",
        id="cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not CUDA.available, reason=CUDA.reason)],
    ),
]
# An empty tensor, odd sizes on both sides of the CPU's 64K blocks and of CUDA block multiples.
SIZES = [0, 1, 7, 1023, 4097, 65537, 278011]


def randn(device: str, dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=gen).to(device, dtype) for n in SIZES]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("backend", "device"), BACKENDS)
def test_grad_sqnorms_match_the_reference(backend, device, dtype):
    ops = bind(backend, torch.device(device))
    grads, weights = randn(device, dtype, 0), randn(device, dtype, 1)
    for w in (None, weights):
        got = ops.grad_sqnorms(grads, w)
        assert got.dtype == torch.float32 and got.device.type == device
        # Both sum in fp32 in different orders: a few ulps of the sum apart.
        torch.testing.assert_close(got, reference.grad_sqnorms(grads, w), rtol=1e-5, atol=0)


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("backend", "device"), BACKENDS)
def test_perturb_and_restore_are_bit_exact(backend, device, dtype, adaptive):
    ops = bind(backend, torch.device(device))
    params, grads = randn(device, dtype, 2), randn(device, dtype, 3)
    scales = torch.rand(len(SIZES), generator=torch.Generator().manual_seed(4)).to(device)
    expected = [p.clone() for p in params]
    reference.perturb_(expected, grads, [torch.empty_like(p) for p in params], scales, adaptive)
    originals = [p.clone() for p in params]
    backups = nan_like(params)
    ops.perturb_(params, grads, backups, scales, adaptive)
    assert_bitwise_equal(params, expected, "perturbed params")
    assert_bitwise_equal(backups, originals, "backups")
    ops.restore_(params, backups)
    assert_bitwise_equal(params, originals, "restored params")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("optimizer_class", "options"),
    [
        # eps 1e-4: 1e-8 rounds to zero in fp16, where torch's step then divides 0 by 0
        pytest.param(torch.optim.AdamW, {"lr": 1e-2, "eps": 1e-4, "weight_decay": 0.1}, id="adamw"),
        pytest.param(torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}, id="sgd"),
    ],
)
@pytest.mark.parametrize(("backend", "device"), BACKENDS)
def test_fused_restore_step_matches_torch(backend, device, optimizer_class, options, dtype):
    ops = bind(backend, torch.device(device))
    fused_params = randn(device, dtype, 5)
    start = [p.clone() for p in fused_params]
    torch_params = [p.clone() for p in fused_params]
    fused_opt = optimizer_class(fused_params, **options)
    torch_opt = optimizer_class(torch_params, **options)
    grads_per_step = []
    for step in range(3):
        backups = [p.clone() for p in fused_params]
        grads, noise = randn(device, dtype, 10 + step), randn(device, dtype, 20 + step)
        for p, q, g, e in zip(fused_params, torch_params, grads, noise):
            p.grad, q.grad = g.clone(), g.clone()
            p.add_(e)  # the SAM perturbation, undone by the fused restore
        assert ops.fused_restore_step(fused_opt, fused_params, backups)
        torch_opt.step()
        grads_per_step.append(grads)
    oracle_params, oracle_opt = float64_oracle(
        lambda ps: optimizer_class(ps, **options), start, grads_per_step
    )
    for i, (got, want, truth) in enumerate(zip(fused_params, torch_params, oracle_params)):
        assert_error_bounded_by_torchs(got, want, truth, f"param {i}")
    assert_states_bounded_by_torchs(fused_opt, torch_opt, oracle_opt)
