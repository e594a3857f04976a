"""Per-tensor squared L2 norms of many tensors: partial sums per work item, then a
deterministic per-tensor sum of the partials (no float atomics, so runs repeat bit for bit)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from . import _tables
from ._tables import position, tensor_ptr, work_item

_SUM_BLOCK = 128


@triton.jit
def _squares(g_ptr, w_ptr, offs, mask, other, WEIGHTED: tl.constexpr):
    x = tl.load(g_ptr + offs, mask=mask, other=other).to(tl.float32)
    if WEIGHTED:
        x = x * tl.load(w_ptr + offs, mask=mask, other=other).to(tl.float32)
    return x * x


@triton.jit
def _partials_kernel(
    g_base,
    w_base,
    table,
    stride,
    items,
    item_stride,
    partials,
    WEIGHTED: tl.constexpr,
    NUM_ROLES: tl.constexpr,
    ALIGNED: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    t, start, full_end, end = work_item(table, stride, items, item_stride, NUM_ROLES, CHUNK, BLOCK)
    g_ptr = tensor_ptr(g_base, table, stride, t, 0, ALIGNED)
    w_ptr = tensor_ptr(w_base, table, stride, t, NUM_ROLES - 1, ALIGNED)
    # fp32 accumulate: bf16 sums lose 3 digits over 1M elements
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for first in range(start, full_end, BLOCK):
        offs = tl.multiple_of(first, BLOCK) + tl.arange(0, BLOCK)
        acc += _squares(g_ptr, w_ptr, offs, None, None, WEIGHTED)
    if full_end < end:
        offs = full_end + tl.arange(0, BLOCK)
        acc += _squares(g_ptr, w_ptr, offs, offs < end, 0.0, WEIGHTED)
    tl.store(partials + tl.program_id(0).to(tl.int64), tl.sum(acc, axis=0))


@triton.jit
def _sum_partials_kernel(
    partials, table, stride, out, NUM_ROLES: tl.constexpr, BLOCK: tl.constexpr
):
    t = tl.program_id(0).to(tl.int64)
    first = tl.load(table + (NUM_ROLES + 2) * stride + t)
    last = tl.load(table + (NUM_ROLES + 2) * stride + t + 1)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for k in range(first, last, BLOCK):
        offs = k + tl.arange(0, BLOCK)
        acc += tl.load(partials + offs, mask=offs < last, other=0.0)
    tl.store(out + position(table, stride, t, NUM_ROLES), tl.sum(acc, axis=0))


def grad_sqnorms(
    grads: Sequence[torch.Tensor], weights: Sequence[torch.Tensor] | None = None
) -> torch.Tensor:
    """``[||g_i||^2]`` (``[||w_i * g_i||^2]`` with ``weights``) as fp32 on the tensors' device,
    accumulated in fp32; one pair of launches per dtype group (two where aligned and unaligned
    tensors mix: see :func:`_tables.launch_groups`); empty tensors give 0."""
    if not grads:
        return torch.zeros(0, dtype=torch.float32)
    lists = [[g.contiguous() for g in grads]]
    if weights is not None:
        lists.append([w.contiguous() for w in weights])
    out = torch.zeros(len(grads), dtype=torch.float32, device=grads[0].device)
    for group in _tables.launch_groups(lists):
        roles = [[tensors[i] for i in group] for tensors in lists]
        table = _tables.build(roles, group, _tables.CHUNK)
        partials = torch.empty(table.num_items, dtype=torch.float32, device=out.device)
        with _tables.device_guard(out):
            _partials_kernel[(table.num_items,)](
                roles[0][0],
                roles[-1][0],
                table.table,
                table.stride,
                table.items,
                table.item_stride,
                partials,
                WEIGHTED=weights is not None,
                NUM_ROLES=len(roles),
                ALIGNED=table.aligned,
                CHUNK=_tables.CHUNK,
                BLOCK=_tables.BLOCK,
            )
            _sum_partials_kernel[(table.num_tensors,)](
                partials, table.table, table.stride, out, NUM_ROLES=len(roles), BLOCK=_SUM_BLOCK
            )
    return out
