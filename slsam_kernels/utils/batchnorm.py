"""BatchNorm running statistics from the first pass only (davda54/sam issue #17)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.nn.modules.batchnorm import _BatchNorm


@contextmanager
def frozen_bn_stats(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block, BatchNorm layers in training mode normalise with the batch's own
    statistics (as they do in the first pass) but leave ``running_mean``, ``running_var``
    and ``num_batches_tracked`` alone. Wrap the second pass in it, so the perturbed weights
    never leak into the running statistics::

        def closure():
            with frozen_bn_stats(model):
                loss_fn(model(x), y).backward()
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"frozen_bn_stats() takes an nn.Module, got {type(model).__name__}")
    # track_running_stats=False in training mode is exactly "batch statistics, no update";
    # momentum=0 (davda54's recipe) would still count num_batches_tracked.
    tracking = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    for module in tracking:
        module.track_running_stats = False
    try:
        yield
    finally:
        for module in tracking:
            module.track_running_stats = True
