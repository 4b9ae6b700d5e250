"""Faults at the disk and network edges, for real, under the real monitor and tick
(:func:`tests.loop_ports.monitor_tick`, auto mode, one tick a second).

1. A watched volume is unmounted while the loop runs, and another one is replaced by a
   mount that is not a tmpfs (a ramfs on top, just before its first grow is applied),
   beside a third volume that is filling: the grow of the replaced one is FAILED naming
   the path; from then on every tick's errors (the summary and the status) name the
   container, the path and what it is now; the loop goes on and grows the filling
   volume before ENOSPC.
2. A remount the kernel refuses: the loop runs in a thread whose capability bounding
   set has no CAP_SYS_ADMIN, so the ``mount`` it starts is refused by the kernel (EPERM),
   as it is for a prescale run without that capability. The action is FAILED with what
   ``mount`` said (naming the path), nothing is claimed as set (the size read back is
   the old one), the volume fills up (a ``disk_full`` event), and a later tick tries
   again after the cooldown (the decisions between say so).
3. A volume seen through a read-only bind mount of it (its writers use a read-write
   one): ``mount -o remount,size=`` there would pass ``ro`` on to the tmpfs itself. It
   did, and was reported APPLIED while the writer got EROFS; now the grow is refused
   before ``mount`` runs, FAILED with why, and the tmpfs stays read-write.
4. A watched link whose container's network namespace is deleted (its veth pair goes
   with it) just before its first raise is applied, beside a second link still
   saturated: the raise is FAILED naming the container and the interface, every tick's
   errors after say the same, and the other link is still raised.

Every mount, namespace and veth made here is removed at teardown, also on failure.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from prescale.app.core.actions import ResultStatus
from prescale.app.edges.netlimit import interface_exists, read_rate_limit
from prescale.app.edges.tmpfs import read_mounts, volume_usage
from prescale.app.settings import Settings
from tests.loop_ports import monitor_tick
from tests.netns_support import Sender, ip, served_links

MiB = 2**20
NEEDS = ("mount", "umount", "ip", "tc")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(t) is None for t in NEEDS),
    reason="needs root, mount(8), umount(8), ip(8) and tc(8)")

# appends 1 MiB every 0.5 s (2 MiB/s) until done or the volume refuses; prints how it
# ended. "open": one file held open for writing; "reopen": opened and closed each time
WRITER = """
import errno, sys, time
path, chunk, n, mode = sys.argv[1], b"x" * (1 << 20), int(sys.argv[2]), sys.argv[3]
f = open(path, "ab", buffering=0) if mode == "open" else None
for i in range(n):
    try:
        if f is not None:
            f.write(chunk)
        else:
            with open(path, "ab", buffering=0) as g:
                g.write(chunk)
    except OSError as exc:
        print("ENOSPC" if exc.errno == errno.ENOSPC else f"error {exc}", i, flush=True)
        sys.exit(28)
    time.sleep(0.5)
