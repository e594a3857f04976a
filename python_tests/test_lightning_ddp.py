"""Lightning's DDP strategy with two gloo processes on the CPU: SL-SAM with accumulation and
clipping on both ranks equals one process stepping on the whole batch (global ascent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

try:
    import lightning.pytorch  # noqa: F401
except ImportError:
    pytest.importorskip(
        "pytorch_lightning", reason="needs Lightning: pip install 'slsam_kernels[lightning]'"
    )

from distributed_testing import free_port
from lightning_ddp_worker import ACCUMULATION, CLIP, WORLD, build
from lightning_testing import MICRO, dataset, large_batches, reference

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

WORKER = Path(__file__).with_name("lightning_ddp_worker.py")
TIMEOUT_S = 120


def launch(out: Path) -> None:
    """Both ranks in one new process group, killed together if they outlive TIMEOUT_S."""
    root = str(WORKER.parents[1])  # this checkout's slsam_kernels, not another install
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    env.update(WORLD_SIZE=str(WORLD), NODE_RANK="0")
    procs = []
    try:
        for rank in range(WORLD):
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER), str(out)],
                    env={**env, "LOCAL_RANK": str(rank), "RANK": str(rank)},
                    process_group=0 if rank == 0 else procs[0].pid,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            )
        for proc in procs:
            output = proc.communicate(timeout=TIMEOUT_S)[0].decode(errors="replace")
            assert proc.returncode == 0, output[-3000:]
    except subprocess.TimeoutExpired:
        os.killpg(procs[0].pid, signal.SIGKILL)
        raise
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(procs[0].pid, signal.SIGKILL)
                break


def test_two_gloo_ranks_equal_one_process_with_the_whole_batch(tmp_path):
    launch(tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    expected = reference(
        build,
        large_batches(dataset(), WORLD * ACCUMULATION * MICRO),
        max_grad_norm=CLIP,
    )
    for a, b, c in zip(ranks[0], ranks[1], expected.parameters()):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
