"""Shared by the Lightning tests and their DDP worker: a tiny LightningModule with the mixin,
its data, a quiet CPU Trainer, and the plain two-pass loop over the large batch it must match."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

try:
    import lightning.pytorch as pl
except ImportError:
    import pytorch_lightning as pl

from slsam_kernels.integrations.lightning import SharpnessAwareMixin

MICRO = 4  # rows per micro-batch
ROWS = 32
Build = Callable[[Any], torch.optim.Optimizer]


def make_net(batchnorm: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    norm = [torch.nn.BatchNorm1d(16)] if batchnorm else []
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), *norm, torch.nn.Tanh(), torch.nn.Linear(16, 3)
    )


def dataset(rows: int = ROWS, seed: int = 1) -> torch.utils.data.TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(
        torch.randn(rows, 6, generator=gen), torch.randn(rows, 3, generator=gen)
    )


def loss_of(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(net(x).float(), y)


class LitNet(SharpnessAwareMixin, pl.LightningModule):
    """``build(params)`` makes the optimizer; ``scheduler`` (optional) an LR scheduler
    stepped every optimizer step."""

    def __init__(self, build: Build, scheduler: Callable | None = None, **net: Any) -> None:
        super().__init__()
        self.net = make_net(**net)
        self.build = build
        self.scheduler = scheduler

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = loss_of(self.net, *batch)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> Any:
        opt = self.build(self.parameters())
        if self.scheduler is None:
            return opt
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": self.scheduler(opt), "interval": "step"},
        }


def trainer(**kwargs: Any) -> pl.Trainer:
    """A quiet single-CPU Trainer for one epoch (``kwargs`` override)."""
    options = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return pl.Trainer(**{**options, **kwargs})


def loader(data: torch.utils.data.Dataset, batch_size: int = MICRO) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)


def reference(
    build: Build,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    scheduler: Callable | None = None,
    max_grad_norm: float | None = None,
) -> torch.nn.Module:
    """The plain loop, one large batch per optimizer step, first_step/second_step by hand
    (RST: ``step(closure)``, for its coin)."""
    net = make_net()
    opt = build(net.parameters())
    opt.max_grad_norm = max_grad_norm
    sched = scheduler(opt) if scheduler is not None else None
    for x, y in batches:
        loss_of(net, x, y).backward()
        if hasattr(opt, "sam_prob"):
            opt.step(lambda x=x, y=y: loss_of(net, x, y).backward())
            opt.zero_grad()
        else:
            opt.first_step(zero_grad=True)
            loss_of(net, x, y).backward()
            opt.second_step(zero_grad=True)
        if sched is not None:
            sched.step()
    return net


def large_batches(
    data: torch.utils.data.TensorDataset, rows: int
) -> list[tuple[torch.Tensor, ...]]:
    """``data`` in consecutive batches of ``rows``."""
    x, y = data.tensors
    return list(zip(x.split(rows), y.split(rows), strict=True))
