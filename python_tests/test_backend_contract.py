"""The backend contract: every op on every backend (``backend_testing.backend_params``: the
reference, cpp, triton, cuda, each skipped with its reason where it cannot run here) against
the reference, the ground truth.

- ``grad_sqnorms``: within rtol 1e-5 of the float64 sums (the reference included; the others
  sum fp32 blocks in their own order, so not bit for bit), the same bits when called again.
- ``perturb_``: the reference's bits (one rounding of ``w + s * g`` computed in fp32, ASAM's
  ``w + ((s * g) * w) * w``), the reference within one rounding of float64; the backups, and
  ``restore_``, copy bits (NaN payloads included), in any layout.
- The fused restore + step of torch's AdamW, Adam and SGD, fp32, bf16 and fp16, from backups
  (the params poisoned): within the float64 oracle's bound of torch's own step. Which cases
  fuse: test_fused_step_contract.py; the fast backends' bits against one another:
  test_backend_bits.py.
- ``bandit_update``, both rules: the reference's bits where the backend computes it on the
  host in float64; Triton's runs in fp32 on the device, within rtol 1e-5 of it.
- ``sample_active``: a CPU bool mask, seeded, following the probabilities, never empty; the
  host backends draw the reference's stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from backend_testing import backend_params
from bandit_testing import assert_bounded_by_float64
from oracle_testing import (
    assert_error_bounded_by_torchs,
    assert_states_bounded_by_torchs,
    float64_oracle,
)

from slsam_kernels.ops import bind

# the ground truth's ops, reached as every backend's are (its functions take any device)
reference = bind("reference", torch.device("cpu"))
ALL = backend_params()
FUSING = backend_params("cpp", "triton", "cuda")

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# empty, odd, and on both sides of the blocks: Triton's 1024 and 16384, the CPU's 65536
SIZES = [0, 1, 7, 1025, 4099, 16385, 65537]
LISTS = [
    *(pytest.param(SIZES, [dtype], id=str(dtype).removeprefix("torch.")) for dtype in DTYPES),
    pytest.param([1 + (7 * i) % 37 for i in range(300)], DTYPES, id="many-small-mixed"),
]


def _random(sizes: list[int], dtypes: list[torch.dtype], device: str, seed: int):
    """One standard-normal tensor per size, the dtypes cycled over the sizes."""
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(n, generator=gen).to(device, dtypes[i % len(dtypes)])
        for i, n in enumerate(sizes)
    ]


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _assert_same_bits(got: list[torch.Tensor], want: list[torch.Tensor], what: str) -> None:
    assert len(got) == len(want), what
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert (a.dtype, a.shape, a.device) == (b.dtype, b.shape, b.device), f"{what} {i}"
        assert torch.equal(_bits(a), _bits(b)), f"{what} {i}: {(a != b).sum()} elements differ"


def _nan_like(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Outputs poisoned with NaN, so an element an op forgets to write shows."""
    return [torch.full_like(t, float("nan")) for t in tensors]


# ---- grad_sqnorms ----------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize(("sizes", "dtypes"), LISTS)
@pytest.mark.parametrize(("backend", "device"), ALL)
def test_grad_sqnorms_match_float64(backend, device, sizes, dtypes, weighted):
    ops = bind(backend, torch.device(device))
    grads = _random(sizes, dtypes, device, seed=1)
    weights = _random(sizes, dtypes[::-1], device, seed=2) if weighted else None
    got = ops.grad_sqnorms(grads, weights)
    assert got.dtype == torch.float32 and got.device.type == device
    products = (
        grads if weights is None else [g.double() * w.double() for g, w in zip(grads, weights)]
    )
    want = torch.stack([p.double().square().sum() for p in products]).float()
    torch.testing.assert_close(got.cpu(), want, rtol=1e-5, atol=1e-30)
    assert torch.equal(_bits(got), _bits(ops.grad_sqnorms(grads, weights))), "not deterministic"


@pytest.mark.parametrize(("backend", "device"), ALL)
def test_grad_sqnorms_of_strided_grads_and_of_none(backend, device):
    ops = bind(backend, torch.device(device))
    gen = torch.Generator().manual_seed(3)
    grads = [
        torch.randn(300, 70, generator=gen).to(device).t(),
        torch.randn(1000, generator=gen).to(device)[::3],
        torch.randn(65537, generator=gen).to(device, torch.bfloat16),
    ]
    weights = [torch.randn(g.shape, generator=gen).to(device) for g in grads]  # fp32 for bf16
    for w in (None, weights):
        torch.testing.assert_close(
            ops.grad_sqnorms(grads, w), reference.grad_sqnorms(grads, w), rtol=1e-5, atol=0
        )
    assert ops.grad_sqnorms([]).shape == (0,)


