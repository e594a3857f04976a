"""Multi-tensor launch tables: one launch serves a list of tensors of any sizes.

A launch gets, per role (params, grads, backups, ...), the first tensor of the role as a base
pointer and a device table of int64 element offsets of every tensor from that base, so a
kernel reaches tensor ``t`` at ``base + offset[t]`` with 64-bit arithmetic; sizes stay
runtime data, so one compiled kernel serves every shape. Work is split into items of at most
``chunk`` elements; item ``k`` covers ``[start_k, start_k + chunk)`` of tensor ``tensor_k``.

Inside an item, whole blocks run unmasked and only the tail is masked; with ``aligned`` (every
offset a multiple of 16 elements, as separate allocations and the backup arena give) the
kernel may promise that alignment, so together with triton's 16-byte specialisation of the
base pointers the unmasked blocks compile to vector loads and stores; :func:`launch` gives
tensors at unaligned addresses launches of their own, so they do not cost the others that.

Table layout (int64; rows padded to a multiple of 16 entries, so the runtime ``stride`` and
``item_stride`` always specialise the same way and never cause a second compile):

    table[r, :n]      element offset of tensor i in role r, for r < R (number of roles)
    table[R, :n]      numel of tensor i
    table[R + 1, :n]  position of tensor i in the caller's list (scales, outputs, coefficients)
    table[R + 2, :n+1] index of tensor i's first work item (prefix sums; the last is the total)
    items[0, :m]      tensor of work item k
    items[1, :m]      first element of work item k
"""

from __future__ import annotations

import contextlib
import itertools
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..upload import upload

# Elementwise launch geometry shared by every multi-tensor kernel: BLOCK elements per step,
# CHUNK per work item (one program), so a program streams 16 blocks.
BLOCK = 1024
CHUNK = 16 * BLOCK
_ROW_ALIGN = 16
_ALIGN_ELEMENTS = 16
# Tables are rebuilt only when pointers or sizes change; steady-state training hits the cache
# because the caching allocator hands the same blocks back every step.
_CACHE_SIZE = 64
_cache: OrderedDict[Hashable, TensorTable] = OrderedDict()


@dataclass(frozen=True)
class TensorTable:
    """The device tables of one launch (see the module docstring)."""

    table: torch.Tensor
    stride: int
    items: torch.Tensor
    item_stride: int
    num_tensors: int
    num_items: int
    aligned: bool


