"""Fused restore (or BAR's rescale) + ``torch.optim.SGD`` step, mirroring torch's
single-tensor SGD: weight decay, momentum with dampening (the first step copies the gradient
into a new buffer), nesterov, with the per-tensor coefficients of
:mod:`slsam_kernels.ops.fused_plan`, computed in fp32 and rounded where torch's for-loop step
stores a tensor, as csrc/common/elementwise.h's ``sgd_element`` does, so every fast backend
gives the same bits."""

from __future__ import annotations

import triton
import triton.language as tl

from ..plan import SGD_COLUMNS, FusedPlan
from . import _tables
from ._cast import prescaled, round_to, rounded
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
    prescale,
    MOMENTUM: tl.constexpr,
):
    # elementwise.h's sgd_element, op for op: its fmaf calls are tl.fma, and every tensor
    # torch's for-loop step stores between its ops is rounded
    dtype: tl.constexpr = w_ptr.dtype.element_ty
    w = prescaled(tl.load(b_ptr + offs, mask=mask).to(tl.float32), prescale, dtype)
    d = tl.load(g_ptr + offs, mask=mask).to(tl.float32)
    # torch skips the decay term at 0, so an inf weight does not turn d into NaN
    if weight_decay != 0.0:
        d = rounded(tl.fma(weight_decay, w, d), dtype)
    if MOMENTUM:
        if first_step:
            buf = d
        else:
            old = tl.load(buf_ptr + offs, mask=mask).to(tl.float32)
            buf = rounded(tl.fma(one_minus_dampening, d, rounded(old * momentum, dtype)), dtype)
        tl.store(buf_ptr + offs, round_to(buf, buf_ptr.dtype.element_ty), mask=mask)
        d = rounded(tl.fma(momentum, buf, d), dtype) if nesterov else buf
    tl.store(w_ptr + offs, round_to(tl.fma(neg_lr, d, w), dtype), mask=mask)


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
    neg_lr = tl.load(c + 3)
    nesterov = tl.load(c + 4) != 0
    first_step = tl.load(c + 5) != 0
    prescale = tl.load(c + 6)
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
            prescale,
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
            prescale,
            MOMENTUM,
        )


def step(fused: FusedPlan) -> None:
    """Launch the SGD kernel of an SGD ``fused`` plan: one launch for the tensors without
    momentum, one for those with (their buffers in the plan, new ones zeroed)."""
    if not fused.params:
        return
    table = fused.table().to(fused.params[0].device, non_blocking=True)
    for with_momentum in (False, True):
        chosen = [
            i for i, b in enumerate(fused.momentum_buffers) if (b is not None) == with_momentum
        ]
        if not chosen:
            continue
        # without momentum the buffer role is never read; the backups stand in for it
        buffers = fused.momentum_buffers if with_momentum else fused.backups
        lists = [
            [tensors[i] for i in chosen]
            for tensors in (fused.params, fused.backups, fused.grads, buffers)
        ]
        _tables.launch(
            _sgd_kernel,
            lists,
            chosen,
            table,
            MOMENTUM=with_momentum,
            NUM_COEFS=len(SGD_COLUMNS),
            enable_fp_fusion=False,
        )
