"""Whole-optimizer trajectories: backend="cpp" follows backend="reference" step for step."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from cpp_testing import fresh_generator, requires_extension
from oracle_testing import assert_error_bounded_by_torchs, assert_states_bounded_by_torchs

from slsam_kernels import RST, SAM, SLSAM

pytestmark = requires_extension

STEPS = 6

AdamW = torch.optim.AdamW
SGD = torch.optim.SGD
FACTORIES: list = [
    pytest.param(lambda ps, b: SAM(ps, AdamW, rho=0.1, lr=1e-2, backend=b), id="sam-adamw"),
    pytest.param(
        lambda ps, b: SAM(
            ps, SGD, rho=0.1, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3, backend=b
        ),
        id="sam-sgd-nesterov",
    ),
    pytest.param(
        lambda ps, b: SAM(ps, SGD, rho=0.5, adaptive=True, lr=0.05, momentum=0.9, backend=b),
        id="asam-sgd",
    ),
    pytest.param(
        lambda ps, b: SAM(ps, AdamW, rho=0.5, adaptive=True, lr=1e-2, backend=b), id="asam-adamw"
    ),
    pytest.param(
        lambda ps, b: SLSAM(ps, AdamW, rho=0.1, sample_ratio=0.5, seed=3, lr=1e-2, backend=b),
        id="slsam-adamw",
    ),
    pytest.param(
        lambda ps, b: SLSAM(
            ps, SGD, rho=0.1, sample_ratio=0.3, seed=5, lr=0.05, momentum=0.9, backend=b
        ),
        id="slsam-sgd",
    ),
    pytest.param(
        lambda ps, b: SLSAM(ps, AdamW, rho=0.3, adaptive=True, seed=7, lr=1e-2, backend=b),
        id="slsam-asam-adamw",
    ),
    pytest.param(
        lambda ps, b: RST(ps, AdamW, rho=0.1, sam_prob=0.5, seed=11, lr=1e-2, backend=b),
        id="rst-adamw",
    ),
]


def make_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(13, 40),
        torch.nn.LayerNorm(40),
        torch.nn.Tanh(),
        torch.nn.Linear(40, 40),
        torch.nn.Tanh(),
        torch.nn.Linear(40, 3),
    )


def param_groups(model: torch.nn.Module) -> list[dict]:
    """Two groups, the second with its own rho, to exercise per-group scales."""
    params = list(model.parameters())
    return [{"params": params[:4]}, {"params": params[4:], "rho": 0.02}]


def train(
    factory: Callable,
    backend: str,
    seed: int,
    dtype: torch.dtype = torch.float32,
    masks: list[torch.Tensor] | None = None,
) -> tuple[torch.nn.Module, torch.optim.Optimizer, list]:
    """``STEPS`` steps from the model and data of ``seed``; SL-SAM's active sets after each
    step are drawn, or imposed from ``masks``. Returns the model, optimizer and the trace
    (SL-SAM: active set and probabilities; RST: which steps were SAM steps)."""
    model = make_model(seed).to(dtype)
    opt = factory(param_groups(model), backend)
    assert opt.backend == backend
    gen = torch.Generator().manual_seed(seed)
    trace = []
    for step in range(STEPS):
        x = torch.randn(32, 13, generator=gen).to(dtype)
        y = torch.randn(32, 3, generator=gen).to(dtype)

        def closure(x=x, y=y):
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss

        closure()
        opt.step(closure)
        opt.zero_grad()
        if isinstance(opt, SLSAM):
            if masks is not None:
                opt.sample(masks[step])
            trace.append((opt.active_mask, opt.probs))
        if isinstance(opt, RST):
            trace.append(opt.last_step_was_sam)
    return model, opt, trace


@pytest.mark.parametrize("factory", FACTORIES)
def test_cpp_backend_follows_the_reference(factory):
    """Step for step, against the reference in float64 (SL-SAM's active sets imposed from
    the fp32 reference run): the extension's error is at most twice the reference's plus
    one fp32 epsilon; active sets and RST's coin flips are equal."""
    _, seed = fresh_generator()
    model, opt, trace = train(factory, "cpp", seed)
    ref_model, ref_opt, ref_trace = train(factory, "reference", seed)
    masks = [t[0] for t in ref_trace] if ref_trace and isinstance(ref_trace[0], tuple) else None
    oracle_model, oracle_opt, oracle_trace = train(factory, "reference", seed, torch.float64, masks)
    for (name, p), q, truth in zip(
        model.named_parameters(), ref_model.parameters(), oracle_model.parameters(), strict=True
    ):
        assert_error_bounded_by_torchs(p, q, truth, name)
    assert opt.state_dict().keys() == ref_opt.state_dict().keys()
    assert_states_bounded_by_torchs(opt, ref_opt, oracle_opt)
    for step, (got, expected, truth) in enumerate(zip(trace, ref_trace, oracle_trace, strict=True)):
        if isinstance(expected, tuple):
            assert torch.equal(got[0], expected[0]), f"active set after step {step}"
            assert_error_bounded_by_torchs(got[1], expected[1], truth[1], f"probs, step {step}")
        else:
            assert got == expected == truth


@pytest.mark.parametrize("base", [pytest.param(AdamW, id="adamw"), pytest.param(SGD, id="sgd")])
def test_supported_base_optimizers_take_the_fused_step(base, monkeypatch):
    model = make_model(0)
    opt = SAM(model.parameters(), base, lr=0.01, backend="cpp")
    base_steps = []
    monkeypatch.setattr(type(opt.base_optimizer), "step", lambda *a, **k: base_steps.append(1))
    x, y = torch.randn(8, 13), torch.randn(8, 3)

    def closure():
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    closure()
    before = [p.detach().clone() for p in model.parameters()]
    opt.step(closure)
    assert not base_steps
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
