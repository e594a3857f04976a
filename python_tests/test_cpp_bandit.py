"""What is cpp's own in its host bandit update: edge norms (inf, NaN, huge) bit for bit the
reference's, its index checks, and SL-SAM's draws (random updates against the reference:
test_backend_contract.py, test_backend_bits.py)."""

from __future__ import annotations

import pytest
import torch
from cpp_testing import bits, fresh_generator, requires_extension

from slsam_kernels import SLSAM
from slsam_kernels.backends import cpp as cpp_backend
from slsam_kernels.backends import reference

pytestmark = requires_extension

RULES = [
    pytest.param("paper", 0.0, id="paper"),
    pytest.param("robust", 0.1, id="robust"),
    pytest.param("robust", 0.0, id="robust-no-exploration"),
]


def _both(probs, norms, idx, budget, lr, rule, exploration):
    args = (probs, norms, idx, budget, lr, 1e-3)
    kwargs = dict(rule=rule, exploration=exploration)
    return (
        cpp_backend.bandit_update(*args, **kwargs),
        reference.bandit_update(*args, **kwargs),
    )


def _assert_same_bits(got: torch.Tensor, want: torch.Tensor, seed: int) -> None:
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert torch.equal(bits(got), bits(want)), f"seed {seed}: {(got != want).sum()} differ"


@pytest.mark.parametrize(("rule", "exploration"), RULES)
@pytest.mark.parametrize(
    "norms",
    [
        pytest.param([0.0, 0.0, 0.0], id="all-zero"),
        pytest.param([1.0, 0.0, 2.0], id="one-zero"),
        pytest.param([1e30, 1.0, 2.0], id="huge"),
        pytest.param([float("inf"), 1.0, 2.0], id="inf"),
        pytest.param([float("nan"), 1.0, 2.0], id="nan"),
    ],
)
def test_edge_norms_match_the_reference(norms: list[float], rule: str, exploration: float):
    probs = torch.tensor([0.3, 0.6, 0.2, 0.9, 0.5])
    idx = torch.tensor([0, 2, 4])
    got, want = _both(probs, torch.tensor(norms), idx, 2.5, 0.5, rule, exploration)
    _assert_same_bits(got, want, seed=0)


def test_out_of_range_index_and_bad_layout_raise() -> None:
    probs = torch.full((4,), 0.5)
    with pytest.raises(RuntimeError, match="outside"):
        cpp_backend.bandit_update(probs, torch.ones(1), torch.tensor([4]), 2.0)
    with pytest.raises(ValueError, match="one entry per norm"):
        cpp_backend.bandit_update(probs, torch.ones(2), torch.tensor([1]), 2.0)


def test_slsam_draws_the_same_active_sets_on_both_backends() -> None:
    gen, seed = fresh_generator()
    grads = [[torch.randn(3, 5, generator=gen) for _ in range(40)] for _ in range(12)]
    masks = {}
    for backend in ("cpp", "reference"):
        params = [torch.nn.Parameter(torch.ones(3, 5)) for _ in range(40)]
        opt = SLSAM(
            params,
            torch.optim.SGD,
            sample_ratio=0.3,
            bandit_lr=0.05,
            seed=seed,
            backend=backend,
            lr=0.1,
        )
        drawn = []
        for step in grads:
            for p, g in zip(params, step, strict=True):
                p.grad = g.clone() if p.requires_grad else None
            opt.first_step()
            opt.second_step()
            drawn.append(opt.active_mask)
        masks[backend] = (torch.stack(drawn), opt.probs)
    assert torch.equal(masks["cpp"][0], masks["reference"][0]), f"seed {seed}"
    # not bit for bit: the backends' first-pass norms round differently (double vs fp32 sums)
    torch.testing.assert_close(
        masks["cpp"][1], masks["reference"][1], rtol=1e-5, atol=0, msg=lambda m: f"seed {seed}: {m}"
    )
    assert not torch.equal(masks["cpp"][1], torch.full((40,), 0.3)), f"seed {seed}: no update"
