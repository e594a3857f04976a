"""Shared pieces of the extension's tests: the skip mark, dtypes, fresh random inputs."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import pytest
import torch

from slsam_kernels.backends import cpp as cpp_backend
from slsam_kernels.backends.cpp.loader import C

requires_extension = pytest.mark.skipif(
    bool(cpp_backend.UNAVAILABLE_REASON),
    reason=f"slsam_kernels._C is unavailable ({cpp_backend.UNAVAILABLE_REASON}); fix: "
    "`python setup.py build_ext --inplace` in the repository root",
)

DTYPES = [
    pytest.param(torch.float32, id="fp32"),
    pytest.param(torch.bfloat16, id="bf16"),
    pytest.param(torch.float16, id="fp16"),
]

# The CPU loops work in blocks of 65536 elements (csrc/cpu/blocks.h): sizes on both sides of
# one and two block boundaries, an empty tensor, and an odd size far from any power of two.
ODD_SIZES = [0, 1, 7, 65535, 65536, 65537, 131073, 278011]


def fresh_generator() -> tuple[torch.Generator, int]:
    """A generator seeded from ``random``, which conftest seeds per test (the seed is returned
    too, for failure messages)."""
    seed = random.randrange(2**31)
    return torch.Generator().manual_seed(seed), seed


def randn(sizes: list[int], dtypes: list[torch.dtype], gen: torch.Generator) -> list[torch.Tensor]:
    """One standard-normal tensor per size, the dtypes cycled over the sizes."""
    return [torch.randn(n, generator=gen).to(dtypes[i % len(dtypes)]) for i, n in enumerate(sizes)]


def nan_like(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Outputs poisoned with NaN, so an element the op forgets to write shows."""
    return [torch.full_like(t, float("nan")) for t in tensors]


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits of ``t``, for bit-exact comparisons that treat NaN payloads as values."""
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def assert_bitwise_equal(actual: list[torch.Tensor], expected: list[torch.Tensor], msg: str):
    """Every pair of tensors holds the same bits."""
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert a.dtype == e.dtype and a.shape == e.shape, f"{msg}: tensor {i}"
        assert torch.equal(bits(a), bits(e)), f"{msg}: tensor {i} ({a.dtype}, {a.numel()})"


@contextlib.contextmanager
def vec8_kernels(enabled: bool) -> Iterator[None]:
    """The CPU fp16 kernels in their eight-lane F16C form (``enabled``) or the portable one."""
    before = C.use_vec8_kernels(enabled)
    try:
        yield
    finally:
        C.use_vec8_kernels(before)


def _vec8_kernels_available() -> bool:
    if C is None:
        return False
    before = C.use_vec8_kernels(True)
    return C.use_vec8_kernels(before)


requires_vec8_kernels = pytest.mark.skipif(
    not _vec8_kernels_available(), reason="this CPU has no AVX2+FMA+F16C"
)

#: Both forms of the fp16 kernels where this CPU has the eight-lane one, else the portable one.
FP16_FORMS = [
    pytest.param(False, id="portable"),
    pytest.param(True, id="eight-lane", marks=requires_vec8_kernels),
]


#: The binary exponents a 16-bit float spans, subnormals included.
_EXPONENT_RANGES = {torch.float16: (-24, 15), torch.bfloat16: (-133, 127)}


def every_scale(gen: torch.Generator, dtype: torch.dtype = torch.float16) -> list[torch.Tensor]:
    """Float tensors at every scale the kernels meet: normal, subnormal, near overflow, and (fp16,
    bf16) every finite pattern, or (fp32) every finite bf16 pattern with random low bits; sizes
    that end on and off the 8-lane loops."""
    if dtype == torch.float32:
        widened = [t.float() for t in every_scale(gen, torch.bfloat16)]
        low_bits = [
            torch.randint(0, 2**16, t.shape, generator=gen, dtype=torch.int32) for t in widened
        ]
        return [
            torch.where(t.isfinite(), (t.view(torch.int32) | bits).view(torch.float32), t)
            for t, bits in zip(widened, low_bits)
        ]
    every = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    finite = every[every.isfinite()]
    sizes = [1, 7, 8, 9, 65537, finite.numel()]
    tensors = [torch.randn(n, generator=gen) for n in sizes]
    tensors[-1] = finite[torch.randperm(finite.numel(), generator=gen)]
    low, high = _EXPONENT_RANGES[dtype]
    exponents = torch.randint(low, high, (65537,), generator=gen)
    tensors[-2] = tensors[-2] * torch.tensor(2.0).pow(exponents)
    return [t.to(dtype) for t in tensors]
