"""Fused restore + ``torch.optim.AdamW`` step, mirroring torch's single-tensor AdamW:
decoupled weight decay, ``exp_avg.lerp_``, ``exp_avg_sq`` update, bias corrections from the
per-tensor ``step`` (a CPU tensor, as torch keeps it), computed in fp32 and rounded once."""

from __future__ import annotations

import math
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

_OFF_FLAGS = ("amsgrad", "maximize", "capturable", "differentiable", "fused")


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
    lerp_weight,
    beta2,
    one_minus_beta2,
    step_size,
    bias_correction2_sqrt,
    eps,
):
    w = tl.load(b_ptr + offs, mask=mask).to(tl.float32) * decay
    g = tl.load(g_ptr + offs, mask=mask).to(tl.float32)
    m = tl.load(m_ptr + offs, mask=mask).to(tl.float32)
    v = tl.load(v_ptr + offs, mask=mask).to(tl.float32)
    # torch's lerp: the formula flips at weight 0.5 to stay exact at the ends
    diff = g - m
    m = tl.where(lerp_weight < 0.5, m + lerp_weight * diff, g - diff * (1.0 - lerp_weight))
    v = v * beta2 + one_minus_beta2 * g * g
    # IEEE sqrt and division as torch's; plain sqrt and / may lower to approximations
    denom = tl.div_rn(tl.sqrt_rn(v), bias_correction2_sqrt) + eps
    w = w - step_size * tl.div_rn(m, denom)
    tl.store(w_ptr + offs, round_to(w, w_ptr.dtype.element_ty), mask=mask)
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
    lerp_weight = tl.load(c + 1)
    beta2 = tl.load(c + 2)
    one_minus_beta2 = tl.load(c + 3)
    step_size = tl.load(c + 4)
    bias_correction2_sqrt = tl.load(c + 5)
    eps = tl.load(c + 6)
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
            lerp_weight,
            beta2,
            one_minus_beta2,
            step_size,
            bias_correction2_sqrt,
            eps,
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
            lerp_weight,
            beta2,
            one_minus_beta2,
            step_size,
            bias_correction2_sqrt,
            eps,
        )


def _state_ok(p: torch.Tensor, state: dict[str, Any]) -> bool:
    if not state:
        return True
    step = state.get("step")
    return (
        isinstance(step, torch.Tensor)
        and step.device.type == "cpu"
        and step.numel() == 1
        and not step.requires_grad
        and like_param(p, state.get("exp_avg"))
        and like_param(p, state.get("exp_avg_sq"))
    )


def supports(
    optimizer: torch.optim.Optimizer, entries: Sequence[tuple[torch.Tensor, dict[str, Any]]]
) -> bool:
    """True when every (param, group) is plain AdamW with float hyper-parameters and torch's
    default state layout (``step`` on the CPU; capturable and fused keep it on the device)."""
    for p, group in entries:
        if any(group.get(flag) for flag in _OFF_FLAGS):
            return False
        if not group.get("decoupled_weight_decay", True):
            return False
        hyper = [group["lr"], *group["betas"], group["eps"], group["weight_decay"]]
        if not plain_numbers(*hyper) or not _state_ok(p, optimizer.state.get(p, {})):
            return False
    return True


def _scalar_dtype() -> torch.dtype:
    """The dtype torch gives ``state["step"]`` (``torch.optim.optimizer._get_scalar_dtype``)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def step(
    optimizer: torch.optim.Optimizer,
    entries: Sequence[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]],
) -> None:
    """Take the fused step for (param, backup, group) ``entries`` that :func:`supports`
    accepted; creates missing state as torch would."""
    if not entries:
        return
    coefs = []
    steps = []
    for p, _, group in entries:
        state = optimizer.state[p]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        steps.append(state["step"])
        count = float(state["step"]) + 1
        lr, (beta1, beta2) = group["lr"], group["betas"]
        coefs.append(
            [
                1 - lr * group["weight_decay"],
                1 - beta1,
                beta2,
                1 - beta2,
                lr / (1 - beta1**count),
                math.sqrt(1 - beta2**count),
                group["eps"],
            ]
        )
    params = [p for p, _, _ in entries]
    device = params[0].device
    lists = [
        params,
        [b for _, b, _ in entries],
        [p.grad for p in params],
        [optimizer.state[p]["exp_avg"] for p in params],
        [optimizer.state[p]["exp_avg_sq"] for p in params],
    ]
    table = torch.tensor(coefs, dtype=torch.float32).to(device, non_blocking=True)
    _tables.launch(_adamw_kernel, lists, range(len(params)), table, NUM_COEFS=len(coefs[0]))
    for s in steps:
        s += 1