# ---- perturb_ and restore_ -------------------------------------------------------------------


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
@pytest.mark.parametrize(("sizes", "dtypes"), LISTS)
@pytest.mark.parametrize(("backend", "device"), ALL)
def test_perturb_and_restore_are_the_references_bits(backend, device, sizes, dtypes, adaptive):
    ops = bind(backend, torch.device(device))
    params, grads = _random(sizes, dtypes, device, 4), _random(sizes, dtypes, device, 5)
    scales = torch.rand(len(params), generator=torch.Generator().manual_seed(6)).to(device)
    originals = [p.clone() for p in params]
    expected = [p.clone() for p in params]
    reference.perturb_(expected, grads, [torch.empty_like(p) for p in params], scales, adaptive)
    backups = _nan_like(params)
    ops.perturb_(params, grads, backups, scales, adaptive)
    _assert_same_bits(params, expected, "perturbed param")
    _assert_same_bits(backups, originals, "backup")
    assert any(not torch.equal(p, o) for p, o in zip(params, originals)), "nothing moved"
    for p in params:
        p.fill_(float("nan"))
    ops.restore_(params, backups)
    _assert_same_bits(params, originals, "restored param")


# one rounding of a value computed in fp32, against float64
ROUNDING = {
    torch.float32: {"rtol": 1e-6, "atol": 1e-6},
    torch.bfloat16: {"rtol": 2**-8, "atol": 1e-6},
    torch.float16: {"rtol": 2**-10, "atol": 1e-6},
}


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_the_reference_perturbation_is_float64s_rounded(dtype, adaptive):
    params, grads = _random(SIZES, [dtype], "cpu", 7), _random(SIZES, [dtype], "cpu", 8)
    scales = torch.rand(len(params), generator=torch.Generator().manual_seed(9)) + 0.5
    originals = [p.clone() for p in params]
    reference.perturb_(params, grads, _nan_like(params), scales, adaptive)
    for i, (p, g, w) in enumerate(zip(params, grads, originals)):
        step = scales[i].double() * g.double() * (w.double() ** 2 if adaptive else 1)
        torch.testing.assert_close(p.double(), w.double() + step, **ROUNDING[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("backend", "device"), ALL)
def test_restore_copies_every_bit_pattern(backend, device, dtype):
    ops = bind(backend, torch.device(device))
    gen = torch.Generator().manual_seed(10)
    int_type = _bits(torch.empty(0, dtype=dtype)).dtype
    info = torch.iinfo(int_type)
    # random bit patterns: every value, NaN payloads and infinities included
    backups = [
        torch.randint(info.min, info.max, (n,), generator=gen, dtype=int_type).view(dtype)
        for n in SIZES
    ]
    backups = [b.to(device) for b in backups]
    params = _nan_like(backups)
    ops.restore_(params, backups)
    _assert_same_bits(params, backups, "restored param")


@pytest.mark.parametrize(("backend", "device"), ALL)
def test_perturb_and_restore_take_any_layout(backend, device):
    """Transposed params, and a channels_last param whose backup is contiguous (laid out
    unlike it): the fast loops address memory linearly, so they hand these to the reference."""
    ops = bind(backend, torch.device(device))
    gen = torch.Generator().manual_seed(11)
    params = [
        torch.randn(9, 5, generator=gen).to(device).t(),
        torch.randn(4, 6, 5, 5, generator=gen).to(device, memory_format=torch.channels_last),
        torch.randn(300, generator=gen).to(device),
    ]
    grads = [torch.randn(p.shape, generator=gen).to(device) for p in params]
    backups = [_nan_like([p.contiguous()])[0] for p in params]
    scales = torch.rand(3, generator=gen).to(device)
    originals = [p.clone() for p in params]
    expected = [p.clone() for p in params]
    reference.perturb_(expected, grads, [torch.empty_like(p) for p in params], scales)
    ops.perturb_(params, grads, backups, scales)
    _assert_same_bits(params, expected, "perturbed param")
    _assert_same_bits([b.contiguous() for b in backups], [o.contiguous() for o in originals], "b")
    ops.restore_(params, backups)
    _assert_same_bits(params, originals, "restored param")


# ---- the fused restore + step ----------------------------------------------------------------

AdamW, Adam, SGD = torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD
STEP_SIZES = [1, 127, 1025, 0, 4099]
STEPS = 4
CONFIGS = [
    pytest.param(AdamW, {"lr": 1e-2, "weight_decay": 0.1}, id="adamw"),
    pytest.param(
        AdamW,
        {"lr": 3e-3, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.0, "foreach": False},
        id="adamw-betas-nodecay",
    ),
    pytest.param(
        AdamW, {"lr": 1e-2, "betas": (0.3, 0.9), "weight_decay": 0.05}, id="adamw-beta1-low"
    ),
    pytest.param(Adam, {"lr": 1e-2, "weight_decay": 0.1}, id="adam-l2"),
    pytest.param(AdamW, {"lr": 1e-2, "weight_decay": 0.1, "fused": True}, id="adamw-torch-fused"),
    pytest.param(Adam, {"lr": 1e-2, "weight_decay": 0.1, "fused": True}, id="adam-l2-torch-fused"),
    pytest.param(SGD, {"lr": 0.1}, id="sgd"),
    pytest.param(SGD, {"lr": 0.1, "weight_decay": 0.01}, id="sgd-wd"),
    pytest.param(SGD, {"lr": 0.05, "momentum": 0.9}, id="sgd-momentum"),
    pytest.param(
        SGD, {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01}, id="sgd-damp-wd"
    ),
    pytest.param(
        SGD,
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
        id="sgd-nesterov",
    ),
]


def _groups(params: list[torch.Tensor], split: bool) -> list[dict[str, Any]]:
    """One group, or two with their own lr (and, for SGD, no momentum in the first)."""
    if not split:
        return [{"params": params}]
    return [{"params": params[:2], "lr": 0.02, "momentum": 0.0}, {"params": params[2:]}]


def _maker(
    optimizer_cls: type[torch.optim.Optimizer], options: dict[str, Any], split: bool
) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer]:
    def make(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        groups = _groups(params, split)
        if optimizer_cls is not SGD:
            groups[0].pop("momentum", None)
        return optimizer_cls(groups, **options)

    return make


@pytest.mark.parametrize("split", [False, True], ids=["one-group", "two-groups"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("optimizer_cls", "options"), CONFIGS)
@pytest.mark.parametrize(("backend", "device"), FUSING)
def test_fused_steps_stay_within_the_oracle_bound(
    backend, device, optimizer_cls, options, dtype, split
):
    """The fused step from backups (the params themselves NaN: it must read the backups)
    against restore + torch's own step, both against torch's step in float64: the fused
    step's error at most twice torch's plus one epsilon, weights and every state tensor."""
    if options.get("fused") and device != "cpu":
        pytest.skip("torch keeps a fused=True step on the GPU; the planner declines it there")
    if dtype == torch.float16 and optimizer_cls is not SGD:
        # fp16's exp_avg_sq goes subnormal for |g| < ~0.1, where one rounding moves sqrt(v)
        # far (and eps=1e-8 rounds to 0); an eps above sqrt(smallest normal) keeps it sane
        options = {**options, "eps": 1e-2}
    make = _maker(optimizer_cls, options, split)
    ops = bind(backend, torch.device(device))
    gen = torch.Generator().manual_seed(12)
    start = [torch.randn(n, generator=gen).to(device, dtype) for n in STEP_SIZES]
    fused_w, torch_w = [w.clone() for w in start], [w.clone() for w in start]
    fused_opt, torch_opt = make(fused_w), make(torch_w)
    grads_per_step = []
    for _ in range(STEPS):
        grads = [torch.randn(n, generator=gen).to(device, dtype) for n in STEP_SIZES]
        backups = [w.clone() for w in fused_w]
        for w, v, g in zip(fused_w, torch_w, grads, strict=True):
            w.grad, v.grad = g.clone(), g.clone()
            w.fill_(float("nan"))
        assert ops.fused_restore_step(fused_opt, fused_w, backups)
        torch_opt.step()
        grads_per_step.append(grads)
    oracle_w, oracle_opt = float64_oracle(make, start, grads_per_step)
    for i, (ours, theirs, truth) in enumerate(zip(fused_w, torch_w, oracle_w, strict=True)):
        assert_error_bounded_by_torchs(ours, theirs, truth, f"param {i}")
    assert_states_bounded_by_torchs(fused_opt, torch_opt, oracle_opt)


# ---- the bandit ------------------------------------------------------------------------------

# Triton's update runs in fp32 on the device (triton/bandit.py); the others compute the
# reference's float64 host maths (cpp in its own loop, cuda binds the reference's).
FP32_BANDITS = {"triton"}
RULES = [
    pytest.param("paper", None, id="paper"),
    pytest.param("robust", 0.1, id="robust"),
    pytest.param("robust", 0.0, id="robust-no-exploration"),
]


def _bandit_case(gen: torch.Generator, device: str):
    num_arms = int(torch.randint(1, 300, (1,), generator=gen))
    num_active = int(torch.randint(1, num_arms + 1, (1,), generator=gen))
    probs = torch.rand(num_arms, generator=gen) * 0.9 + 0.05
    idx = torch.randperm(num_arms, generator=gen)[:num_active].sort().values
    norms = torch.rand(num_active, generator=gen) * 3
    budget = (float(torch.rand(1, generator=gen)) * 0.9 + 0.05) * num_arms
    return probs.to(device), norms.to(device), idx.to(device), budget


def _assert_matches_the_reference(
    backend: str, got: torch.Tensor, want: torch.Tensor, inputs: tuple, **rule: object
) -> None:
    """Bit for bit for the host bandits; the fp32 ones within the float64 oracle's bound."""
    assert got.dtype == torch.float32 and got.shape == want.shape
    got = got.cpu()
    if backend in FP32_BANDITS:
        host = [t.cpu() if torch.is_tensor(t) else t for t in inputs]
        assert_bounded_by_float64(got, *host, **rule)
    else:
        _assert_same_bits([got], [want], "probs")


@pytest.mark.parametrize(("rule", "exploration"), RULES)
@pytest.mark.parametrize(("backend", "device"), ALL)
def test_bandit_updates_match_the_reference(backend, device, rule, exploration):
    ops = bind(backend, torch.device(device))
    gen = torch.Generator().manual_seed(13)
    exploration = exploration or 0.0
    capped = 0
    for _ in range(8):
        probs, norms, idx, budget = _bandit_case(gen, device)
        lr = float(torch.rand(1, generator=gen)) * (5.0 if rule == "paper" else 1.0)
        args = (budget, lr, 1e-3)
        kwargs = {"rule": rule, "exploration": exploration}
        got = ops.bandit_update(probs, norms, idx, *args, **kwargs)
        assert got.device == probs.device
        want = reference.bandit_update(probs.cpu(), norms.cpu(), idx.cpu(), *args, **kwargs)
        _assert_matches_the_reference(backend, got, want, (probs, norms, idx, budget, lr), **kwargs)
        assert not torch.equal(want, probs.cpu()), "the update changed nothing"
        # a capped arm's projection is 1, which the exploration mixture then maps to
        cap = (1 - exploration) + exploration * (budget / probs.numel())
        capped += int((want == torch.tensor(cap).float()).sum())
    assert capped > 0, "no case reached the projection's cap"


@pytest.mark.parametrize(("backend", "device"), ALL)
def test_bandit_with_one_arm_and_with_every_arm_active(backend, device):
    ops = bind(backend, torch.device(device))
    cases = [
        (torch.tensor([0.7]), torch.tensor([2.0]), torch.tensor([0]), 0.7),
        (torch.linspace(0.1, 0.9, 9), torch.linspace(0.5, 3, 9), torch.arange(9), 4.0),
    ]
    for probs, norms, idx, budget in cases:
        got = ops.bandit_update(probs.to(device), norms.to(device), idx.to(device), budget, 2.0)
        want = reference.bandit_update(probs, norms, idx, budget, 2.0)
        _assert_matches_the_reference(backend, got, want, (probs, norms, idx, budget, 2.0))


# ---- sample_active ---------------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "device"), ALL)
def test_sample_active_is_seeded_and_follows_the_probabilities(backend, device):
    ops = bind(backend, torch.device(device))
    probs = torch.linspace(0.0, 1.0, 2000).to(ops.bandit_device)
    first = ops.sample_active(probs, torch.Generator().manual_seed(3))
    again = ops.sample_active(probs, torch.Generator().manual_seed(3))
    other = ops.sample_active(probs, torch.Generator().manual_seed(4))
    assert first.dtype == torch.bool and first.device.type == "cpu" and first.shape == (2000,)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert bool(first[-1]) and not bool(first[0])
    assert abs(int(first.sum()) - 1000) < 100  # E = sum p = 1000, sd ~ 18
    if backend not in FP32_BANDITS:
        want = reference.sample_active(probs.cpu(), torch.Generator().manual_seed(3))
        assert torch.equal(first, want), "another stream than the reference's"


@pytest.mark.parametrize(("backend", "device"), ALL)
def test_sample_active_draws_again_rather_than_return_an_empty_set(backend, device):
    ops = bind(backend, torch.device(device))
    probs = torch.full((3,), 1e-8)
    probs[1] = 0.3
    mask = ops.sample_active(probs.to(ops.bandit_device), torch.Generator().manual_seed(0))
    assert mask.tolist() == [False, True, False]
