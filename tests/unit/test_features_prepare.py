"""``features.prepare()``: the compiled pass is ready after it. The coordinator and each
Serve replica call it while they start, so the first tick or request does not compile
(tests/e2e/test_wheel.py: a 12 s demo from a fresh install, cold cache, still ticks 8
times)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from prescale.app.core import features
assert "prescale.app.core._features_kernel" not in sys.modules  # the names alone
features.prepare()
assert "prescale.app.core._features_kernel" in sys.modules
kernel = sys.modules["prescale.app.core._features_kernel"].kernel
print(len(kernel.signatures))
"""


def test_prepare_compiles_the_features_pass_in_a_fresh_process():
    p = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert int(p.stdout.strip()) >= 1  # a compiled (or cached) signature exists

