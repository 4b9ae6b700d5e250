"""A steady service: holds ``--bytes`` of memory and does a little work every 100 ms."""

from __future__ import annotations

import time

from prescale.scripts.workloads._common import exit_on_sigterm, join_cgroups, parser


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--bytes", type=int, required=True)
    args = p.parse_args()
    join_cgroups(args.cgroup_procs)
    exit_on_sigterm()
    data = bytearray(b"\x5a") * args.bytes
    i = 0
    while True:
        # a request's worth of work: read a slice of the working set
        start = (i * 65536) % max(len(data) - 65536, 1)
        _ = sum(data[start : start + 4096])
        i += 1
        time.sleep(0.1)


if __name__ == "__main__":
    main()
