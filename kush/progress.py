"""Progress of long steps (transcoding, the demo film): a bar on a terminal, plain lines
when the output is a file or a pipe (logs and CI stay readable, no carriage returns).

The bar is tqdm's: elapsed time, ETA and the speed in media seconds per second
("2.1x realtime"), which says more about an encoder than percent per second.
"""

from __future__ import annotations

import shutil
import sys
from types import TracebackType
from typing import Never, TextIO

from tqdm import tqdm

PLAIN_STEP_PERCENT = 10
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}"


class ProgressReporter:
    """An ``on_progress(fraction)`` callback that draws itself; nothing is shown until
    the first report, so a step that turns out to have nothing to do stays silent."""

    def __init__(
        self,
        label: str,
        *,
        media_seconds: float | None = None,
        stream: TextIO | None = None,
        step_percent: int = PLAIN_STEP_PERCENT,
    ) -> None:
        self.label = label
        self.media_seconds = media_seconds if media_seconds and media_seconds > 0 else None
        self.stream = stream if stream is not None else sys.stdout
        self.step_percent = step_percent
        self.terminal = self.stream.isatty()
        self._bar: tqdm[Never] | None = None
        self._shown = -1  # last percentage printed as a plain line

    def __call__(self, fraction: float) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        if self.terminal:
            self._draw(fraction)
        else:
            self._line(int(fraction * 100))

    def _draw(self, fraction: float) -> None:
        if self._bar is None:
            self._bar = tqdm(
                total=100,
                desc=self.label,
                file=self.stream,
                bar_format=BAR_FORMAT,
                # the terminal's width, or 80 columns where it reports none (a bare pty)
                ncols=shutil.get_terminal_size().columns,
                leave=True,
            )
        bar = self._bar
        target = fraction * 100
        if self.media_seconds is not None:
            elapsed = bar.format_dict.get("elapsed") or 0.0
            if elapsed > 0:
                speed = fraction * self.media_seconds / elapsed
                bar.set_postfix_str(f"{speed:.1f}x realtime", refresh=False)
        if target > bar.n:
            bar.update(target - bar.n)

    def _line(self, percent: int) -> None:
        due = self._shown < 0 or percent >= self._shown + self.step_percent or percent == 100
        if due and percent != self._shown:
            self._shown = percent
            print(f"{self.label} {percent}%", file=self.stream, flush=True)

    def close(self) -> None:
        """Finish the bar (a final newline); plain lines need nothing."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
