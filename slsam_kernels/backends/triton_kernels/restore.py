"""The exact restore: copy every backup back into its parameter, one launch per dtype."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from . import _tables
from ._tables import split_contiguous, tensor_ptr, work_item


@triton.jit
def _copy_kernel(
    dst_base,
    src_base,
    table,
    stride,
    items,
    item_stride,
    ALIGNED: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    t, start, full_end, end = work_item(table, stride, items, item_stride, 2, CHUNK, BLOCK)
    dst = tensor_ptr(dst_base, table, stride, t, 0, ALIGNED)
    src = tensor_ptr(src_base, table, stride, t, 1, ALIGNED)
    for first in range(start, full_end, BLOCK):
        offs = tl.multiple_of(first, BLOCK) + tl.arange(0, BLOCK)
        tl.store(dst + offs, tl.load(src + offs))
    if full_end < end:
        offs = full_end + tl.arange(0, BLOCK)
        tl.store(dst + offs, tl.load(src + offs, mask=offs < end), mask=offs < end)


@torch.no_grad()
def restore_(params: Sequence[torch.Tensor], backups: Sequence[torch.Tensor]) -> list[int]:
    """Copy each backup back into its parameter, bit for bit (same dtype: a plain copy).
    Declines (leaves alone, and returns the positions of) the pairs that are not contiguous:
    the kernel addresses memory linearly."""
    linear, declined = split_contiguous(params, backups)
    lists = [[params[i] for i in linear], [backups[i] for i in linear]]
    _tables.launch(_copy_kernel, lists, linear)
    return declined
