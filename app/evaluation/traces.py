"""Real-trace scenarios (an I/O edge: it reads files through the trace readers,
:mod:`app.telemetry.bitbrains`, :mod:`app.telemetry.google2011`, :mod:`app.telemetry.csv_trace`).

The named scenarios are subsets, so that ``prescale evaluate --scenario all`` stays
short on a small machine; each states its caps in the report's header and JSON
(``trace_info``). A file given with ``--trace`` is replayed whole unless a cap is asked
for (``--max-containers``, ``--max-steps``). The replay rules (real samples,
lifetimes, the starting limit, the pool sized from the trace) are those of
:func:`app.evaluation.trace_grid.from_samples`.

- ``bitbrains``: GWA-T-12 Bitbrains Rnd, the first :data:`BITBRAINS_VMS` VMs (natural
  order) of ``rnd-2013-07-vms-001-050.csv.gz``, the first :data:`BITBRAINS_DAYS` days
  (300 s steps). Demand = the VM's memory usage and CPU usage (cores); starting limits =
  its provisioned memory and cores. No failure labels: memory usage at or above the
  limit the policy set is an OOM kill, CPU above it throttling (a violation). Every
  prescale setting is the default (nothing is tuned for this scenario).
- ``google2011``: the first :data:`GOOGLE_TASKS` tasks of the Google 2011 usage file
  that have a memory request. The file has *one* 5-minute usage window per task, so a
  task is 2 samples (start, end: 2 steps of 300 s): demand = its max memory, first
  limit = its memory request. No policy can forecast from 2 samples (prescale needs
  ``predictor.min_samples``); this scenario shows that plainly rather than hiding it.
- any file given with ``--trace``: a Bitbrains-format file (it has a ``vm_id``
  column), or a CSV/Parquet file with a ``container`` and a ``ts_s`` column and any
  of ``memory_usage_bytes``, ``memory_limit_bytes``, ``cpu_usage_s_total``,
  ``cpu_quota_cores`` (Sample units; counters cumulative).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prescale.app.evaluation.scenarios import Scenario
from prescale.app.evaluation.trace_grid import from_samples
from prescale.app.telemetry.bitbrains import read_bitbrains
from prescale.app.telemetry.csv_trace import read_csv_mapping
from prescale.app.telemetry.google2011 import read_google2011
from prescale.app.telemetry.trace_data import (
    BITBRAINS_RND_FILE,
    GOOGLE2011_EVENTS_FILE,
    GOOGLE2011_USAGE_FILE,
    TRACE_DIR_ENV,
    TraceData,
    find_trace_dir,
    first_line,
)

BITBRAINS_VMS = 20
BITBRAINS_DAYS = 7
GOOGLE_TASKS = 200
_GENERIC_METRICS = ("memory_usage_bytes", "memory_limit_bytes", "cpu_usage_s_total",
                    "cpu_quota_cores")


class TraceMissing(FileNotFoundError):
    """A trace file is not there (the message names the path)."""


def _cpu_cores(df: pd.DataFrame) -> np.ndarray:
    """Cores from the cumulative ``cpu_usage_s_total`` of consecutive samples of a
    container (the first sample of each container: the next one's rate)."""
    out = np.full(len(df), np.nan)
    for _, g in df.groupby("container", sort=False):
        ts = g["ts_s"].to_numpy(float)
        cpu = g["cpu_usage_s_total"].to_numpy(float)
        rate = np.diff(cpu) / np.maximum(np.diff(ts), 1e-9)
        if len(rate):
            out[g.index.to_numpy()] = np.concatenate([[rate[0]], rate])
    return out


def scenario_from_trace(data: TraceData, name: str, description: str, *,
                        max_containers: int | None = None, max_steps: int | None = None,
                        keep: list[str] | None = None) -> Scenario:
    df = data.samples
    if keep is not None:
        df = df[df["container"].isin(keep)]
    df = df.sort_values(["container", "ts_s"], kind="stable").reset_index(drop=True)
    return from_samples(
        name, description, df["container"].to_numpy(object), df["ts_s"].to_numpy(float),
        df["memory_usage_bytes"].to_numpy(float), df["memory_limit_bytes"].to_numpy(float),
        _cpu_cores(df), df["cpu_quota_cores"].to_numpy(float),
        max_containers=max_containers, max_steps=max_steps, source=data.source)


def _need(path: Path) -> Path:
    if not path.is_file():
        raise TraceMissing(f"trace file not found: {path} (set {TRACE_DIR_ENV} or put the "
                           "shared traces in ../shared/data)")
    return path


def bitbrains(trace_dir: Path | None = None) -> Scenario:
    path = _need((trace_dir or find_trace_dir()) / BITBRAINS_RND_FILE)
    data = read_bitbrains(path)
    steps = int(BITBRAINS_DAYS * 86_400 / 300)
    return scenario_from_trace(
        data, "bitbrains", f"Bitbrains Rnd: VMs 1-{BITBRAINS_VMS}, first {BITBRAINS_DAYS} "
        "days, 300 s steps; limits start at the provisioned values",
        max_containers=BITBRAINS_VMS, max_steps=steps)


def google2011(trace_dir: Path | None = None) -> Scenario:
    d = trace_dir or find_trace_dir()
    data = read_google2011(_need(d / GOOGLE2011_USAGE_FILE),
                              _need(d / GOOGLE2011_EVENTS_FILE))
    s = data.samples
    with_req = s[np.isfinite(s["memory_limit_bytes"].to_numpy(float))]
    keep = sorted(with_req["container"].unique())[:GOOGLE_TASKS]
    sc = scenario_from_trace(
        data, "google2011", f"Google 2011: {len(keep)} tasks with a memory request, one "
        "5-min usage window each (2 samples): demand = max memory, limit = request",
        max_containers=GOOGLE_TASKS, max_steps=10, keep=keep)
    return sc


def from_file(path: str | Path, *, max_containers: int | None = None,
              max_steps: int | None = None) -> Scenario:
    """Any trace file (module docstring), whole unless a cap is given. Raises
    :class:`TraceMissing` or ValueError."""
    for what, cap in (("--max-containers", max_containers), ("--max-steps", max_steps)):
        if cap is not None and cap < 1:
            raise ValueError(f"{what} must be >= 1, got {cap}")
    p = _need(Path(path))
    head = first_line(p) if p.suffix not in (".parquet", ".pq") else ""
    if "vm_id" in head:
        data = read_bitbrains(p)
    else:
        if p.suffix in (".parquet", ".pq"):
            cols = list(pd.read_parquet(p).columns)
        else:
            cols = [c.strip() for c in head.split(",")]
        if "container" not in cols or "ts_s" not in cols:
            raise ValueError(f"trace {p}: needs a 'container' and a 'ts_s' column (or the "
                             f"Bitbrains format with 'vm_id'); it has {cols}")
        mapping = {m: m for m in _GENERIC_METRICS if m in cols}
        if "memory_usage_bytes" not in mapping:
            raise ValueError(f"trace {p}: needs a 'memory_usage_bytes' column")
        data = read_csv_mapping(p, mapping, container_col="container", ts_col="ts_s")
    return scenario_from_trace(data, "trace", f"trace file {p.name}",
                               max_containers=max_containers, max_steps=max_steps)


TRACE_BUILDERS = {"bitbrains": bitbrains, "google2011": google2011}
