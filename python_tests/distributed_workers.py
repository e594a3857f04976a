"""What each spawned rank runs: every scenario in one launch (starting processes costs more
than the training), each scenario's result saved per rank as soon as it is known, so that a
rank that crashes fails only the tests of the scenarios it did not finish."""

from __future__ import annotations

import os
import resource

import torch
import torch.distributed as dist
from distributed_testing import batches, full_weights, make_model, save_result, shard, train
from torch.nn.parallel import DistributedDataParallel as DDP

from slsam_kernels.optim import BAR, RST, SAM, SLSAM, arms_by_module

DDP_SCENARIOS = {
    "sam_adamw": lambda params: SAM(params, torch.optim.AdamW, rho=0.05, lr=0.01),
    "slsam_sgd": lambda params: SLSAM(
        params, torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9, seed=3, bandit_lr=0.5
    ),
    "slsam_unseeded": lambda params: SLSAM(params, torch.optim.SGD, lr=0.1),
    # Different seeds per rank: the first rank's draws are broadcast, so the run is the
    # single process's with seed 0.
    "slsam_seed_per_rank": lambda params: SLSAM(
        params,
        torch.optim.SGD,
        lr=0.1,
        bandit_lr=0.5,
        seed=dist.get_rank() if dist.is_initialized() else 0,
    ),
}


def _bar_pairs(params) -> list:
    """Make_model's (w2, w0) factor pair and its (b0, b2) vector pair."""
    w0, b0, w2, b2, *_ = params
    return [(w2, w0), (b0, b2)]


DDP_SCENARIOS["bar_nbar_adamw"] = lambda params: BAR(
    (ps := list(params)), torch.optim.AdamW, _bar_pairs(ps), mu=2.0, lr=0.05
)
PER_RANK_SCENARIOS = {
    "sam_per_rank": lambda params: SAM(params, torch.optim.SGD, rho=0.5, lr=0.1, ascent="per_rank"),
    "slsam_per_rank": lambda params: SLSAM(
        params, torch.optim.SGD, lr=0.1, seed=3, bandit_lr=0.5, ascent="per_rank"
    ),
}


FSDP_SCENARIOS = {
    "sam_adamw": lambda model: SAM(model.parameters(), torch.optim.AdamW, lr=0.01),
    "asam_clipped": lambda model: SAM(
        model.parameters(), torch.optim.SGD, rho=0.5, adaptive=True, max_grad_norm=0.05, lr=0.1
    ),
    "slsam_tensor_arms": lambda model: SLSAM(
        model.parameters(), torch.optim.SGD, lr=0.1, seed=3, bandit_lr=0.5
    ),
    "slsam_module_arms": lambda model: SLSAM(
        model.parameters(),
        torch.optim.SGD,
        lr=0.1,
        seed=3,
        bandit_lr=0.5,
        arms=arms_by_module(model),
    ),
    # oBAR: the weight norms that decide are summed over the shards
    "bar_obar_sgd": lambda model: BAR(
        (ps := list(model.parameters())),
        torch.optim.SGD,
        _bar_pairs(ps),
        mu=2.0,
        variant="obar",
        lr=0.1,
        momentum=0.9,
    ),
}


def _record(model: torch.nn.Module, opt: torch.optim.Optimizer, masks: list) -> dict:
    out = {"weights": full_weights(model), "masks": masks}
    if isinstance(opt, SLSAM):
        out["probs"] = opt.probs
        out["generator"] = opt.state_dict()["sharpness_aware"]["generator"]
    return out


def ddp_worker(rank: int, out_dir: str) -> None:
    data = [shard(b, rank) for b in batches()]
    for name, build in {**DDP_SCENARIOS, **PER_RANK_SCENARIOS}.items():
        model = make_model()
        # find_unused_parameters: SL-SAM's inactive tensors get no gradient.
        ddp = DDP(model, find_unused_parameters="slsam" in name)
        try:
            opt = build(ddp.parameters())
            per_rank = name in PER_RANK_SCENARIOS
            masks = train(ddp, opt, data, ascent_model=ddp if per_rank else None)
            result = _record(model, opt, masks)
        except Exception as error:  # fails this scenario's tests only
            result = {"error": f"{type(error).__name__}: {error}"}
        save_result(out_dir, rank, name, result)
    save_result(out_dir, rank, "default_ddp_error", _default_ddp_error(data))
    unseeded_rst = RST(make_model().parameters(), torch.optim.SGD, lr=0.1)
    generator = unseeded_rst.state_dict()["sharpness_aware"]["generator"]
    save_result(out_dir, rank, "rst_generator", generator)
    unwrapped_first_pass_error = _error_of(
        lambda: (
            SAM(make_model().parameters(), torch.optim.SGD, lr=0.1, ascent="per_rank")
            .first_pass(make_model())
            .__enter__()
        )
    )
    save_result(out_dir, rank, "unwrapped_first_pass_error", unwrapped_first_pass_error)


def _error_of(call) -> str:
    try:
        call()
    except (TypeError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return ""


def _default_ddp_error(data: list) -> str:
    """What plain DDP (no find_unused_parameters) says when SL-SAM freezes tensors."""
    ddp = DDP(make_model())
    opt = SLSAM(ddp.parameters(), torch.optim.SGD, lr=0.1, seed=3)
    try:
        train(ddp, opt, data)
    except RuntimeError as error:
        return str(error)
    return ""


def fsdp_worker(rank: int, out_dir: str) -> None:
    from torch.distributed.fsdp import fully_shard

    data = [shard(b, rank) for b in batches()]
    for name, build in FSDP_SCENARIOS.items():
        model = make_model()
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer)
        fully_shard(model)
        opt = build(model)
        try:
            masks = train(model, opt, data)
            result = _record(model, opt, masks)
        except Exception as error:  # the test shows what FSDP2 said
            result = {"error": f"{type(error).__name__}: {error}"}
        save_result(out_dir, rank, name, result)
    per_rank_error = _error_of(
        lambda: SAM(model.parameters(), torch.optim.SGD, lr=0.1, ascent="per_rank")
    )
    save_result(out_dir, rank, "per_rank_error", per_rank_error)


def crash_worker(rank: int, out_dir: str) -> None:
    """Saves one result, then the second rank aborts before saving the next."""
    save_result(out_dir, rank, "before", rank)
    dist.barrier()
    if rank == 1:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file left in the checkout
        os.abort()
    save_result(out_dir, rank, "after", rank)
