"""What a training step's peak tensor memory (CPU) is made of: weights, gradients, weight
backups, optimizer state, saved activations and the rest."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

import torch

from .tensor_memory import TensorMemoryMeter

#: The parts, in the order a storage is given to the first that claims it (a davda54/sam
#: backup becomes the weights at the restore, so backups come first).
PARTS = (
    "weight backups",
    "weights",
    "optimizer state",
    "gradients",
    "saved activations",
    "other, live at start",
    "other, new (temporaries, outputs, inputs)",
)
_MIB = 2**20


BACKUP_KEYS = ("old_p",)  # the per-parameter state key of davda54/sam-style backups


def backup_buffers(optimizer: Any) -> list[torch.Tensor]:
    """The optimizer's shared weight-backup buffers (``backup_buffers``), if it has any."""
    return list(getattr(optimizer, "backup_buffers", ()))


class MemoryBreakdown:
    """Context manager around one or more steps: after the block, ``parts`` maps each of
    :data:`PARTS` to its bytes at the peak, and ``meter`` holds the peak figures.

    A storage's part is the first of :data:`PARTS` it ever served as during the block:
    ``optimizer``'s backups (:func:`backup_buffers`, or per-parameter state under
    :data:`BACKUP_KEYS`), ``params``' data, the other state, a gradient accumulated into a
    parameter, or a tensor autograd saved for the backward (``saved_tensors_hooks``); the
    rest is split by whether it was live at entry. Gradients (and a tensor's state) are seen
    as they are accumulated into tensors that require grad at entry, and at entry and exit."""

    def __init__(self, params: Iterable[torch.Tensor], optimizer: Any) -> None:
        self.params = list(params)
        self.optimizer = optimizer
        self.meter = TensorMemoryMeter(snapshot=True)
        self.parts: dict[str, int] = dict.fromkeys(PARTS, 0)
        self._labels: dict[int, set[str]] = {}
        self._handles: list[Any] = []
        # a wrapper's own state and its base optimizer's, where they are not one dict
        holders = (optimizer, getattr(optimizer, "base_optimizer", None))
        states = [getattr(h, "state", None) for h in holders]
        self._states = [
            s for i, s in enumerate(states) if s is not None and all(s is not t for t in states[:i])
        ]
        self._saved_hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda x: x)

    def _label(self, tensor: torch.Tensor | None, part: str) -> None:
        entry = None if tensor is None else self.meter.entry_of(tensor)
        if entry is not None:
            self._labels.setdefault(entry, set()).add(part)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self._label(tensor, "saved activations")
        return tensor

    def _label_param(self, p: torch.Tensor) -> None:
        self._label(p, "weights")
        self._label(p.grad, "gradients")
        for state in self._states:
            for key, value in state.get(p, {}).items():
                if not isinstance(value, torch.Tensor):
                    continue
                if key not in BACKUP_KEYS:
                    self._label(value, "optimizer state")
                elif value.untyped_storage()._cdata != p.untyped_storage()._cdata:
                    # a davda54/sam backup turns into the weights at the restore
                    self._label(value, "weight backups")

    def _label_holders(self) -> None:
        for p in self.params:
            self._label_param(p)
        for t in backup_buffers(self.optimizer):
            self._label(t, "weight backups")

    def __enter__(self) -> MemoryBreakdown:
        self.meter.__enter__()
        start = set(self.meter.peak_sizes)
        self._start = start
        self._label_holders()
        for p in filter(lambda p: p.requires_grad, self.params):
            self._handles.append(p.register_post_accumulate_grad_hook(self._label_param))
        self._saved_hooks.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._saved_hooks.__exit__(exc_type, exc, traceback)
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._label_holders()
        self.meter.__exit__(exc_type, exc, traceback)
        for entry, nbytes in self.meter.peak_sizes.items():
            self.parts[self._part_of(entry)] += nbytes

    def _part_of(self, entry: int) -> str:
        labels = self._labels.get(entry, ())
        for part in PARTS[:5]:
            if part in labels:
                return part
        return PARTS[5] if entry in self._start else PARTS[6]

    def table_row(self) -> dict[str, float]:
        """MiB per part, the total peak and the peak above the start."""
        row = {part: nbytes / _MIB for part, nbytes in self.parts.items()}
        row["peak"] = self.meter.peak_mib
        row["peak above start"] = self.meter.peak_above_start_mib
        return row
