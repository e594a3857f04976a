"""Triton multi-tensor kernels (norms, perturb, restore) against the reference path."""

from __future__ import annotations

import inspect

import pytest
import torch
from triton_testing import DEVICE, TRITON_MARKS

from slsam_kernels import reference
from slsam_kernels import triton as triton_backend
from slsam_kernels.ops import backends

pytestmark = TRITON_MARKS

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# straddle the 1024-element block and the 16384-element work item
SIZES = [1, 127, 1025, 0, 4099, 16385, 65537]


def _mixed(sizes: list[int], seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(n, generator=gen).to(DEVICE, DTYPES[i % len(DTYPES)])
        for i, n in enumerate(sizes)
    ]


def _nan_like(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.full_like(t, float("nan")) for t in tensors]


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
def test_grad_sqnorms_mixed_sizes_and_dtypes(weighted: bool) -> None:
    grads = _mixed(SIZES, seed=1)
    weights = _mixed(SIZES, seed=2) if weighted else None
    got = triton_backend.grad_sqnorms(grads, weights)
    want = reference.grad_sqnorms(grads, weights)
    assert got.dtype == torch.float32 and got.device.type == DEVICE
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert torch.equal(got, triton_backend.grad_sqnorms(grads, weights)), "not deterministic"


def test_grad_sqnorms_many_small_tensors() -> None:
    grads = _mixed([1 + (7 * i) % 37 for i in range(1200)], seed=3)
    torch.testing.assert_close(
        triton_backend.grad_sqnorms(grads), reference.grad_sqnorms(grads), rtol=1e-5, atol=1e-6
    )


def test_grad_sqnorms_strided_and_empty_list() -> None:
    g = torch.randn(33, 17, device=DEVICE).t()
    torch.testing.assert_close(
        triton_backend.grad_sqnorms([g]), reference.grad_sqnorms([g]), rtol=1e-5, atol=0
    )
    assert triton_backend.grad_sqnorms([]).shape == (0,)


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
def test_perturb_matches_reference(adaptive: bool) -> None:
    params = _mixed(SIZES, seed=4)
    grads = _mixed(SIZES, seed=5)
    scales = torch.rand(len(params), device=DEVICE)
    got_w = [w.clone() for w in params]
    want_w = [w.clone() for w in params]
    got_b = _nan_like(params)
    want_b = [torch.empty_like(w) for w in params]
    triton_backend.perturb_(got_w, grads, got_b, scales, adaptive)
    reference.perturb_(want_w, grads, want_b, scales, adaptive)
    for got, want, backup, original in zip(got_w, want_w, got_b, params, strict=True):
        assert torch.equal(backup, original), "backup is not the exact old w"
        # one rounding to w's dtype (no FMA contraction), as the reference
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert got.numel() == 0 or not torch.equal(got, original), "perturb changed nothing"


def test_perturb_and_restore_many_small_tensors() -> None:
    sizes = [1 + (11 * i) % 29 for i in range(1100)]
    params, grads = _mixed(sizes, seed=6), _mixed(sizes, seed=7)
    scales = torch.rand(len(params), device=DEVICE)
    got_w, want_w = [w.clone() for w in params], [w.clone() for w in params]
    backups = _nan_like(params)
    triton_backend.perturb_(got_w, grads, backups, scales, True)
    reference.perturb_(want_w, grads, [torch.empty_like(w) for w in params], scales, True)
    torch.testing.assert_close(got_w, want_w, rtol=0, atol=0)
    triton_backend.restore_(got_w, backups)
    assert all(torch.equal(w, o) for w, o in zip(got_w, params, strict=True))


def test_perturb_non_contiguous_params() -> None:
    params = [torch.randn(9, 5, device=DEVICE).t(), torch.randn(300, device=DEVICE)]
    grads = [torch.randn_like(w) for w in params]
    scales = torch.rand(2, device=DEVICE)
    got_w, want_w = [w.clone() for w in params], [w.clone() for w in params]
    got_b, want_b = _nan_like(params), _nan_like(params)
    triton_backend.perturb_(got_w, grads, got_b, scales, False)
    reference.perturb_(want_w, grads, want_b, scales, False)
    torch.testing.assert_close(got_w + got_b, want_w + want_b, rtol=0, atol=0)


def test_unaligned_views_take_the_unhinted_path() -> None:
    """Views at odd offsets of one buffer cannot promise 16-element alignment; the table says
    so, and the results stay exact."""
    from slsam_kernels.triton import _tables

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


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_restore_is_bit_exact(dtype: torch.dtype) -> None:
    backups = [torch.randn(n, device=DEVICE).to(dtype) for n in SIZES]
    backups[2] = torch.tensor([float("nan"), -0.0, float("inf"), 1e-40], device=DEVICE).to(dtype)
    params = _nan_like(backups)
    triton_backend.restore_(params, backups)
    for w, b in zip(params, backups, strict=True):
        assert torch.equal(
            w.view(torch.int16 if w.element_size() == 2 else torch.int32),
            b.view(torch.int16 if b.element_size() == 2 else torch.int32),
        )


def test_table_offsets_are_64_bit() -> None:
    from slsam_kernels.triton import _tables

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
    from slsam_kernels.triton import _tables, restore

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
        module = importlib.import_module(f"slsam_kernels.triton.{info.name}")
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
    from slsam_kernels.triton import norms

    # The compile cache is process-wide and earlier tests filled it: count what this loop adds.
    cache = norms._partials_kernel.device_caches[torch.cuda.current_device()][0]
    before = len(cache)
    for n in range(1, 200, 7):
        triton_backend.grad_sqnorms([torch.randn(n, device=DEVICE) for n in (n, n + 1000)])
    compiled = len(cache) - before
    assert compiled <= 2, f"{compiled} compilations for one dtype"


def test_backend_is_registered_and_picked_by_auto_on_cuda_only() -> None:
    status = backends.status("triton")
    assert status.available
    assert backends.resolve("triton", torch.device(DEVICE)) == "triton"
    assert backends.resolve("auto", torch.device("cpu")) != "triton"
    assert backends.AUTO_ORDER["cuda"][0] == "triton"
