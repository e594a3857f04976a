"""DDP and FSDP2 on two gloo ranks over loopback against one process with the whole batch.

Each launch runs every scenario once (module fixtures); a launch is bounded in time and its
ranks exit by themselves. A rank that crashes fails the tests of the scenarios it left
without a result, and the launch's own exit test."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from slsam_kernels.optim import SAM, SLSAM

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(not dist.is_available(), reason="torch was built without torch.distributed"),
]

if dist.is_available():
    import distributed_workers as workers
    from distributed_testing import (
        Launch,
        batches,
        full_weights,
        load_results,
        loss_of,
        make_model,
        spawn,
        train,
    )

TOL = dict(rtol=1e-5, atol=1e-6)
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_RUNS = 5
EXAMPLE_TIMEOUT_S = 120


@dataclass
class Ranks:
    """One launch of a worker: where its ranks saved their results, and how they ended."""

    out_dir: str
    launch: Launch

    def __getitem__(self, name: str) -> list:
        """Scenario ``name``'s result on every rank (a rank that left none fails the test)."""
        return load_results(self.out_dir, name, self.launch)


def _launch(worker, tmp_path_factory) -> Ranks:
    out = str(tmp_path_factory.mktemp(worker.__name__))
    return Ranks(out, spawn(worker, out, timeout_s=120))


@pytest.fixture(scope="module")
def ddp_ranks(tmp_path_factory) -> Ranks:
    return _launch(workers.ddp_worker, tmp_path_factory)


@pytest.fixture(scope="module")
def fsdp_ranks(tmp_path_factory) -> Ranks:
    return _launch(workers.fsdp_worker, tmp_path_factory)


@pytest.mark.parametrize("launch", ["ddp_ranks", "fsdp_ranks"])
def test_every_rank_exits_cleanly(launch, request):
    """Both ranks return and exit with 0, the process group torn down (no abort at exit)."""
    ranks = request.getfixturevalue(launch)
    assert ranks.launch.clean, f"exit codes {ranks.launch.exitcodes}: {ranks.launch.error}"


def test_a_rank_that_aborts_fails_only_the_results_it_did_not_save(tmp_path):
    launch = spawn(workers.crash_worker, str(tmp_path), timeout_s=60)
    assert not launch.clean
    assert launch.exitcodes[1] == -signal.SIGABRT, launch
    assert load_results(str(tmp_path), "before", launch) == [0, 1]
    with pytest.raises(AssertionError, match=r"no result .*\(exit codes"):
        load_results(str(tmp_path), "after", launch)


def _single_process(build, model=None) -> dict:
    model = make_model() if model is None else model
    opt = build(model)
    masks = train(model, opt, batches())
    return {"weights": full_weights(model), "masks": masks, "opt": opt}


def _successful(ranks: Ranks, name: str) -> list[dict]:
    """Scenario ``name``'s results, checked free of errors on every rank."""
    results = ranks[name]
    for rank, result in enumerate(results):
        assert "error" not in result, f"rank {rank}: {result['error']}"
    return results


def _assert_same_run(ranks: Ranks, name: str, reference: dict) -> None:
    initial = full_weights(make_model())
    for result in _successful(ranks, name):
        for got, want in zip(result["weights"], reference["weights"]):
            torch.testing.assert_close(got, want, **TOL)
        assert any(not torch.equal(w, b) for w, b in zip(result["weights"], initial))
        for got, want in zip(result["masks"], reference["masks"]):
            assert torch.equal(got, want)


@pytest.mark.parametrize(
    "name", ["sam_adamw", "slsam_sgd", "slsam_seed_per_rank", "bar_nbar_adamw"]
)
def test_ddp_two_ranks_equal_one_rank_with_the_whole_batch(ddp_ranks, name):
    build = workers.DDP_SCENARIOS[name]
    _assert_same_run(ddp_ranks, name, _single_process(lambda m: build(m.parameters())))


def test_ddp_unseeded_slsam_ranks_share_the_seed_and_the_masks(ddp_ranks):
    first, second = _successful(ddp_ranks, "slsam_unseeded")
    assert torch.equal(first["generator"], second["generator"])
    assert torch.equal(*ddp_ranks["rst_generator"])
    assert all(torch.equal(a, b) for a, b in zip(first["masks"], second["masks"]))
    assert any(not torch.equal(first["masks"][0], m) for m in first["masks"][1:])


