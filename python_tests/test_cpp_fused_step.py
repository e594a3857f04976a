"""The extension's fused restore + step against torch's own AdamW / Adam / SGD step, per dtype
and around the CPU loops' block sizes (which cases it takes: test_fused_step_contract.py)."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
import torch
from cpp_testing import (
    DTYPES,
    ODD_SIZES,
    assert_bitwise_equal,
    every_scale,
    fresh_generator,
    randn,
    requires_extension,
    requires_vec8_kernels,
    vec8_kernels,
)
from oracle_testing import (
    assert_error_bounded_by_torchs,
    assert_states_bounded_by_torchs,
    float64_oracle,
)

from slsam_kernels.backends.cpp.loader import C
from slsam_kernels.backends.plan import ADAM_COLUMNS, SGD_COLUMNS
from slsam_kernels.ops import bind

pytestmark = requires_extension


def fused_restore_step(*args: Any) -> bool:
    """The fused step on the ``"cpp"`` backend."""
    return bind("cpp", torch.device("cpu")).fused_restore_step(*args)


STEPS = 4
SIZES = [s for s in ODD_SIZES if s < 200_000]

CONFIGS = [
    pytest.param(torch.optim.AdamW, {"lr": 1e-2}, id="adamw"),
    pytest.param(torch.optim.AdamW, {"lr": 3e-3, "weight_decay": 0.0}, id="adamw-no-wd"),
    pytest.param(
        torch.optim.AdamW,
        {"lr": 1e-2, "betas": (0.5, 0.9), "eps": 1e-6, "weight_decay": 0.3},
        id="adamw-betas-eps",
    ),
    pytest.param(torch.optim.Adam, {"lr": 1e-2, "weight_decay": 0.1}, id="adam-l2"),
    pytest.param(torch.optim.AdamW, {"lr": 1e-2, "fused": True}, id="adamw-torch-fused"),
    pytest.param(
        torch.optim.Adam, {"lr": 1e-2, "weight_decay": 0.1, "fused": True}, id="adam-l2-torch-fused"
    ),
    pytest.param(torch.optim.SGD, {"lr": 0.1}, id="sgd"),
    pytest.param(torch.optim.SGD, {"lr": 0.1, "weight_decay": 0.01}, id="sgd-wd"),
    pytest.param(torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}, id="sgd-momentum"),
    pytest.param(
        torch.optim.SGD,
        {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 1e-3},
        id="sgd-dampening-wd",
    ),
    pytest.param(
        torch.optim.SGD,
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
        id="sgd-nesterov-wd",
    ),
]


class Runs(NamedTuple):
    """The fused step, torch's own step and torch's step in float64, from the same inputs."""

    fused_params: list[torch.Tensor]
    fused_opt: torch.optim.Optimizer
    torch_params: list[torch.Tensor]
    torch_opt: torch.optim.Optimizer
    oracle_params: list[torch.Tensor]
    oracle_opt: torch.optim.Optimizer


def run_all(
    optimizer_class: type[torch.optim.Optimizer],
    options: dict[str, Any],
    dtype: torch.dtype,
    *,
    steps: int = STEPS,
) -> Runs:
    """Step three copies of the same params: one with the fused step from perturbed weights and
    backups, one with torch's own step, one with torch's step in float64."""
    gen, _ = fresh_generator()
    fused_params = randn(SIZES, [dtype], gen)
    start = [p.clone() for p in fused_params]
    torch_params = [p.clone() for p in fused_params]
    fused_opt = optimizer_class(fused_params, **options)
    torch_opt = optimizer_class(torch_params, **options)
    grads_per_step = []
    for _ in range(steps):
        backups = [p.clone() for p in fused_params]
        grads = [torch.randn(p.shape, generator=gen).to(dtype) for p in fused_params]
        for p, q, grad in zip(fused_params, torch_params, grads, strict=True):
            p.grad, q.grad = grad.clone(), grad.clone()
            p.add_(torch.randn(p.shape, generator=gen).to(dtype))  # the SAM perturbation
        assert fused_restore_step(fused_opt, fused_params, backups)
        torch_opt.step()
        grads_per_step.append(grads)
    oracle = float64_oracle(lambda ps: optimizer_class(ps, **options), start, grads_per_step)
    return Runs(fused_params, fused_opt, torch_params, torch_opt, *oracle)


def assert_bounded_by_torchs(runs: Runs) -> None:
    for i, (p, q, truth) in enumerate(
        zip(runs.fused_params, runs.torch_params, runs.oracle_params, strict=True)
    ):
        assert_error_bounded_by_torchs(p, q, truth, f"param {i}")
    assert_states_bounded_by_torchs(runs.fused_opt, runs.torch_opt, runs.oracle_opt)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("optimizer_class", "options"), CONFIGS)
def test_fused_step_matches_torch(optimizer_class, options, dtype):
    if dtype == torch.float16 and optimizer_class is not torch.optim.SGD:
        # fp16's exp_avg_sq goes subnormal for |g| < ~0.1, where one rounding moves sqrt(v)
        # by a large factor (and eps=1e-8 rounds to 0, so 0/0 is one rounding away). An eps
        # above sqrt(smallest normal) = 7.8e-3 keeps the step well-conditioned.
        options = {**options, "eps": 1e-2}
    assert_bounded_by_torchs(run_all(optimizer_class, options, dtype))


@pytest.mark.parametrize(("optimizer_class", "options"), CONFIGS)
def test_state_dict_hands_over_to_torch_mid_run(optimizer_class, options):
    runs = run_all(optimizer_class, options, torch.float32, steps=2)
    handed_over = optimizer_class(runs.fused_params, **options)
    handed_over.load_state_dict(runs.fused_opt.state_dict())
    for p, q, truth in zip(runs.fused_params, runs.torch_params, runs.oracle_params, strict=True):
        grad = torch.randn_like(p)
        p.grad, q.grad, truth.grad = grad.clone(), grad.clone(), grad.double()
    for opt in (handed_over, runs.torch_opt, runs.oracle_opt):
        opt.step()
    assert_bounded_by_torchs(runs._replace(fused_opt=handed_over))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("optimizer_class", "options"),
    [
        pytest.param(torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 0.1}, id="adamw"),
        pytest.param(torch.optim.Adam, {"lr": 1e-2, "weight_decay": 0.1}, id="adam-l2"),
        pytest.param(torch.optim.AdamW, {"lr": 1e-2, "betas": (0.5, 0.9)}, id="large-lerp"),
    ],
)
def test_fused_true_rounds_where_torchs_fused_kernel_rounds(optimizer_class, options, dtype):
    """With ``fused=True`` the step computes in fp32 and rounds only at the stores, as torch's
    fused kernel does (measured here: every element equal to it, torch 2.13 on AVX2; 98.5% of
    fp32 and 42-95% of bf16/fp16 weights equal the for-loop's); the for-loop's roundings would
    match it in far fewer."""
    if dtype == torch.float16:
        options = {**options, "eps": 1e-2}
    runs = run_all(optimizer_class, {**options, "fused": True}, dtype)
    ours = [*runs.fused_params, *(runs.fused_opt.state[p]["exp_avg"] for p in runs.fused_params)]
    torchs = [*runs.torch_params, *(runs.torch_opt.state[p]["exp_avg"] for p in runs.torch_params)]
    equal = sum(int((a == b).sum()) for a, b in zip(ours, torchs, strict=True))
    total = sum(a.numel() for a in ours)
    # a tolerance for one-ulp differences of torch's vectorised sqrt on other CPUs
    assert equal >= 0.999 * total, f"{total - equal} of {total} elements differ from torch's"


def test_coefficient_columns_match_the_kernels_structs():
    assert (C.adam_scalar_count, C.sgd_scalar_count) == (len(ADAM_COLUMNS), len(SGD_COLUMNS))


def misaligned_clone(t: torch.Tensor, offset: int) -> torch.Tensor:
    """A copy of ``t`` that starts ``offset`` elements into its storage."""
    view = torch.empty(t.numel() + offset, dtype=t.dtype)[offset:].view_as(t)
    return view.copy_(t)


#: Every step in the dtypes with an eight-lane form (fp32: from a backup only).
EIGHT_LANE_CASES = [
    pytest.param(dtype, *c.values, id=f"{name}-{c.id}")
    for dtype, name in ((torch.float16, "fp16"), (torch.bfloat16, "bf16"), (torch.float32, "fp32"))
    for c in CONFIGS
]


@requires_vec8_kernels
@pytest.mark.parametrize("in_place", [False, True], ids=["from-backup", "in-place"])
@pytest.mark.parametrize(("dtype", "optimizer_class", "options"), EIGHT_LANE_CASES)
def test_eight_lane_steps_equal_the_portable_loops_bit_for_bit(
    dtype, optimizer_class, options, in_place
):
    """The x86-64-v3 steps (eight lanes, vec8.h; weights streamed from a backup) against the
    portable loops, over three steps from the same state; inf/NaN gradients included."""
    gen, seed = fresh_generator()
    params = every_scale(gen, dtype)
    grads = [every_scale(gen, dtype) for _ in range(3)]
    for step_grads in grads:
        step_grads[0][0] = float("inf")
        step_grads[2][3] = float("nan")
    results = []
    for eight_lanes in (True, False):
        with vec8_kernels(eight_lanes):
            # offsets 0-5 elements into their storage: the streamed stores' unaligned heads
            ws = [misaligned_clone(p, k) for k, p in enumerate(params)]
            opt = optimizer_class(ws, **options)
            for step_grads in grads:
                backups = ws if in_place else [w.clone() for w in ws]
                for w, g in zip(ws, step_grads, strict=True):
                    w.grad = g.clone()
                    if not in_place:
                        w.mul_(0.5)  # the perturbation the restore undoes
                assert fused_restore_step(opt, ws, backups)
            state = [t for w in ws for t in opt.state[w].values() if torch.is_tensor(t)]
            results.append(ws + [t for t in state if t.dtype == dtype])
    assert_bitwise_equal(results[0], results[1], f"seed {seed}")
