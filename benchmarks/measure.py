"""Timing, copy bandwidth, launch counts and peak memory, on the CPU or a CUDA device.

CPU: ``time.perf_counter`` around each call; methods of a case are interleaved round by round
so machine noise hits them alike. CUDA: ``triton.testing.do_bench`` (its own warm-up, L2 flush
and CUDA-event timing) per method.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from slsam_kernels.apps.demo.memory import PeakMemory


@dataclass
class Timing:
    """Seconds per call: median and the 25th/75th percentiles, min and max."""

    median: float
    p25: float
    p75: float
    min: float
    max: float
    samples: int

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        if len(seconds) >= 2:
            q = statistics.quantiles(seconds, n=4, method="inclusive")
        else:
            q = [seconds[0]] * 3
        return cls(statistics.median(seconds), q[0], q[2], min(seconds), max(seconds), len(seconds))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    fns: dict[str, Callable[[], object]], rounds: int, device: torch.device
) -> dict[str, Timing]:
    """Time each function ``rounds`` times. CPU: round-robin over the functions; CUDA:
    ``do_bench`` per function (``rounds`` only sets a lower bound on its repetitions)."""
    if device.type == "cuda":
        return {name: _do_bench(fn, rounds) for name, fn in fns.items()}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: Timing.of(s) for name, s in samples.items()}


def _do_bench(fn: Callable[[], object], rounds: int) -> Timing:
    from triton.testing import do_bench

    ms = do_bench(fn, warmup=25, rep=max(100, rounds), return_mode="all")
    return Timing.of([m / 1e3 for m in ms])


def stream_bandwidth(device: torch.device, nbytes: int, rounds: int = 7) -> dict[str, float]:
    """Bytes/s of ``dst.copy_(src)`` (read + write) and of the triad ``a.add_(b, alpha=2)``
    (2 reads + 1 write), medians over ``nbytes`` fp32 buffers. On the dev CPU torch's
    ``copy_`` reaches about half of what its fused AdamW streams, so both are reported."""
    n = nbytes // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = time_interleaved(
        {"copy": lambda: dst.copy_(src), "triad": lambda: dst.add_(src, alpha=2.0)},
        rounds,
        device,
    )
    return {"copy": 2 * n * 4 / times["copy"].median, "triad": 3 * n * 4 / times["triad"].median}


class _CountingProxy:
    """Stands in for the extension module ``_C`` and counts calls of its functions."""

    def __init__(self, module: object) -> None:
        self._module = module
        self.calls = 0

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._module, name)
        if not callable(attr):
            return attr

        def counted(*args: object, **kwargs: object) -> object:
            self.calls += 1
            return attr(*args, **kwargs)

        return counted


@contextlib.contextmanager
def _count_extension_calls() -> Iterator[_CountingProxy | None]:
    """Counts calls into ``slsam_kernels._C`` (pybind functions, unseen by the profiler)."""
    from slsam_kernels.backends.cpp import kernels, loader

    if loader.C is None:
        yield None
        return
    proxy = _CountingProxy(loader.C)
    saved = kernels.C
    kernels.C = proxy
    try:
        yield proxy
    finally:
        kernels.C = saved


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silences file descriptor 2: the profiler's C++ side logs every start and stop there."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def count_launches(fn: Callable[[], object], device: torch.device) -> int:
    """Kernel launches of one call. CUDA: kernels the profiler records on the device (copies
    and memsets not counted; never run yet: no GPU was lent while this was written). CPU:
    top-level torch ops the profiler records plus calls into the C++ extension (a CPU
    ``_foreach_*`` op counts once though it loops over the tensors inside)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    synchronize(device)
    with (
        _quiet_stderr(),
        _count_extension_calls() as proxy,
        torch.profiler.profile(activities=activities) as prof,
    ):
        fn()
        synchronize(device)
    events = prof.events()
    if device.type == "cuda":
        # device activities are kernels, memcpys and memsets; count the kernels
        return sum(
            1
            for e in events
            if e.device_type == torch.autograd.DeviceType.CUDA
            and not e.name.startswith(("Memcpy", "Memset"))
        )
    top_level = sum(
        1 for e in events if e.cpu_parent is None and e.device_type == torch.autograd.DeviceType.CPU
    )
    return top_level + (proxy.calls if proxy is not None else 0)


def peak_extra_mib(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory above the level at the call's start, MiB: CUDA allocated bytes, or on the
    CPU live tensor bytes op by op (``TensorMemoryMeter``). The caller collects garbage
    between cases, not here (it costs ~0.1 s a call)."""
    with PeakMemory(device, collect=False) as peak:
        fn()
        synchronize(device)
    return peak.peak_mib


def memory_method(device: torch.device) -> str:
    return (
        "CUDA max_memory_allocated above the start"
        if device.type == "cuda"
        else "peak live tensor bytes above the start, op by op (TensorMemoryMeter)"
    )
