"""Record the balancedness of a LoRA model's adapter pairs, step by step (the BAR paper's
central observation: SAM drives ``B = (||x||^2 - ||y||^2) / 2`` toward 0, SGD and AdamW leave
it where it is)."""

from __future__ import annotations

import torch
from torch import nn

from slsam_kernels import lora_pairs

from .arms import Observer


class BalanceRecorder:
    """Mean ``|B|`` over LoRA ``pairs``, recorded before each step (when called)."""

    def __init__(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.pairs = pairs
        self.values: list[float] = []

    @torch.no_grad()
    def __call__(self, optimizer: torch.optim.Optimizer) -> None:
        values = [
            (x.float().square().sum() - y.float().square().sum()).abs() / 2 for x, y in self.pairs
        ]
        self.values.append(float(torch.stack(values).mean()))


def balance_recorders(sink: list[BalanceRecorder]) -> Observer:
    """A ``train_and_test`` observer factory: a recorder for LoRA models (appended to
    ``sink``), nothing for others."""

    def observer(model: nn.Module, optimizer: torch.optim.Optimizer):
        # every pair, trainable or not: SL-SAM freezes its inactive adapters between steps
        pairs = lora_pairs(model, trainable_only=False)
        if not pairs:
            return None
        recorder = BalanceRecorder(pairs)
        sink.append(recorder)
        return recorder

    return observer
