"""A CPU hog: spins on one core forever (under a CPU quota it is throttled)."""

from __future__ import annotations

from prescale.scripts.workloads._common import exit_on_sigterm, join_cgroups, parser


def main() -> None:
    args = parser(__doc__).parse_args()
    join_cgroups(args.cgroup_procs)
    exit_on_sigterm()
    x = 0
    while True:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF


if __name__ == "__main__":
    main()
