"""Every available backend module states the operations of :class:`slsam_kernels.ops.protocol.
Backend` with the protocol's signatures, and nothing runs back up from the backends."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import slsam_kernels
from slsam_kernels.ops import registry
from slsam_kernels.ops.protocol import Backend

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


def test_the_protocol_states_every_operation_once() -> None:
    assert sorted(OPERATIONS) == sorted(
        ["bandit_update", "grad_sqnorms", "launch_fused", "perturb_", "restore_", "sample_active"]
    )


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
