"""What is Triton's own in its multi-tensor kernels: alignment hints, 64-bit offsets, no
recompiles per shape, registration (each op against the reference: test_backend_contract.py)."""

from __future__ import annotations

import inspect

import pytest
import torch
from triton_testing import DEVICE, TRITON_MARKS

from slsam_kernels import ops
from slsam_kernels.backends import reference
from slsam_kernels.backends import triton_kernels as triton_backend
from slsam_kernels.ops import registry

pytestmark = TRITON_MARKS


def _nan_like(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.full_like(t, float("nan")) for t in tensors]


def test_non_contiguous_pairs_are_declined_and_run_on_the_reference() -> None:
    params = [torch.randn(9, 5, device=DEVICE).t(), torch.randn(300, device=DEVICE)]
    grads = [torch.randn_like(w) for w in params]
    scales = torch.rand(2, device=DEVICE)
    want_w, want_b = [w.clone() for w in params], _nan_like(params)
    reference.perturb_(want_w, grads, want_b, scales, False)
    got_w, got_b = [w.clone() for w in params], _nan_like(params)
    assert triton_backend.perturb_(got_w, grads, got_b, scales, False) == [0]
    assert torch.equal(got_w[0], params[0]) and got_b[0].isnan().all(), "a declined pair changed"
    torch.testing.assert_close(got_w[1:] + got_b[1:], want_w[1:] + want_b[1:], rtol=0, atol=0)
    got_w[0].fill_(float("nan"))
    assert triton_backend.restore_(got_w, got_b) == [0]
    assert got_w[0].isnan().all(), "a declined restore wrote"
    bound = ops.bind("triton", torch.device(DEVICE))
    got_w, got_b = [w.clone() for w in params], _nan_like(params)
    bound.perturb_(got_w, grads, got_b, scales, False)
    torch.testing.assert_close(got_w + got_b, want_w + want_b, rtol=0, atol=0)
    got_w = _nan_like(params)
    bound.restore_(got_w, got_b)
    torch.testing.assert_close(got_w, params, rtol=0, atol=0)


def test_unaligned_views_take_the_unhinted_path() -> None:
    """Views at odd offsets of one buffer cannot promise 16-element alignment; the table says
    so, and the results stay exact."""
    from slsam_kernels.backends.triton_kernels import _tables

    separate = [torch.randn(10, device=DEVICE) for _ in range(3)]
    assert _tables.build([separate], [0, 1, 2], 16384).aligned
    flat = torch.randn(5000, device=DEVICE)
    params = [flat[1:1026], flat[1030:3079]]
    assert not _tables.build([params], [0, 1], 16384).aligned
    original = [w.clone() for w in params]
    grads = [torch.randn_like(w) for w in params]
    scales = torch.rand(2, device=DEVICE)
    want = [w.clone() for w in params]
    reference.perturb_(want, grads, [torch.empty_like(w) for w in params], scales, False)
    backups = _nan_like(params)
    triton_backend.perturb_(params, grads, backups, scales, False)
    torch.testing.assert_close(params, want, rtol=0, atol=0)
    triton_backend.restore_(params, backups)
    assert all(torch.equal(w, o) for w, o in zip(params, original, strict=True))


def test_table_offsets_are_64_bit() -> None:
    from slsam_kernels.backends.triton_kernels import _tables

    numel = 2**33 + 5
    huge = torch.empty(1).expand(numel)
    table = _tables.build([[huge]], [0], 16384)
    assert table.items.dtype == torch.int64
    assert table.num_items == -(-numel // 16384)
    assert int(table.items[1, table.num_items - 1]) == (table.num_items - 1) * 16384
    assert int(table.table[1, 0]) == numel


def test_offsets_beyond_int32_reach_their_tensors() -> None:
    """A launch addresses tensor i at ``base + offset[i]``; with offsets above 2^31 elements
    any 32-bit truncation in the offset arithmetic would write the wrong memory."""
    from slsam_kernels.backends.triton_kernels import _tables, restore

    # One buffer of over 2^31 fp32 elements puts both tensors past 2^31 elements from their
    # bases wherever the allocator puts it; torch.empty writes no page, so on the CPU only
    # the pages of dst and src are ever touched.
    far = 2**31 + 1024
    buffer = torch.empty(far + 40000, device=DEVICE)
    base_dst, base_src = buffer[:0], buffer[1:1]  # empty views: bases, not items
    dst = buffer[far : far + 20000].fill_(float("nan"))
    src = buffer[far + 20000 :].normal_()
    table = _tables.build([[base_dst, dst], [base_src, src]], [0, 1], 16384)
    assert int(table.table[0, 1]) > 2**31 and table.num_items == 2
    restore._copy_kernel[(table.num_items,)](
        base_dst,
        base_src,
        table.table,
        table.stride,
        table.items,
        table.item_stride,
        ALIGNED=False,
        CHUNK=16384,
        BLOCK=1024,
    )
    assert torch.equal(dst, src)


ALLOWED_CONSTEXPRS = {
    "BLOCK",
    "CHUNK",
    "ADAPTIVE",
    "ALIGNED",
    "WEIGHTED",
    "MOMENTUM",
    "ROUND_ONCE",  # fused=True's numerics: two variants, chosen per tensor
    "NUM_COEFS",
    "NUM_ROLES",
    "PROB_FLOOR",
    "SUM_FLOOR",
    "SCALE_FREE",  # the bandit rule: two variants, chosen once per optimizer
}


def _kernels() -> list[object]:
    import importlib
    import pkgutil

    found = []
    for info in pkgutil.iter_modules(triton_backend.__path__):
        module = importlib.import_module(f"slsam_kernels.backends.triton_kernels.{info.name}")
        found += [v for k, v in vars(module).items() if k.endswith("_kernel")]
    return found


def test_sizes_are_runtime_arguments() -> None:
    """A model with hundreds of shapes must not compile hundreds of kernels: only block
    sizes and flags may be compile-time constants."""
    kernels = _kernels()
    assert len(kernels) >= 5
    for kernel in kernels:
        params = inspect.signature(kernel.fn).parameters.values()
        constexprs = {p.name for p in params if "constexpr" in str(p.annotation)}
        assert constexprs <= ALLOWED_CONSTEXPRS, (kernel.fn.__name__, constexprs)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="compile counting needs a CUDA device")
def test_shapes_do_not_recompile() -> None:
    from slsam_kernels.backends.triton_kernels import norms

    # The compile cache is process-wide and earlier tests filled it: count what this loop adds.
    cache = norms._partials_kernel.device_caches[torch.cuda.current_device()][0]
    before = len(cache)
    for n in range(1, 200, 7):
        triton_backend.grad_sqnorms([torch.randn(n, device=DEVICE) for n in (n, n + 1000)])
    compiled = len(cache) - before
    assert compiled <= 2, f"{compiled} compilations for one dtype"


def test_backend_is_registered_and_picked_by_auto_on_cuda_only() -> None:
    status = registry.status("triton")
    assert status.available
    assert registry.resolve("triton", torch.device(DEVICE)) == "triton"
    assert registry.resolve("auto", torch.device("cpu")) != "triton"
    assert registry.AUTO_ORDER["cuda"][0] == "triton"
