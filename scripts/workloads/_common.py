"""Shared start-up of the demo workloads: join the cgroups given on the command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--cgroup-procs",
        action="append",
        default=[],
        metavar="FILE",
        help="cgroup.procs file to join before doing anything (repeat per controller)",
    )
    return p


def join_cgroups(files: list[str]) -> None:
    """Write our pid into each cgroup.procs so all that follows is charged there."""
    for f in files:
        with open(f, "w") as fh:
            fh.write(str(os.getpid()))


def exit_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
