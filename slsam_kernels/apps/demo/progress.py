"""Training progress: a tqdm bar on a terminal, plain lines in a log file."""

from __future__ import annotations

import sys
from typing import Any, TextIO

#: Plain-line mode prints about this many lines per run.
LINES_PER_RUN = 10


class StepProgress:
    """Reports steps of one training run on ``stream`` (default: stderr), with the mean batch
    loss over the steps since the last report: one batch's loss bounces with the batch (and
    the label noise) too much to show the trend.

    On a terminal with tqdm installed: a bar, the loss in its postfix. Elsewhere (a file, a
    pipe, CI, or no tqdm): one line per tenth of the run and one for the last step, so a log
    holds no carriage returns. Disabled: nothing.
    """

    def __init__(
        self, total: int, desc: str, enabled: bool = True, stream: TextIO | None = None
    ) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled
        self.stream = sys.stderr if stream is None else stream
        self.every = max(1, total // LINES_PER_RUN)
        #: Steps reported so far.
        self.done = 0
        self._loss_sum: Any = None  # the losses since the last report, summed where they live
        self._losses = 0
        self._bar: Any = None
        if enabled and self.stream.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, desc=desc, unit="step", file=self.stream)

    def _reports(self, step: int) -> bool:
        """Whether the loss is shown after ``step`` (0-based)."""
        if self._bar is not None:
            return step % self.every == 0
        return (step + 1) % self.every == 0 or step + 1 == self.total

    def update(self, step: int, loss: Any) -> None:
        """Step ``step`` (0-based) is done, with batch loss ``loss``: a float or a 0-d tensor,
        summed where it lives (no device sync) and read only when a report is due."""
        self.done = step + 1
        if not self.enabled:
            return
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
        self._losses += 1
        if not self._reports(step):
            if self._bar is not None:
                self._bar.update(1)
            return
        mean = float(self._loss_sum) / self._losses
        self._loss_sum, self._losses = None, 0
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{mean:.3f}")
            self._bar.update(1)
        else:
            print(f"{self.desc} step {step + 1}/{self.total}  loss {mean:.3f}", file=self.stream)

    def close(self) -> None:
        """Close the bar, if any."""
        if self._bar is not None:
            self._bar.close()
