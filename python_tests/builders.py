"""Test builders: a small model with tensors of several shapes, a loss on random data, and
snapshots of parameters and optimizer state."""

from __future__ import annotations

import copy

import torch


class TinyNet(torch.nn.Module):
    """Seven parameter tensors of different shapes (weights, biases, an embedding-like table)."""

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.randn(5, dtype=dtype))
        self.fc1 = torch.nn.Linear(5, 13, dtype=dtype)
        self.fc2 = torch.nn.Linear(13, 7, dtype=dtype)
        self.fc3 = torch.nn.Linear(7, 3, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale
        return self.fc3(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


def make_model(seed: int = 0, dtype: torch.dtype = torch.float32) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(dtype)


def make_batches(count: int, seed: int = 1, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(16, 5, generator=gen).to(dtype), torch.randint(0, 3, (16,), generator=gen))
        for _ in range(count)
    ]


def loss_of(model: torch.nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x).float(), y)


def train(model, opt, batches) -> None:
    """The davda54-style loop: backward, step(closure), zero_grad."""
    for batch in batches:
        loss_of(model, batch).backward()
        opt.step(lambda batch=batch: loss_of(model, batch).backward())
        opt.zero_grad()


def snapshot(model: torch.nn.Module, opt: torch.optim.Optimizer | None = None):
    """Deep copies of the parameters and of every optimizer state buffer."""
    params = [p.detach().clone() for p in model.parameters()]
    state = copy.deepcopy(opt.state_dict()["state"]) if opt is not None else None
    return params, state


def assert_states_equal(a, b) -> None:
    """Every state buffer of two optimizer state dicts is bit-identical."""
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            torch.testing.assert_close(a[key][name], b[key][name], rtol=0, atol=0)
