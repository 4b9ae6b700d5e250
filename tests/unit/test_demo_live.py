"""The demo's live view (app/demo.py: LiveView) over a real tick's status.json: what a
user sees while `prescale demo` runs, instead of one line and silence."""

from __future__ import annotations

import io

from tests.loop_ports import mem_ports
from tests.unit.test_decision_episodes import T0, _run, _tick


def test_the_demos_live_view_shows_each_container_every_few_seconds():
    """Plain lines when stderr is not a terminal (a pipe, --json's stdout kept clean): one
    per container, at most every plain_every_s; another run's status shows nothing."""
    from rich.console import Console

    from prescale.app.demo import LiveView
    from prescale.app.store import jsonfile

    ports = mem_ports()
    t = _tick(ports)
    _run(t, ports, range(2))
    clock = [100.0]
    buf = io.StringIO()
    path = _status_file(ports.journal.status, jsonfile)
    view = LiveView(path, "r", 60.0, console=Console(file=buf, force_terminal=False,
                                                     width=300), clock=lambda: clock[0])
    view.start()
    clock[0] = 103.0
    view()
    clock[0] = 105.0
    view()  # 2 s later: not yet
    clock[0] = 108.5
    view()
    view.stop()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and view.shown == 2
    assert lines[0].startswith("[  3 s] w       memory 188.0 MiB / 256.0 MiB  cpu ")
    assert " p_fail memory " in lines[0] and " cpu " in lines[0]
    assert "last: memory applied 256.0 MiB → 355.0 MiB" in lines[0]
    other = LiveView(path, "another-run", 60.0, console=Console(file=io.StringIO()))
    other()
    assert other.shown == 0
    table = view.table(jsonfile.read(path), T0 + 60)  # the terminal's table
    assert [c.header for c in table.columns] == [
        "container", "memory / limit", "cpu / quota", "p_fail memory", "p_fail cpu",
        "last action"]


def _status_file(status, jsonfile):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "status.json"
    jsonfile.write_atomic(path, status)
    return path


def test_on_a_terminal_the_live_view_redraws_one_table():
    from rich.console import Console

    from prescale.app.demo import LiveView
    from prescale.app.store import jsonfile

    ports = mem_ports()
    _run(_tick(ports), ports, range(2))
    path = _status_file(ports.journal.status, jsonfile)
    buf = io.StringIO()
    clock = [0.0]
    view = LiveView(path, "r", 60.0, console=Console(file=buf, force_terminal=True, width=200),
                    clock=lambda: clock[0])
    assert view.live_mode and view.every_s == 2.0
    view.start()
    for clock[0] in (1.0, 2.0, 3.5, 4.0):
        view()
    view.stop()
    assert view.shown == 2  # at 1.0 and 3.5 s: every 2 s at most
    out = buf.getvalue()
    assert "prescale demo, mode auto: tick 2" in out and "memory / limit" in out
    assert "188.0 MiB / 256.0 MiB" in out and "memory applied 256.0 MiB → 355.0 MiB" in out
