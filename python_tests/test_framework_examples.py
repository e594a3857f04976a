"""examples/lightning_sam.py, examples/hf_sam_trainer.py and examples/accelerate_slsam.py
train end to end on the CPU."""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 180


def has(*modules: str) -> bool:
    return any(importlib.util.find_spec(m) is not None for m in modules)


def run_example(name: str, *args: str) -> str:
    """Run examples/``name`` with this interpreter; its output. Killed (its whole process
    group) if it outlives TIMEOUT_S."""
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": pythonpath},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, output[-3000:]
    return output


def final_loss(output: str, label: str) -> float:
    line = next(line for line in output.splitlines() if line.startswith(label))
    return float(line.split()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not has("lightning", "pytorch_lightning"), reason="needs Lightning")
def test_lightning_example_trains():
    args = ["--optimizer", "slsam", "--precision", "16-mixed", "--accumulate", "2", "--clip", "1"]
    loss = final_loss(run_example("lightning_sam.py", *args), "final train_loss")
    assert math.isfinite(loss) and loss < math.log(4)  # below chance


@pytest.mark.slow
@pytest.mark.skipif(not has("transformers") or not has("accelerate"), reason="needs transformers")
def test_hf_example_trains():
    loss = final_loss(run_example("hf_sam_trainer.py", "--steps", "2"), "final training_loss")
    assert math.isfinite(loss)


@pytest.mark.slow
@pytest.mark.skipif(not has("accelerate"), reason="needs accelerate")
@pytest.mark.parametrize("optimizer", ["slsam", "rst"])
def test_accelerate_example_trains(optimizer):
    args = ["--optimizer", optimizer, "--mixed-precision", "bf16", "--epochs", "3"]
    accuracy = final_loss(run_example("accelerate_slsam.py", *args), "final eval_accuracy")
    assert accuracy > 0.7  # always the majority class: 61% (P(Binomial(12, 1/2) <= 6))
