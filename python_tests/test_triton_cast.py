"""The kernels' fp32 -> storage dtype rounding against torch's casts, bit for bit."""

from __future__ import annotations

import pytest
import torch

from slsam_kernels.backends import triton_kernels as triton_backend

pytestmark = [
    pytest.mark.triton,
    pytest.mark.skipif(
        bool(triton_backend.UNAVAILABLE_REASON),
        reason=f"needs triton with CUDA or TRITON_INTERPRET=1: {triton_backend.UNAVAILABLE_REASON}",
    ),
]

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")
round_to = pytest.importorskip("slsam_kernels.backends.triton_kernels._cast").round_to

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@triton.jit
def _round_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    tl.store(y_ptr + offs, round_to(x, y_ptr.dtype.element_ty), mask=mask)


def _hard_cases() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    random_bits = torch.randint(-(2**31), 2**31 - 1, (20000,), generator=gen, dtype=torch.int64)
    bits = random_bits.to(torch.int32)
    # ties and neighbours of ties: low 16 bits at 0x8000 +- 1, even and odd upper halves
    ties = (bits & ~0xFFFF) | torch.tensor([0x7FFF, 0x8000, 0x8001], dtype=torch.int32).repeat(
        len(bits) // 3 + 1
    )[: len(bits)]
    special = torch.tensor(
        [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 3.4028235e38, 1e-45, -1e-40]
    )
    return torch.cat([bits.view(torch.float32), ties.view(torch.float32), special])


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_round_to_matches_torch_cast(dtype: torch.dtype) -> None:
    x = _hard_cases().to(DEVICE)
    y = torch.empty(x.shape, dtype=dtype, device=DEVICE)
    _round_kernel[(triton.cdiv(x.numel(), 4096),)](x, y, x.numel(), BLOCK=4096)
    want = x.to(dtype)
    both_nan = torch.isnan(y) & torch.isnan(want)
    assert torch.equal(y.view(torch.int16)[~both_nan], want.view(torch.int16)[~both_nan])
    assert torch.equal(torch.isnan(y), torch.isnan(want))
