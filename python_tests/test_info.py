"""`python -m slsam_kernels info` reports versions, backends and the auto rule."""

import os
import re
import subprocess
import sys

import torch

from slsam_kernels.__main__ import COMMANDS
from slsam_kernels.ops import registry


def test_info_lists_every_backend_and_the_auto_choice():
    out = subprocess.run(
        [sys.executable, "-m", "slsam_kernels", "info"], capture_output=True, text=True, check=True
    ).stdout
    assert f"torch         {torch.__version__}" in out
    for name in registry.backend_names():
        assert f"  {name} " in out
    assert "cpu   -> " in out and "cuda  -> " in out


def test_unavailable_backend_raises_with_its_reason(monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, "broken", ("slsam_kernels.no_such_module", ("cpu",)))
    status = registry.status("broken")
    assert not status.available and "No module named" in status.reason
    try:
        registry.resolve("broken", torch.device("cpu"))
    except ValueError as exc:
        assert "unavailable: ModuleNotFoundError" in str(exc)
    else:
        raise AssertionError("an unavailable backend was accepted")
    assert registry.resolve("auto", torch.device("cpu")) != "broken"


def test_info_runs_with_torch_alone():
    """The demo's and evaluation's modules (tqdm among their needs) are imported only when
    their command runs: ``info`` needs none of them."""
    code = (
        "import sys\n"
        "for name in ('tqdm', 'transformers', 'matplotlib', 'efficientnet_lite_pytorch'):\n"
        "    sys.modules[name] = None  # import raises ImportError\n"
        "from slsam_kernels.__main__ import main\n"
        "sys.exit(main(['info']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "backends:" in result.stdout


def test_an_unknown_command_is_a_usage_error():
    result = subprocess.run(
        [sys.executable, "-m", "slsam_kernels", "infoo"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "invalid choice: 'infoo'" in result.stderr


def test_no_command_lists_the_commands():
    result = subprocess.run(
        [sys.executable, "-m", "slsam_kernels"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},  # one line per command
    )
    assert result.returncode == 0, result.stderr
    for name, (_, help_text) in COMMANDS.items():
        assert re.search(rf"^\s+{name}\s+{re.escape(help_text)}", result.stdout, re.MULTILINE)
