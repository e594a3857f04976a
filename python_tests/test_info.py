"""`python -m slsam_kernels info` reports versions, backends and the auto rule."""

import subprocess
import sys

import torch

from slsam_kernels.ops import backends


def test_info_lists_every_backend_and_the_auto_choice():
    out = subprocess.run(
        [sys.executable, "-m", "slsam_kernels", "info"], capture_output=True, text=True, check=True
    ).stdout
    assert f"torch         {torch.__version__}" in out
    for name in backends.backend_names():
        assert f"  {name} " in out
    assert "cpu   -> " in out and "cuda  -> " in out


def test_unavailable_backend_raises_with_its_reason(monkeypatch):
    monkeypatch.setitem(backends._REGISTRY, "broken", ("slsam_kernels.no_such_module", ("cpu",)))
    status = backends.status("broken")
    assert not status.available and "No module named" in status.reason
    try:
        backends.resolve("broken", torch.device("cpu"))
    except ValueError as exc:
        assert "unavailable: ModuleNotFoundError" in str(exc)
    else:
        raise AssertionError("an unavailable backend was accepted")
    assert backends.resolve("auto", torch.device("cpu")) != "broken"
