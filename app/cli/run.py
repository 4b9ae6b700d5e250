"""The commands that run prescale: `prescale up` (the control loop), `prescale serve`
(the prediction API) and `prescale demo` (real workloads under the loop)."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from prescale.app.cli.common import (
    ConfigOpt,
    ModeName,
    ModeOpt,
    duration_option,
    err,
    fail,
    fmt_bytes,
    fmt_cores,
    fmt_time,
    out,
    settings_or_exit,
)
from prescale.app.cli.output import JsonOpt, OutputOpt, emit, output_of


def up(config: ConfigOpt = None, mode: ModeOpt = None,
       address: Annotated[str | None, typer.Option(
           "--address", metavar="ADDR",
           help="An existing Ray cluster (auto, or host:port of its GCS) instead of an "
                "embedded one; same as ray.address.")] = None,
       report_every: Annotated[str, typer.Option(
           "--report-every", metavar="DURATION",
           help="A progress line at least this often when nothing else was said (ticks, "
           "containers, decisions, slowest tick), e.g. 30s, 5m; 0: one line every tick. "
           "A tick that decides or meets a source error always gets its line.")] = "1m",
       ) -> None:
    """Run the control loop locally (embedded Ray, or --address) until Ctrl-C or SIGTERM.
    Says on stderr where the metrics are (Prometheus scrapes http://host:port/metrics)
    and one line per tick that decides or meets an error, a progress line every
    --report-every otherwise."""
    from prescale.actors import runtime
    from prescale.app.edges.cgroupfs import CgroupError
    from prescale.app.store.run_lock import LockHeld, RunLock
    from prescale.app.telemetry.cgroup import discover

    every_s = duration_option(report_every, "--report-every")
    s = settings_or_exit(config, mode=mode)
    if address is not None:
        if not address.strip():
            raise fail("--address is empty (give auto, or host:port of the Ray GCS)")
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
        raise fail(str(exc)) from None
    lock = RunLock(s.data_dir, "prescale up")
    try:
        lock.acquire()
    except (LockHeld, OSError) as exc:
        raise fail(str(exc)) from None
    err.print(f"prescale up: mode={s.mode.value}, {len(found)} cgroup container(s)"
              + (f", sources: {', '.join(others)}" if others else "")
              + f", data in {s.data_dir}; Ctrl-C or SIGTERM to stop", markup=False)
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
        import ray

        err.print(metrics_line(ray.nodes(), ray.get_runtime_context().get_node_id(),
                               s.ray.metrics_export_port is not None),
                  markup=False, highlight=False)
        handles = runtime.start_actors(s, run_id)
        n = runtime.run_loop(handles, s, stop=stop, on_tick=TickReporter(every_s or 0.0))
    finally:
        if handles is not None:
            runtime.stop_actors(handles)
        import ray
        ray.shutdown()
        lock.release()
    err.print(f"stopped after {n} ticks")


def metrics_line(nodes: list[dict[str, Any]], me: str, fixed: bool) -> str:
    """Where Prometheus scrapes this node's metrics: node ``me``'s metrics export port in
    ``nodes`` (``ray.nodes()``), and whether the port is fixed (``ray.metrics_export_port``)
    or random. Worked example: ``[{"NodeID": "n1", "NodeManagerAddress": "10.0.0.5",
    "MetricsExportPort": 8080}]``, ``"n1"``, fixed → ``"metrics: http://10.0.0.5:8080/metrics
    (Prometheus; port from ray.metrics_export_port)"``."""
    node = next((n for n in nodes if n.get("NodeID") == me), {})
    host, port = node.get("NodeManagerAddress"), node.get("MetricsExportPort")
    how = ("port from ray.metrics_export_port" if fixed
           else "a random port: set ray.metrics_export_port to fix it")
    if not host or not port:
        return f"metrics: this node's metrics port is not known ({how})"
    return f"metrics: http://{host}:{port}/metrics (Prometheus; {how})"


class TickReporter:
    """The human lines `prescale up` prints on stderr: one for the first tick and for a
    tick that decided something or met an error (and when degraded mode starts or ends),
    else a progress line once ``every_s`` passed since the last line (0: every tick).
    Worked example
    (``TZ=UTC``): ``2026-12-02T10:15:03+00:00 tick 19: 2 containers, 1 decision: 1
    applied; 0.12 s`` and ``2026-12-02T10:16:03+00:00 tick 79: 2 containers; 60 ticks
    since the last line, none decided; slowest 0.03 s``.
    """

    def __init__(self, every_s: float, clock=time.monotonic, say=None) -> None:
        self.every_s = every_s
        self.clock = clock
        self.say = say or (lambda line: err.print(line, markup=False, highlight=False))
        self.degraded: str | None = None
        self.last_said = clock()
        self.quiet_ticks = 0
        self.slowest_s = 0.0
        self.first = True  # the first tick always says so: the loop is running

    def __call__(self, summary: dict[str, Any]) -> None:
        for line in summary.get("notices", ()):
            self.say(f"warning: state set aside: {line}")
        now = (summary.get("degraded") or {}).get("reason")
        if now != self.degraded:
            self.say(f"DEGRADED: {now} (scale-ups go on, scale-downs stop, records "
                     f"are buffered)" if now else "degraded mode over: all writes "
                     "succeed again")
            self.degraded = now
        tick_s = float(summary.get("tick_s") or 0.0)
        head = (f"{fmt_time(summary.get('now_s'))} tick {summary.get('tick')}: "
                f"{_plural(summary.get('containers', 0), 'container')}")
        if summary.get("decisions") or summary.get("errors"):
            self.say(head + tick_line(summary))
        else:
            self.quiet_ticks += 1
            self.slowest_s = max(self.slowest_s, tick_s)
            if self.clock() - self.last_said < self.every_s and not self.first:
                return
            self.say(f"{head}; {_plural(self.quiet_ticks, 'tick')} since the last line, none "
                     f"decided; slowest {self.slowest_s:.2f} s")
        self.last_said = self.clock()
        self.quiet_ticks = 0
        self.slowest_s = 0.0
        self.first = False


def tick_line(summary: dict[str, Any]) -> str:
    """The part of a tick's line after its container count: what its decisions became,
    the source errors, the dropped samples and how long it took. ``{"decisions": 1,
    "actions": ["applied"], "errors": {}, "tick_s": 0.12}`` →
    ``", 1 decision: 1 applied; 0.12 s"``."""
    parts = []
    n = int(summary.get("decisions") or 0)
    if n:
        counts: dict[str, int] = {}
        for a in summary.get("actions") or ():
            counts[str(a)] = counts.get(str(a), 0) + 1
        parts.append(f", {_plural(n, 'decision')}"
                     + (": " + ", ".join(f"{c} {k}" for k, c in sorted(counts.items()))
                        if counts else ""))
    errors = summary.get("errors") or {}
    if errors:
        shown = "; ".join(f"{k}: {v}" for k, v in sorted(errors.items())[:3])
        parts.append(f"; {_plural(len(errors), 'source error')} ({shown}"
                     + (", …" if len(errors) > 3 else "") + ")")
    dropped = sum(v for v in (summary.get("dropped") or {}).values()
                  if isinstance(v, int | float))
    if dropped:
        parts.append(f"; {dropped:.0f} samples dropped")
    parts.append(f"; {float(summary.get('tick_s') or 0.0):.2f} s")
    return "".join(parts)


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


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
        raise fail(str(exc), 1) from None


def demo(
    config: ConfigOpt = None,
    mode: Annotated[ModeName, typer.Option("--mode", help="off | recommend | auto.")] = "auto",
    duration: Annotated[
        float | None, typer.Option("--duration", min=5, max=3600, help="Seconds of the loop.")
    ] = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Real workloads in real cgroups (leaker, steady, CPU hog) under the loop; a summary
    (-o json: per container OOM kills, scale-ups, lead times, final limits in bytes and
    cores, the actions)."""
    from prescale.app.demo import DemoError, run_demo

    fmt = output_of(output, as_json)
    s = settings_or_exit(config, mode=mode)
    if duration is not None:
        s = s.model_copy(update={"demo": s.demo.model_copy(update={"duration_s": duration})})
    err.print(f"prescale demo: mode={s.mode.value}, {s.demo.duration_s:g} s "
              f"(leaker at {fmt_bytes(s.demo.leak_rate_bytes_per_s)}/s under "
              f"{fmt_bytes(s.demo.leaker_limit_bytes)})", markup=False)
    try:
        summary = run_demo(s, quiet=True)
    except DemoError as exc:
        raise fail(str(exc)) from None
    finally:
        import ray
        if ray.is_initialized():
            ray.shutdown()
    if emit(fmt, summary):
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
              + (f" --config {config}" if config else ""), markup=False)
