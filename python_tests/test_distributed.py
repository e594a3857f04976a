"""DDP and FSDP2 on two gloo ranks over loopback against one process with the whole batch.

Each launch runs every scenario once (module fixtures); a launch is bounded in time and its
ranks exit by themselves."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
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
    from distributed_testing import batches, full_weights, loss_of, make_model, spawn, train

TOL = dict(rtol=1e-5, atol=1e-6)
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_RUNS = 5
EXAMPLE_TIMEOUT_S = 120


def _launch(worker, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp(worker.__name__)
    spawn(worker, str(out), timeout_s=120)
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


@pytest.fixture(scope="module")
def ddp_ranks(tmp_path_factory) -> list[dict]:
    return _launch(workers.ddp_worker, tmp_path_factory)


@pytest.fixture(scope="module")
def fsdp_ranks(tmp_path_factory) -> list[dict]:
    return _launch(workers.fsdp_worker, tmp_path_factory)


def _single_process(build, model=None) -> dict:
    model = make_model() if model is None else model
    opt = build(model)
    masks = train(model, opt, batches())
    return {"weights": full_weights(model), "masks": masks, "opt": opt}


def _assert_same_run(ranks: list[dict], name: str, reference: dict) -> None:
    initial = full_weights(make_model())
    for result in ranks:
        assert "error" not in result[name], result[name]
        for got, want in zip(result[name]["weights"], reference["weights"]):
            torch.testing.assert_close(got, want, **TOL)
        assert any(not torch.equal(w, b) for w, b in zip(result[name]["weights"], initial))
        for got, want in zip(result[name]["masks"], reference["masks"]):
            assert torch.equal(got, want)


@pytest.mark.parametrize(
    "name", ["sam_adamw", "slsam_sgd", "slsam_seed_per_rank", "bar_nbar_adamw"]
)
def test_ddp_two_ranks_equal_one_rank_with_the_whole_batch(ddp_ranks, name):
    build = workers.DDP_SCENARIOS[name]
    _assert_same_run(ddp_ranks, name, _single_process(lambda m: build(m.parameters())))


def test_ddp_unseeded_slsam_ranks_share_the_seed_and_the_masks(ddp_ranks):
    first, second = (r["slsam_unseeded"] for r in ddp_ranks)
    assert torch.equal(first["generator"], second["generator"])
    assert torch.equal(ddp_ranks[0]["rst_generator"], ddp_ranks[1]["rst_generator"])
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
    global_run = ddp_ranks[0]["sam_adamw"]["weights"]
    for result in ddp_ranks:
        for got, want in zip(result["sam_per_rank"]["weights"], params):
            torch.testing.assert_close(got, want, **TOL)
    assert not torch.allclose(ddp_ranks[0]["sam_per_rank"]["weights"][0], global_run[0])


def test_ddp_per_rank_slsam_bandit_sees_the_same_norms_on_every_rank(ddp_ranks):
    first, second = (r["slsam_per_rank"] for r in ddp_ranks)
    # The probabilities are computed on each rank, not broadcast: equal only if the norms are.
    assert torch.equal(first["probs"], second["probs"])
    assert not torch.allclose(first["probs"], torch.full_like(first["probs"], 0.5))
    assert all(torch.equal(a, b) for a, b in zip(first["weights"], second["weights"]))


def test_plain_ddp_rejects_changing_requires_grad(ddp_ranks):
    message = ddp_ranks[0]["default_ddp_error"]
    assert "find_unused_parameters=True" in message


@pytest.mark.parametrize(
    "name", ["sam_adamw", "asam_clipped", "slsam_tensor_arms", "slsam_module_arms", "bar_obar_sgd"]
)
def test_fsdp2_two_ranks_equal_one_rank_with_the_whole_batch(fsdp_ranks, name):
    _assert_same_run(fsdp_ranks, name, _single_process(workers.FSDP_SCENARIOS[name]))


def test_per_rank_ascent_needs_ddp(ddp_ranks, fsdp_ranks):
    assert ddp_ranks[0]["unwrapped_first_pass_error"].startswith("TypeError: ")
    assert "DistributedDataParallel" in ddp_ranks[0]["unwrapped_first_pass_error"]
    assert fsdp_ranks[0]["per_rank_error"].startswith("ValueError: ")
    assert "fully_shard" in fsdp_ranks[0]["per_rank_error"]


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
