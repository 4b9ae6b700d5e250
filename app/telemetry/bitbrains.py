"""Read the GWA-T-12 Bitbrains trace (:func:`read_bitbrains`). The unit conversions are
pure functions in :mod:`app.learning.trace_mapping`, applied here to whole pandas columns at
once; the frames are those of :class:`~app.telemetry.trace_data.TraceData`.

:func:`read_bitbrains` — GWA-T-12 Bitbrains (one VM per ``vm_id``, 300 s steps).

``container = f"vm-{vm_id}"``, ``app = "bitbrains-rnd"``. Worked example, the
first three rows of VM 1 (ts 1372629804, +300, +600; 2 cores; 5851.9989 MHz;
8218624 KB provisioned; CPU 87.7799835, 29.2599945, 27.3093282 MHz; memory
1034592.8 KB; disk read 160.8667, 0, 32.0667 KB/s):

* ``cpu_quota_cores = 2``; ``memory_limit_bytes = 8218624 × 1024 = 8415870976``;
* ``memory_usage_bytes = 1034592.8 × 1024 = 1059423027.2`` (also the working set);
* usage cores = MHz / (5851.9989 / 2) = 0.03, 0.01, 0.00933…;
  ``cpu_usage_s_total = 0, 0.01 × 300 = 3, 3 + 0.00933… × 300 = 5.8``;
* ``io_read_bytes_total = 0, 0 × 1024 × 300 = 0, 32.0667 × 1024 × 300 = 9850880``.

A provisioned value of 0 (the VM is not running: 0 cores, 0 MHz, 0 KB) is a
missing limit (``nan``), not a limit of 0. A second row of a VM with the same
timestamp is dropped (the first in file order is kept) and counted in
``dropped["duplicate_ts"]``. No failure events.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from prescale.app.learning import trace_mapping as tm
from prescale.app.telemetry.trace_data import (
    TraceData,
    check_file,
    coerce_numeric,
    empty_events,
    require_columns,
    samples_frame,
)

BB_VM = "vm_id"
BB_TS = "Timestamp [ms]"
BB_CORES = "CPU cores"
BB_CPU_CAP = "CPU capacity provisioned [MHZ]"
BB_CPU_USE = "CPU usage [MHZ]"
BB_MEM_CAP = "Memory capacity provisioned [KB]"
BB_MEM_USE = "Memory usage [KB]"
BB_DISK_R = "Disk read throughput [KB/s]"
BB_DISK_W = "Disk write throughput [KB/s]"
BB_NET_RX = "Network received throughput [KB/s]"
BB_NET_TX = "Network transmitted throughput [KB/s]"
#: The Bitbrains columns this reader uses (``CPU usage [%]`` is redundant and ignored).
BITBRAINS_COLUMNS: tuple[str, ...] = (
    BB_VM, BB_TS, BB_CORES, BB_CPU_CAP, BB_CPU_USE, BB_MEM_CAP, BB_MEM_USE,
    BB_DISK_R, BB_DISK_W, BB_NET_RX, BB_NET_TX,
)
BITBRAINS_APP = "bitbrains-rnd"


def read_bitbrains(path: str | os.PathLike) -> TraceData:
    """Read a GWA-T-12 Bitbrains file (``vm_id`` + the original columns; CSV, gz ok).

    The mapping and its worked example are in the module docstring. Rows with a
    non-numeric value (``dropped["bad_value"]``) or a missing vm_id/timestamp
    (``dropped["missing_key"]``) are dropped; so are repeated timestamps of a VM
    (``dropped["duplicate_ts"]``, first kept).
    """
    p = check_file(path)
    raw = pd.read_csv(p, skipinitialspace=True)
    raw.columns = [str(c).strip() for c in raw.columns]
    require_columns(p, list(raw.columns), BITBRAINS_COLUMNS, "Bitbrains")
    raw = raw.loc[:, list(BITBRAINS_COLUMNS)].copy()
    bad = coerce_numeric(raw, BITBRAINS_COLUMNS[1:])
    no_key = (raw[BB_VM].isna() | raw[BB_TS].isna()).to_numpy() & ~bad
    raw = raw[~bad & ~no_key]
    ts = tm.epoch_seconds(raw[BB_TS].to_numpy())
    vm = raw[BB_VM].to_numpy()
    if pd.api.types.is_float_dtype(raw[BB_VM]) and np.all(vm == np.floor(vm)):
        vm = vm.astype(np.int64)
    dup = pd.DataFrame({"vm": vm, "ts": ts}).duplicated().to_numpy()
    keep = np.flatnonzero(~dup)
    vm_codes, vm_uniques = pd.factorize(vm[keep], sort=True)
    ts = ts[keep]
    order = np.lexsort((ts, vm_codes))  # by VM, then time: for the integration
    idx = keep[order]
    ts, vm_codes = ts[order], vm_codes[order]

    def col(name: str) -> np.ndarray:
        return raw[name].to_numpy(np.float64)[idx]

    starts = tm.segment_starts(vm_codes)
    cores = col(BB_CORES)
    usage_cores = tm.mhz_to_cores(col(BB_CPU_USE), col(BB_CPU_CAP), cores)
    mem_bytes = col(BB_MEM_USE) * tm.KIB
    values = {
        "ts_s": ts,
        "memory_usage_bytes": mem_bytes,
        "memory_working_set_bytes": mem_bytes,
        "memory_limit_bytes": tm.provisioned_or_nan(col(BB_MEM_CAP)) * tm.KIB,
        "cpu_usage_s_total": tm.integrate_rate(ts, usage_cores, starts),
        "cpu_quota_cores": tm.provisioned_or_nan(cores),
        "io_read_bytes_total": tm.integrate_rate(ts, col(BB_DISK_R) * tm.KIB, starts),
        "io_write_bytes_total": tm.integrate_rate(ts, col(BB_DISK_W) * tm.KIB, starts),
        "net_rx_bytes_total": tm.integrate_rate(ts, col(BB_NET_RX) * tm.KIB, starts),
        "net_tx_bytes_total": tm.integrate_rate(ts, col(BB_NET_TX) * tm.KIB, starts),
    }
    names = np.array([f"vm-{v}" for v in vm_uniques], dtype=object)
    samples = samples_frame(names[vm_codes], BITBRAINS_APP, values)
    dropped = {"duplicate_ts": int(dup.sum()), "bad_value": int(bad.sum()),
               "missing_key": int(no_key.sum())}
    return TraceData(samples, empty_events(), dropped, f"bitbrains:{p}")
