"""Ingest throughput of HistoryStore vs writing the same rows with pyarrow directly.

Usage: ``python -m prescale.scripts.bench_ingest [--samples N] [--containers C] [--batch B]
[--flush-every F] [--json]``

The same ``Sample`` objects go, in batches of ``--batch`` (one tick of ``C``
containers), through

- ``HistoryStore.append_samples`` + ``flush`` every ``--flush-every`` batches
  (validation, partitioning, temp file + fsync + rename), and
- the monitor's path: ``Validator.filter`` (every sample checked) then
  ``RingBuffer.push`` per batch, and
- a baseline that turns the same batches into one Arrow table per flush and calls
  ``pyarrow.parquet.write_table`` on a plain path (no validation, no fsync).

It prints samples/s of each and their ratios against the baseline measured in the same
run (path / baseline): e.g. store 120 000 vs baseline 400 000 samples/s → ratio 0.30.
Nothing is asserted; numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import operator
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prescale.app.core.ring import RingBuffer
from prescale.app.core.sample import METRICS, Sample
from prescale.app.core.validation import Validator
from prescale.app.store.history import HistoryStore
from prescale.app.store.history_layout import SAMPLES_SCHEMA

T0 = 1_704_067_200.0


def make_batches(n_samples: int, containers: int) -> list[list[Sample]]:
    """Ticks of ``containers`` samples each, 1 s apart, with growing counters."""
    ticks = max(1, n_samples // containers)
    return [
        [
            Sample(f"c{c}", T0 + t, memory_usage_bytes=1e6 * (c + t), memory_limit_bytes=2e9,
                   cpu_usage_s_total=0.5 * t, cpu_quota_cores=1.0, app=f"app{c % 4}")
            for c in range(containers)
        ]
        for t in range(ticks)
    ]


def run_store(batches: list[list[Sample]], flush_every: int, root: Path) -> float:
    store = HistoryStore(root, flush_interval_s=1e9)
    start = time.perf_counter()
    for i, batch in enumerate(batches, 1):
        store.append_samples(batch)
        if i % flush_every == 0:
            store.flush()
    store.close()
    return time.perf_counter() - start


def run_monitor_path(batches: list[list[Sample]], window_steps: int = 60) -> float:
    """Validation + ring buffer, as MonitorActor.collect does for each tick."""
    validator = Validator()
    ring = RingBuffer(window_steps)
    now_s = batches[-1][0].ts_s + 1
    start = time.perf_counter()
    for batch in batches:
        for s in validator.filter(batch, now_s=now_s):
            ring.push(s)
    return time.perf_counter() - start


def run_baseline(batches: list[list[Sample]], flush_every: int, root: Path) -> float:
    root.mkdir(parents=True)
    get = operator.attrgetter("container", "app", *METRICS)
    start = time.perf_counter()
    pending: list[tuple] = []
    n_files = 0
    for i, batch in enumerate(batches, 1):
        pending.extend(get(s) for s in batch)
        if i % flush_every == 0 or i == len(batches):
            cols = list(zip(*pending, strict=True))
            table = pa.Table.from_arrays(
                [pa.array(c, type=f.type) for c, f in zip(cols, SAMPLES_SCHEMA, strict=True)],
                schema=SAMPLES_SCHEMA,
            )
            pq.write_table(table, root / f"part-{n_files}.parquet", compression="zstd")
            n_files += 1
            pending = []
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--flush-every", type=int, default=50, help="batches per flush")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.samples < 1 or args.containers < 1 or args.flush_every < 1:
        ap.error("--samples, --containers and --flush-every must be >= 1")
    batches = make_batches(args.samples, args.containers)
    n = sum(len(b) for b in batches)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        store_s = run_store(batches, args.flush_every, tmp / "store")
        monitor_s = run_monitor_path(batches)
        base_s = run_baseline(batches, args.flush_every, tmp / "baseline")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "samples": n,
        "containers": args.containers,
        "flush_every_ticks": args.flush_every,
        "monitor_samples_per_s": round(n / monitor_s),
        "store_samples_per_s": round(n / store_s),
        "write_table_samples_per_s": round(n / base_s),
        "ratio_monitor_to_write_table": round(base_s / monitor_s, 3),
        "ratio_store_to_write_table": round(base_s / store_s, 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:30} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
