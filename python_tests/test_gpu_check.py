"""``make gpu-check`` cannot rot unseen: its dry run, its step runner, the GPU benchmark subset's
flags, and the same subset at tiny sizes on the CPU through the script itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check, timed_steps

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("info", "build", "tests", "bench")


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )


def test_the_plan_fits_eight_minutes():
    steps = gpu_check.plan(Path("out"))
    assert tuple(s.name for s in steps) == STEPS
    assert sum(s.budget_s for s in steps) <= 8 * 60
    build = steps[1]
    assert build.env["SLSAM_CUDA_ARCH"] == "90a" and int(build.env["MAX_JOBS"]) >= 1
    assert all(c[0] == sys.executable for s in steps[1:] for c in s.commands)
    files = gpu_check.ordered_test_files()
    assert files[0].startswith("python_tests/test_triton_")
    assert not any(f.endswith(tuple(gpu_check.TESTS_LEFT_OUT)) for f in files)


def test_dry_run_prints_the_steps_and_budgets():
    result = _run(sys.executable, "-m", "benchmarks.gpu_check", "--dry-run")
    assert result.returncode == 0, result.stderr
    for step in gpu_check.plan(Path("out")):
        assert f"{step.name}: budget {step.budget_s} s" in result.stdout
    assert "total budget: " in result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_dry_run_uses_the_given_python():
    result = _run("make", "-s", "gpu-check", "DRY_RUN=1", f"PYTHON={sys.executable}")
    assert result.returncode == 0, result.stderr
    assert all(f"{name}: budget" in result.stdout for name in STEPS)


def test_a_step_is_stopped_at_its_budget_and_failures_do_not_stop_the_run(tmp_path):
    py = sys.executable
    slow = timed_steps.Step(
        "slow", 2, "", [[py, "-c", "import time; time.sleep(60)"], [py, "-c", "1"]]
    )
    failing = timed_steps.Step("failing", 30, "", [["no-such-program-here"], [py, "-c", "1"]])
    exits = timed_steps.Step("exits", 30, "", [[py, "-c", "raise SystemExit(3)"]])
    outcomes = [
        timed_steps.run_step(s, tmp_path / f"{s.name}.log", tmp_path)
        for s in (slow, failing, exits)
    ]
    assert [o.status for o in outcomes[:1]] == ["timeout"] and outcomes[0].seconds < 20
    assert outcomes[1].status.startswith("failed (no-such-program-here")
    assert outcomes[2].status.endswith("rc 3)")
    assert "[killed" in (tmp_path / "slow.log").read_text()
    assert "| total | 3 not ok |" in timed_steps.summary(outcomes)


def test_a_long_log_keeps_its_head_and_end(tmp_path):
    log = tmp_path / "big.log"
    log.write_bytes(b"head" + b"x" * (3 * 2**20) + b"end")
    timed_steps.cap_file(log, limit=2 * 2**20)
    data = log.read_bytes()
    assert len(data) == 2 * 2**20 and data.startswith(b"head") and data.endswith(b"end")


def test_the_gpu_subset_flags_select_the_gpt2_and_1b3_lists():
    pytest.importorskip("transformers")
    from benchmarks import e2e, run

    args = run.parse_args(["--quick", *gpu_check.GPU_BENCH])
    assert args.lists == ["gpt2_124m", "llama_1b3"] and args.dtypes == ["fp32", "bf16"]
    assert args.extra_lists == [] and args.ops is None  # the preset's: every op
    assert args.e2e == ["gpt2-small"] and e2e.CONFIGS["gpt2-small"].gpu_only
    assert args.e2e_methods == ["AdamW", "SAM", "SL-SAM s=0.2", "SL-SAM s=0.5"]
    assert set(args.e2e_methods) <= set(e2e.METHODS)


@pytest.mark.slow
def test_the_benchmark_subset_runs_tiny_on_the_cpu(tmp_path):
    pytest.importorskip("transformers")
    result = _run(
        sys.executable, "-m", "benchmarks.gpu_check", "--out", str(tmp_path), "--steps", "bench",
        "--tiny",
    )  # fmt: skip
    log = (tmp_path / "bench.log").read_text()
    assert result.returncode == 0, result.stdout + log[-6000:]
    assert result.stdout.rstrip().splitlines()[-1].startswith("| total | 0 not ok |")
    files = sorted(p.name for p in tmp_path.iterdir())
    assert {"summary.md", "bench.log", "bench.json", "bench.md"} <= set(files)
    assert len(files) <= gpu_check.MAX_FILES
    data = json.loads((tmp_path / "bench.json").read_text())
    rows = data["kernel_rows"]
    assert {r["op"] for r in rows} >= {"grad_sqnorms", "perturb_+backup", "SAM step", "SL-SAM step"}
    assert {"davda54-style loop", "AdamW fused alone (no SAM)", "authors-style SL-SAM"} <= {
        r["method"] for r in rows
    }
    assert data["meta"]["copy_gbps"] > 0
    assert all(r["pct_copy_bw"] > 0 for r in rows if r.get("verified") and r.get("gb_per_s"))
    [result_e2e] = data["e2e"]
    assert [r["method"] for r in result_e2e["rows"]] == [
        "AdamW",
        "SAM",
        "SL-SAM s=0.2",
        "SL-SAM s=0.5",
    ]
    assert all(r["median_s"] > 0 and "peak_mib" in r for r in result_e2e["rows"])