print("done", flush=True)
"""


def _mounted(point: Path) -> bool:
    return any(m.mount_point == str(point) for m in read_mounts())


@pytest.fixture
def mounts(tmp_path):
    """``mount("tmpfs", "name", "size=24m")``: a mount at ``tmp_path/prescale-name``
    (``mount("bind", "name", source=path)``: a bind mount of ``path``); at teardown
    every mount on each point (stacked ones too) is lazily unmounted."""
    points: list[Path] = []

    def mount(fstype: str, name: str, options: str = "", source: Path | None = None
              ) -> Path:
        point = tmp_path / f"prescale-{name}"
        point.mkdir(exist_ok=True)
        how = (["--bind", str(source)] if fstype == "bind"
               else ["-t", fstype, *(["-o", options] if options else []), fstype])
        subprocess.run(["mount", *how, str(point)], check=True, capture_output=True,
                       timeout=10)
        points.append(point)
        if fstype == "bind" and options:
            subprocess.run(["mount", "-o", f"remount,bind,{options}", str(point)],
                           check=True, capture_output=True, timeout=10)
        return point

    try:
        yield mount
    finally:
        for point in reversed(points):
            for _ in range(4):
                if not _mounted(point):
                    break
                subprocess.run(["umount", "-l", str(point)], check=False,
                               capture_output=True, timeout=10)
        assert not [p for p in points if _mounted(p)], "a mount was left behind"


def _writer(path: Path, chunks: int, mode: str = "open") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path / "f"), str(chunks), mode],
                            stdout=subprocess.PIPE, text=True)


def _tick_every_second(tick, summaries: list, until, limit_s: float, at=None) -> float:
    """Run ticks a second apart until ``until()`` or ``limit_s``; ``at(k)`` before tick
    ``k``. Every summary is kept; a tick that raises fails the test."""
    start = time.monotonic()
    k = 0
    while time.monotonic() - start < limit_s and not until():
        t0 = time.monotonic()
        if at is not None:
            at(k)
        summaries.append(tick.run_once())
        k += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    return time.monotonic() - start


def _before_first_action_on(actuation, container: str, fault) -> list[int]:
    """Wrap the actuation port so that ``fault()`` runs once, just before the first batch
    holding an action on ``container`` is applied: the source read it fine this tick, the
    actuator finds it broken. Returns a list that gets the tick's number when it ran."""
    apply, fired = actuation.apply, []

    def wrapped(actions, routes, local):
        if not fired and any(a.container == container for a in actions):
            fault()
            fired.append(len(actuation.ticks))
        return apply(actions, routes, local)

    actuation.apply = wrapped
    return fired


# --------------------------------------------------------------------------- 1. unmounted


def test_an_unmounted_or_replaced_volume_is_named_and_the_filling_one_is_still_grown(mounts):
    gone = mounts("tmpfs", "gone", "size=24m")
    replaced = mounts("tmpfs", "replaced", "size=24m")
    filling = mounts("tmpfs", "filling", "size=24m")
    (gone / "f").write_bytes(b"x" * MiB)
    volumes = {"disk-gone": str(gone), "disk-replaced": str(replaced),
               "disk-filling": str(filling)}
    settings = Settings(mode="auto", cgroup={"roots": []}, history={"enabled": False},
                        sources={"volumes": volumes})
    tick, actuation, journal = monitor_tick(settings, run_id="disk-faults")
    summaries: list[dict] = []
    actuation.ticks = summaries
    # the replaced one's mount point gets a ramfs on top just before its first grow
    replaced_at = _before_first_action_on(actuation, "disk-replaced",
                                          lambda: mounts("ramfs", "replaced"))
    umount_at = 3  # the gone one is unmounted before tick 3

    def umount(k: int) -> None:
        if k == umount_at:
            subprocess.run(["umount", str(gone)], check=True, capture_output=True, timeout=10)

    # 36 MiB in 18 s each: more than the 24 MiB they start with
    writers = [_writer(filling, 36), _writer(replaced, 36)]
    try:
        took = _tick_every_second(tick, summaries, lambda: writers[0].poll() is not None, 30,
                                  at=umount)
        for _ in range(2):
            summaries.append(tick.run_once())
        size_bytes = volume_usage(filling)[1]
    finally:
        for w in writers:
            w.kill()
    out = writers[0].communicate()[0]
    writers[1].communicate()
    errors = [s["errors"] for s in summaries]
    grown = [(r.old_limit / MiB, r.new_limit / MiB) for r in actuation.results
             if r.container == "disk-filling" and r.status is ResultStatus.APPLIED]
    others = [r for r in actuation.results if r.container != "disk-filling"]
    print(f"\n{len(summaries)} ticks in {took:.0f} s; filling writer {out.strip()!r}, grown "
          f"(MiB) {grown}, now {size_bytes / MiB:.0f} MiB; replaced before tick "
          f"{replaced_at}; actions on the others: "
          f"{[(r.container, r.status.value, r.reason) for r in others]}; errors at the end: "
          f"{errors[-1]}")
    (k,) = replaced_at
    gone_error = (f"volume of 'disk-gone' at {gone}: is not a mount point (a directory on "
                  f"the {_fs_of(gone.parent)} at ")
    replaced_error = (f"volume of 'disk-replaced' at {replaced}: is a mount point of type "
                      "ramfs, not tmpfs")
    for i, e in enumerate(errors):  # every tick from its fault on names container and path
        assert ("disk-gone" in e) == (i >= umount_at)
        assert e.get("disk-gone", gone_error).startswith(gone_error)
        assert e.get("disk-replaced", replaced_error) == replaced_error
        assert ("disk-replaced" in e) == (i > k) and "disk-filling" not in e
    # the replaced one's grow, tried on what was no longer its tmpfs: FAILED, unchanged
    (r,) = others
    assert r.container == "disk-replaced" and r.status is ResultStatus.FAILED
    assert r.reason.startswith("gave up after 3 attempts") and replaced_error in r.reason
    assert r.old_limit == 24 * MiB and r.new_limit != r.new_limit  # nan: nothing read back
    assert journal.status["errors"] == errors[-1]  # the status says it too
    names = {r["name"] for r in journal.status["containers"]}
    assert "disk-filling" in names and not names & {"disk-gone", "disk-replaced"}
    assert out.strip() == "done"  # never ENOSPC
    assert grown and grown[0][0] == 24 and size_bytes > 36 * MiB


