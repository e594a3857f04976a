"""The micro suite's timing and reporting: a timed call synchronises CUDA, every benchmark
records its GB/s in ``extra_info`` (saved with ``--benchmark-autosave`` / ``--benchmark-json``),
and a GB/s table is printed after pytest-benchmark's own (which has no custom columns)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from .cases import Bench

_ROWS = pytest.StashKey[list[tuple[str, str, float]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_ROWS] = []


def synchronised(call: Callable[[], object], device: str) -> Callable[[], object]:
    """``call``, then wait for the GPU: pytest-benchmark's host timer then times the work."""
    if device != "cuda":
        return call

    def timed() -> object:
        result = call()
        torch.cuda.synchronize()
        return result

    return timed


@pytest.fixture
def run_bench(benchmark, request: pytest.FixtureRequest):
    """Time ``backend``'s :class:`Bench` in ``group`` (the backends of one op, dtype, size and
    device side by side) and record its GB/s: bytes moved per call over the median time."""

    def run(bench: Bench, device: str, backend: str, group: str) -> None:
        benchmark.group = group
        call = synchronised(bench.call, device)
        call()  # first-call set-up (optimizer state, compilation) outside the timing
        benchmark.extra_info["bytes_per_call"] = bench.bytes_moved
        benchmark(call)
        if benchmark.stats is None or not bench.bytes_moved:  # --benchmark-disable, bandit
            return
        gbps = bench.bytes_moved / benchmark.stats.stats.median / 1e9
        benchmark.extra_info["gb_per_s"] = round(gbps, 3)
        request.config.stash[_ROWS].append((group, backend, gbps))

    return run


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    rows = config.stash.get(_ROWS, [])
    if not rows:
        return
    terminalreporter.section("GB/s (bytes moved per call / median time)")
    for group in sorted({g for g, _, _ in rows}):
        terminalreporter.write_line(f"{group}:")
        for g, name, gbps in rows:
            if g == group:
                terminalreporter.write_line(f"  {name:<10} {gbps:9.2f}")
