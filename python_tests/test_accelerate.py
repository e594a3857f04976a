"""Hugging Face accelerate "no trainer" loops: SAM, SL-SAM and RST under
``accelerator.prepare`` and ``accelerator.accumulate`` with :class:`SAMWindow` equal the plain
loop over the large batches; clipping clips the descent; bf16 runs both passes in bf16."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

pytest.importorskip("accelerate", reason="needs accelerate: pip install 'slsam_kernels[hf]'")

from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate_ddp_worker import SCENARIOS, WORLD
from accelerate_testing import (
    LARGE,
    WINDOWS,
    accelerate_loop,
    dataset,
    large_batches,
    launch_ranks,
    micro_batch_loop,
    scheduler_of,
)
from builders import loss_of, make_model

from slsam_kernels import RST, SAM, SLSAM
from slsam_kernels.integrations.accelerate import SAMWindow

TOL = dict(rtol=1e-5, atol=1e-6)
WORKER = Path(__file__).with_name("accelerate_ddp_worker.py")
DISTRIBUTED_TIMEOUT_S = 180

OPTIMIZERS = [
    pytest.param(lambda ps: SAM(ps, torch.optim.AdamW, lr=1e-2), id="SAM"),
    pytest.param(lambda ps: SLSAM(ps, torch.optim.AdamW, lr=1e-2, seed=0), id="SLSAM"),
    pytest.param(lambda ps: RST(ps, torch.optim.AdamW, lr=1e-2, seed=0), id="RST"),
]


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """accelerate keeps its state in process-wide singletons: each test starts anew."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def assert_weights_close(got, want) -> None:
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    assert any(not torch.equal(a, b) for a, b in zip(got, make_model().parameters()))


@pytest.mark.parametrize("accumulation", [1, 4])
@pytest.mark.parametrize("build", OPTIMIZERS)
def test_accumulated_window_equals_one_large_batch_step(build, accumulation):
    data = dataset()
    run = accelerate_loop(
        Accelerator(cpu=True, gradient_accumulation_steps=accumulation),
        build,
        data,
        micro_batch=LARGE // accumulation,
    )
    want = micro_batch_loop(build, large_batches(data))
    assert_weights_close(run["weights"], want["weights"])
    # The weights, and the LR scheduler, move on the window's last micro-batch only.
    sync = [(i + 1) % accumulation == 0 for i in range(WINDOWS * accumulation)]
    assert run["changed"] == sync
    assert run["lrs"] == [1e-2 * 0.5 ** ((i + 1) // accumulation) for i in range(len(sync))]


@pytest.mark.parametrize("build", OPTIMIZERS)
def test_closure_only_step_with_accelerator_backward(build):
    """No accumulation: ``optimizer.step(closure)`` alone, ``accelerator.backward`` inside
    the closure, runs both passes through the prepared optimizer."""
    data = dataset()
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(make_model())
    opt = build(model.parameters())
    loader = torch.utils.data.DataLoader(data, batch_size=LARGE)
    opt, loader, scheduler = accelerator.prepare(opt, loader, scheduler_of(opt))
    calls = []
    for batch in loader:

        def closure(batch=batch):
            calls.append(opt.optimizer.is_perturbed)
            loss = loss_of(model, batch)
            accelerator.backward(loss)
            return loss

        opt.step(closure)
        scheduler.step()
        opt.zero_grad()
    assert calls.count(False) == WINDOWS  # the first pass of every step, at w
    assert_weights_close(
        [p.detach() for p in model.parameters()],
        micro_batch_loop(build, large_batches(data))["weights"],
    )


def sam_sgd_by_hand(batches, rho: float, lr: float, max_norm: float):
    """SAM + SGD written out: ascent on the unclipped first pass, descent on the second pass
    clipped to ``max_norm``; also whether the clip was active."""
    model = make_model()
    params = list(model.parameters())
    clipped = []
    for batch in batches:
        first = torch.autograd.grad(loss_of(model, batch), params)
        norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in first]))
        with torch.no_grad():
            ascent = [rho * g / (norm + 1e-12) for g in first]
            torch._foreach_add_(params, ascent)
        second = torch.autograd.grad(loss_of(model, batch), params)
        with torch.no_grad():
            torch._foreach_sub_(params, ascent)
            total = torch.linalg.vector_norm(torch.stack([g.norm() for g in second]))
            clipped.append(bool(total > max_norm))
            coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
            torch._foreach_add_(params, [g * coef for g in second], alpha=-lr)
    return [p.detach() for p in params], clipped