def _padded(length: int) -> int:
    return -(-length // _ROW_ALIGN) * _ROW_ALIGN


def dtype_groups(lists: Sequence[Sequence[torch.Tensor]]) -> list[list[int]]:
    """Indices of the non-empty tensors, grouped by their dtypes across ``lists`` (tensor i of
    every list decides together), groups in first-seen order."""
    groups: dict[tuple[torch.dtype, ...], list[int]] = {}
    for i, tensors in enumerate(zip(*lists, strict=True)):
        if tensors[0].numel():
            groups.setdefault(tuple(t.dtype for t in tensors), []).append(i)
    return list(groups.values())


def split_contiguous(
    params: Sequence[torch.Tensor], backups: Sequence[torch.Tensor]
) -> tuple[list[int], list[int]]:
    """The positions of the (param, backup) pairs that are both contiguous, and of the rest."""
    linear: list[int] = []
    declined: list[int] = []
    for i, (w, b) in enumerate(zip(params, backups, strict=True)):
        (linear if w.is_contiguous() and b.is_contiguous() else declined).append(i)
    return linear, declined


def launch_groups(lists: Sequence[Sequence[torch.Tensor]]) -> list[list[int]]:
    """The :func:`dtype_groups`, each split into one launch for the tensors whose addresses
    in every list are multiples of 16 elements (which may promise that alignment) and one
    for the rest: a view at an odd offset of a flat buffer (DDP's buckets) takes only
    itself off the vector loads, not its whole dtype group."""
    groups = []
    for group in dtype_groups(lists):
        split: tuple[list[int], list[int]] = ([], [])
        for i in group:
            aligned = all(
                tensors[i].data_ptr() % (_ALIGN_ELEMENTS * tensors[i].element_size()) == 0
                for tensors in lists
            )
            split[0 if aligned else 1].append(i)
        groups += [indices for indices in split if indices]
    return groups


def build(
    roles: Sequence[Sequence[torch.Tensor]], positions: Sequence[int], chunk: int
) -> TensorTable:
    """The table for contiguous, non-empty tensors ``roles[r][i]`` (equal numels across roles
    for each i), each with its ``positions[i]``; cached by pointers, sizes and positions."""
    device = roles[0][0].device
    numels = [t.numel() for t in roles[0]]
    pointers = [[t.data_ptr() for t in role] for role in roles]
    key = (device, chunk, tuple(positions), tuple(numels), *(tuple(p) for p in pointers))
    cached = _cache.get(key)
    if cached is not None:
        _cache.move_to_end(key)
        return cached
    n, num_roles = len(numels), len(roles)
    stride = _padded(n + 1)
    counts = [-(-k // chunk) for k in numels]
    first = list(itertools.accumulate(counts, initial=0))
    m = first[-1]
    item_stride = _padded(m)
    offsets = [
        [(ptr - ptrs[0]) // role[0].element_size() for ptr in ptrs]
        for role, ptrs in zip(roles, pointers, strict=True)
    ]
    aligned = all(offset % _ALIGN_ELEMENTS == 0 for row in offsets for offset in row)
    # The per-tensor rows from Python ints in one tensor, the per-item rows (one item per
    # chunk of the whole list: many) from torch ops, one upload for both: a miss, which
    # SL-SAM takes every step its active set changes, dispatches 17 torch ops on the host
    # (60 when every row was its own tensor, with two uploads; counted with a
    # TorchDispatchMode over four tensors in three roles).
    rows = [row + [0] * (stride - n) for row in (*offsets, numels, list(positions))]
    rows.append(first + [0] * (stride - n - 1))
    tensor_of_item = torch.repeat_interleave(
        torch.arange(n), torch.tensor(counts, dtype=torch.int64), output_size=m
    )
    first_item = torch.tensor(first[:-1], dtype=torch.int64)
    start_of_item = (torch.arange(m) - first_item[tensor_of_item]) * chunk
    padding = tensor_of_item.new_zeros(item_stride - m)
    host = torch.cat(
        [
            torch.tensor(rows, dtype=torch.int64).flatten(),
            tensor_of_item,
            padding,
            start_of_item,
            padding,
        ]
    )
    device_host = upload(host, device)
    table_size = (num_roles + 3) * stride
    built = TensorTable(
        device_host[:table_size].view(num_roles + 3, stride),
        stride,
        device_host[table_size:].view(2, item_stride),
        item_stride,
        n,
        m,
        aligned,
    )
    _cache[key] = built
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return built


def device_guard(t: torch.Tensor) -> contextlib.AbstractContextManager:
    """Make ``t``'s CUDA device the current one for a launch: triton launches on the current
    device (its context and stream), so tensors on ``cuda:1`` with device 0 current would be
    read from the wrong device. Every launch of this backend runs inside one. A no-op for
    CPU tensors (the interpreter)."""
    if t.device.type == "cuda":
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


@triton.jit
def work_item(
    table,
    stride,
    items,
    item_stride,
    NUM_ROLES: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """This program's work item: (tensor index, first element, end of its whole blocks,
    end element)."""
    pid = tl.program_id(0).to(tl.int64)
    t = tl.load(items + pid)
    start = tl.multiple_of(tl.load(items + item_stride + pid), CHUNK)
    end = tl.minimum(start + CHUNK, tl.load(table + NUM_ROLES * stride + t))
    return t, start, start + (end - start) // BLOCK * BLOCK, end


@triton.jit
def tensor_ptr(base, table, stride, t, role: tl.constexpr, ALIGNED: tl.constexpr):
    """Pointer to the first element of tensor ``t`` of ``role`` (whose first tensor is
    ``base``)."""
    offset = tl.load(table + role * stride + t)
    if ALIGNED:
        offset = tl.multiple_of(offset, 16)
    return base + offset


@triton.jit
def position(table, stride, t, NUM_ROLES: tl.constexpr):
    """Tensor ``t``'s position in the caller's list."""
    return tl.load(table + (NUM_ROLES + 1) * stride + t)


def launch(
    kernel: triton.JITFunction,
    lists: Sequence[Sequence[torch.Tensor]],
    positions: Sequence[int],
    *args: object,
    **constexprs: object,
) -> None:
    """Launch an elementwise multi-tensor ``kernel`` once per :func:`launch_groups` group of
    ``lists`` (its roles, contiguous tensors). The kernel takes the role bases, ``table,
    stride, items, item_stride``, then ``args``, ``ALIGNED``, ``CHUNK``, ``BLOCK`` and the
    other ``constexprs`` (compile-time arguments and launch options)."""
    for group in launch_groups(lists):
        roles = [[tensors[i] for i in group] for tensors in lists]
        table = build(roles, [positions[i] for i in group], CHUNK)
        with device_guard(roles[0][0]):
            kernel[(table.num_items,)](
                *(role[0] for role in roles),
                table.table,
                table.stride,
                table.items,
                table.item_stride,
                *args,
                ALIGNED=table.aligned,
                CHUNK=CHUNK,
                BLOCK=BLOCK,
                **constexprs,
            )
