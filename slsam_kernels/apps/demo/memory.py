"""Peak memory of one training run, measured above the level at its start.

On CUDA: the caching allocator's peak of allocated bytes. On the CPU: the peak of live tensor
bytes, op by op (:class:`slsam_kernels.apps.measure.tensor_memory.TensorMemoryMeter`); the process
RSS, which moves in allocator-sized steps and keeps freed memory, is not used.
"""

from __future__ import annotations

import gc
import math
from types import TracebackType

import torch

from ..measure.tensor_memory import TensorMemoryMeter

_MIB = 2**20


class PeakMemory:
    """Context manager; after the block, ``peak_mib`` is the peak above the level at entry,
    and ``start_bytes``/``peak_bytes`` the absolute levels (so that blocks measured apart can
    be compared against one start: :meth:`peak_above_mib`).

    ``collect=False`` skips the garbage collection at entry (about 0.1 s with transformers
    imported), for callers that measure many short calls and collect between them."""

    def __init__(self, device: torch.device, collect: bool = True):
        self.device = device
        self.peak_mib = math.nan
        self.start_bytes = 0
        self.peak_bytes = 0
        self._collect = collect
        self._meter: TensorMemoryMeter | None = None

    @property
    def description(self) -> str:
        """What ``peak_mib`` measures, for a table header."""
        return "CUDA allocated" if self.device.type == "cuda" else "live tensor bytes"

    def __enter__(self) -> PeakMemory:
        if self._collect:
            gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_bytes = torch.cuda.memory_allocated(self.device)
            return self
        self._meter = TensorMemoryMeter()
        self._meter.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._meter is not None:
            self._meter.__exit__(exc_type, exc, traceback)
            self.start_bytes, self.peak_bytes = self._meter.start_bytes, self._meter.peak_bytes
            self._meter = None
        else:
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        self.peak_mib = self.peak_above_mib(self.start_bytes)

    def peak_above_mib(self, start_bytes: int) -> float:
        """This block's peak above ``start_bytes`` (another block's start), in MiB."""
        return (self.peak_bytes - start_bytes) / _MIB
