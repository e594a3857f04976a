"""Each benchmarked operation as a zero-argument call on prepared tensors, with the bytes one
call must move (the byte floor benchmarks.run uses: each stream read or written once).

Calls go through ``slsam_kernels.ops.bind(backend, device)``, the resolved operations the
optimizers call every step (the public ``ops.*`` functions add per-call input checks on top).
A fused step on a fast backend must fuse: a declined plan would time the fallback instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from slsam_kernels import ops

from ..workload import adam_eps
from .targets import BANDIT_ARMS, numels

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
STREAM_OPS = {
    # op -> streams: tensors of the list's size read or written once per call
    "grad_sqnorms": 1,  # read g
    "perturb_": 4,  # read w, g; write backup, w
    "restore_": 2,  # read backup; write w
    "restore+AdamW": 7,  # read backup, g, m, v; write w, m, v
    "restore+SGD": 5,  # read backup, g, buf; write w, buf
    "BAR rescale+AdamW": 7,  # read w, g, m, v; write w, m, v (the params are their own backups)
}
BANDIT_OPS = ("bandit_update", "sample_active")
SCALE = 1e-3  # the ascent scale: any small value
# BAR's factors 1 +- a*eta: applied as f and 1/f on alternate calls, so thousands of rounds
# neither overflow the weights nor shrink them into subnormals.
BAR_FACTOR = 1.01


@dataclass
class Bench:
    """A prepared call and the bytes it moves (0: not a stream, as the bandit)."""

    call: Callable[[], object]
    bytes_moved: int


def _adam(params: list[torch.nn.Parameter], dtype_name: str, backend: str):
    foreach = False if backend == "reference" else None  # the reference: torch's for-loop step
    eps = adam_eps(dtype_name)
    return torch.optim.AdamW(params, lr=0.05, weight_decay=0.01, eps=eps, foreach=foreach)


def _sgd(params: list[torch.nn.Parameter], backend: str):
    foreach = False if backend == "reference" else None
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, foreach=foreach)


def stream_bench(op: str, backend: str, device: str, dtype_name: str, total: int) -> Bench:
    """``op`` (a key of ``STREAM_OPS``) over a list of ``total`` elements of ``dtype_name``."""
    dtype, dev = DTYPES[dtype_name], torch.device(device)
    sizes = numels(total)

    def tensors() -> list[torch.Tensor]:
        return [torch.randn(n, device=dev).to(dtype) for n in sizes]

    bound = ops.bind(backend, dev)
    params, grads, backups = tensors(), tensors(), tensors()
    nbytes = STREAM_OPS[op] * sum(t.numel() * t.element_size() for t in params)
    if op == "grad_sqnorms":
        return Bench(lambda: bound.grad_sqnorms(grads, None), nbytes)
    if op == "perturb_":
        scales = torch.full((len(params),), SCALE, device=dev)
        return Bench(lambda: bound.perturb_(params, grads, backups, scales, False), nbytes)
    if op == "restore_":
        return Bench(lambda: bound.restore_(params, backups), nbytes)
    leaves = [torch.nn.Parameter(p) for p in params]
    for p, g in zip(leaves, grads):
        p.grad = g
    if op == "BAR rescale+AdamW":
        return Bench(_bar_step(bound, _adam(leaves, dtype_name, backend), leaves), nbytes)
    opt = _adam(leaves, dtype_name, backend) if op == "restore+AdamW" else _sgd(leaves, backend)
    return Bench(_restore_step(bound, opt, leaves, backups), nbytes)


def _require_fused(bound: ops.BoundOps, fused: bool) -> None:
    if bound.name != "reference" and not fused:
        raise RuntimeError(f"{bound.name}: the fused step declined this configuration")


def _restore_step(bound: ops.BoundOps, opt, params, backups) -> Callable[[], None]:
    """SAM's second step: restore + the base step, fused where the backend can."""

    def step() -> None:
        fused = bound.fused_restore_step(opt, params, backups)
        _require_fused(bound, fused)
        if not fused:
            bound.restore_([p.data for p in params], backups)
            opt.step()

    return step


def _bar_step(bound: ops.BoundOps, opt, params) -> Callable[[], None]:
    """BAR's step: every weight scaled by its factor, then the base step (one fused pass on the
    fast backends; ``_foreach_mul_`` then the step otherwise, as BAR falls back)."""
    factors = [[BAR_FACTOR] * len(params), [1 / BAR_FACTOR] * len(params)]
    calls = [0]

    def step() -> None:
        prescales = factors[calls[0] % 2]
        calls[0] += 1
        fused = bound.fused_restore_step(opt, params, params, prescales)
        _require_fused(bound, fused)
        if not fused:
            torch._foreach_mul_([p.data for p in params], prescales)
            opt.step()

    return step


def bandit_bench(op: str, backend: str, device: str, size: str) -> Bench:
    """The bandit's update (paper rule, 20% of the arms active) or draw, over the arms."""
    arms = BANDIT_ARMS[size]
    bound = ops.bind(backend, torch.device(device))
    gen = torch.Generator().manual_seed(0)  # a host generator, as SLSAM holds
    probs = torch.full((arms,), 0.2, device=bound.bandit_device)
    if op == "sample_active":
        return Bench(lambda: bound.sample_active(probs, gen), 0)
    active = torch.randperm(arms, generator=gen)[: max(arms // 5, 1)].sort().values
    norms = torch.rand(active.numel(), generator=gen)
    active, norms = active.to(bound.bandit_device), norms.to(bound.bandit_device)
    budget = 0.2 * arms
    return Bench(
        lambda: bound.bandit_update(
            probs, norms, active, budget, 1e-3, 1e-3, rule="paper", exploration=0.0
        ),
        0,
    )
