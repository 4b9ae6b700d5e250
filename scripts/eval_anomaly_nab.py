"""Score the anomaly detector (and a |z| > 3 baseline) on the labelled NAB windows.

Usage::

    .venv/bin/python scripts/eval_anomaly_nab.py [--data-dir DIR] [--window-points 12]
        [--contamination 0.01] [--seed 0] [--sensitivity]

Prints a Markdown table (one row per file, then the totals) for docs/BENCHMARKS.md.
The rules (probation, flags, windows, alarms, delay) are in
:mod:`app.models.anomaly_series`'s docstring. ``--sensitivity`` adds the totals for other
seeds, windows and contaminations (reported, never used to pick the defaults).
Exit codes: 0 ok, 2 data missing or malformed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from prescale.app.models.anomaly_series import (
    SeriesResult,
    WindowScore,
    evaluate_series,
    rows_in_windows,
)
from prescale.app.telemetry.nab import NabSeries, find_nab_dir, load_nab

DEFAULT_WINDOW_POINTS = 12  # 1 hour of NAB's 5-minute steps
DEFAULT_CONTAMINATION = 0.01  # flag above the training 99th percentile
DEFAULT_SEED = 0


def evaluate_all(
    series: Sequence[NabSeries], *, window_points: int, contamination: float, seed: int
) -> list[SeriesResult]:
    return [
        evaluate_series(
            s.ts_s,
            s.value,
            s.windows_s,
            window_points=window_points,
            contamination=contamination,
            seed=seed,
        )
        for s in series
    ]


def chance_precision(series: Sequence[NabSeries], results: Sequence[SeriesResult]) -> float:
    """Fraction of the scored rows (after probation) that lie inside a labelled window:
    the precision of a detector that flags rows at random."""
    inside = total = 0
    for s, r in zip(series, results, strict=True):
        scored = s.ts_s[r.probation_rows :]
        inside += int(rows_in_windows(scored, s.windows_s).sum())
        total += scored.size
    return inside / total if total else math.nan


def _rate(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.3f}"


def _hours(delay_s: float) -> str:
    return "—" if math.isnan(delay_s) else f"{delay_s / 3600:.1f}"


def _cells(score: WindowScore) -> list[str]:
    return [
        str(score.detected),
        _rate(score.recall),
        str(score.alarms),
        str(score.true_alarms),
        _rate(score.precision),
        _hours(score.median_delay_s),
    ]


HEADER = (
    "| file | rows | probation | windows "
    "| IF detected | IF recall | IF alarms | IF true alarms | IF precision | IF median delay (h) "
    "| z detected | z recall | z alarms | z true alarms | z precision | z median delay (h) |"
)


def render_table(names: Sequence[str], results: Sequence[SeriesResult]) -> str:
    """The per-file Markdown table with a totals row (IF = isolation forest, z = baseline)."""
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for name, r in zip(names, results, strict=True):
        cells = [name.removesuffix(".csv"), str(r.rows), str(r.probation_rows)]
        cells += [str(r.detector.windows), *_cells(r.detector), *_cells(r.baseline)]
        lines.append("| " + " | ".join(cells) + " |")
    det = WindowScore.total([r.detector for r in results])
    base = WindowScore.total([r.baseline for r in results])
    total = [
        f"**all {len(results)} files**",
        str(sum(r.rows for r in results)),
        str(sum(r.probation_rows for r in results)),
        str(det.windows),
        *_cells(det),
        *_cells(base),
    ]
    lines.append("| " + " | ".join(total) + " |")
    return "\n".join(lines)


def _totals_row(label: str, results: Sequence[SeriesResult], which: str) -> str:
    score = WindowScore.total([getattr(r, which) for r in results])
    return f"| {label} | {score.windows} | " + " | ".join(_cells(score)) + " |"


def sensitivity(series: Sequence[NabSeries], w: int, c: float, seed: int) -> str:
    head = (
        "| setting | windows | detected | recall | alarms | true alarms | precision "
        "| median delay (h) |\n|---|---|---|---|---|---|---|---|"
    )
    rows = [head]
    baseline_done = set()
    grid = [(w, c, s) for s in (seed, seed + 1, seed + 2, seed + 3, seed + 4)]
    grid += [(ww, c, seed) for ww in (6, 24, 48) if ww != w]
    grid += [(w, cc, seed) for cc in (0.001, 0.05) if cc != c]
    for ww, cc, ss in grid:
        results = evaluate_all(series, window_points=ww, contamination=cc, seed=ss)
        rows.append(_totals_row(f"IF W={ww} contamination={cc} seed={ss}", results, "detector"))
        if ww not in baseline_done:
            baseline_done.add(ww)
            rows.append(_totals_row(f"z baseline, merge gap W={ww}", results, "baseline"))
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="the nab-aws directory")
    parser.add_argument("--window-points", type=int, default=DEFAULT_WINDOW_POINTS)
    parser.add_argument("--contamination", type=float, default=DEFAULT_CONTAMINATION)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--sensitivity", action="store_true", help="add a sensitivity table")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    root = args.data_dir
    if root is None:
        root, why = find_nab_dir()
        if root is None:
            print(why, file=sys.stderr)
            return 2
    try:
        series = load_nab(root)
        loaded = time.perf_counter()
        results = evaluate_all(
            series,
            window_points=args.window_points,
            contamination=args.contamination,
            seed=args.seed,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scored = time.perf_counter()

    print(
        f"NAB ({root}): {len(series)} files, "
        f"{sum(len(s.windows_s) for s in series)} labelled windows. "
        f"IF = isolation forest on [window_mean, window_std, zscore_last, delta_last] over "
        f"W = {args.window_points} points, contamination {args.contamination} (flag score > "
        f"{1 - args.contamination:g}), seed {args.seed}; z = |x − μ|/σ > 3 with μ, σ of the "
        f"probation rows. Alarms merge flags < W rows apart.\n"
    )
    print(render_table([s.name for s in series], results))
    print(
        f"\nChance level: {chance_precision(series, results):.3f} of the scored rows lie "
        "inside a labelled window (the precision of flagging rows at random)."
    )
    print(
        f"\nLoad {loaded - started:.2f} s, fit + score {scored - loaded:.2f} s "
        f"({sum(s.rows for s in series)} rows)."
    )
    if args.sensitivity:
        print("\nSensitivity (totals only; the defaults above were fixed before any run):\n")
        print(sensitivity(series, args.window_points, args.contamination, args.seed))
        print(f"\nTotal {time.perf_counter() - started:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
