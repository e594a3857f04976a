"""The reference ops against independent float64 computations, and the public ops' checks."""

import pytest
import torch

from slsam_kernels import ops

DTYPES = [
    pytest.param(torch.float32, id="fp32"),
    pytest.param(torch.bfloat16, id="bf16"),
    pytest.param(torch.float16, id="fp16"),
]
SIZES = [(1,), (127,), (33, 31), (4099,), (0,)]
# One rounding of an fp32-computed value to the dtype, against a float64 ground truth.
TOLERANCE = {
    torch.float32: dict(rtol=1e-6, atol=1e-6),
    torch.bfloat16: dict(rtol=2**-8, atol=1e-6),
    torch.float16: dict(rtol=2**-10, atol=1e-6),
}


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits, so that equality is bit equality (NaN included)."""
    return t.view(torch.int32 if t.element_size() == 4 else torch.int16)


def random_list(dtype, seed=0, sizes=SIZES):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).to(dtype) for s in sizes]


@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_sqnorms_match_float64(dtype):
    grads = random_list(dtype, seed=1)
    weights = random_list(dtype, seed=2)
    got = ops.grad_sqnorms(grads, backend="reference")
    want = torch.stack([(g.double() ** 2).sum() for g in grads]).float()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    assert got[:-1].gt(0).all() and got[-1] == 0
    got_w = ops.grad_sqnorms(grads, weights, backend="reference")
    want_w = torch.stack([((g.double() * w.double()) ** 2).sum() for g, w in zip(grads, weights)])
    torch.testing.assert_close(got_w, want_w.float(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_perturb_then_restore_is_bit_exact(dtype, adaptive):
    params = random_list(dtype, seed=3)
    grads = random_list(dtype, seed=4)
    originals = [p.clone() for p in params]
    backups = [torch.full_like(p, float("nan")) for p in params]
    scales = torch.rand(len(params), generator=torch.Generator().manual_seed(5)) + 0.5
    ops.perturb_(params, grads, backups, scales, adaptive, backend="reference")
    for i, (p, g, b, w0) in enumerate(zip(params, grads, backups, originals)):
        assert torch.equal(bits(b), bits(w0))
        step = scales[i].double() * g.double() * (w0.double() ** 2 if adaptive else 1)
        torch.testing.assert_close(p.double(), w0.double() + step, **TOLERANCE[dtype])
        assert p.dtype == dtype
        if p.numel():
            assert not torch.equal(p, w0)
    ops.restore_(params, backups, backend="reference")
    for p, w0 in zip(params, originals):
        assert torch.equal(bits(p), bits(w0))


def test_public_ops_reject_inconsistent_lists():
    params = random_list(torch.float32)
    with pytest.raises(ValueError, match="pass one per tensor"):
        ops.restore_(params, params[:-1])
    with pytest.raises(ValueError, match="must match"):
        ops.restore_(params, list(reversed(params)))
    with pytest.raises(TypeError, match="dtype"):
        ops.restore_(params, [p.half() for p in params])
    with pytest.raises(TypeError, match="float32"):
        ops.perturb_(params, params, params, torch.ones(len(params), dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        ops.perturb_(params, params, params, torch.ones(2))


def test_backend_rule_and_unknown_backend(monkeypatch):
    cpu = torch.device("cpu")
    assert ops.bind("reference", cpu).name == "reference"
    with pytest.raises(ValueError, match="unknown backend 'fastest'"):
        ops.bind("fastest", cpu)
    monkeypatch.setenv("SLSAM_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="unknown backend 'nonsense'"):
        ops.bind("auto", cpu)
    assert ops.bind("reference", cpu).name == "reference"  # an explicit name wins
    monkeypatch.setenv("SLSAM_BACKEND", "reference")
    assert ops.bind("auto", cpu).name == "reference"
