"""Every op x backend x dtype x size. Each group of pytest-benchmark's table is one op, dtype,
size and device, its rows the backends."""

from __future__ import annotations

import pytest

from .cases import BANDIT_OPS, DTYPES, STREAM_OPS, bandit_bench, stream_bench
from .targets import BANDIT_ARMS, SIZES, TARGETS, skip_reason

TARGET_IDS = [f"{device}-{backend}" for device, backend in TARGETS]


def _target(target: tuple[str, str]) -> tuple[str, str]:
    reason = skip_reason(*target)
    if reason:
        pytest.skip(reason)
    return target


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("op", list(STREAM_OPS))
def test_stream_op(run_bench, op: str, dtype: str, size: str, target: tuple[str, str]) -> None:
    device, backend = _target(target)
    bench = stream_bench(op, backend, device, dtype, SIZES[device][size])
    run_bench(bench, device, backend, f"{op} {dtype} {size} {device}")


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("size", list(BANDIT_ARMS))
@pytest.mark.parametrize("op", BANDIT_OPS)
def test_bandit_op(run_bench, op: str, size: str, target: tuple[str, str]) -> None:
    device, backend = _target(target)
    bench = bandit_bench(op, backend, device, size)
    run_bench(bench, device, backend, f"{op} {BANDIT_ARMS[size]} arms {device}")
