"""Training progress: a tqdm bar on a terminal, plain lines in a log file."""

from __future__ import annotations

import sys
from typing import Any, TextIO

#: Plain-line mode prints about this many lines per run.
LINES_PER_RUN = 10


class StepProgress:
    """Reports steps of one training run on ``stream`` (default: stderr).

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
        self._bar: Any = None
        if enabled and self.stream.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, desc=desc, unit="step", file=self.stream)

    def wants_loss(self, step: int) -> bool:
        """Whether :meth:`update` will show the loss of ``step`` (0-based): reading it
        synchronises the device, so the caller reads it only then."""
        if not self.enabled:
            return False
        if self._bar is not None:
            return step % self.every == 0
        return (step + 1) % self.every == 0 or step + 1 == self.total

    def update(self, step: int, loss: float | None) -> None:
        """Step ``step`` (0-based) is done; ``loss`` when :meth:`wants_loss` said so."""
        self.done = step + 1
        if self._bar is not None:
            if loss is not None:
                self._bar.set_postfix(loss=f"{loss:.3f}")
            self._bar.update(1)
        elif loss is not None:
            print(f"{self.desc} step {step + 1}/{self.total}  loss {loss:.3f}", file=self.stream)

    def close(self) -> None:
        """Close the bar, if any."""
        if self._bar is not None:
            self._bar.close()
