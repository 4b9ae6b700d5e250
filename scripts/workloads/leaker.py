"""A memory leak: grows by ``--rate-bytes-per-s`` (touching every page) up to ``--cap-bytes``.

Under a fixed memory limit the kernel OOM-kills it when usage reaches the limit.
"""

from __future__ import annotations

import time

from prescale.scripts.workloads._common import exit_on_sigterm, join_cgroups, parser

STEP_S = 0.1


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rate-bytes-per-s", type=int, required=True)
    p.add_argument("--cap-bytes", type=int, required=True)
    args = p.parse_args()
    join_cgroups(args.cgroup_procs)
    exit_on_sigterm()
    chunk = max(int(args.rate_bytes_per_s * STEP_S), 4096)
    held: list[bytearray] = []
    total = 0
    next_at = time.monotonic()
    while True:
        if total + chunk <= args.cap_bytes:
            held.append(bytearray(b"\x5a") * chunk)  # filled, so every page is touched
            total += chunk
        next_at += STEP_S
        time.sleep(max(next_at - time.monotonic(), 0))


if __name__ == "__main__":
    main()
