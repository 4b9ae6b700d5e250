"""Live progress for the long commands (``evaluate``, ``train``, ``tune``, ``replay``).

The work itself (the evaluation runs, the training pipeline, the Tune search, the
replay) knows nothing of rich: it takes a plain callback ``on_progress(done, total,
label)`` — ``done`` of ``total`` units (runs, stages, trials, rows; ``done`` may be
fractional, ``total`` may change between the phases of one command) and a label that
says what is happening now. :class:`Progress` is that callback for the CLI:

- stderr is a terminal (or ``--progress``): a rich bar on stderr, redrawn in place and
  left on screen at the end with its final count and elapsed time;
- ``--progress`` without a terminal (a log file, CI): plain lines on stderr, one for
  each unit of a small count (runs, stages, trials), one every 10 % of a large one
  (rows) and one for each new label while there is no count; always the first and the
  last;
- stderr is not a terminal and no flag, or ``--no-progress``: nothing.

Never on stdout: ``-o json``/``-o jsonl`` keep stdout one document / one object a line.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any, TextIO

import typer

#: ``--progress/--no-progress``: default auto (on when stderr is a terminal)
ProgressOpt = Annotated[bool | None, typer.Option(
    "--progress/--no-progress", show_default=False,
    help="A live progress bar on stderr (never stdout). Default: on when stderr is a "
    "terminal; --progress without one prints plain progress lines.")]

#: a count at or under this is shown unit by unit on plain lines; above, every 10 %
SMALL_TOTAL = 100

OnProgress = Callable[[float, float, str], None]


def wanted(flag: bool | None, stream: TextIO | None = None) -> bool:
    """Whether to show progress: the flag when given, else whether stderr is a terminal."""
    if flag is not None:
        return flag
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def plain_line(what: str, done: float, total: float | None, label: str, elapsed_s: float,
               unit: str = "") -> str:
    """One progress line without a terminal, e.g. ``evaluate: 3/18 runs (17%) running
    leak/vpa 40% [0:00:12]``; without a total, the count (when not 0) and the label."""
    m, s = divmod(int(elapsed_s), 60)
    h, m = divmod(m, 60)
    clock = f"{h}:{m:02d}:{s:02d}"
    if total:
        share = f" ({min(done / total, 1.0):.0%})" if total > 1 else ""
        count = f"{_n(done)}/{_n(total)}{' ' + unit if unit else ''}{share}"
    else:
        count = _n(done) if done else ""
    text = " ".join(t for t in (count, label) if t)
    return f"{what}: {text} [{clock}]"


def _n(v: float) -> str:
    return f"{int(v):,}"


class Progress:
    """``on_progress(done, total, label)`` shown on stderr (see the module docstring);
    a context manager: the bar starts on entry and stops (left on screen) on exit.

    ``what`` names the command on the bar (``evaluate``), ``unit`` what it counts
    (``runs``; empty when the label says it). ``enabled`` False: every call does nothing.
    ``stream``: stderr (tests pass their own); a terminal gets the rich bar, anything
    else plain lines."""

    def __init__(self, what: str, enabled: bool, *, unit: str = "",
                 stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.unit, self.enabled, self.clock = what, unit, enabled, clock
        self.stream = stream
        self._bar: Any = None
        self._task: Any = None
        self._t0 = clock()
        self._last: tuple[Any, ...] | None = None  # what the last line said

    def _out(self) -> TextIO:
        return sys.stderr if self.stream is None else self.stream

    def __enter__(self) -> Progress:
        self._t0 = self.clock()
        if self.enabled and wanted(None, self._out()):
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress
            from rich.table import Column

            console = Console(file=self.stream, stderr=self.stream is None)
            self._bar = RichProgress(
                TextColumn(f"[bold]{self.what}[/bold]"), BarColumn(bar_width=30),
                MofNCompleteColumn(), *([TextColumn(self.unit)] if self.unit else []),
                TimeElapsedColumn(),
                TextColumn("{task.description}", markup=False, table_column=Column(
                    no_wrap=True, overflow="ellipsis", ratio=1)),  # the one cut short
                console=console, transient=False, refresh_per_second=4, expand=True,
                redirect_stdout=False)  # stdout is the result's, never the bar's
            self._task = self._bar.add_task("starting", total=None)
            self._bar.start()
        return self

    def __call__(self, done: float, total: float | None, label: str = "") -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total, description=label)
            return
        self._line(done, total, label)

    def _line(self, done: float, total: float | None, label: str) -> None:
        whole = int(math.floor(done + 1e-9))
        if not total:  # no count to go by: a new label is the news
            key: tuple[Any, ...] = (total, label)
        elif total <= SMALL_TOTAL:
            key = (total, whole)
        else:
            key = (total, int(10 * done / total))
        if key == self._last:
            return  # the same total and the same unit (or 10 % bucket): nothing new
        self._last = key
        print(plain_line(self.what, done, total, label, self.clock() - self._t0, self.unit),
              file=self._out(), flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

