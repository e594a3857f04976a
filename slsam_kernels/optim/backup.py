"""Reused backup storage for the tensors a step perturbs."""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Slices start on 64-byte boundaries so vectorised kernels can use aligned loads.
_ALIGN_BYTES = 64


class BackupArena:
    """One flat buffer per (device, dtype), grown only when a step needs more than it holds.

    ``views(params)`` hands out one backup view per parameter. Memory follows the largest
    set of tensors perturbed so far (the active subset for SL-SAM), never the whole model
    unless the whole model was perturbed, and no step allocates once capacity suffices.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def views(self, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Return a backup view shaped like each parameter, in order."""
        offsets: list[int] = []
        needed: dict[tuple[torch.device, torch.dtype], int] = {}
        for p in params:
            key = (p.device, p.dtype)
            align = max(1, _ALIGN_BYTES // p.element_size())
            start = -(-needed.get(key, 0) // align) * align
            offsets.append(start)
            needed[key] = start + p.numel()
        for key, numel in needed.items():
            buffer = self._buffers.get(key)
            if buffer is None or buffer.numel() < numel:
                self._buffers[key] = torch.empty(numel, dtype=key[1], device=key[0])
        return [
            self._buffers[(p.device, p.dtype)][start : start + p.numel()].view_as(p)
            for p, start in zip(params, offsets, strict=True)
        ]

    @property
    def buffers(self) -> list[torch.Tensor]:
        """The flat backup buffers, one per (device, dtype)."""
        return list(self._buffers.values())

    @property
    def nbytes(self) -> int:
        """Bytes held by the backup buffers."""
        return sum(b.numel() * b.element_size() for b in self._buffers.values())
