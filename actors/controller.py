"""Cluster mode: the control loop on a Ray cluster, as a Ray job.

    ray job submit --address http://<head>:8265 --working-dir . -- \\
        python -m prescale.actors.controller --config configs/cluster.toml

starts (or takes over) one monitor per node, pinned to it, and the pool manager and
the coordinator as named actors (detached when ``ray.detached``; restartable), then
paces the loop: one ``run_once`` per ``loop.interval_s``. Nodes that join later get a
monitor within ``--discover-every`` ticks; a node that leaves takes its monitor with
it, and the coordinator marks its containers unknown and goes on.

Stopping: ``ray job stop`` (SIGTERM), Ctrl-C or ``--duration`` end the loop after the
current tick; the monitors flush their history buffers and the actors are stopped,
unless ``--keep-actors`` (then a new controller with the same ``--run-id`` resumes the
detached actors and their checkpoints). Exit code 0 on a clean stop, 2 on a bad config.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from prescale.app.settings import CLUSTER_CONFIG_PATH, ConfigError, load_settings
from prescale.app.store.run_lock import LockHeld, RunLock

log = logging.getLogger("prescale.controller")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m prescale.actors.controller",
                                description="Run prescale's control loop on a Ray cluster.")
    p.add_argument("--config", type=Path, default=CLUSTER_CONFIG_PATH,
                   help="TOML settings (default: the cluster.toml shipped with prescale, "
                        "configs/cluster.toml in a checkout)")
    p.add_argument("--run-id", default=None,
                   help="Names this loop's checkpoints and log records (default: "
                        "'cluster-<namespace>'); a controller with the same id resumes.")
    p.add_argument("--duration", type=float, default=None,
                   help="Stop after this many seconds (default: until stopped).")
    p.add_argument("--discover-every", type=int, default=10,
                   help="Look for new nodes every N ticks (default 10).")
    p.add_argument("--keep-actors", action="store_true",
                   help="On stop, leave the (detached) actors running.")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        s = load_settings(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.duration is not None and args.duration <= 0:
        print(f"error: --duration must be > 0, got {args.duration}", file=sys.stderr)
        return 2
    if args.discover_every < 1:
        print(f"error: --discover-every must be >= 1, got {args.discover_every}",
              file=sys.stderr)
        return 2
    s = s.model_copy(update={"data_dir": Path(s.data_dir).resolve()})
    run_id = args.run_id or f"cluster-{s.ray.namespace}"

    import ray

    from prescale.actors import runtime

    lock = RunLock(s.data_dir, f"prescale controller {run_id}")
    try:
        lock.acquire()
    except (LockHeld, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    runtime.init_ray(s, quiet=True)
    # after ray.init, which installs its own SIGTERM handler (it would exit uncleanly)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    t0 = time.monotonic()
    handles = runtime.start_actors(s, run_id)
    log.info("controller %s: %d monitor(s) on %s; pool and coordinator up in %.2f s",
             run_id, len(handles.monitors), ", ".join(n[:8] for n in handles.monitors),
             time.monotonic() - t0)
    ticks = {"n": 0}

    def on_tick(summary: dict) -> None:
        ticks["n"] += 1
        if ticks["n"] % args.discover_every == 0:
            handles.monitors.update(runtime.start_monitors(s))
        if summary["decisions"] or summary["unknown"] or summary["errors"]:
            log.info("tick %d: %d containers on %d monitors, %d asks %s, unknown %s, "
                     "errors %s", summary["tick"], summary["containers"], summary["monitors"],
                     summary["decisions"], summary["actions"], summary["unknown"],
                     summary["errors"])

    try:
        n = runtime.run_loop(handles, s, duration_s=args.duration, stop=stop, on_tick=on_tick)
    finally:
        if not args.keep_actors:
            runtime.stop_actors(handles, s)
        ray.shutdown()
        lock.release()
    log.info("controller %s stopped cleanly after %d ticks", run_id, n)
    print(f"prescale controller stopped cleanly after {n} ticks", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
