"""The compiled pass behind :func:`app.core.features.compute_features` (numba).

Apart from :mod:`app.core.features` so that importing that module for its names
(``FEATURES``, ``F``, …) does not load numba and LLVM (~100 MiB of memory, 0.3 s);
``compute_features`` imports this module on its first call. The formulas are the ones
of :mod:`app.core.features`' docstring; ``tests/unit/test_features.py`` checks every
value against a frozen numpy reference.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types

from prescale.app.core.features import FEATURES, GAUGE_METRICS, RATE_COUNTERS, F
from prescale.app.core.sample import METRICS, M

# Columns of the window the kernel reads, and columns of its result (module constants:
# the compiled kernel sees them as literals).
_TS, _USAGE, _LIMIT = M["ts_s"], M["memory_usage_bytes"], M["memory_limit_bytes"]
_CPU, _QUOTA = M["cpu_usage_s_total"], M["cpu_quota_cores"]
_PERIODS, _THROTTLED = M["cpu_periods_total"], M["cpu_throttled_periods_total"]
_OOM, _FAILCNT = M["oom_kills_total"], M["memory_failcnt_total"]
_LATENCY, _PSI = M["block_latency_s"], M["memory_pressure_full_s_total"]
_BYTE0, _N_BYTES = M["io_read_bytes_total"], len(RATE_COUNTERS)  # neighbouring columns
assert METRICS[_BYTE0 : _BYTE0 + _N_BYTES] == tuple(RATE_COUNTERS.values())
_GAUGE_COLUMNS = np.array([M[g] for g in GAUGE_METRICS], dtype=np.int64)
#: Columns passed to the kernel's helpers (read from an array, not literals, so each
#: helper compiles once): the two limits.
_COLUMNS = np.array([_LIMIT, _QUOTA], dtype=np.intp)
_FIRST_RATE = F[next(iter(RATE_COUNTERS))]
_FIRST_GAUGE = F[f"{GAUGE_METRICS[0]}_last"]
assert FEATURES[_FIRST_RATE : _FIRST_RATE + len(RATE_COUNTERS)] == tuple(RATE_COUNTERS)
assert FEATURES[_FIRST_GAUGE : _FIRST_GAUGE + len(GAUGE_METRICS)] == tuple(
    f"{g}_last" for g in GAUGE_METRICS)
#: The features the kernel writes one by one, in this order (the rest are the two
#: blocks above).
_SCALARS = ("n_samples", "memory_usage_last_bytes", "memory_limit_bytes",
            "memory_headroom_bytes", "memory_slope_bytes_per_s",
            "memory_recent_slope_bytes_per_s", "memory_resid_std_bytes",
            "memory_slope_std_bytes_per_s", "memory_time_to_limit_s", "cpu_usage_cores_last",
            "cpu_usage_cores_mean", "cpu_slope_cores_per_s", "cpu_rate_std_cores",
            "cpu_quota_cores", "cpu_throttled_fraction", "oom_kills_delta",
            "memory_failcnt_delta", "memory_usage_mean_bytes", "memory_usage_std_bytes",
            "memory_usage_min_bytes", "memory_usage_max_bytes", "cpu_memory_correlation",
            "block_latency_last_s", "block_latency_change_s", "memory_latency_correlation",
            "memory_pressure_full_fraction", "memory_usage_limit_fraction",
            "cpu_usage_request_fraction")
assert set(_SCALARS) | set(RATE_COUNTERS) | {f"{g}_last" for g in GAUGE_METRICS} == set(
    FEATURES)
_OUT = np.array([F[name] for name in _SCALARS], dtype=np.int64)
_REQUEST = F["cpu_request_cores_last"]
_PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE


def _jit(fn: Callable[..., Any]) -> Any:
    """``numba.njit`` for the kernel and its helpers: no GIL held, numpy's float errors
    (nan/inf, never an exception), and the machine code cached on disk when numba finds
    a writable place (``NUMBA_CACHE_DIR``, the ``__pycache__`` next to this file, else
    the user's cache directory, e.g. ``~/.cache/numba``). Where none is writable (a
    read-only install run by a user without a home) numba refuses ``cache=True`` at
    import: then every process compiles on its first call instead, and says so once
    (a ``RuntimeWarning`` naming ``NUMBA_CACHE_DIR``)."""
    options = {"nogil": True, "error_model": "numpy"}
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError as exc:  # "cannot cache function …: no locator available"
        if not _UNCACHED:
            warnings.warn(f"features: numba has no writable cache directory ({exc}); the "
                          "features' pass compiles in every process (~6 s on its first "
                          "call). Set NUMBA_CACHE_DIR to a writable directory to keep it.",
                          RuntimeWarning, stacklevel=2)
        _UNCACHED.append(fn.__name__)
        return numba.njit(**options)(fn)


_UNCACHED: list[str] = []  # the functions compiled without a cache (warned once)


@numba.extending.intrinsic
def _prefetch(typingctx, array, index):  # noqa: ARG001 (numba's signature)
    """``_prefetch(array, i)``: ask the CPU to bring the cache line of element ``i`` of
    the C-contiguous ``array`` (flat index) into cache, without waiting for it (LLVM's
    ``llvm.prefetch``; a hint: an address past the end is never read)."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]),
            "llvm.prefetch.p0i8")
        # read access, keep in all cache levels, data cache
        builder.call(fn, [builder.bitcast(builder.gep(data, [args[1]]), byte_ptr),
                          i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, types.intp), codegen


@_jit
def _block_sum(a: np.ndarray, start: int, n: int) -> float:
    """numpy's pairwise sum of ``a[start : start + n]`` for n ≤ 128: a plain loop below
    8 entries, else 8 accumulators combined as ``((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7))``
    and then the rest one by one."""
    if n < 8:
        res = 0.0
        for i in range(start, start + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
    r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
    i = start + 8
    end8 = start + n - n % 8
    while i < end8:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < start + n:
        res += a[i]
        i += 1
    return res


@_jit
def _rsum(a: np.ndarray, n: int, aux: np.ndarray) -> float:
    """``np.add.reduce(a[:n])`` to the bit, as numpy sums a contiguous row: 0.0 (the
    identity) plus the pairwise sum, which above 128 entries is the sum of its halves'
    (the first half a multiple of 8 long). That recursion runs here on ``aux``
    (``float64[4, ≥ 64]``: a stack of (start, length, combine) and the sums done), as
    numba cannot load a cached recursive function."""
    if n <= _PAIRWISE_BLOCK:
        return 0.0 + _block_sum(a, np.intp(0), n)
    top = 1
    aux[0, 0], aux[1, 0], aux[2, 0] = 0.0, n, 0.0
    done = 0
    while top > 0:
        top -= 1
        start, m, combine = int(aux[0, top]), int(aux[1, top]), aux[2, top]
        if combine:  # both halves are summed: the last two sums
            done -= 1
            aux[3, done - 1] = aux[3, done - 1] + aux[3, done]
        elif m <= _PAIRWISE_BLOCK:
            aux[3, done] = _block_sum(a, start, m)
            done += 1
        else:
            half = m // 2
            half -= half % 8
            aux[0, top], aux[1, top], aux[2, top] = start, m, 1.0
            aux[0, top + 1], aux[1, top + 1], aux[2, top + 1] = start + half, m - half, 0.0
            aux[0, top + 2], aux[1, top + 2], aux[2, top + 2] = start, half, 0.0
            top += 3
    return 0.0 + aux[3, 0]


@_jit
def _rsums(buf: np.ndarray, first: int, count: int, n: int, sums: np.ndarray,
           aux: np.ndarray) -> None:
    """``sums[r] = _rsum(buf[r], n, aux)`` for the ``count`` rows ``r`` from ``first``:
    the same bits (for n ≤ 128 :func:`_block_sum`'s loop, written out here: alone,
    ~11 ns per 60-entry row against ~50 ns for a call of :func:`_rsum` per row)."""
    if n > _PAIRWISE_BLOCK:
        for r in range(first, first + count):
            sums[r] = _rsum(buf[r], n, aux)
        return
    if n < 8:
        for r in range(first, first + count):
            res = 0.0
            for i in range(n):
                res += buf[r, i]
            sums[r] = 0.0 + res
        return
    end8 = n - n % 8
    for r in range(first, first + count):
        r0, r1, r2, r3 = buf[r, 0], buf[r, 1], buf[r, 2], buf[r, 3]
        r4, r5, r6, r7 = buf[r, 4], buf[r, 5], buf[r, 6], buf[r, 7]
        for i in range(8, end8, 8):
            r0 += buf[r, i]
            r1 += buf[r, i + 1]
            r2 += buf[r, i + 2]
            r3 += buf[r, i + 3]
            r4 += buf[r, i + 4]
            r5 += buf[r, i + 5]
            r6 += buf[r, i + 6]
            r7 += buf[r, i + 7]
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        for i in range(end8, n):
            res += buf[r, i]
        sums[r] = 0.0 + res


@_jit
def _last_known(x: np.ndarray, column: int, present: np.ndarray, start: int) -> float:
    """The reading of ``column`` at the last present row from ``start`` down where it
    is not nan (a limit: ``inf`` = unlimited); nan if none."""
    for j in range(start, -1, -1):
        if present[j] and not math.isnan(x[j, column]):
            return x[j, column]
    return np.nan


@_jit
def _last_finite(x: np.ndarray, column: int, present: np.ndarray, start: int) -> float:
    """The last finite reading of ``column`` in a present row from ``start`` down; nan
    if none."""
    for j in range(start, -1, -1):
        if present[j] and math.isfinite(x[j, column]):
            return x[j, column]
    return np.nan




# Rows of the kernel's scratch ``buf``: what one pass over a container's rows writes
# (each row the values one sum adds, 0.0 where its mask is False), summed after it.
# Over the W rows of the window:
_R_T, _R_U = 0, 1  # t, usage where usage is valid (the memory fit's means)
_R_D, _R_DT = 2, 3  # cpu: max(Δusage, 0) and Δt of the steps with Δt > 0
_R_RT, _R_RR = 4, 5  # t, cpu rate at the steps (the rate fit's means)
_R_CX, _R_CY = 6, 7  # cpu rate, usage where both are (cpu–memory correlation)
_R_LATE, _R_EARLY = 8, 9  # latency in the recent rows, in the earlier ones
_R_MX, _R_MY = 10, 11  # usage, latency where both are (memory–latency correlation)
_R_PD, _R_PDT = 12, 13  # PSI: max(Δ, 0) and Δt of the steps with Δt > 0
_R_OOM, _R_FAIL = 14, 15  # max(Δ, 0) of the two failure counters
# Over the recent rows (index from the first recent row):
_R_QT, _R_QU = 16, 17  # t, usage where usage is valid (the recent fit's means)
_R_PER, _R_THR = 18, 19  # Δperiods, Δthrottled of the counted steps
# Over the W − 1 steps between adjacent rows: Δt, max(Δ, 0) of each byte counter.
_R_BYTES = 20
_N_ROWS = _R_BYTES + 2 * _N_BYTES
# The centred pass (after the sums above) reuses rows 0 … 13: Σ(t−t̄)², Σ(t−t̄)(y−ȳ),
# Σ(y−ȳ)² of the memory fit (0-2) and of the rate fit (3-5); Σ(x−x̄)(y−ȳ), Σ(x−x̄)²,
# Σ(y−ȳ)² of the two correlations (6-8, 9-11); Σ(t−t̄)², Σ(t−t̄)(y−ȳ) of the recent fit
# (12, 13); then row 0 the memory fit's residuals².


@_jit
def kernel(window: np.ndarray, rs: int, out: np.ndarray) -> None:
    """Every feature of every container of ``window`` (C-contiguous ``[N, W, M]``, W ≥
    1; ``rs`` the first recent row) into ``out`` (``[N, len(FEATURES)]``): per
    container, its W rows from memory once (prefetched while the container before is
    computed) in one pass that finds every mask and writes every value to sum; then the
    sums, one centred pass for the second moments (they need the means), one for the
    memory fit's residuals (they need its slope). The module doc's formulas; every sum
    is over the window's row (or its recent part) with 0.0 where the mask is False,
    pairwise as numpy sums it (:func:`_rsum`)."""
    n_containers, width, n_cols = window.shape
    n_recent = width - rs
    buf = np.empty((_N_ROWS, width))
    aux = np.empty((4, 64))  # _rsum's stack
    sm = np.empty(_N_ROWS)  # the sums of buf's rows
    ts = np.empty(width)
    usage = np.empty(width)
    rate = np.empty(width)  # cpu rate at its step's end row
    lat = np.empty(width)
    present = np.empty(width, dtype=np.bool_)
    ok = np.empty(width, dtype=np.bool_)  # memory usage valid
    step = np.empty(width, dtype=np.bool_)  # a cpu step with Δt > 0 ends here
    cm = np.empty(width, dtype=np.bool_)  # in the cpu–memory correlation
    ml = np.empty(width, dtype=np.bool_)  # in the memory–latency correlation
    values = np.zeros(_OUT.shape[0])
    seen = np.empty(n_cols, dtype=np.bool_)  # a finite reading in a present row
    zero = np.intp(0)  # a plain int: a literal 0 argument would compile a helper again
    for i in range(n_containers):
        x = window[i]
        o = out[i]
        ahead = (i + 1) * width * n_cols if i + 1 < n_containers else 0  # the next one
        seen[:] = False
        n_present = 0
        last_row = zero - 1
        n_ok = 0
        n_recent_ok = 0
        n_steps = 0
        n_cm = 0
        n_ml = 0
        n_late = 0
        n_early = 0
        u_last = np.nan
        low = np.inf
        high = -np.inf
        last_rate = np.nan
        lat_last = np.nan
        p_cpu = -1  # the previous row with a valid reading of each counter
        p_psi = -1
        p_oom = -1
        p_fail = -1
        p_thr = -1
        for j in range(width):
            # the next container's row j (its 5-6 cache lines) while this one is computed
            row = ahead + j * n_cols
            for offset in range(0, n_cols, 8):
                _prefetch(window, row + offset)
            _prefetch(window, row + n_cols - 1)
            t = x[j, _TS]
            ts[j] = t
            p = math.isfinite(t)
            present[j] = p
            if p:
                n_present += 1
                last_row = j
                for col in range(n_cols):  # (a contiguous row: a few vector ops)
                    seen[col] |= math.isfinite(x[j, col])
            # memory usage
            u = x[j, _USAGE]
            usage[j] = u
            valid = p and math.isfinite(u)
            ok[j] = valid
            buf[_R_T, j] = t if valid else 0.0
            buf[_R_U, j] = u if valid else 0.0
            if valid:
                n_ok += 1
                u_last = u
                low = min(low, u)
                high = max(high, u)
            # block latency
            v = x[j, _LATENCY]
            lat[j] = v
            lat_ok = p and math.isfinite(v)
            if lat_ok:
                lat_last = v
            late = lat_ok and j >= rs
            early = lat_ok and j < rs
            n_late += late
            n_early += early
            buf[_R_LATE, j] = v if late else 0.0
            buf[_R_EARLY, j] = v if early else 0.0
            both = valid and lat_ok
            ml[j] = both
            n_ml += both
            buf[_R_MX, j] = u if both else 0.0
            buf[_R_MY, j] = v if both else 0.0
            # cpu rate ρ at the step's end row (steps with Δt > 0)
            c = x[j, _CPU]
            is_step = False
            r = np.nan
            d = 0.0
            dt = 0.0
            if p and math.isfinite(c):
                if p_cpu >= 0:
                    gap = t - ts[p_cpu]
                    if gap > 0:
                        d = c - x[p_cpu, _CPU]
                        if d < 0.0:
                            d = 0.0
                        dt = gap
                        is_step = True
                        r = d / dt
                        n_steps += 1
                        last_rate = r
                p_cpu = j
            step[j] = is_step
            rate[j] = r
            buf[_R_D, j] = d
            buf[_R_DT, j] = dt
            buf[_R_RT, j] = t if is_step else 0.0
            buf[_R_RR, j] = r if is_step else 0.0
            both = is_step and valid and math.isfinite(r)
            cm[j] = both
            n_cm += both
            buf[_R_CX, j] = r if both else 0.0
            buf[_R_CY, j] = u if both else 0.0
            # memory pressure (PSI)
            c = x[j, _PSI]
            d = 0.0
            dt = 0.0
            if p and math.isfinite(c):
                if p_psi >= 0:
                    gap = t - ts[p_psi]
                    if gap > 0:
                        d = c - x[p_psi, _PSI]
                        if d < 0.0:
                            d = 0.0
                        dt = gap
                p_psi = j
            buf[_R_PD, j] = d
            buf[_R_PDT, j] = dt
            # failure counters: Σ max(Δ, 0) over the steps between valid readings
            c = x[j, _OOM]
            d = 0.0
            if p and math.isfinite(c):
                if p_oom >= 0:
                    d = c - x[p_oom, _OOM]
                    if d < 0.0:
                        d = 0.0
                p_oom = j
            buf[_R_OOM, j] = d
            c = x[j, _FAILCNT]
            d = 0.0
            if p and math.isfinite(c):
                if p_fail >= 0:
                    d = c - x[p_fail, _FAILCNT]
                    if d < 0.0:
                        d = 0.0
                p_fail = j
            buf[_R_FAIL, j] = d
            # recent rows: the recent fit, and cpu throttling (steps within them,
            # Δperiods > 0, Δthrottled ≥ 0)
            if j >= rs:
                k = j - rs
                n_recent_ok += valid
                buf[_R_QT, k] = t if valid else 0.0
                buf[_R_QU, k] = u if valid else 0.0
                per = x[j, _PERIODS]
                thr = x[j, _THROTTLED]
                d_per = 0.0
                d_thr = 0.0
                if p and math.isfinite(per) and math.isfinite(thr):
                    if p_thr >= 0:
                        step_per = per - x[p_thr, _PERIODS]
                        step_thr = thr - x[p_thr, _THROTTLED]
                        if step_per > 0 and step_thr >= 0:
                            d_per = step_per
                            d_thr = step_thr
                    p_thr = j
                buf[_R_PER, k] = d_per
                buf[_R_THR, k] = d_thr
            # byte rates: steps between adjacent rows with both readings and Δt > 0
            if j >= 1:
                gap = t - ts[j - 1]
                for b in range(_N_BYTES):
                    dv = x[j, _BYTE0 + b] - x[j - 1, _BYTE0 + b]
                    use = math.isfinite(dv) and gap > 0
                    buf[_R_BYTES + 2 * b, j - 1] = gap if use else 0.0
                    buf[_R_BYTES + 2 * b + 1, j - 1] = (0.0 if dv < 0.0 else dv) if use else 0.0

        # the sums of the values
        _rsums(buf, zero, zero + _R_QT, width, sm, aux)
        _rsums(buf, zero + _R_QT, zero + (_R_BYTES - _R_QT), n_recent, sm, aux)
        _rsums(buf, zero + _R_BYTES, zero + 2 * _N_BYTES, width - 1, sm, aux)
        t_mean = sm[_R_T] / n_ok
        sum_u = sm[_R_U]
        u_mean = sum_u / n_ok
        sum_d = sm[_R_D]
        sum_dt = sm[_R_DT]
        rt_mean = sm[_R_RT] / n_steps
        rr_mean = sm[_R_RR] / n_steps
        cx_mean = cy_mean = 0.0
        if n_cm >= 3:
            cx_mean = sm[_R_CX] / n_cm
            cy_mean = sm[_R_CY] / n_cm
        change = (sm[_R_LATE] / (n_late if n_late > 0 else np.nan)
                  - sm[_R_EARLY] / (n_early if n_early > 0 else np.nan))
        mx_mean = my_mean = 0.0
        if n_ml >= 3:
            mx_mean = sm[_R_MX] / n_ml
            my_mean = sm[_R_MY] / n_ml
        psi_dt = sm[_R_PDT]
        psi = sm[_R_PD] / psi_dt if psi_dt > 0 else np.nan
        oom = sm[_R_OOM]
        failcnt = sm[_R_FAIL]
        qt_mean = sm[_R_QT] / n_recent_ok
        qu_mean = sm[_R_QU] / n_recent_ok
        sum_per = sm[_R_PER]
        throttled = 0.0
        if sum_per > 0:
            throttled = sm[_R_THR] / sum_per
            if throttled < 0.0:
                throttled = 0.0
            elif throttled > 1.0:
                throttled = 1.0
        for b in range(_N_BYTES):
            total_dt = sm[_R_BYTES + 2 * b]
            o[_FIRST_RATE + b] = (sm[_R_BYTES + 2 * b + 1]
                                  / total_dt if total_dt > 0 else np.nan)

        # the centred pass: second moments about the means
        for j in range(width):
            t = ts[j]
            u = usage[j]
            r = rate[j]
            v = lat[j]
            valid = ok[j]
            dt = t - t_mean if valid else 0.0
            du = u - u_mean if valid else 0.0
            buf[0, j] = dt * dt
            buf[1, j] = dt * du
            buf[2, j] = du * du
            is_step = step[j]
            dt = t - rt_mean if is_step else 0.0
            dr = r - rr_mean if is_step else 0.0
            buf[3, j] = dt * dt
            buf[4, j] = dt * dr
            buf[5, j] = dr * dr
            both = cm[j]
            dx = r - cx_mean if both else 0.0
            dy = u - cy_mean if both else 0.0
            buf[6, j] = dx * dy
            buf[7, j] = dx * dx
            buf[8, j] = dy * dy
            both = ml[j]
            dx = u - mx_mean if both else 0.0
            dy = v - my_mean if both else 0.0
            buf[9, j] = dx * dy
            buf[10, j] = dx * dx
            buf[11, j] = dy * dy
        for k in range(n_recent):
            j = rs + k
            valid = ok[j]
            dt = ts[j] - qt_mean if valid else 0.0
            du = usage[j] - qu_mean if valid else 0.0
            buf[12, k] = dt * dt
            buf[13, k] = dt * du
        _rsums(buf, zero, zero + 12, width, sm, aux)
        _rsums(buf, zero + 12, zero + 2, n_recent, sm, aux)
        # memory
        stt = sm[0]
        sty = sm[1]
        ss_u = sm[2]
        slope = sty / stt if n_ok >= 2 and stt > 0 else np.nan
        l_last = _last_known(x, _COLUMNS[0], present, width - 1)
        headroom = l_last - u_last
        stt_q = sm[12]
        sty_q = sm[13]
        recent_slope = sty_q / stt_q if n_recent_ok >= 2 and stt_q > 0 else np.nan
        # the memory fit's residuals r = (y−ȳ) − b(t−t̄): √(Σr²/n), √(Σr²/(n−2)/Σ(t−t̄)²)
        # (0 when n = 2), both nan when the slope is
        fitted = not math.isnan(slope)  # = n ≥ 2 and Σ(t−t̄)² > 0
        s = slope if fitted else 0.0
        for j in range(width):
            valid = ok[j]
            dt = ts[j] - t_mean if valid else 0.0
            du = usage[j] - u_mean if valid else 0.0
            r = du - s * dt
            buf[0, j] = r * r
        _rsums(buf, zero, zero + 1, width, sm, aux)
        ssr = sm[0]
        resid_std = slope_se = np.nan
        if fitted:
            resid_std = math.sqrt(ssr / n_ok)
            slope_se = math.sqrt(ssr / (n_ok - 2) / stt) if n_ok > 2 else 0.0
        if math.isnan(headroom) or (math.isnan(slope) and math.isfinite(headroom)
                                  and headroom > 0):
            ttl = np.nan
        elif headroom <= 0:
            ttl = 0.0
        elif slope > 0:
            ttl = headroom / slope
        else:
            ttl = np.inf
        mean_u = sum_u / n_ok if n_ok > 0 else np.nan
        std_u = math.sqrt(ss_u / n_ok) if n_ok > 0 else np.nan
        if n_ok == 0:
            low = high = np.nan
        # cpu
        stt_r = sm[3]
        sty_r = sm[4]
        ss_rate = sm[5]
        rate_slope = sty_r / stt_r if n_steps >= 2 and stt_r > 0 else np.nan
        cpu_mem = np.nan
        if n_cm >= 3:
            cov = sm[6]
            den = math.sqrt(sm[7] * sm[8])
            cpu_mem = cov / den if den > 0 else np.nan
        mem_lat = np.nan
        if n_ml >= 3:
            cov = sm[9]
            den = math.sqrt(sm[10] * sm[11])
            mem_lat = cov / den if den > 0 else np.nan
        mean_cores = sum_d / sum_dt if n_steps > 0 else np.nan
        quota = _last_known(x, _COLUMNS[1], present, width - 1)
        if math.isinf(l_last):
            fraction = 0.0
        elif l_last > 0:
            fraction = u_last / l_last
        else:
            fraction = np.nan

        # gauges: the reading at the last present row, else the last finite one
        for g in range(_GAUGE_COLUMNS.shape[0]):
            column = _GAUGE_COLUMNS[g]
            value = np.nan
            if last_row >= 0:
                value = x[last_row, column]
                if math.isnan(value) and seen[column]:  # (most sources lack most gauges)
                    value = _last_finite(x, column, present, last_row)
            o[_FIRST_GAUGE + g] = value
        request = o[_REQUEST]

        values[0] = n_present
        values[1] = u_last
        values[2] = l_last
        values[3] = headroom
        values[4] = slope
        values[5] = recent_slope
        values[6] = resid_std
        values[7] = slope_se
        values[8] = ttl
        values[9] = last_rate
        values[10] = mean_cores
        values[11] = rate_slope
        values[12] = math.sqrt(ss_rate / n_steps) if n_steps > 0 else np.nan
        values[13] = quota
        values[14] = throttled
        values[15] = oom
        values[16] = failcnt
        values[17] = mean_u
        values[18] = std_u
        values[19] = low
        values[20] = high
        values[21] = cpu_mem
        values[22] = lat_last
        values[23] = change
        values[24] = mem_lat
        values[25] = psi
        values[26] = fraction
        values[27] = mean_cores / request if request > 0 else np.nan
        for k in range(_OUT.shape[0]):
            o[_OUT[k]] = values[k]
