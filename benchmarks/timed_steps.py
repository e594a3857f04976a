"""Run named steps of commands, each under its own time budget, one log file per step, and
keep going past failures; then a summary table. The job of ``make gpu-check``'s driver."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILE_BYTES = 16 * 2**20
_KEEP_HEAD = 2**20  # a truncated log keeps its first MiB and its end


@dataclass(frozen=True)
class Step:
    """Commands run one after another within ``budget_s`` seconds, all logged to one file."""

    name: str
    budget_s: int
    why: str  # how the budget was sized, printed by the dry run
    commands: list[list[str]]
    env: dict[str, str] = field(default_factory=dict)  # set on top of the inherited environment


@dataclass
class Outcome:
    """How a step ended: ``ok``, ``failed (...)`` or ``timeout``; ``result``: what it left,
    in a few words (e.g. the test counts), filled in by the caller."""

    step: Step
    status: str
    seconds: float
    log: Path
    result: str = ""


def _run_one(command: list[str], log, env: dict[str, str], cwd: Path, timeout: float) -> str:
    """Run ``command`` appending to ``log``; its whole process group dies at the deadline."""
    log.write(f"\n$ {' '.join(command)}\n".encode())
    log.flush()
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:  # e.g. nvidia-smi not installed
        log.write(f"could not start: {exc}\n".encode())
        return f"failed ({command[0]}: {exc.strerror or exc})"
    try:
        rc = proc.wait(timeout=max(timeout, 0.1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.write(b"\n[killed: the step's time budget ran out]\n")
        return "timeout"
    return "ok" if rc == 0 else f"failed ({os.path.basename(command[0])} rc {rc})"


def run_step(step: Step, log_path: Path, cwd: Path) -> Outcome:
    """Every command of ``step`` under its one deadline; the first failure is its status."""
    # On a GPU the kernels must compile, not be interpreted: only a step's own env sets this.
    inherited = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env = {**inherited, **step.env}
    start = time.perf_counter()
    status = "ok"
    with log_path.open("wb") as log:
        log.write(f"# step {step.name}, budget {step.budget_s} s, env {step.env}\n".encode())
        for command in step.commands:
            left = step.budget_s - (time.perf_counter() - start)
            result = _run_one(command, log, env, cwd, left)
            if status == "ok":
                status = result
            if result == "timeout":
                break
    cap_file(log_path)
    return Outcome(step, status, time.perf_counter() - start, log_path)


def cap_file(path: Path, limit: int = MAX_FILE_BYTES) -> None:
    """Shorten ``path`` to ``limit`` bytes, keeping its first MiB and its end."""
    size = path.stat().st_size
    if size <= limit:
        return
    marker = f"\n[... {size - limit} bytes cut to fit {limit} ...]\n".encode()
    with path.open("rb") as f:
        head = f.read(_KEEP_HEAD)
        f.seek(size - (limit - _KEEP_HEAD - len(marker)))
        tail = f.read()
    path.write_bytes(head + marker + tail)


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def summary(outcomes: list[Outcome]) -> str:
    """A Markdown table: step, status, seconds, budget, result, and the totals."""
    rows = ["| step | status | seconds | budget s | result |", "| --- | --- | ---: | ---: | --- |"]
    for o in outcomes:
        rows.append(
            f"| {o.step.name} | {o.status} | {o.seconds:.1f} | {o.step.budget_s} | {o.result} |"
        )
    total = sum(o.seconds for o in outcomes)
    budget = sum(o.step.budget_s for o in outcomes)
    failed = sum(o.status != "ok" for o in outcomes)
    rows.append(f"| total | {failed} not ok | {total:.1f} | {budget} | |")
    return "\n".join(rows)