def _fs_of(path: Path) -> str:
    """The type of the file system ``path`` lies on (the longest mount point above it)."""
    best = max((m for m in read_mounts()
                if (str(path) + "/").startswith(m.mount_point.rstrip("/") + "/")),
               key=lambda m: len(m.mount_point))
    return best.fstype


# --------------------------------------------------------------------------- 2. refused

PR_CAPBSET_DROP, CAP_SYS_ADMIN = 24, 21


def _without_cap_sys_admin(fn):
    """``fn()`` in a thread whose capability bounding set has no CAP_SYS_ADMIN: what it
    starts (``mount``) has not that capability, and the kernel refuses it a remount
    (EPERM). Capabilities are per thread: the others keep theirs, so the teardown can
    still unmount. Returns what ``fn`` returned; re-raises what it raised."""
    out: dict = {}

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0:
            out["error"] = OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")
            return
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            out["error"] = exc

    t = threading.Thread(target=run, name="no-cap-sys-admin")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_a_remount_the_kernel_refuses_is_failed_naming_the_path_and_tried_again(mounts):
    vol = mounts("tmpfs", "refused", "size=24m")
    settings = Settings(mode="auto", cgroup={"roots": []}, history={"enabled": False},
                        sources={"volumes": {"disk-refused": str(vol)}})
    tick, actuation, journal = monitor_tick(settings, run_id="disk-refused")
    writer = _writer(vol, 36)
    summaries: list[dict] = []

    def tried_twice() -> bool:
        return writer.poll() is not None and len(
            [r for r in actuation.results if r.container == "disk-refused"]) >= 2

    try:
        took = _without_cap_sys_admin(lambda: _tick_every_second(
            tick, summaries, tried_twice, 30))
        size_bytes = volume_usage(vol)[1]
    finally:
        writer.kill()
    out = writer.communicate()[0]
    results = [r for r in actuation.results if r.container == "disk-refused"]
    logged = [r for r in journal.records if r["kind"] == "action"]
    held = [r["reason"] for r in journal.records if r["kind"] == "decision"
            and "blocked" in r["reason"]]
    full = [r["reason"] for r in journal.records if r["kind"] == "event"
            and r["event"] == "disk_full"]
    print(f"\n{len(summaries)} ticks in {took:.0f} s; writer {out.strip()!r}; size now "
          f"{size_bytes / MiB:.0f} MiB; results "
          f"{[(r.status.value, r.old_limit / MiB, r.new_limit / MiB) for r in results]}; "
          f"first reason {results[0].reason if results else None!r}; held {held[:1]} … "
          f"{held[-1:]}; full {full}; status last action "
          f"{journal.status['containers'][0]['last_action']}")
    refused = (f"mount -o remount,size=50331648 {vol} failed (exit 32): mount: {vol}: "
               "permission denied.")
    assert len(results) >= 2  # tried again after its cooldown
    for r in results:  # each FAILED with what mount said; the size read back: the old one
        assert r.status is ResultStatus.FAILED
        assert r.old_limit == r.new_limit == 24 * MiB
        assert r.reason.startswith("gave up after 3 attempts")
        assert f"volume of 'disk-refused': {refused}" in r.reason
    assert size_bytes == 24 * MiB  # nothing was set …
    assert [a["result"] for a in logged] == ["failed"] * len(results)  # … nor claimed
    assert all(a["new_limit"] == 24 * MiB and a["requested_limit"] == 48 * MiB
               and refused in a["reason"] for a in logged)
    last = journal.status["containers"][0]["last_action"]
    assert last["result"] == "failed" and last["new_limit"] == 24 * MiB
    assert held and all("blocked: in cooldown" in h for h in held)  # between the attempts
    assert out.startswith("ENOSPC")  # it filled up, and that is said, naming the path
    assert full == [f"tmpfs at {vol} is full: {24 * MiB} of {24 * MiB} bytes used, 0 free "
                    "(less than one page of 4096 bytes)"]
    assert all(not s["errors"] for s in summaries)  # the volume itself reads fine


