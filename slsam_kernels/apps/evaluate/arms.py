"""Record which SL-SAM arms (parameter tensors) the bandit samples, step by step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from slsam_kernels import SLSAM
from slsam_kernels.apps.demo.train import StepObserver

#: A ``train_and_test`` observer: given the model and optimizer, the per-step callback or None.
Observer = Callable[[nn.Module, torch.optim.Optimizer], StepObserver | None]


class ArmRecorder:
    """Counts how often each arm of an :class:`SLSAM` is active, overall and per window.

    Call the instance with the optimizer before each step (its active set is then the
    step's). Arms are named after the model's parameters (several names joined by ``+``
    when an arm groups tensors).
    """

    def __init__(self, model: nn.Module, optimizer: SLSAM, steps: int, windows: int):
        if steps < 1 or windows < 1:
            raise ValueError(f"steps and windows must be positive, got {steps} and {windows}")
        names = {id(p): name for name, p in model.named_parameters()}
        arms = [arm if isinstance(arm, tuple) else (arm,) for arm in optimizer.arms]
        self.names = ["+".join(names.get(id(p), "?") for p in arm) for arm in arms]
        self.numels = [sum(p.numel() for p in arm) for arm in arms]
        self.steps = steps
        self.windows = min(windows, steps)
        self.window_counts = torch.zeros(self.windows, len(arms), dtype=torch.long)
        self.active_per_step: list[int] = []
        self._optimizer = optimizer

    def __call__(self, optimizer: torch.optim.Optimizer) -> None:
        if optimizer is not self._optimizer:
            raise ValueError("ArmRecorder was built for another optimizer")
        step = len(self.active_per_step)
        if step >= self.steps:
            raise ValueError(f"more than the {self.steps} steps this recorder was built for")
        mask = self._optimizer.active_mask
        self.window_counts[step * self.windows // self.steps] += mask.long()
        self.active_per_step.append(int(mask.sum()))

    @property
    def counts(self) -> torch.Tensor:
        """How many recorded steps each arm was active in."""
        return self.window_counts.sum(0)

    def summary(self) -> dict[str, Any]:
        """JSON-ready record: names, sizes, counts, per-window counts and the final probs."""
        return {
            "names": self.names,
            "numels": self.numels,
            "steps": len(self.active_per_step),
            "windows": self.windows,
            "counts": self.counts.tolist(),
            "window_counts": self.window_counts.tolist(),
            "active_per_step": self.active_per_step,
            "final_probs": [round(p, 6) for p in self._optimizer.probs.tolist()],
        }


def arm_recorders(steps: int, windows: int, sink: list[ArmRecorder]) -> Observer:
    """A ``train_and_test`` observer factory: a recorder for SL-SAM runs (appended to
    ``sink``), nothing for other optimizers."""

    def observer(model: nn.Module, optimizer: torch.optim.Optimizer):
        if not isinstance(optimizer, SLSAM):
            return None
        recorder = ArmRecorder(model, optimizer, steps, windows)
        sink.append(recorder)
        return recorder

    return observer


def all_of(*observers: Observer) -> Observer:
    """One observer that runs every given one's callback before each step."""

    def observer(model: nn.Module, optimizer: torch.optim.Optimizer):
        callbacks = [c for c in (o(model, optimizer) for o in observers) if c is not None]
        if not callbacks:
            return None

        def each(opt: torch.optim.Optimizer) -> None:
            for callback in callbacks:
                callback(opt)

        return each

    return observer
