"""The README's Quick start runs as printed and shows the loss going down."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_quick_start_runs_and_prints_a_falling_loss():
    section = README.read_text().split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [float(x) for x in re.findall(r"loss (\d+\.\d+)", result.stdout)]
    assert len(losses) >= 5, result.stdout
    assert losses[-1] < 0.5 * losses[0], result.stdout


def test_the_bar_block_runs_on_its_own():
    """A reader copies one block: the BAR example must not lean on the Quick start's names."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    (bar_block,) = [block for block in blocks if "BAR(" in block]
    namespace: dict = {}
    exec(compile(bar_block, "README.md BAR block", "exec"), namespace)
    assert namespace["bar"].steps_taken == 1
