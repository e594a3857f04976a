"""The exact restore: copy every backup back into its parameter, one launch per dtype."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from . import _tables
from ._tables import tensor_ptr, work_item

_BLOCK = 1024
_CHUNK = 16 * _BLOCK


@triton.jit
def _copy_kernel(
    dst_base,
    src_base,
    table,
    stride,
    items,
    item_stride,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    t, start, end = work_item(table, stride, items, item_stride, 2, CHUNK)
    dst = tensor_ptr(dst_base, table, stride, t, 0)
    src = tensor_ptr(src_base, table, stride, t, 1)
    for first in range(start, end, BLOCK):
        offs = first + tl.arange(0, BLOCK)
        mask = offs < end
        tl.store(dst + offs, tl.load(src + offs, mask=mask), mask=mask)


@torch.no_grad()
def restore_(params: Sequence[torch.Tensor], backups: Sequence[torch.Tensor]) -> None:
    """Copy each backup back into its parameter, bit for bit (same dtype: a plain copy).
    Non-contiguous pairs are copied by torch (the kernel addresses memory linearly)."""
    linear = []
    for i, (w, b) in enumerate(zip(params, backups, strict=True)):
        if w.is_contiguous() and b.is_contiguous():
            linear.append(i)
        else:
            w.copy_(b)
    lists = [[params[i] for i in linear], [backups[i] for i in linear]]
    _tables.launch(_copy_kernel, lists, linear, _CHUNK, BLOCK=_BLOCK)
