"""Rounding fp32 results to the storage dtype."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def round_to(x, dtype: tl.constexpr):
    """``x`` (fp32) rounded to nearest-even in ``dtype``. For bf16 the rounding is done in
    integer arithmetic first, because triton's interpreter truncates fp32 -> bf16 casts; on a
    GPU the cast already rounds and this costs 4 integer ops on a memory-bound kernel, and
    the CPU test suite can then demand bit-exact agreement with torch's rounding."""
    if dtype == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        x = tl.where(x != x, x, bits.to(tl.float32, bitcast=True))
    return x.to(dtype)
