"""Fused restore (or BAR's rescale) + ``torch.optim.AdamW``/``Adam`` step, mirroring torch's
single-tensor Adam: L2 (Adam) or decoupled (AdamW) weight decay, ``exp_avg.lerp_``,
``exp_avg_sq`` update, with the per-tensor coefficients of :mod:`slsam_kernels.ops.fused_plan`,
computed in fp32 and rounded where csrc/common/elementwise.h's ``adam_element`` rounds (torch's
for-loop step, or ``fused=True``'s stores only), so every fast backend gives the same bits."""

from __future__ import annotations

import triton
import triton.language as tl

from ..plan import ADAM_COLUMNS, FusedPlan
from . import _tables
from ._cast import intermediate, prescaled, round_to
from ._tables import position, tensor_ptr, work_item


@triton.jit
def _adamw_block(
    w_ptr,
    b_ptr,
    g_ptr,
    m_ptr,
    v_ptr,
    offs,
    mask,
    decay,
    l2,
    lerp_weight,
    beta2,
    one_minus_beta2,
    bias_correction2_sqrt,
    eps,
    neg_step_size,
    prescale,
    ROUND_ONCE: tl.constexpr,
):
    # elementwise.h's adam_element, op for op: its fmaf calls are tl.fma, and the launch turns
    # off triton's contraction of the other multiply-adds, as the C++/CUDA builds do
    dtype: tl.constexpr = w_ptr.dtype.element_ty
    w = prescaled(tl.load(b_ptr + offs, mask=mask).to(tl.float32), prescale, dtype)
    g = tl.load(g_ptr + offs, mask=mask).to(tl.float32)
    # torch adds Adam's L2 term only for a nonzero weight_decay, so an inf weight stays out of g
    if l2 != 0.0:
        g = intermediate(tl.fma(l2, w, g), dtype, ROUND_ONCE)
    w = intermediate(w * decay, dtype, ROUND_ONCE)
    m = tl.load(m_ptr + offs, mask=mask).to(tl.float32)
    # torch's lerp: the formula flips at |weight| 0.5 to stay exact at the ends
    diff = g - m
    if (lerp_weight > -0.5) & (lerp_weight < 0.5):
        m = tl.fma(lerp_weight, diff, m)
    else:
        m = tl.fma(-(1.0 - lerp_weight), diff, g)
    m = intermediate(m, dtype, ROUND_ONCE)
    v = intermediate(tl.load(v_ptr + offs, mask=mask).to(tl.float32) * beta2, dtype, ROUND_ONCE)
    # addcmul_(g, g, value=c): fma(c * g, g, v), as ATen's CPU loop computes it
    v = intermediate(tl.fma(one_minus_beta2 * g, g, v), dtype, ROUND_ONCE)
    # IEEE sqrt and division as torch's; plain sqrt and / may lower to approximations
    denom = intermediate(tl.div_rn(tl.sqrt_rn(v), bias_correction2_sqrt), dtype, ROUND_ONCE)
    denom = intermediate(denom + eps, dtype, ROUND_ONCE)
    # addcdiv_(m, denom, value=-step_size): w + (-step_size * m) / denom
    w = w + tl.div_rn(neg_step_size * m, denom)
    tl.store(w_ptr + offs, round_to(w, dtype), mask=mask)
    tl.store(m_ptr + offs, round_to(m, m_ptr.dtype.element_ty), mask=mask)
    tl.store(v_ptr + offs, round_to(v, v_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _adamw_kernel(
    w_base,
    b_base,
    g_base,
    m_base,
    v_base,
    table,
    stride,
    items,
    item_stride,
    coefs,
    ROUND_ONCE: tl.constexpr,
    NUM_COEFS: tl.constexpr,
    ALIGNED: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    t, start, full_end, end = work_item(table, stride, items, item_stride, 5, CHUNK, BLOCK)
    w_ptr = tensor_ptr(w_base, table, stride, t, 0, ALIGNED)
    b_ptr = tensor_ptr(b_base, table, stride, t, 1, ALIGNED)
    g_ptr = tensor_ptr(g_base, table, stride, t, 2, ALIGNED)
    m_ptr = tensor_ptr(m_base, table, stride, t, 3, ALIGNED)
    v_ptr = tensor_ptr(v_base, table, stride, t, 4, ALIGNED)
    c = coefs + position(table, stride, t, 5) * NUM_COEFS
    decay = tl.load(c)
    l2 = tl.load(c + 1)
    lerp_weight = tl.load(c + 2)
    beta2 = tl.load(c + 3)
    one_minus_beta2 = tl.load(c + 4)
    bias_correction2_sqrt = tl.load(c + 5)
    eps = tl.load(c + 6)
    neg_step_size = tl.load(c + 7)
    prescale = tl.load(c + 8)
    for first in range(start, full_end, BLOCK):
        offs = tl.multiple_of(first, BLOCK) + tl.arange(0, BLOCK)
        _adamw_block(
            w_ptr,
            b_ptr,
            g_ptr,
            m_ptr,
            v_ptr,
            offs,
            None,
            decay,
            l2,
            lerp_weight,
            beta2,
            one_minus_beta2,
            bias_correction2_sqrt,
            eps,
            neg_step_size,
            prescale,
            ROUND_ONCE,
        )
    if full_end < end:
        offs = full_end + tl.arange(0, BLOCK)
        _adamw_block(
            w_ptr,
            b_ptr,
            g_ptr,
            m_ptr,
            v_ptr,
            offs,
            offs < end,
            decay,
            l2,
            lerp_weight,
            beta2,
            one_minus_beta2,
            bias_correction2_sqrt,
            eps,
            neg_step_size,
            prescale,
            ROUND_ONCE,
        )


def step(fused: FusedPlan) -> None:
    """Launch the AdamW/Adam kernel of an Adam ``fused`` plan, once for the tensors of torch's
    for-loop numerics and once for those of ``fused=True`` (its ``round_once`` column), then
    add 1 to each ``step``."""
    if fused.params:
        lists = [fused.params, fused.backups, fused.grads, fused.exp_avgs, fused.exp_avg_sqs]
        table = fused.table().to(fused.params[0].device, non_blocking=True)
        round_once = [row[ADAM_COLUMNS.index("round_once")] != 0 for row in fused.coefficients]
        for once in (False, True):
            chosen = [i for i, flag in enumerate(round_once) if flag == once]
            if chosen:
                _tables.launch(
                    _adamw_kernel,
                    [[tensors[i] for i in chosen] for tensors in lists],
                    chosen,
                    table,
                    ROUND_ONCE=once,
                    NUM_COEFS=len(ADAM_COLUMNS),
                    enable_fp_fusion=False,
                )
    for s in fused.steps:
        s += 1
