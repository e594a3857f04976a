"""Every available backend module states the operations of :class:`slsam_kernels.ops.protocol.
Backend` with the protocol's signatures, and nothing runs back up from the backends."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import torch

import slsam_kernels
from slsam_kernels import ops
from slsam_kernels.backends import reference
from slsam_kernels.ops import registry
from slsam_kernels.ops.protocol import Backend

# the markers that let `-m "not triton"` / `-m "not cuda"` leave those backends' kernels out
LAUNCHING = [
    pytest.param(name, marks=[getattr(pytest.mark, name)] if name in ("triton", "cuda") else [])
    for name in registry.backend_names()
]
POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
OPERATIONS = [
    name
    for name, member in vars(Backend).items()
    if inspect.isfunction(member) and not name.startswith("_")
]


def _params(function: object, drop_self: bool) -> list[tuple[str, object]]:
    parameters = list(inspect.signature(function).parameters.values())
    return [(p.name, p.kind) for p in parameters[1 if drop_self else 0 :]]


@pytest.mark.parametrize("name", registry.backend_names())
def test_each_available_backend_conforms_to_the_protocol(name: str) -> None:
    status = registry.status(name)
    if not status.available:
        pytest.skip(f"backend {name!r} is unavailable here: {status.reason}")
    module = registry.module(name)
    assert isinstance(module, Backend), f"{name} lacks a member of the Backend protocol"
    for operation in OPERATIONS:
        assert _params(getattr(module, operation), False) == _params(
            getattr(Backend, operation), True
        ), f"{name}.{operation} has another signature than the protocol's"
    if module.launch_fused is not None:
        assert _params(module.launch_fused, False) == [("plan", POSITIONAL)]


@pytest.mark.parametrize("name", LAUNCHING)
def test_each_backend_takes_contiguous_tensors_and_declines_none(name: str) -> None:
    status = registry.status(name)
    if not status.available:
        pytest.skip(f"backend {name!r} is unavailable here: {status.reason}")
    module = registry.module(name)
    device = "cpu" if "cpu" in status.device_types else status.device_types[0]
    gen = torch.Generator().manual_seed(0)
    originals = [torch.randn(n, generator=gen).to(device) for n in (5, 3)]
    grads = [torch.randn(n, generator=gen).to(device) for n in (5, 3)]
    scales = torch.tensor([0.5, 0.25], device=device)
    want = [w.clone() for w in originals]
    reference.perturb_(want, grads, [torch.empty_like(w) for w in want], scales)
    params = [w.clone() for w in originals]
    backups = [torch.full_like(w, float("nan")) for w in originals]
    assert list(module.perturb_(params, grads, backups, scales, False)) == []
    assert all(map(torch.equal, params, want)) and all(map(torch.equal, backups, originals))
    params = [torch.full_like(w, float("nan")) for w in originals]
    assert list(module.restore_(params, backups)) == []
    assert all(map(torch.equal, params, originals))


def test_the_protocol_states_every_operation_once() -> None:
    methods = ["bandit_update", "grad_sqnorms", "perturb_", "restore_", "sample_active"]
    assert sorted(OPERATIONS) == methods
    assert "launch_fused" in Backend.__annotations__  # a member that may be None


def test_a_backend_without_fused_steps_plans_nothing() -> None:
    param = torch.nn.Parameter(torch.ones(3))
    param.grad = torch.ones(3)
    optimizer = torch.optim.AdamW([param], lr=0.1)
    bound = ops.bind("reference", torch.device("cpu"))
    assert not bound.fused_restore_step(optimizer, [param], [torch.zeros(3)])
    assert not optimizer.state and torch.equal(param, torch.ones(3))


def _imported_modules(path: Path, package: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join([*base, *([node.module] if node.module else [])]))
            else:
                found.add(node.module or "")
    return found


def test_no_backend_imports_ops_optim_or_apps() -> None:
    root = Path(slsam_kernels.__file__).parent
    above = ("slsam_kernels.ops", "slsam_kernels.optim", "slsam_kernels.apps")
    for path in (root / "backends").rglob("*.py"):
        package = ".".join(path.relative_to(root.parent).parent.parts)
        imported = _imported_modules(path, package)
        upward = [m for m in imported if m == "slsam_kernels" or m.startswith(above)]
        assert not upward, f"{path.relative_to(root)} imports {upward} from above the backends"
