"""One rank of test_accelerate.py's two-process run (gloo on the CPU): every scenario's
accelerate loop, with the accumulation and the data loader's sharding, saved to
``<out>/rank<r>.pt``. Launched by ``accelerate_testing.launch_ranks``."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from accelerate_testing import LARGE, accelerate_loop, dataset
from builders import loss_of, make_model

from slsam_kernels import RST, SAM, SLSAM
from slsam_kernels.integrations.accelerate import SAMWindow

WORLD = 2
ACCUMULATION = 2
MICRO_BATCH = LARGE // (WORLD * ACCUMULATION)  # the ranks' micro-batches make up LARGE
SCENARIOS = {
    "sam_adamw": lambda ps: SAM(ps, torch.optim.AdamW, lr=1e-2),
    "slsam_sgd_clipped": lambda ps: SLSAM(ps, torch.optim.SGD, lr=0.5, seed=0, max_grad_norm=0.2),
    "rst_adamw": lambda ps: RST(ps, torch.optim.AdamW, lr=1e-2, seed=0),
}


def one_call_prepare_error(accelerator: Accelerator, optimizer: type) -> str:
    """``accelerator.prepare(model, optimizer)`` in one call (DDP built after the optimizer):
    what SAMWindow raises, or ``""``."""
    model = make_model()
    opt = optimizer(model.parameters(), torch.optim.SGD, lr=0.1)
    model, opt = accelerator.prepare(model, opt)
    try:
        SAMWindow(accelerator, model, lambda batch: loss_of(model, batch))
    except ValueError as error:
        return str(error)
    finally:
        accelerator.free_memory()
    return ""


def main(out: Path) -> None:
    accelerator = Accelerator(
        cpu=True,
        gradient_accumulation_steps=ACCUMULATION,
        # SL-SAM's inactive tensors get no gradient.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    assert accelerator.num_processes == WORLD, accelerator.state
    results = {}
    for name, build in SCENARIOS.items():
        run = accelerate_loop(accelerator, build, dataset(), MICRO_BATCH)
        results[name] = {"weights": run["weights"], "changed": run["changed"]}
        del run
        accelerator.free_memory()  # drops the DDP model before the next scenario
    for optimizer in (SAM, SLSAM):
        results[f"{optimizer.__name__}_one_call_error"] = one_call_prepare_error(
            accelerator, optimizer
        )
    torch.save(results, out / f"rank{accelerator.process_index}.pt")
    gc.collect()
    accelerator.end_training()  # destroys the process group, with no DDP model left


if __name__ == "__main__":
    main(Path(sys.argv[1]))
