"""SL-SAM under DistributedDataParallel (or FSDP2), on CPU with gloo or on GPUs with NCCL.

torchrun --nproc_per_node 2 examples/ddp_slsam.py                    # DDP, global ascent
torchrun --nproc_per_node 2 examples/ddp_slsam.py --per-rank-ascent  # m-sharpness
torchrun --nproc_per_node 2 examples/ddp_slsam.py --fsdp             # FSDP2
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel as DDP

from slsam_kernels.optim import SLSAM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--per-rank-ascent", action="store_true")
    parser.add_argument("--fsdp", action="store_true")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    train(args, cuda)
    # Only once train()'s DDP model is gone. Its reducer holds the process group too; had it
    # dropped the last reference, it would destroy the group holding the GIL and wait for
    # gloo's worker thread, which needs the GIL to free the last collective's tensors: a
    # deadlock at exit. Dropped here, the group is destroyed with the GIL released.
    dist.destroy_process_group()


def train(args: argparse.Namespace, cuda: bool) -> None:
    rank = dist.get_rank()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    torch.manual_seed(0)  # the same initial weights on every rank
    model = torch.nn.Sequential(
        torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 64), torch.nn.GELU(),
        torch.nn.Linear(64, 1),
    ).to(device)  # fmt: skip

    if args.fsdp:
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer)
        wrapped = fully_shard(model)
    else:
        # Wrap before building SLSAM (DDP only syncs tensors that require grad when it is
        # built); find_unused_parameters because inactive tensors get no gradient.
        wrapped = DDP(model, find_unused_parameters=True)
    opt = SLSAM(
        wrapped.parameters(),
        torch.optim.AdamW,
        lr=1e-3,
        rho=0.05,
        sample_ratio=0.5,
        seed=0,
        ascent="per_rank" if args.per_rank_ascent else "global",
    )

    data = torch.Generator().manual_seed(1 + rank)  # each rank its own slice of the data
    for step in range(args.steps):
        x = torch.randn(16, 32, generator=data).to(device)
        y = x[:, :1].sin()
        with opt.first_pass(wrapped):  # no_sync() with ascent="per_rank"
            torch.nn.functional.mse_loss(wrapped(x), y).backward()
        opt.first_step(zero_grad=True)
        loss = torch.nn.functional.mse_loss(wrapped(x), y)
        loss.backward()
        opt.second_step(zero_grad=True)
        if rank == 0 and step % 5 == 0:
            print(f"step {step:3d}  loss {loss.item():.4f}  active {opt.active_mask.tolist()}")


if __name__ == "__main__":
    main()
