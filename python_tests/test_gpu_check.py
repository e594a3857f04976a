"""``make gpu-check`` cannot rot unseen: its plan and dry run, its step runner, the test outcomes
and benchmark rows that survive a killed step, the GPU benchmark subset's flags, and the CPU
rehearsal of the same steps through the script itself."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check, pytest_outcomes, report, timed_steps

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
    assert build.commands[0][1:] == list(gpu_check.PIP_INSTALL)
    assert all(c[0] == sys.executable for s in steps[1:] for c in s.commands)
    assert all("TRITON_INTERPRET" not in s.env for s in steps)


def test_the_tests_step_runs_only_the_gpu_tests_and_logs_each_outcome():
    [imports, marked] = gpu_check.plan(Path("out"))[2].commands
    assert imports[-1] == gpu_check.IMPORT_TESTS
    assert marked[-3:] == ["-m", "triton or cuda", "python_tests"]
    for command in (imports, marked):
        assert command[command.index("-p", command.index("no:cacheprovider")) + 1] == (
            "benchmarks.pytest_outcomes"
        )
        assert command[command.index("--outcomes-jsonl") + 1] == str(Path("out") / "tests.jsonl")


def test_the_gpu_rows_carry_the_marks_the_tests_step_selects():
    result = _run(
        sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
        "-m", gpu_check.TESTS_MARKS, "python_tests",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    ids = result.stdout.splitlines()

    def selected(test: str, backend: str) -> bool:
        return any(i.startswith(f"python_tests/{test}[") and backend in i for i in ids)

    assert selected("test_fused_step_contract.py::test_backends_fuse_and_decline_alike", "triton")
    assert selected("test_fused_step_contract.py::test_backends_fuse_and_decline_alike", "cuda")
    assert selected("test_robust_bandit.py::test_backend_matches_reference", "triton")
    assert selected("test_backend_contract.py::test_grad_sqnorms_match_float64", "cuda")
    assert selected("test_backend_contract.py::test_grad_sqnorms_match_float64", "triton")
    # no row of a CPU backend (the parameters' first entry names the backend)
    assert not [i for i in ids if re.search(r"\[(cpp|reference)(-|\])", i)]


def test_the_rehearsal_is_the_same_steps_without_the_cuda_parts():
    steps = gpu_check.plan(Path("out"), rehearse=True)
    gpu = gpu_check.plan(Path("out"))
    assert [(s.name, s.budget_s) for s in steps] == [(s.name, s.budget_s) for s in gpu]
    commands = [c for s in steps for c in s.commands]
    assert not [c for c in commands if c[0] in ("nvidia-smi", "nvcc") or "pip" in c]
    assert steps[2].commands == gpu[2].commands
    assert steps[1].env["TRITON_INTERPRET"] == steps[2].env["TRITON_INTERPRET"] == "1"
    assert "TRITON_INTERPRET" not in steps[3].env
    assert "--device" in steps[3].commands[0] and "--tiny" not in steps[3].commands[0]


def test_dry_run_prints_the_steps_and_budgets():
    for flags in ([], ["--rehearse"]):
        result = _run(sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", *flags)
        assert result.returncode == 0, result.stderr
        for step in gpu_check.plan(Path("out"), rehearse=bool(flags)):
            assert f"{step.name}: budget {step.budget_s} s" in result.stdout
        assert "-m 'triton or cuda' python_tests" in result.stdout
        assert "total budget: " in result.stdout
    limited = _run(sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--limit", "bench=7")
    assert "bench: budget 7 s" in limited.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_dry_run_shows_the_plan_with_the_given_python():
    for rehearse in ("0", "1"):
        command = [
            "make", "-s", "gpu-check", "DRY_RUN=1", f"REHEARSE={rehearse}",
            f"PYTHON={sys.executable}", f"PY={sys.executable}",
        ]  # fmt: skip
        planned = _run(*command[:1], "-n", *command[1:])
        assert "benchmarks.gpu_check" in planned.stdout, planned.stdout + planned.stderr
        assert "pip install" not in planned.stdout and "-m venv" not in planned.stdout
        result = _run(*command)
        assert result.returncode == 0, result.stderr
        assert all(f"{name}: budget" in result.stdout for name in STEPS)
        assert ("\n     nvidia-smi\n" in result.stdout) == (rehearse == "0")


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


def test_only_a_steps_own_env_sets_the_triton_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    show = [
        sys.executable,
        "-c",
        "import os; print('interpret', os.environ.get('TRITON_INTERPRET'))",
    ]
    gpu = timed_steps.Step("gpu", 30, "", [show])
    cpu = timed_steps.Step("cpu", 30, "", [show], {"TRITON_INTERPRET": "1"})
    for step in (gpu, cpu):
        assert timed_steps.run_step(step, tmp_path / f"{step.name}.log", tmp_path).status == "ok"
    assert "interpret None" in (tmp_path / "gpu.log").read_text()
    assert "interpret 1" in (tmp_path / "cpu.log").read_text()


HANGS = """
import time
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("set-up fails")