def test_max_grad_norm_clips_the_descent_of_the_accumulated_window():
    rho, lr, max_norm = 0.5, 0.5, 0.2
    data = dataset()
    run = accelerate_loop(
        Accelerator(cpu=True, gradient_accumulation_steps=4),
        lambda ps: SAM(ps, torch.optim.SGD, rho=rho, lr=lr, max_grad_norm=max_norm),
        data,
        micro_batch=LARGE // 4,
        schedule=False,
    )
    want, clipped = sam_sgd_by_hand(large_batches(data), rho, lr, max_norm)
    assert all(clipped)  # else the test could not tell a clipped descent from another
    assert_weights_close(run["weights"], want)


@pytest.mark.parametrize("build", OPTIMIZERS)
def test_bf16_runs_both_passes_in_bf16_and_equals_the_autocast_loop(build):
    """Accelerator(mixed_precision="bf16", cpu=True) equals the plain loop under
    torch.autocast(bf16) micro-batch by micro-batch; both passes run in bf16."""
    accumulation = 2
    data = dataset()
    dtypes = []
    accelerator = Accelerator(
        cpu=True, mixed_precision="bf16", gradient_accumulation_steps=accumulation
    )
    run = accelerate_loop(
        accelerator, build, data, micro_batch=LARGE // accumulation, watch_dtypes=dtypes
    )
    # Every forward of both passes (RST replays on its SAM steps only) ran in bf16.
    assert set(dtypes) == {torch.bfloat16}
    assert len(dtypes) > WINDOWS * accumulation
    want = micro_batch_loop(build, large_batches(data), accumulation, autocast=True)
    assert_weights_close(run["weights"], want["weights"])
    assert all(p.dtype == torch.float32 for p in run["weights"])


SGD_OPTIMIZERS = [
    pytest.param(lambda ps: SAM(ps, torch.optim.SGD, lr=0.1), id="SAM"),
    pytest.param(lambda ps: SLSAM(ps, torch.optim.SGD, lr=0.1, seed=0), id="SLSAM"),
    pytest.param(lambda ps: RST(ps, torch.optim.SGD, lr=0.1, seed=0), id="RST"),
]


def fp16_accelerator(**kwargs) -> Accelerator:
    """An accelerator with the GradScaler that fp16 on a GPU makes (accelerate makes none on
    a CPU), set before the optimizer is prepared, as accelerate's own is."""
    accelerator = Accelerator(cpu=True, **kwargs)
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    return accelerator


