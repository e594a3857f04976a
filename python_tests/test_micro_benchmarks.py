"""The pytest-benchmark micro suite (benchmarks/micro, outside `make test`'s collection) runs:
every op on the reference and cpp backends at the small size, GB/s recorded, backends grouped
side by side, Triton on the CPU skipped with its reason, and a saved run compared against."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.micro.cases import BANDIT_OPS, STREAM_OPS

ROOT = Path(__file__).resolve().parent.parent
QUICK = [
    "--benchmark-only", "--benchmark-min-rounds=1", "--benchmark-max-time=0.001",
    "--benchmark-warmup=off", "-p", "no:cacheprovider", "-rs", "-q",
]  # fmt: skip

pytestmark = pytest.mark.slow


def _pytest(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SLSAM_BACKEND": ""}
    command = [sys.executable, "-m", "pytest", "benchmarks/micro", *QUICK, *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)


def test_micro_suite_times_every_op_and_compares_a_saved_run(tmp_path):
    storage = f"--benchmark-storage={tmp_path / 'storage'}"
    report = tmp_path / "run.json"
    first = _pytest(
        "-k", "small and (fp16 or bandit or sample)", storage, "--benchmark-autosave",
        f"--benchmark-json={report}",
    )  # fmt: skip
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "Triton on the CPU runs in its interpreter" in first.stdout
    assert "GB/s (bytes moved per call / median time)" in first.stdout
    rows = json.loads(report.read_text())["benchmarks"]
    by_group: dict[str, set[str]] = {}
    for row in rows:
        by_group.setdefault(row["group"], set()).add(row["params"]["target"][1])
        if row["params"]["op"] in STREAM_OPS:
            assert row["extra_info"]["gb_per_s"] > 0, row["name"]
            assert row["extra_info"]["bytes_per_call"] > 0, row["name"]
    assert {row["params"]["op"] for row in rows} == {*STREAM_OPS, *BANDIT_OPS}
    assert all(backends == {"reference", "cpp"} for backends in by_group.values()), by_group
    [saved] = (tmp_path / "storage").glob("*/0001_*.json")
    second = _pytest("-k", "restore_ and small and fp16", storage, "--benchmark-compare")
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    # the comparison names the saved run (stderr) and shows its rows beside this run's
    assert f"Comparing against benchmarks from: {saved.parent.name}/{saved.name}" in second.stderr
    assert "(0001_" in second.stdout and "(NOW)" in second.stdout
