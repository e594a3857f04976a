"""Fused restore + ``torch.optim.SGD`` step, mirroring torch's single-tensor SGD: weight decay,
momentum with dampening (the first step copies the gradient into a new buffer), nesterov,
computed in fp32 and rounded once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import triton
import triton.language as tl

from ..ops.fusable import plain_numbers
from . import _tables
from ._cast import round_to
from ._optim_state import like_param
from ._tables import position, tensor_ptr, work_item


@triton.jit
def _sgd_block(
    w_ptr,
    b_ptr,
    g_ptr,
    buf_ptr,
    offs,
    mask,
    weight_decay,
    momentum,
    one_minus_dampening,
    nesterov,
    first_step,
    neg_lr,
    MOMENTUM: tl.constexpr,
):
    w = tl.load(b_ptr + offs, mask=mask).to(tl.float32)
    d = tl.load(g_ptr + offs, mask=mask).to(tl.float32)
    # torch skips the decay term at 0, so an inf weight does not turn d into NaN
    d = tl.where(weight_decay != 0, d + weight_decay * w, d)
    if MOMENTUM:
        old = tl.load(buf_ptr + offs, mask=mask).to(tl.float32)
        buf = tl.where(first_step, d, old * momentum + one_minus_dampening * d)
        tl.store(buf_ptr + offs, round_to(buf, buf_ptr.dtype.element_ty), mask=mask)
        d = tl.where(nesterov, d + momentum * buf, buf)
    tl.store(w_ptr + offs, round_to(w + neg_lr * d, w_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _sgd_kernel(
    w_base,
    b_base,
    g_base,
    buf_base,
    table,
    stride,
    items,
    item_stride,
    coefs,
    MOMENTUM: tl.constexpr,
    NUM_COEFS: tl.constexpr,
    ALIGNED: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    t, start, full_end, end = work_item(table, stride, items, item_stride, 4, CHUNK, BLOCK)
    w_ptr = tensor_ptr(w_base, table, stride, t, 0, ALIGNED)
    b_ptr = tensor_ptr(b_base, table, stride, t, 1, ALIGNED)
    g_ptr = tensor_ptr(g_base, table, stride, t, 2, ALIGNED)
    buf_ptr = tensor_ptr(buf_base, table, stride, t, 3, ALIGNED)
    c = coefs + position(table, stride, t, 4) * NUM_COEFS
    weight_decay = tl.load(c)
    momentum = tl.load(c + 1)
    one_minus_dampening = tl.load(c + 2)
    nesterov = tl.load(c + 3) != 0
    first_step = tl.load(c + 4) != 0
    neg_lr = tl.load(c + 5)
    for first in range(start, full_end, BLOCK):
        offs = tl.multiple_of(first, BLOCK) + tl.arange(0, BLOCK)
        _sgd_block(
            w_ptr,
            b_ptr,
            g_ptr,
            buf_ptr,
            offs,
            None,
            weight_decay,
            momentum,
            one_minus_dampening,
            nesterov,
            first_step,
            neg_lr,
            MOMENTUM,
        )
    if full_end < end:
        offs = full_end + tl.arange(0, BLOCK)
        _sgd_block(
            w_ptr,
            b_ptr,
            g_ptr,
            buf_ptr,
            offs,
            offs < end,
            weight_decay,
            momentum,
            one_minus_dampening,
            nesterov,
            first_step,
            neg_lr,
            MOMENTUM,
        )


def supports(
    optimizer: torch.optim.Optimizer, entries: Sequence[tuple[torch.Tensor, dict[str, Any]]]
) -> bool:
    """True when every (param, group) is SGD with float hyper-parameters, ``maximize`` and
    ``differentiable`` off, and a momentum buffer (if any) shaped like the param."""
    for p, group in entries:
        if group.get("maximize") or group.get("differentiable"):
            return False
        hyper = [group["lr"], group["momentum"], group["dampening"], group["weight_decay"]]
        if not plain_numbers(*hyper):
            return False
        buffer = optimizer.state.get(p, {}).get("momentum_buffer")
        if group["momentum"] != 0 and buffer is not None and not like_param(p, buffer):
            return False
    return True


def step(
    optimizer: torch.optim.Optimizer,
    entries: Sequence[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]],
) -> None:
    """Take the fused step for (param, backup, group) ``entries`` that :func:`supports`
    accepted; a missing momentum buffer is created and filled as torch's first step does."""
    for with_momentum in (False, True):
        chosen = [e for e in entries if (e[2]["momentum"] != 0) == with_momentum]
        if not chosen:
            continue
        coefs = []
        buffers = []
        for p, backup, group in chosen:
            buf = optimizer.state.get(p, {}).get("momentum_buffer") if with_momentum else None
            first_step = with_momentum and buf is None
            if first_step:
                # zeroed, not empty: the kernel reads it before where() discards it
                buf = torch.zeros_like(p)
                optimizer.state[p]["momentum_buffer"] = buf
            buffers.append(buf if with_momentum else backup)
            coefs.append(
                [
                    group["weight_decay"],
                    group["momentum"],
                    1 - group["dampening"],
                    float(group["nesterov"]),
                    float(first_step),
                    -group["lr"],
                ]
            )
        params = [p for p, _, _ in chosen]
        lists = [params, [b for _, b, _ in chosen], [p.grad for p in params], buffers]
        table = torch.tensor(coefs, dtype=torch.float32).to(params[0].device, non_blocking=True)
        _tables.launch(
            _sgd_kernel,
            lists,
            range(len(params)),
            table,
            MOMENTUM=with_momentum,
            NUM_COEFS=len(coefs[0]),
        )