def test_passes(): pass
def test_passes_too(): pass
def test_fails(): assert False
def test_skips(): pytest.skip("not here")
def test_errors(broken): pass
def test_hangs(): time.sleep(600)
def test_never_runs(): pass
"""


def test_a_killed_pytest_run_still_gives_its_counts(tmp_path):
    """The tests step's pytest, killed at its limit mid-test, leaves every finished outcome."""
    (tmp_path / "test_sample.py").write_text(HANGS)
    log = tmp_path / "tests.jsonl"
    command = [
        sys.executable, "-m", "pytest", "-p", "benchmarks.pytest_outcomes",
        "--outcomes-jsonl", str(log), "-p", "no:cacheprovider", "test_sample.py",
    ]  # fmt: skip
    step = timed_steps.Step("tests", 20, "", [command], {"PYTHONPATH": str(ROOT)})
    outcome = timed_steps.run_step(step, tmp_path / "tests.log", tmp_path)
    assert outcome.status == "timeout"
    assert pytest_outcomes.describe(log) == (
        "2 passed, 1 failed, 1 error, 1 skipped; stopped during test_sample.py::test_hangs"
    )


def test_the_run_log_reads_back_what_a_kill_left(tmp_path):
    log = report.RunLog(report.partial_path(tmp_path, "bench"))
    log.add("meta", {"device": "cpu"})
    log.add("kernel_row", {"op": "grad_sqnorms", "method": "reference"})
    log.add("e2e", {"config": "tiny", "rows": []})
    with log.path.open("a") as f:  # a kill in the middle of a write
        f.write('{"kernel_row": {"op": "perturb_+ba')
    run = report.read_partial(log.path)
    assert run == {
        "meta": {"device": "cpu"},
        "kernel_rows": [{"op": "grad_sqnorms", "method": "reference"}],
        "e2e": [{"config": "tiny", "rows": []}],
        "memory": [],
    }
    log.finish()
    assert not log.path.exists()


def _kernel_rows(path: Path) -> list[dict]:
    return report.read_partial(path)["kernel_rows"]


@pytest.mark.slow
def test_the_rehearsal_keeps_what_killed_steps_wrote(tmp_path, monkeypatch, capsys):
    """``make gpu-check REHEARSE=1``'s driver with tiny limits: the tests step is killed among
    the Triton tests and still prints its counts; the bench step (given more lists than any
    limit here lets finish) is killed part-way and its finished rows survive in bench.jsonl,
    with bench.md made from them. A limit too short for the first row is doubled."""
    pytest.importorskip("transformers")
    lists = ",".join(f"grid:12x{777 + i}" for i in range(40))
    monkeypatch.setattr(gpu_check, "TINY_BENCH", [*gpu_check.TINY_BENCH, "--lists", lists])
    for limit in (30, 60, 120):
        out = tmp_path / str(limit)
        args = ["--rehearse", "--out", str(out), "--steps", "tests,bench"]
        code = gpu_check.main([*args, "--limit", f"tests={limit}", "--limit", f"bench={limit}"])
        partial = out / "bench.jsonl"
        if partial.exists() and _kernel_rows(partial) and (out / "tests.jsonl").exists():
            break
    printed = capsys.readouterr().out
    assert code == 1
    assert "| tests | timeout | " in printed and "| bench | timeout | " in printed
    counts = pytest_outcomes.describe(out / "tests.jsonl")
    assert re.match(r"\d+ passed, \d+ failed", counts), counts
    assert "timeout in " in printed and f"; {counts}" in printed
    rows = _kernel_rows(partial)
    assert all(r["verified"] is True or r["role"] == "baseline" for r in rows)
    assert {r["op"] for r in rows} >= {"grad_sqnorms"}
    assert not (out / "bench.json").exists()
    table = (out / "bench.md").read_text()
    assert "stopped part-way" in table and rows[0]["method"] in table
    assert f"stopped: {len(rows)} kernel rows" in printed
    assert len(list(out.iterdir())) <= gpu_check.MAX_FILES


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
        sys.executable, "-m", "benchmarks.gpu_check", "--rehearse", "--out", str(tmp_path),
        "--steps", "bench",
    )  # fmt: skip
    log = (tmp_path / "bench.log").read_text()
    assert result.returncode == 0, result.stdout + log[-6000:]
    assert result.stdout.rstrip().splitlines()[-1].startswith("| total | 0 not ok |")
    files = {p.name for p in tmp_path.iterdir()}
    # the finished run's bench.json holds every row of bench.jsonl, which is gone
    assert files == {"summary.md", "bench.log", "bench.json", "bench.md"}
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