# --------------------------------------------------------------------------- 3. ro view


def test_a_volume_seen_through_a_read_only_mount_is_not_made_read_only_by_a_grow(mounts):
    """The container writes to its tmpfs; prescale sees it through a read-only bind
    mount (a read-only view: the file system itself is read-write). ``mount -o
    remount,size=`` there passes the view's ``ro`` on to the file system, which would
    turn read-only for the container too: the grow is refused, saying so."""
    vol = mounts("tmpfs", "rw-volume", "size=24m")
    view = mounts("bind", "ro-view", "ro", source=vol)
    settings = Settings(mode="auto", cgroup={"roots": []}, history={"enabled": False},
                        sources={"volumes": {"disk-ro-view": str(view)}})
    tick, actuation, journal = monitor_tick(settings, run_id="disk-ro-view")
    writer = _writer(vol, 36, "reopen")  # no file open for writing between its writes
    summaries: list[dict] = []
    try:
        took = _tick_every_second(tick, summaries, lambda: bool(actuation.results)
                                  or writer.poll() is not None, 20)
        for _ in range(2):
            summaries.append(tick.run_once())
            time.sleep(1.0)
        sb_options = next(line for line in Path("/proc/self/mountinfo").read_text()
                          .splitlines() if f" {vol} " in line).split(" - ")[1]
    finally:
        writer.kill()
    out = writer.communicate()[0]
    print(f"\n{len(summaries)} ticks in {took:.0f} s; writer {out.strip()!r}; the file "
          f"system: {sb_options!r}; results "
          f"{[(r.status.value, r.new_limit / MiB, r.reason) for r in actuation.results]}")
    assert "error" not in out  # the container never got EROFS (before the fix: it did,
    assert sb_options.split()[2].startswith("rw,size=24576k")  # the tmpfs went ro, APPLIED)
    (r,) = actuation.results
    assert r.status is ResultStatus.FAILED and r.old_limit == r.new_limit == 24 * MiB
    assert (f"volume of 'disk-ro-view': the tmpfs at {view} is a read-only view of a "
            "read-write tmpfs: a remount from here would make the tmpfs read-only for its "
            "writers too; not resized") in r.reason
    (a,) = [x for x in journal.records if x["kind"] == "action"]
    assert a["result"] == "failed" and a["new_limit"] == 24 * MiB


