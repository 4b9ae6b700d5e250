"""The package as a user installs it: a wheel built from the repository, installed (not
editable) into a fresh venv outside the checkout, run from a directory that is not the
checkout. It must install as one ``prescale`` namespace (no top-level ``app``,
``actors``, ``tuning`` or ``scripts``), ship its example configs, and run ``prescale
demo``, ``prescale up`` and ``prescale serve`` with no ``-c``.

The fresh venv gets prescale from the wheel only; its dependencies (ray, torch, …) are
the test venv's, reached through a ``.pth`` line, so that the test does not download a
gigabyte. The test venv's own ``prescale`` is an editable install whose finder is only
activated by a ``.pth`` file in a *site* directory, which a path added this way is not:
the fresh venv sees the wheel's prescale and nothing else of the checkout.
"""

from __future__ import annotations

import json
import os
import signal
import site
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.cgroup_support import v1_unavailable_reason

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(dist), str(REPO)],
                   check=True, capture_output=True, cwd=root, timeout=600)
    (wheel,) = dist.glob("prescale-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    fresh_site = Path(subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (fresh_site / "zz_prescale_test_deps.pth").write_text("\n".join(deps) + "\n")
    work = root / "work"  # not the checkout: nothing here to import from
    work.mkdir()
    return {"py": py, "bin": venv / "bin", "site": fresh_site, "work": work, "root": root}


def _env(fresh: dict[str, Path], data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{fresh['bin']}:{env.get('PATH', '')}", PRESCALE_DATA_DIR=str(data_dir),
               RAY_USAGE_STATS_ENABLED="0")
    return env


def test_installs_as_one_namespace_with_its_configs(fresh):
    site_dir = fresh["site"]
    top = {p.name for p in site_dir.iterdir() if not p.name.endswith((".dist-info", ".pth"))
           and p.name != "__pycache__"}
    assert "prescale" in top
    for generic in ("app", "actors", "tuning", "scripts", "configs"):
        assert generic not in top, f"{generic} installed as a top-level module"
    shipped = site_dir / "prescale" / "configs"
    for f in ("local.toml", "cluster.toml", "serve.yaml", "grafana/prescale.json",
              "prometheus/prometheus.yml"):
        assert (shipped / f).is_file(), f
    out = subprocess.run(
        [str(fresh["py"]), "-c", "import prescale.app.cli as c, prescale.app.settings as s; "
         "print(c.__file__); print(s.DEFAULT_CONFIG_PATH)"],
        capture_output=True, text=True, cwd=fresh["work"], env=_env(fresh, fresh["root"]),
        check=True).stdout.split()
    assert out[0].startswith(str(site_dir)) and out[1] == str(shipped / "local.toml")
    show = subprocess.run([str(fresh["bin"] / "prescale"), "config", "show", "--json"],
                          capture_output=True, text=True, cwd=fresh["work"],
                          env=_env(fresh, fresh["root"]), timeout=120)
    assert show.returncode == 0, show.stderr[-2000:]
    assert json.loads(show.stdout)["mode"] == "recommend"


@pytest.mark.cgroup
@pytest.mark.skipif(v1_unavailable_reason() is not None, reason=v1_unavailable_reason() or "")
def test_demo_runs_from_the_wheel(fresh, tmp_path):
    proc = subprocess.run(
        [str(fresh["bin"] / "prescale"), "demo", "--mode", "auto", "--duration", "12",
         "--json"], capture_output=True, text=True, cwd=fresh["work"],
        env=_env(fresh, tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["ticks"] >= 8
    assert {c["name"] for c in summary["containers"]} == {"leaker", "steady", "cpuhog"}


def _wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"{what}: exited {proc.returncode}: {err[-3000:]}")
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def test_up_runs_from_the_wheel_until_ctrl_c(fresh, tmp_path):
    proc = subprocess.Popen([str(fresh["bin"] / "prescale"), "up"], cwd=fresh["work"],
                            env=_env(fresh, tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    status = tmp_path / "status.json"

    def ticked() -> bool:
        try:
            return json.loads(status.read_text()).get("tick", 0) >= 2
        except (OSError, ValueError):
            return False

    try:
        _wait_for(ticked, 180, "prescale up", proc)
    finally:
        rc, err = _stop(proc)
    assert rc == 0, err[-3000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_runs_from_the_wheel(fresh, tmp_path):
    port = _free_port()
    proc = subprocess.Popen([str(fresh["bin"] / "prescale"), "serve", "--port", str(port)],
                            cwd=fresh["work"], env=_env(fresh, tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        _wait_for(healthy, 240, "prescale serve", proc)
    finally:
        rc, err = _stop(proc)
    assert rc == 0, err[-3000:]
