"""The documentation cannot rot: every Python block of README.md and docs/*.md runs, and every
relative link resolves.

A file's blocks run in order in one namespace (a page's set-up block serves the blocks after
it), in a fresh working directory. A block fenced as ```python no-run is not run (it needs a
process group, say); say so next to it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks/README.md"]
BLOCK = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
OPTIONAL = ("transformers", "peft", "accelerate", "lightning", "pytorch_lightning")


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def python_blocks(path: Path) -> list[tuple[int, str, bool]]:
    """``(line, code, runs)`` of each fenced Python block."""
    text = path.read_text()
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(2), "no-run" not in m.group(1))
        for m in BLOCK.finditer(text)
    ]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize(
    "path", [p for p in PAGES if any(runs for _, _, runs in python_blocks(p))], ids=page_id
)
def test_python_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    ran = 0
    for line, code, runs in python_blocks(path):
        if not runs:
            continue
        try:
            exec(compile(code, f"{page_id(path)}:{line}", "exec"), namespace)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in OPTIONAL:
                pytest.skip(f"{page_id(path)}:{line} needs {exc.name}")
            raise
        ran += 1
    assert ran, f"{page_id(path)} has Python blocks but none ran"


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_relative_links_resolve(path):
    text = path.read_text()
    anchors = {slug(h) for h in re.findall(r"^#+ (.*)$", text, re.MULTILINE)}
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        file_part, _, anchor = target.partition("#")
        if not file_part:
            if anchor not in anchors:
                broken.append(target)
        elif not (path.parent / file_part).exists():
            broken.append(target)
    assert not broken, f"{page_id(path)}: broken links {broken}"


def test_the_readme_is_short_and_starts_with_what_a_newcomer_needs():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    headings = [i for i, line in enumerate(lines) if line.startswith("## ")]
    first = {lines[i]: i for i in headings}
    assert first["## Install"] < 100 and first["## Quick start"] < 100


def test_a_no_run_block_is_not_run(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n```\n\n```python no-run\nraise SystemExit\n```\n")
    assert [runs for _, _, runs in python_blocks(page)] == [True, False]


def test_the_lightning_section_imports_the_package_its_extra_installs():
    """Else the docs test skips the page wherever only the extra is installed."""
    extra = re.search(r'^lightning = \["([\w.-]+)', (ROOT / "pyproject.toml").read_text(), re.M)
    module = extra.group(1).replace("-", "_")  # the distribution's import name
    section = (ROOT / "docs/training-frameworks.md").read_text().split("## PyTorch Lightning")[1]
    assert BLOCK.search(section).group(2).startswith(f"import {module} as pl")
