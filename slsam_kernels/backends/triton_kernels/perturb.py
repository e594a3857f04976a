"""The SAM ascent in one pass: back up ``w`` exactly and write ``w + scale * g`` (ASAM:
``w + scale * g * w * w``), computed in fp32 and rounded once, as the reference does."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from . import _tables
from ._cast import round_to
from ._tables import position, split_contiguous, tensor_ptr, work_item


@triton.jit
def _perturb_block(w_ptr, g_ptr, b_ptr, offs, mask, scale, ADAPTIVE: tl.constexpr):
    w = tl.load(w_ptr + offs, mask=mask)
    tl.store(b_ptr + offs, w, mask=mask)
    w32 = w.to(tl.float32)
    e = scale * tl.load(g_ptr + offs, mask=mask).to(tl.float32)
    if ADAPTIVE:
        e = e * w32 * w32
    tl.store(w_ptr + offs, round_to(w32 + e, w.dtype), mask=mask)


@triton.jit
def _perturb_kernel(
    w_base,
    g_base,
    b_base,
    table,
    stride,
    items,
    item_stride,
    scales,
    ADAPTIVE: tl.constexpr,
    ALIGNED: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    t, start, full_end, end = work_item(table, stride, items, item_stride, 3, CHUNK, BLOCK)
    w_ptr = tensor_ptr(w_base, table, stride, t, 0, ALIGNED)
    g_ptr = tensor_ptr(g_base, table, stride, t, 1, ALIGNED)
    b_ptr = tensor_ptr(b_base, table, stride, t, 2, ALIGNED)
    scale = tl.load(scales + position(table, stride, t, 3))
    for first in range(start, full_end, BLOCK):
        offs = tl.multiple_of(first, BLOCK) + tl.arange(0, BLOCK)
        _perturb_block(w_ptr, g_ptr, b_ptr, offs, None, scale, ADAPTIVE)
    if full_end < end:
        offs = full_end + tl.arange(0, BLOCK)
        _perturb_block(w_ptr, g_ptr, b_ptr, offs, offs < end, scale, ADAPTIVE)


@torch.no_grad()
def perturb_(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    backups: Sequence[torch.Tensor],
    scales: torch.Tensor,
    adaptive: bool = False,
) -> list[int]:
    """Copy each ``w`` into its backup, then ``w <- w + scale_i * g`` (ASAM: ``scale_i * g *
    w * w``) in one pass; ``scales`` is read on the device (no host sync). Declines (leaves
    alone, and returns the positions of) the pairs that are not contiguous: the kernel
    addresses memory linearly."""
    linear, declined = split_contiguous(params, backups)
    lists = [
        [params[i] for i in linear],
        [grads[i].contiguous() for i in linear],
        [backups[i] for i in linear],
    ]
    # no FMA contraction: w + (scale * g) rounds like the reference, bit for bit
    _tables.launch(
        _perturb_kernel, lists, linear, scales, ADAPTIVE=adaptive, enable_fp_fusion=False
    )
    return declined
