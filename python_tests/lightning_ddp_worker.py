"""One rank of the Lightning DDP test (launched twice by test_lightning_ddp.py, with LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT set): SL-SAM with accumulation and clipping on gloo,
each rank on its own slice of every large batch; writes its weights to OUT/rank{r}.pt."""

from __future__ import annotations

import os
import sys
import warnings

import torch
from lightning_testing import LitNet, dataset, loader, trainer

from slsam_kernels import SLSAM

ACCUMULATION, CLIP, WORLD = 2, 0.05, 2
SGD = {"lr": 0.1, "momentum": 0.9}


def build(params):
    return SLSAM(params, torch.optim.SGD, sample_ratio=0.5, seed=0, **SGD)


def rank_rows(rank: int, micro: int = 4) -> torch.utils.data.Subset:
    """Rank r's micro-batches: the r-th share of each large batch of
    ``WORLD * ACCUMULATION * micro`` rows, its micro-batches in order."""
    data = dataset()
    per_step = WORLD * ACCUMULATION * micro
    rows = [
        start + rank * ACCUMULATION * micro + i
        for start in range(0, len(data), per_step)
        for i in range(ACCUMULATION * micro)
    ]
    return torch.utils.data.Subset(data, rows)


def main(out: str) -> None:
    warnings.simplefilter("ignore")
    rank = int(os.environ["LOCAL_RANK"])
    module = LitNet(build)
    fit = trainer(
        devices=WORLD,
        strategy="ddp_find_unused_parameters_true",  # SL-SAM: inactive arms get no gradient
        accumulate_grad_batches=ACCUMULATION,
        gradient_clip_val=CLIP,
        use_distributed_sampler=False,
    )
    fit.fit(module, loader(rank_rows(rank)))
    torch.save([p.detach() for p in module.net.parameters()], os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
