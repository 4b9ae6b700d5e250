"""The commands that run prescale: `prescale up` (the control loop), `prescale serve`
(the prediction API) and `prescale demo` (real workloads under the loop)."""

from __future__ import annotations

import json
import signal
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from prescale.app.cli.common import (
    ConfigOpt,
    ModeOpt,
    err,
    fmt_bytes,
    fmt_cores,
    out,
    settings_or_exit,
)
from prescale.app.settings import Mode
from prescale.app.store.run_lock import LockHeld, RunLock


def up(config: ConfigOpt = None, mode: ModeOpt = None,
       address: Annotated[str | None, typer.Option(
           "--address", metavar="ADDR",
           help="An existing Ray cluster (auto, or host:port of its GCS) instead of an "
                "embedded one; same as ray.address.")] = None) -> None:
    """Run the control loop locally (embedded Ray, or --address) until Ctrl-C."""
    from prescale.actors import runtime
    from prescale.app.edges.cgroupfs import CgroupError
    from prescale.app.telemetry.cgroup import discover

    s = settings_or_exit(config, mode=mode)
    if address is not None:
        if not address.strip():
            err.print("error: --address is empty (give auto, or host:port of the Ray GCS)")
            raise typer.Exit(2)
        s = settings_or_exit(config, mode=mode, ray={**s.ray.model_dump(), "address": address})
    s = s.model_copy(update={"data_dir": Path(s.data_dir).resolve()})
    others = [name for name, on in (
        ("docker", s.sources.docker), ("serve apps", bool(s.sources.serve_apps)),
        ("serve deployments", s.sources.serve_deployments), ("processes",
                                                             bool(s.sources.processes)),
        ("prometheus", bool(s.sources.prometheus_url)), ("ray workers", s.sources.ray_workers),
        ("managed actors", s.sources.managed_actors), ("simulated", bool(s.sources.simulated)),
    ) if on]
    if not s.cgroup.roots and not others:
        err.print("warning: cgroup.roots is empty and no other source is on: no container "
                  "will be watched")
    try:
        found = discover(s.cgroup)
    except CgroupError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    lock = RunLock(s.data_dir, "prescale up")
    try:
        lock.acquire()
    except (LockHeld, OSError) as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    err.print(f"prescale up: mode={s.mode.value}, {len(found)} cgroup container(s)"
              + (f", sources: {', '.join(others)}" if others else "")
              + f", data in {s.data_dir}; Ctrl-C or SIGTERM to stop")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_id = f"up-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    handles = None
    n = 0
    try:
        runtime.init_ray(s)
        # after ray.init, which installs its own SIGTERM handler (sys.exit from inside
        # the loop: a crash dump and exit 15 instead of a clean stop)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        handles = runtime.start_actors(s, run_id)

        degraded = {"reason": None}

        def tick(summary: dict) -> None:
            for line in summary.get("notices", ()):
                err.print(f"warning: state set aside: {line}")
            now = (summary.get("degraded") or {}).get("reason")
            if now != degraded["reason"]:
                err.print(f"DEGRADED: {now} (scale-ups go on, scale-downs stop, records "
                          f"are buffered)" if now else "degraded mode over: all writes "
                          "succeed again")
                degraded["reason"] = now
            if summary["decisions"] or summary["errors"]:
                err.print(f"tick {summary['tick']}: {summary['containers']} containers, "
                          f"actions {summary['actions']}, errors {summary['errors']}")
        n = runtime.run_loop(handles, s, stop=stop, on_tick=tick)
    finally:
        if handles is not None:
            runtime.stop_actors(handles)
        import ray
        ray.shutdown()
        lock.release()
    err.print(f"stopped after {n} ticks")


def serve(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
) -> None:
    """Run the prediction API (Ray Serve: /v1/predict, /v1/recommend, ...) until Ctrl-C."""
    from prescale.app.serve_app import run_serve

    s = settings_or_exit(config)
    try:
        run_serve(s, host=host, port=port, blocking=True)
    except RuntimeError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(1) from None


def demo(
    config: ConfigOpt = None,
    mode: Annotated[Mode, typer.Option("--mode", help="off | recommend | auto.")] = Mode.AUTO,
    duration: Annotated[
        float | None, typer.Option("--duration", min=5, max=3600, help="Seconds of the loop.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Real workloads in real cgroups (leaker, steady, CPU hog) under the loop; a summary."""
    from prescale.app.demo import DemoError, run_demo

    s = settings_or_exit(config, mode=mode)
    if duration is not None:
        s = s.model_copy(update={"demo": s.demo.model_copy(update={"duration_s": duration})})
    if not as_json:
        err.print(f"prescale demo: mode={s.mode.value}, {s.demo.duration_s:g} s "
                  f"(leaker at {s.demo.leak_rate_bytes_per_s / 2**20:g} MiB/s under "
                  f"{s.demo.leaker_limit_bytes / 2**20:g} MiB)")
    try:
        summary = run_demo(s, quiet=True)
    except DemoError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    finally:
        import ray
        if ray.is_initialized():
            ray.shutdown()
    if as_json:
        print(json.dumps(summary))
        return
    table = Table(title=f"demo {summary['run_id']}: {summary['ticks']} ticks in "
                        f"{summary['wall_s']} s")
    for col in ("container", "OOM kills", "scale-ups", "lead times s", "final mem limit",
                "peak usage", "final cpu quota"):
        table.add_column(col)
    for c in summary["containers"]:
        table.add_row(c["name"], str(c["oom_kills"]), str(c["scale_ups"]),
                      ", ".join(f"{x:.1f}" for x in c["lead_times_s"]) or "-",
                      fmt_bytes(c["final_limit_bytes"]), fmt_bytes(c["peak_usage_bytes"]),
                      fmt_cores(c["final_cpu_quota_cores"]))
    out.print(table)
    out.print(f"decision log: prescale events --run {summary['run_id']}"
              + (f" --config {config}" if config else ""))