# --------------------------------------------------------------------------- 4. link gone

DEMAND_BYTES_PER_S = 3 * MiB


@pytest.fixture
def links():
    """Two containers: a network namespace each behind a veth pair, receiving through a
    1 MiB/s TBF on the host side, a server inside (:func:`tests.netns_support.served_links`).
    Yields ``{container: (host-side interface, address, namespace, server)}``; every
    server, veth and namespace is removed at teardown (what is already gone is skipped)."""
    with served_links(("net-gone", "net-kept"), "10.215", ("prescale-f", "psf", "psg"),
                      1 * MiB, check_removed=True) as made:
        yield made


def test_a_deleted_link_is_named_and_the_other_saturated_link_is_still_raised(links):
    settings = Settings(mode="auto", cgroup={"roots": []}, history={"enabled": False},
                        sources={"links": {c: v[0] for c, v in links.items()}})
    tick, actuation, journal = monitor_tick(settings, run_id="net-faults")
    senders = {c: Sender(v[1], DEMAND_BYTES_PER_S, timeout_s=2) for c, v in links.items()}
    for s in senders.values():
        s.start()
    gone_host, _, gone_ns, gone_server = links["net-gone"]
    kept_host = links["net-kept"][0]
    summaries: list[dict] = []
    actuation.ticks = summaries
    vanished_s: list[float] = []

    def fault() -> None:  # the container ends: its namespace, and its veth with it
        gone_server.kill()
        gone_server.wait()
        ip("netns", "del", gone_ns)
        t0 = time.monotonic()
        while interface_exists(gone_host) and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        vanished_s.append(time.monotonic() - t0)

    # just before its first raise is applied (the source read it fine this tick)
    deleted_at = _before_first_action_on(actuation, "net-gone", fault)

    def raised_and_met() -> bool:
        return read_rate_limit(kept_host) > 1 * MiB and senders["net-kept"].rate(3.0) >= (
            2.5 * MiB)

    try:
        took = _tick_every_second(tick, summaries, raised_and_met, 45)
        for _ in range(2):
            summaries.append(tick.run_once())
            time.sleep(1.0)
        kept_rate = senders["net-kept"].rate(3.0)
    finally:
        for s in senders.values():
            s.stop.set()
        for s in senders.values():
            s.join(timeout=5)
    errors = [s["errors"] for s in summaries]
    raised = [(r.old_limit / MiB, r.new_limit / MiB) for r in actuation.results
              if r.container == "net-kept" and r.status is ResultStatus.APPLIED]
    on_gone = [r for r in actuation.results if r.container == "net-gone"]
    print(f"\n{len(summaries)} ticks in {took:.0f} s; deleted before tick {deleted_at}, its "
          f"veth gone {vanished_s} s after the namespace; actions on it: "
          f"{[(r.status.value, r.reason) for r in on_gone]}; errors at the end: {errors[-1]}; "
          f"kept raised (MiB/s) {raised}, receives {kept_rate / MiB:.2f} MiB/s")
    (k,) = deleted_at
    gone_error = f"link of 'net-gone' ({gone_host}): no such network interface"
    for i, e in enumerate(errors):  # every tick after, naming the container and interface
        assert e == ({"net-gone": gone_error} if i > k else {})
    (r,) = on_gone  # its raise, tried on a veth that is no more: FAILED, nothing set
    assert r.status is ResultStatus.FAILED and r.old_limit == 1 * MiB
    assert r.reason.startswith("gave up after 3 attempts") and gone_error in r.reason
    assert journal.status["errors"] == errors[-1]  # the status says it too
    assert "net-gone" not in {r["name"] for r in journal.status["containers"]}
    assert raised and raised[0][0] == pytest.approx(1.0, rel=0.02)
    assert read_rate_limit(kept_host) == pytest.approx(raised[-1][1] * MiB, rel=0.02)
    assert kept_rate >= 2.5 * MiB
