"""The public ops' checks and the backend rule (the reference ops against float64:
test_backend_contract.py)."""

import pytest
import torch

from slsam_kernels import ops


def test_public_ops_reject_inconsistent_lists():
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen) for s in [(1,), (127,), (33, 31), (4099,), (0,)]]
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
