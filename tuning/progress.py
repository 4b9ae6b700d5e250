"""The progress hook of training and tuning: a plain callback, no display.

``on_progress(done, total, label)``: ``done`` of ``total`` units (stages of the
pipeline, or Tune trials), ``label`` what is happening now. The CLI passes one that draws
a bar on stderr (``app/cli/progress.py``); library callers pass their own or nothing.

:class:`Stages` counts the stages of one pipeline over such a callback: each call
``stage(label)`` says the previous stage is done and ``label`` starts. Example with
``total=3``: ``stage("read")``, ``stage("fit")``, ``stage.finish("done")`` report
``(0, 3, "read")``, ``(1, 3, "fit")``, ``(3, 3, "done")``.
"""

from __future__ import annotations

from collections.abc import Callable

OnProgress = Callable[[float, float, str], None]


class Stages:
    """The stage counter described in the module docstring; ``prefix`` goes before
    every label (a phase of a longer run: ``"preparing: "``); with ``on_progress`` None,
    every call does nothing."""

    def __init__(self, on_progress: OnProgress | None, total: int, prefix: str = "") -> None:
        self.on_progress, self.total, self.prefix, self.done = on_progress, total, prefix, 0

    def __call__(self, label: str) -> None:
        if self.on_progress is not None:
            self.on_progress(min(self.done, self.total), self.total, self.prefix + label)
        self.done += 1

    def finish(self, label: str) -> None:
        """Every stage done (also when the pipeline ends early: nothing to learn)."""
        self.done = self.total
        if self.on_progress is not None:
            self.on_progress(self.total, self.total, self.prefix + label)


def stage_of(on_stage: Callable[[str], None] | None) -> Callable[[str], None]:
    """``on_stage``, or a no-op when None (the functions that take an optional hook)."""
    return on_stage if on_stage is not None else _nothing


def _nothing(label: str) -> None:
    pass