@pytest.mark.parametrize("build", SGD_OPTIMIZERS)
def test_grad_scaler_unscales_both_passes(build):
    """Both passes' losses are scaled by 2^12: the steps (SGD, which the scale would not
    cancel in) equal the unscaled loop's."""
    data = dataset()
    accelerator = fp16_accelerator(gradient_accumulation_steps=2)
    run = accelerate_loop(accelerator, build, data, micro_batch=LARGE // 2)
    assert_weights_close(run["weights"], micro_batch_loop(build, large_batches(data))["weights"])
    assert accelerator.scaler.get_scale() == 2.0**12


def test_grad_scaler_sees_an_inf_in_the_second_pass():
    """An inf in the second pass only: the descent is skipped (weights restored, with a
    warning) and scaler.update() lowers the scale."""
    accelerator = fp16_accelerator()
    model = accelerator.prepare(make_model())
    sam = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    opt = accelerator.prepare(sam)

    def loss_fn(batch):
        return loss_of(model, batch) * (float("inf") if sam.is_perturbed else 1.0)

    window = SAMWindow(accelerator, model, loss_fn)
    before = [p.detach().clone() for p in model.parameters()]
    window.backward(large_batches(dataset(1))[0])
    with pytest.warns(RuntimeWarning, match="inf or NaN"):
        opt.step(window.replay)
    assert sam.last_step_skipped
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert accelerator.scaler.get_scale() == 2.0**11


def test_window_refuses_misuse():
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(make_model())
    with pytest.raises(TypeError, match=r"nn\.Module"):
        SAMWindow(accelerator, [model], lambda b: loss_of(model, b))
    with pytest.raises(TypeError, match="loss_fn"):
        SAMWindow(accelerator, model, None)
    window = SAMWindow(accelerator, model, lambda b: loss_of(model, b))
    with pytest.raises(RuntimeError, match=r"window.backward\(batch\)"):
        window.replay()
    # With fp16, the replay unscales through the optimizer whose step runs it.
    accelerator = fp16_accelerator()
    model = accelerator.prepare(make_model())
    window = SAMWindow(accelerator, model, lambda b: loss_of(model, b))
    window.backward(large_batches(dataset(1))[0])
    with pytest.raises(RuntimeError, match=r"optimizer\.step\(window\.replay\)"):
        window.replay()
    # An optimizer that accelerate did not prepare steps on every micro-batch.
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    model = accelerator.prepare(make_model())
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    window = SAMWindow(accelerator, model, lambda b: loss_of(model, b))
    before = [p.detach().clone() for p in model.parameters()]
    with accelerator.accumulate(model):
        window.backward(large_batches(dataset(1))[0])
        with pytest.raises(RuntimeError, match=r"accelerator\.prepare"):
            opt.step(window.replay)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_replay_leaves_batchnorm_running_statistics_alone():
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3))
    first_pass_only = copy.deepcopy(net)
    model = accelerator.prepare(net)
    opt = accelerator.prepare(SAM(model.parameters(), torch.optim.SGD, lr=0.1))
    window = SAMWindow(accelerator, model, lambda batch: loss_of(model, batch))
    micro_batches = list(zip(*(t.chunk(2) for t in large_batches(dataset(1))[0])))
    for batch in micro_batches:
        first_pass_only(batch[0])  # the weights move only after the last one
        with accelerator.accumulate(model):
            window.backward(batch)
            opt.step(window.replay)
            opt.zero_grad()
    assert not opt.optimizer.is_perturbed
    assert any(
        not torch.equal(a, b) for a, b in zip(net.parameters(), first_pass_only.parameters())
    )
    for name, want in first_pass_only[1].named_buffers():
        assert torch.equal(getattr(net[1], name), want), name


@pytest.mark.distributed
def test_two_gloo_ranks_equal_one_process_with_the_whole_batch(tmp_path):
    """accelerate's DDP on two CPU processes: the sharded data loader, the accumulation
    window (DDP syncs its last micro-batch in each pass) and SL-SAM's frozen tensors; each
    rank's run equals one process stepping on the large batches. The ranks exit by
    themselves, with status 0."""
    launch_ranks(WORKER, tmp_path, WORLD, timeout_s=DISTRIBUTED_TIMEOUT_S)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for name, build in SCENARIOS.items():
        # accelerate steps the LR scheduler once per process on each optimizer step.
        want = micro_batch_loop(build, large_batches(dataset()), lr_steps=WORLD)
        for rank in ranks:
            assert_weights_close(rank[name]["weights"], want["weights"])
            assert rank[name]["changed"] == [False, True] * WINDOWS

    # One prepare call wraps the model in DDP after SL-SAM froze its inactive tensors: DDP
    # would never sync them, and SAMWindow refuses. SAM freezes nothing.
    for rank in ranks:
        assert rank["SAM_one_call_error"] == ""
        assert "Prepare the model first" in rank["SLSAM_one_call_error"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("build", OPTIMIZERS)
def test_prepare_on_a_gpu_loads_the_state_it_moved(build):
    """On a GPU, accelerate's prepare moves the optimizer's whole state dict to the device
    (SL-SAM's and RST's generator state too) and loads it back; then the loop trains as on
    the CPU."""
    data = dataset()
    accelerator = Accelerator(gradient_accumulation_steps=2)
    run = accelerate_loop(accelerator, build, data, micro_batch=LARGE // 2)
    assert run["opt"].param_groups[0]["params"][0].is_cuda
    want = micro_batch_loop(build, large_batches(data), micro=2)
    for got, expected in zip(run["weights"], want["weights"], strict=True):
        torch.testing.assert_close(got.cpu(), expected, rtol=1e-4, atol=1e-5)
