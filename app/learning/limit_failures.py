"""Failures derived from usage against a limit, for traces that record none (pure).

Bitbrains (and any usage-only trace) has no failure events. A static limit, as a
VPA or an operator would set it, turns usage into failures the way the kernel would:
a reading at or above the limit is an OOM kill (:func:`app.learning.labels.memory_exhausted`,
the test ``prescale evaluate`` applies too). This is how Autopilot and the VPA are
evaluated (slack against limit violations). ``prescale replay --derive-failures`` and
``scripts/eval_models.py`` both derive them here, so both train on the same labels.

:func:`derive_limit_failures`:

1. A ``memory_usage_bytes`` of 0 is missing (``nan``; also the working set): a running
   VM never uses 0 bytes, it is off or not measured.
2. Per container (rows by time), the limit is ``L = limit_multiple × median`` of the
   valid readings among its first ``ceil(first_fraction × rows)`` rows; it replaces
   ``memory_limit_bytes``. A container with fewer than ``min_first_readings`` valid
   readings there gets no limit and is left out (reported in ``info``).
3. An ``oom_kill`` at every valid reading ``≥ L`` whose previous valid reading was
   ``< L`` (or that is the container's first valid reading): an upward crossing. The
   container is then treated as restarted: its recorded usage carries on (what a
   restarted VM would have used is not in the trace), and the next kill needs the usage
   to come back under L and cross again. ``oom_kills_total`` counts the kills so far.
4. ``running`` (returned column): the reading is valid and ``< L``. A window that ends
   on a row that is not running is a container being killed: nothing to predict.

Worked example (one container, ``limit_multiple = 1.2``, ``first_fraction = 0.5``):
usage 100, 0, 140, 130, 170, 150, 120, 160 → 0 is missing; the first 4 rows hold
100, 140, 130 → median 130 → L = 156; at or above L: 170 (row 4, previous valid 130 →
a kill) and 160 (row 7, previous valid 120 → a kill); 150 is not. So
``oom_kills_total`` = 0, 0, 0, 0, 1, 1, 1, 2 and running = T, F, T, T, F, T, T, F.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from prescale.app.core.sample import EventKind
from prescale.app.learning.labels import memory_exhausted

#: Defaults of the derivation (``prescale replay --derive-failures``, eval_models).
DEFAULT_LIMIT_MULTIPLE = 1.3
DEFAULT_FIRST_FRACTION = 0.25
DEFAULT_MIN_FIRST_READINGS = 10


def describe(limit_multiple: float, first_fraction: float) -> str:
    """The ``detail`` of a derived kill, e.g. ``derived: usage ≥ 1.3 × median of the
    first 25% of readings``."""
    return (f"derived: usage ≥ {limit_multiple:g} × median of the first "
            f"{first_fraction:.0%} of readings")


def derive_limit_failures(
    samples: pd.DataFrame,
    *,
    limit_multiple: float = DEFAULT_LIMIT_MULTIPLE,
    first_fraction: float = DEFAULT_FIRST_FRACTION,
    min_first_readings: int = DEFAULT_MIN_FIRST_READINGS,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Give each container a memory limit and derive OOM kills from it (module doc).

    ``samples`` has ``container``, ``app``, ``ts_s``, ``memory_usage_bytes`` and
    ``memory_working_set_bytes`` (other columns are kept). Returns ``(samples sorted by
    container and time with memory_limit_bytes, oom_kills_total and running, events,
    info)``; the events have the columns ``container, app, ts_s, kind, detail``.
    """
    if not (isinstance(limit_multiple, int | float) and math.isfinite(limit_multiple)
            and limit_multiple > 0):
        raise ValueError(f"limit_multiple must be a finite number > 0, got {limit_multiple!r}")
    if not (isinstance(first_fraction, int | float) and 0 < first_fraction <= 1):
        raise ValueError(f"first_fraction must be in (0, 1], got {first_fraction!r}")
    if isinstance(min_first_readings, bool) or not isinstance(min_first_readings, int) \
            or min_first_readings < 1:
        raise ValueError(f"min_first_readings must be an int ≥ 1, got {min_first_readings!r}")
    missing = [c for c in ("container", "app", "ts_s", "memory_usage_bytes",
                           "memory_working_set_bytes") if c not in samples.columns]
    if missing:
        raise ValueError(f"samples lack the columns {missing}")
    df = samples.sort_values(["container", "ts_s"], kind="stable").reset_index(drop=True)
    usage = df["memory_usage_bytes"].to_numpy(np.float64).copy()
    usage[usage == 0] = np.nan
    df["memory_usage_bytes"] = usage
    ws = df["memory_working_set_bytes"].to_numpy(np.float64).copy()
    ws[ws == 0] = np.nan
    df["memory_working_set_bytes"] = ws

    codes, names = pd.factorize(df["container"], sort=False)
    n_rows = np.bincount(codes, minlength=len(names))
    start = np.r_[0, np.cumsum(n_rows)[:-1]]
    pos = np.arange(len(df)) - start[codes]
    first = pos < np.ceil(first_fraction * n_rows)[codes]
    valid = ~np.isnan(usage)
    first_vals = pd.Series(np.where(first & valid, usage, np.nan))
    med = first_vals.groupby(codes).median().to_numpy()
    n_first = pd.Series(first & valid).groupby(codes).sum().to_numpy()
    limit_vm = np.where(n_first >= min_first_readings, limit_multiple * med, np.nan)
    keep_vm = np.isfinite(limit_vm)
    limit = limit_vm[codes]

    above = valid & memory_exhausted(usage, limit)
    # previous valid reading of the same container: forward-fill "above" over valid rows
    prev_above = pd.Series(np.where(valid, above, np.nan)).groupby(codes).shift(1)
    prev_above = prev_above.groupby(codes).ffill().to_numpy()
    kill = above & ~(prev_above == 1.0)  # nan (no previous valid reading) counts as < L
    df["memory_limit_bytes"] = limit
    df["oom_kills_total"] = pd.Series(kill.astype(np.float64)).groupby(codes).cumsum().to_numpy()
    df["running"] = valid & ~above
    kept = keep_vm[codes]
    out = df[kept].reset_index(drop=True)
    k = kill[kept]
    events = pd.DataFrame({
        "container": out["container"].to_numpy()[k],
        "app": out["app"].to_numpy()[k],
        "ts_s": out["ts_s"].to_numpy(np.float64)[k],
        "kind": EventKind.OOM_KILL.value,
        "detail": describe(limit_multiple, first_fraction),
    })
    info = {
        "containers": int(keep_vm.sum()),
        "containers_without_limit": [str(names[i]) for i in np.flatnonzero(~keep_vm)],
        "rows": int(len(out)),
        "missing_readings": int((~valid[kept]).sum()),
        "rows_at_or_above_limit": int(above[kept].sum()),
        "oom_kills": int(k.sum()),
        "limit_multiple": float(limit_multiple),
        "first_fraction": float(first_fraction),
    }
    return out, events, info
