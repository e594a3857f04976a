"""Rounding fp32 results to the storage dtype."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def round_to(x, dtype: tl.constexpr):
    """``x`` (fp32) rounded to nearest-even in ``dtype``. For bf16 the rounding is done on the
    bits (as torch does it), because triton's interpreter truncates fp32 -> bf16 casts and
    flushes bf16 subnormals; on a GPU the cast already rounds, this costs a few integer ops
    on a memory-bound kernel, and the CPU tests can demand bit-exact agreement with torch."""
    if dtype == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        quiet_nan = (bits >> 16) | 0x40
        half = tl.where(x != x, quiet_nan, rounded).to(tl.uint16)
        return half.to(tl.bfloat16, bitcast=True)
    return x.to(dtype)


@triton.jit
def rounded(x, dtype: tl.constexpr):
    """``x`` (fp32) rounded to ``dtype`` and widened back: elementwise.h's ``rounded<T>``, a
    tensor torch's for-loop step stores between two of its ops."""
    return round_to(x, dtype).to(tl.float32)


@triton.jit
def intermediate(x, dtype: tl.constexpr, ROUND_ONCE: tl.constexpr):
    """``x`` where torch's for-loop step stores an intermediate tensor: ``rounded``, or kept
    in fp32 under ``ROUND_ONCE`` (torch's fused=True kernels round only what they store);
    elementwise.h's ``intermediate<T, kRoundOnce>``."""
    if not ROUND_ONCE:
        x = rounded(x, dtype)
    return x


@triton.jit
def prescaled(w, prescale, dtype: tl.constexpr):
    """BAR's ``w.mul_(prescale)``, a tensor op of its own and so rounded to ``dtype``; skipped
    at 1, where it is exact (elementwise.h's ``kPrescale``)."""
    if prescale != 1.0:
        w = rounded(w * prescale, dtype)
    return w
