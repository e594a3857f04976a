"""Training progress: plain lines with the loss in a log file, no carriage returns."""

import io

from slsam_kernels.apps.demo.progress import StepProgress


def run_steps(progress: StepProgress, total: int) -> None:
    for step in range(total):
        progress.update(step, 1.0 / (step + 1) if progress.wants_loss(step) else None)
    progress.close()


def test_a_file_gets_a_line_per_tenth_of_the_run_and_the_last_step():
    log = io.StringIO()
    run_steps(StepProgress(25, "sam", stream=log), 25)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines == [
        f"sam step {n}/25  loss {1 / n:.3f}"
        for n in (2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 25)
    ]


def test_disabled_progress_prints_nothing_and_reads_no_loss():
    log = io.StringIO()
    progress = StepProgress(30, "sgd", enabled=False, stream=log)
    assert not any(progress.wants_loss(step) for step in range(30))
    run_steps(progress, 30)
    assert log.getvalue() == ""
