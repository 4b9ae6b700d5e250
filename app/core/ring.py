"""Ring buffer of recent samples for many containers, read as one window array.

Each container owns ``steps`` rows of ``len(METRICS)`` floats. :meth:`window`
returns ``[N, steps, M]`` in insertion order per container, oldest first, with
all-NaN rows in front for containers that have fewer than ``steps`` samples.

Worked example: ``steps=3``; push ts 1, 2, 3, 4 for container "a" → the window
row of "a" has ``ts_s`` 2, 3, 4 (the oldest one fell off).
"""

from __future__ import annotations

import numpy as np

from prescale.app.core.sample import METRICS, Sample


class RingBuffer:
    def __init__(self, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = steps
        self._data: dict[str, np.ndarray] = {}
        self._count: dict[str, int] = {}

    def push(self, sample: Sample) -> None:
        buf = self._data.get(sample.container)
        if buf is None:
            buf = np.full((self.steps, len(METRICS)), np.nan)
            self._data[sample.container] = buf
            self._count[sample.container] = 0
        n = self._count[sample.container]
        buf[n % self.steps] = sample.row()
        self._count[sample.container] = n + 1

    def last(self, container: str) -> np.ndarray | None:
        n = self._count.get(container, 0)
        if n == 0:
            return None
        return self._data[container][(n - 1) % self.steps].copy()

    def forget(self, container: str) -> None:
        self._data.pop(container, None)
        self._count.pop(container, None)

    def names(self) -> list[str]:
        return sorted(self._data)

    def window(self, names: list[str] | None = None) -> tuple[list[str], np.ndarray]:
        """``(names, array[N, steps, M])`` for ``names`` (default: all, sorted)."""
        names = self.names() if names is None else names
        out = np.full((len(names), self.steps, len(METRICS)), np.nan)
        for i, name in enumerate(names):
            n = self._count.get(name, 0)
            if n == 0:
                continue
            buf = self._data[name]
            if n >= self.steps:
                start = n % self.steps
                out[i] = np.concatenate([buf[start:], buf[:start]])
            else:
                out[i, self.steps - n :] = buf[:n]
        return names, out


class FleetRing:
    """The same windows as :class:`RingBuffer` for a fixed fleet of N rows, written a
    whole step at a time (the evaluator's simulated fleet: no per-sample objects).

    Step k writes slot ``k mod steps`` of the rows it is given; :meth:`window` returns
    ``[len(rows), steps, M]``, oldest first. A row :meth:`reset` at step s (a container
    that starts existing) reads all-NaN before s, as a new container does in
    :class:`RingBuffer`. Worked example: ``steps=3``, row 0 written at steps 0–3 with
    ts 1, 2, 3, 4 → its window has ts 2, 3, 4; row 1 reset and written only at step 3
    → NaN, NaN, 4.
    """

    def __init__(self, n: int, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = steps
        self._data = np.full((n, steps, len(METRICS)), np.nan)
        self._k = -1

    def push(self, k: int, rows: np.ndarray | slice, values: np.ndarray) -> None:
        """Step ``k`` (non-decreasing across calls): ``values[len(rows), M]`` into ``rows``."""
        self._k = k
        self._data[rows, k % self.steps] = values

    def reset(self, rows: np.ndarray) -> None:
        self._data[rows] = np.nan

    def window(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        order = (np.arange(self.steps) + self._k + 1) % self.steps
        return self._data[rows][:, order]
