"""The launch tables: their layout, and unaligned views launched apart from aligned tensors."""

from __future__ import annotations

import pytest
import torch
from triton_testing import DEVICE, TRITON_MARKS

from slsam_kernels.backends import reference
from slsam_kernels.backends import triton_kernels as triton_backend
from slsam_kernels.backends.triton_kernels import _tables

pytestmark = TRITON_MARKS


def test_table_layout() -> None:
    """Offsets, numels, positions, first items and the items, as the module docstring lays
    them out, for two roles and a chunk of 4 elements."""
    flat = [torch.zeros(64, device=DEVICE) for _ in range(2)]
    roles = [[flat[r][0:5], flat[r][16:19], flat[r][32:41]] for r in range(2)]
    built = _tables.build(roles, [7, 2, 4], 4)
    n, m = 3, 2 + 1 + 3
    assert (built.num_tensors, built.num_items, built.aligned) == (n, m, True)
    assert built.stride % 16 == 0 and built.item_stride % 16 == 0
    table = built.table.cpu()
    assert table.shape == (2 + 3, built.stride)
    assert table[:2, :n].tolist() == [[0, 16, 32], [0, 16, 32]]
    assert table[2, :n].tolist() == [5, 3, 9]
    assert table[3, :n].tolist() == [7, 2, 4]
    assert table[4, : n + 1].tolist() == [0, 2, 3, 6]
    items = built.items.cpu()
    assert items[0, :m].tolist() == [0, 0, 1, 2, 2, 2]
    assert items[1, :m].tolist() == [0, 4, 0, 0, 4, 8]
    assert not table[:, n + 1 :].any() and not items[:, m:].any()


def test_unaligned_views_leave_the_others_aligned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Aligned tensors and views at odd offsets of a flat buffer (as DDP's buckets): two
    launches, the aligned one keeping the promise; results exact, positions kept."""
    built = []
    build = _tables.build

    def recording_build(*args, **kwargs):
        built.append(build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(_tables, "build", recording_build)
    flat = torch.randn(3000, device=DEVICE)
    params = [
        torch.randn(1030, device=DEVICE),
        flat[3:1000],
        torch.randn(17, device=DEVICE),
        flat[1001:2500],
    ]
    grads = [torch.randn_like(w) for w in params]
    scales = torch.rand(4, device=DEVICE)
    assert _tables.launch_groups([params, grads, params]) == [[0, 2], [1, 3]]
    want = [w.clone() for w in params]
    reference.perturb_(want, grads, [torch.empty_like(w) for w in params], scales, False)
    original = [w.clone() for w in params]
    backups = [torch.full_like(w, float("nan")) for w in params]
    triton_backend.perturb_(params, grads, backups, scales, False)
    assert [table.aligned for table in built] == [True, False]
    torch.testing.assert_close(params, want, rtol=0, atol=0)
    triton_backend.restore_(params, backups)
    assert all(torch.equal(w, o) for w, o in zip(params, original, strict=True))
    norms = triton_backend.grad_sqnorms(grads)
    torch.testing.assert_close(norms, reference.grad_sqnorms(grads), rtol=1e-6, atol=0)
