"""Training progress: plain lines with the mean loss in a log file, no carriage returns."""

import io
import itertools

import pytest
import torch

from slsam_kernels.apps.demo.progress import StepProgress


def run_steps(progress: StepProgress, losses) -> None:
    for step, loss in enumerate(losses):
        progress.update(step, loss)
    progress.close()


def test_a_file_gets_a_line_per_tenth_of_the_run_and_the_last_step():
    log = io.StringIO()
    run_steps(StepProgress(25, "sam", stream=log), [float(n) for n in range(1, 26)])
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    # each line: the mean of the losses since the line before (steps n-1 and n, then 25 alone)
    assert lines == [
        f"sam step {n}/25  loss {n - 0.5:.3f}" for n in (2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24)
    ] + ["sam step 25/25  loss 25.000"]


def test_a_bouncing_batch_loss_is_shown_as_its_mean_over_the_steps_since_the_last_line():
    """Losses alternating 3, 1 around a falling trend print the trend, not the bounce."""
    log = io.StringIO()
    losses = [torch.tensor(2.0 - 0.01 * step + (1.0 if step % 2 else -1.0)) for step in range(40)]
    run_steps(StepProgress(40, "sgd", stream=log), losses)
    shown = [float(line.rsplit(" ", 1)[1]) for line in log.getvalue().splitlines()]
    expected = [sum(float(x) for x in losses[start : start + 4]) / 4 for start in range(0, 40, 4)]
    assert shown == pytest.approx(expected, abs=6e-4)  # printed to 3 decimals
    assert all(later < earlier for earlier, later in itertools.pairwise(shown))


def test_disabled_progress_prints_nothing():
    log = io.StringIO()
    run_steps(StepProgress(30, "sgd", enabled=False, stream=log), [1.0] * 30)
    assert log.getvalue() == ""
