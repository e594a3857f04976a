"""Peak memory of one training run, measured above the level at its start.

On CUDA: the caching allocator's peak of allocated bytes. On the CPU (Linux): the process's
peak resident set size (``VmHWM``), reset at the start through ``/proc/self/clear_refs``, after
returning freed heap memory to the system so that earlier runs' leftovers are not reused
unseen. Elsewhere the CPU peak is unknown and reported as NaN.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
from pathlib import Path
from types import TracebackType

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_MIB = 2**20


def _status_kib(field: str) -> int:
    """One ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``)."""
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} missing from {_STATUS}")


def _trim_heap() -> None:
    """Hand freed malloc memory back to the system (glibc); a no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


class PeakMemory:
    """Context manager; after the block, ``peak_mib`` is the peak above the level at entry.

    ``collect=False`` skips the garbage collection at entry (about 0.1 s with transformers
    imported), for callers that measure many short calls and collect between them."""

    def __init__(self, device: torch.device, collect: bool = True):
        self.device = device
        self.peak_mib = math.nan
        self._base = 0
        self._collect = collect

    @property
    def description(self) -> str:
        """What ``peak_mib`` measures, for a table header."""
        return "CUDA allocated" if self.device.type == "cuda" else "process RSS"

    def __enter__(self) -> PeakMemory:
        if self._collect:
            gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        _trim_heap()
        try:
            _CLEAR_REFS.write_text("5")  # 5: reset the peak RSS to the current RSS
            self._base = _status_kib("VmRSS") * 1024
        except OSError:
            self._base = -1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self._base >= 0:
            peak = _status_kib("VmHWM") * 1024
        else:
            return
        self.peak_mib = (peak - self._base) / _MIB
