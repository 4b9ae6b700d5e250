"""Session-wide set-up shared by every test module.

The exit: many modules start and stop their own Ray in this one pytest process (one per
module, as the suite's budget needs). Ray does not promise that ``ray.init`` after
``ray.shutdown`` in one process is safe while its background threads outlive a session
(ray-project/ray#31145), and once, after ``1522 passed``, the interpreter's own teardown
crashed with SIGSEGV and ``make test`` failed with every test green. So the process ends
with ``os._exit`` and the session's exit status as soon as Python starts to exit: after
pytest has reported everything and run its own clean-up, before the interpreter tears down
the modules Ray's threads still point into. A failing test still exits non-zero (the status
is pytest's); ``PRESCALE_TEST_NATURAL_EXIT=1`` turns this off to look at the crash itself,
with ``PYTHONFAULTHANDLER=1`` for its stacks.
"""
import atexit
import os
import sys

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _exit_now(status: int) -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():  # a module that left its Ray up
        ray.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    os._exit(status)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("PRESCALE_TEST_NATURAL_EXIT") == "1":
        return
    # atexit runs last-registered first: this runs before Ray's own atexit shutdown
    # and before the interpreter frees the modules
    atexit.register(lambda: _exit_now(int(session.exitstatus)))
