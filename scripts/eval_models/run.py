"""Evaluate every failure model kind on real and simulated data (issue 4's acceptance).

Usage::

    .venv/bin/python -m prescale.scripts.eval_models [--quick] [--json] [--data-dir DIR]
        [--kinds random_forest,heuristic,...]

Prints Markdown tables for docs/BENCHMARKS.md (``--json``: one JSON object instead).
``--quick`` is a reduced configuration for the tests (well under 90 s). Exit codes:
0 ok, 2 bad arguments. A missing trace is not an error: its part says "skipped" and why.
The parts: Google 2011 (:mod:`.google`) and the replay fleets (:mod:`.fleets`).

Timings: wall seconds per step and part, the process's CPU seconds, and the 1-minute
load average at the start and the end (the machine is shared: wall time under load
can be 2–3 × the CPU time divided by the 2 cores).
"""


from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from prescale.app.models import MODEL_KINDS, torch_available
from prescale.app.telemetry.trace_data import find_trace_dir
from prescale.scripts.eval_models.config import FULL, QUICK, EvalConfig, default_kinds
from prescale.scripts.eval_models.fleets import evaluate_bitbrains, evaluate_sim
from prescale.scripts.eval_models.google import evaluate_google
from prescale.scripts.eval_models.report import render


def _clean(value: Any) -> Any:
    """JSON-safe: nan/inf → None, numpy scalars → Python, recursively."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value



def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def run(cfg: EvalConfig, data_dir: Path, kinds: Sequence[str],
        parts: Sequence[str] = ("google2011", "sim", "bitbrains")) -> dict[str, Any]:
    started = time.perf_counter()
    cpu_started = time.process_time()
    load_start = _load()
    timings: dict[str, float] = {}
    skipped = {"skipped": "not asked for (--parts)"}
    t = time.perf_counter()
    google = evaluate_google(cfg, data_dir, kinds) if "google2011" in parts else skipped
    timings["google2011"] = time.perf_counter() - t
    t = time.perf_counter()
    sim = evaluate_sim(cfg, kinds) if "sim" in parts else skipped
    timings["sim"] = time.perf_counter() - t
    t = time.perf_counter()
    bitbrains = evaluate_bitbrains(cfg, data_dir, kinds) if "bitbrains" in parts else skipped
    timings["bitbrains"] = time.perf_counter() - t
    timings["all"] = time.perf_counter() - started
    timings["cpu_all"] = time.process_time() - cpu_started
    timings["load_avg_1m_start"] = load_start
    timings["load_avg_1m_end"] = _load()
    config = asdict(cfg)
    config["kinds"] = list(kinds)
    return {
        "config": config,
        "data_dir": str(data_dir),
        "kinds": list(kinds),
        "google2011": google,
        "fleets": {"sim": sim, "bitbrains": bitbrains},
        "timings_s": timings,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prescale.scripts.eval_models",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced configuration (tests)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="directory holding google2011/ and bitbrains-rnd/ "
                             "(default: $PRESCALE_TRACE_DIR or ../shared/data)")
    parser.add_argument("--kinds", default=None,
                        help=f"comma-separated model kinds (default: all of {list(MODEL_KINDS)}"
                             " that are installed)")
    parser.add_argument("--parts", default="google2011,sim,bitbrains",
                        help="comma-separated parts to run (default: all three)")
    args = parser.parse_args(argv)
    kinds = default_kinds()
    if args.kinds:
        kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
        unknown = [k for k in kinds if k not in MODEL_KINDS]
        if unknown or not kinds:
            print(f"error: unknown model kinds {unknown}; known: {list(MODEL_KINDS)}",
                  file=sys.stderr)
            return 2
        if "lstm" in kinds and not torch_available():
            print("error: the lstm kind needs PyTorch: pip install 'prescale[lstm]'",
                  file=sys.stderr)
            return 2
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    bad = [p for p in parts if p not in ("google2011", "sim", "bitbrains")]
    if bad or not parts:
        print(f"error: unknown parts {bad}; known: google2011, sim, bitbrains", file=sys.stderr)
        return 2
    cfg = QUICK if args.quick else FULL
    data_dir = args.data_dir if args.data_dir is not None else find_trace_dir()
    report = run(cfg, data_dir, kinds, parts)
    if args.json:
        print(json.dumps(_clean(report), indent=1, allow_nan=False))
    else:
        print(render(report))
    return 0

