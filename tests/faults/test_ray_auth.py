"""The embedded Ray keeps Ray's token auth on (issue 15, item 1). Its GCS, raylet and
workers listen on every interface, so the token is what keeps another host's (or
user's) driver from running code as root and reading the Serve apps: prescale never
sets RAY_AUTH_MODE=disabled itself. Provoked for real: the product's own init_ray in a
driver process, then drivers that try to join it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

DRIVER = """
import sys
import ray
from prescale.actors import runtime
from prescale.app.settings import Settings
runtime.init_ray(Settings(), quiet=True)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.readline()
ray.shutdown()
"""

PROBE = """
import sys
import ray
try:
    ray.init(address=sys.argv[1], log_to_driver=False)
    @ray.remote
    def whoami():
        import os
        return os.getuid()
    print("CONNECTED ran code as uid", ray.get(whoami.remote(), timeout=30))
except Exception as exc:
    print("REFUSED", type(exc).__name__)
"""


def clean_env(home, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    return {**env, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", **extra}


def probe(gcs: str, env: dict[str, str]) -> str:
    p = subprocess.run([sys.executable, "-c", PROBE, gcs], env=env, capture_output=True,
                       text=True, timeout=120)
    return (p.stdout.strip().splitlines() or [p.stderr[-300:]])[-1]


@pytest.mark.slow
def test_a_driver_without_the_token_cannot_join_the_embedded_ray(tmp_path):
    home, stranger = tmp_path / "home", tmp_path / "stranger"
    home.mkdir()
    stranger.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], env=clean_env(home),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        gcs = proc.stdout.readline().strip()
        assert ":" in gcs, gcs
        assert (home / ".ray" / "auth_token").exists()  # Ray's auth is on
        # auth turned off on the stranger's side, or on without the token: refused
        assert probe(gcs, clean_env(stranger, RAY_AUTH_MODE="disabled")).startswith("REFUSED")
        assert probe(gcs, clean_env(stranger, RAY_AUTH_MODE="token")).startswith("REFUSED")
        # the control: the probe does connect when it has the token
        assert probe(gcs, clean_env(home, RAY_AUTH_MODE="token")).startswith("CONNECTED")
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
