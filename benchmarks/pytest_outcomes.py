"""A pytest plugin that writes each test's outcome to a JSON-lines file the moment it is known,
so a run killed part-way (``make gpu-check``'s tests step at its time limit) still tells what
passed, what failed and which test was running.

    python -m pytest -p benchmarks.pytest_outcomes --outcomes-jsonl tests.jsonl ...
    python -m benchmarks.pytest_outcomes tests.jsonl      # the counts, e.g. "3 passed, 1 failed"

Each line is ``{"started": nodeid}`` as a test begins, then one
``{"nodeid", "when", "outcome", "seconds"}`` per phase that pytest itself counts (a failed
setup is an ``error``, a skip is ``skipped``, ...), so the counts match pytest's own summary.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

OPTION = "--outcomes-jsonl"
# pytest's order of the counts in its closing line
ORDER = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "deselected")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        OPTION, default=None, help="append each test's outcome to this file as it finishes"
    )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption(OPTION)
    if path:
        config.pluginmanager.register(OutcomeLog(Path(path), config), "outcome-log")


class OutcomeLog:
    """Appends and flushes one line per event; the file survives any kill of the run."""

    def __init__(self, path: Path, config: pytest.Config) -> None:
        self._config = config
        self._file = path.open("a", buffering=1)  # line-buffered: each line lands at once

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self._write({"started": nodeid})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        category = self._config.hook.pytest_report_teststatus(report=report, config=self._config)[0]
        if category:  # "" for the passing setup and teardown phases, as pytest's summary
            record = {"nodeid": report.nodeid, "when": report.when, "outcome": category}
            self._write({**record, "seconds": round(report.duration, 3)})

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self._write({"deselected": len(items)})

    def pytest_unconfigure(self) -> None:
        self._file.close()


def read(path: Path) -> tuple[Counter[str], str | None]:
    """The outcome counts in ``path`` and the test that started but never finished (the one a
    kill interrupted), if any. A last line cut short by the kill is ignored."""
    counts: Counter[str] = Counter()
    running = None
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "started" in record:
            running = record["started"]
        elif "deselected" in record:
            counts["deselected"] += record["deselected"]
        else:  # every test reports at least one counted phase, which ends its run
            counts[record["outcome"]] += 1
            if record["nodeid"] == running:
                running = None
    return counts, running


def describe(path: Path) -> str:
    """One line: the counts in pytest's words and order, and the interrupted test if any."""
    if not path.exists():
        return "no test outcomes (pytest did not start)"
    counts, running = read(path)
    words = [f"{counts[k]} {k}" for k in ORDER if counts[k] or k in ("passed", "failed")]
    words += [f"{n} {k}" for k, n in counts.items() if k not in ORDER]
    return ", ".join(words) + (f"; stopped during {running}" if running else "")


if __name__ == "__main__":
    print(describe(Path(sys.argv[1])))
