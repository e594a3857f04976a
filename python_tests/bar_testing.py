"""A LoRA-shaped model for the BAR tests and the rules of BAR written out by hand."""

from __future__ import annotations

import math

import torch


class LoraNet(torch.nn.Module):
    """Two frozen linear layers with trainable LoRA pairs ``x @ y`` of odd sizes, and a
    trainable bias in no pair."""

    def __init__(self, dtype: torch.dtype = torch.float32, rank: int = 3) -> None:
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.randn(11, 7, dtype=dtype), requires_grad=False)
        self.w2 = torch.nn.Parameter(torch.randn(5, 11, dtype=dtype), requires_grad=False)
        # unbalanced on purpose: x twice y's scale, as LoRA's initialisation leaves pairs
        self.x1 = torch.nn.Parameter(2 * torch.randn(11, rank, dtype=dtype))
        self.y1 = torch.nn.Parameter(torch.randn(rank, 7, dtype=dtype))
        self.x2 = torch.nn.Parameter(0.5 * torch.randn(5, rank, dtype=dtype))
        self.y2 = torch.nn.Parameter(torch.randn(rank, 11, dtype=dtype))
        self.bias = torch.nn.Parameter(torch.randn(5, dtype=dtype))

    def pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(self.x1, self.y1), (self.x2, self.y2)]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(inputs @ (self.w1 + self.x1 @ self.y1).T)
        return h @ (self.w2 + self.x2 @ self.y2).T + self.bias


def make_lora_net(seed: int = 0, dtype: torch.dtype = torch.float32) -> LoraNet:
    torch.manual_seed(seed)
    return LoraNet(dtype)


def lora_batches(count: int, seed: int = 1, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 7, generator=gen).to(dtype), torch.randn(8, 5, generator=gen).to(dtype))
        for _ in range(count)
    ]


def lora_loss(model: torch.nn.Module, batch) -> torch.Tensor:
    inputs, target = batch
    return torch.nn.functional.mse_loss(model(inputs).float(), target.float())


def schedule_value(name: str, t: int, total: int) -> float:
    """The issue's formulas, independent of slsam_kernels.schedules."""
    if name == "constant":
        return 1.0
    if name == "linear":
        return 1 - t / total
    return (1 + math.cos(math.pi * t / total)) / 2


def rescale_by_hand(pairs, variant: str, a: float, lr: float) -> None:
    """The paper's Algorithms 2 (nBAR) and 3 (oBAR) for one step, on each pair in place."""
    for x, y in pairs:
        if variant == "nbar":
            first = x.grad.norm() >= y.grad.norm()
            up, down = (x, y) if first else (y, x)
        else:
            first = x.norm() >= y.norm()
            up, down = (y, x) if first else (x, y)
        up.mul_(1 + a * lr)
        down.mul_(1 - a * lr)


def balancedness(pairs) -> float:
    """Mean ``|B| = |(||x||^2 - ||y||^2) / 2|`` over the pairs."""
    values = [
        abs(x.detach().float().norm() ** 2 - y.detach().float().norm() ** 2) / 2 for x, y in pairs
    ]
    return float(sum(values) / len(values))