def test_ddp_per_rank_sam_ascends_on_each_ranks_own_gradient(ddp_ranks):
    """m-sharpness: each rank perturbs along its own normalised gradient, the descent
    gradients (taken at the two perturbed points) are averaged."""
    model, rho, lr = make_model(), 0.5, 0.1
    params = list(model.parameters())
    for whole in batches():
        descent = [torch.zeros_like(p) for p in params]
        for rank in range(2):
            x, y = (t[rank * 4 : (rank + 1) * 4] for t in whole)
            grads = torch.autograd.grad(loss_of(model, x, y), params)
            norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
            with torch.no_grad():
                steps = [rho * g / (norm + 1e-12) for g in grads]
                torch._foreach_add_(params, steps)
            for total, g in zip(descent, torch.autograd.grad(loss_of(model, x, y), params)):
                total += g / 2
            with torch.no_grad():
                torch._foreach_sub_(params, steps)
        with torch.no_grad():
            torch._foreach_add_(params, descent, alpha=-lr)
    global_run = ddp_ranks["sam_adamw"][0]["weights"]
    per_rank_runs = _successful(ddp_ranks, "sam_per_rank")
    for result in per_rank_runs:
        for got, want in zip(result["weights"], params):
            torch.testing.assert_close(got, want, **TOL)
    assert not torch.allclose(per_rank_runs[0]["weights"][0], global_run[0])


def test_ddp_per_rank_slsam_bandit_sees_the_same_norms_on_every_rank(ddp_ranks):
    first, second = _successful(ddp_ranks, "slsam_per_rank")
    # The probabilities are computed on each rank, not broadcast: equal only if the norms are.
    assert torch.equal(first["probs"], second["probs"])
    assert not torch.allclose(first["probs"], torch.full_like(first["probs"], 0.5))
    assert all(torch.equal(a, b) for a, b in zip(first["weights"], second["weights"]))


def test_plain_ddp_rejects_changing_requires_grad(ddp_ranks):
    message = ddp_ranks["default_ddp_error"][0]
    assert "find_unused_parameters=True" in message


@pytest.mark.parametrize(
    "name", ["sam_adamw", "asam_clipped", "slsam_tensor_arms", "slsam_module_arms", "bar_obar_sgd"]
)
def test_fsdp2_two_ranks_equal_one_rank_with_the_whole_batch(fsdp_ranks, name):
    _assert_same_run(fsdp_ranks, name, _single_process(workers.FSDP_SCENARIOS[name]))


def test_per_rank_ascent_needs_ddp(ddp_ranks, fsdp_ranks):
    unwrapped_error = ddp_ranks["unwrapped_first_pass_error"][0]
    assert unwrapped_error.startswith("TypeError: ")
    assert "DistributedDataParallel" in unwrapped_error
    sharded_error = fsdp_ranks["per_rank_error"][0]
    assert sharded_error.startswith("ValueError: ")
    assert "fully_shard" in sharded_error


def test_per_rank_ascent_needs_several_ranks():
    model = make_model()
    with pytest.raises(ValueError, match="per_rank"):
        SAM(model.parameters(), torch.optim.SGD, lr=0.1, ascent="per_rank")
    with pytest.raises(ValueError, match="ascent must be one of"):
        SLSAM(model.parameters(), torch.optim.SGD, lr=0.1, ascent="local")


def test_first_pass_is_a_no_op_for_the_global_ascent():
    model = make_model()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    with opt.first_pass(model):
        loss_of(model, *batches()[0]).backward()
    assert all(p.grad is not None for p in model.parameters())


def _kill_launch(launcher: subprocess.Popen) -> str:
    """SIGKILL torchrun's process group and each worker's (torchrun starts every worker in a
    session of its own, so killing torchrun alone would leave a hung worker behind); returns
    what they printed."""
    workers = [
        int(pid)
        for children in Path(f"/proc/{launcher.pid}/task").glob("*/children")
        for pid in children.read_text().split()
    ]
    for group in [launcher.pid, *workers]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    return launcher.communicate()[0]


def _run_example(*flags: str) -> tuple[int | None, str]:
    """examples/ddp_slsam.py on two gloo ranks: its exit status (None when it did not exit
    within EXAMPLE_TIMEOUT_S; then it is killed) and output."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(ROOT / "examples" / "ddp_slsam.py"), "--steps", "4", *flags,
    ]  # fmt: skip
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    launcher = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": pythonpath},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = launcher.communicate(timeout=EXAMPLE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, _kill_launch(launcher)
    return launcher.returncode, output


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("flags", [(), ("--per-rank-ascent",)], ids=["global", "per_rank"])
def test_ddp_example_exits_after_its_last_step(flags):
    """The example's ranks exit by themselves: a DDP model alive when the process group is
    destroyed used to deadlock gloo's teardown in about half the runs."""
    for run in range(EXAMPLE_RUNS):
        status, output = _run_example(*flags)
        outcome = "hung" if status is None else f"exited with {status}"
        assert status == 0, f"run {run + 1} {outcome}:\n{output[-4000:]}"
