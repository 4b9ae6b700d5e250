"""The compiled pass behind :func:`app.core.features.compute_features` (numba).

Apart from :mod:`app.core.features` so that importing that module for its names
(``FEATURES``, ``F``, …) does not load numba and LLVM (~100 MiB of memory, 0.3 s);
``compute_features`` imports this module on its first call. The formulas are the ones
of :mod:`app.core.features`' docstring; ``tests/unit/test_features.py`` checks every
value against a frozen numpy reference.
"""

from __future__ import annotations

import math
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
#: helper compiles once): the two limits, the two failure counters.
_COLUMNS = np.array([_LIMIT, _QUOTA, _OOM, _FAILCNT], dtype=np.intp)
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
    import: then every process compiles on its first call instead."""
    options = {"nogil": True, "error_model": "numpy"}
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:  # "cannot cache function …: no locator available"
        return numba.njit(**options)(fn)


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
def _fit(t: np.ndarray, y: np.ndarray, mask: np.ndarray, lo: int, n: int, length: int,
         buf: np.ndarray, aux: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """Least-squares fit of ``y`` on ``t`` over ``mask`` (the ``length`` entries from
    ``lo``, ``n`` of them True): ``(Σy, Σ(y−ȳ)², slope, Σ(t−t̄)², t̄, ȳ)``, slope nan
    with fewer than 2 points or no spread in t. The module doc's formulas: centred
    two-pass sums over ``where(mask, ·, 0.0)`` rows as numpy sums them."""
    for k in range(length):
        j = lo + k
        buf[0, k] = t[j] if mask[j] else 0.0
        buf[1, k] = y[j] if mask[j] else 0.0
    sum_t = _rsum(buf[0], length, aux)
    sum_y = _rsum(buf[1], length, aux)
    t_mean = sum_t / n
    y_mean = sum_y / n
    for k in range(length):
        j = lo + k
        dt = t[j] - t_mean if mask[j] else 0.0
        dy = y[j] - y_mean if mask[j] else 0.0
        buf[0, k] = dt * dt
        buf[1, k] = dt * dy
        buf[2, k] = dy * dy
    stt = _rsum(buf[0], length, aux)
    sty = _rsum(buf[1], length, aux)
    syy = _rsum(buf[2], length, aux)
    slope = sty / stt if n >= 2 and stt > 0 else np.nan
    return sum_y, syy, slope, stt, t_mean, y_mean


@_jit
def _residuals(t: np.ndarray, y: np.ndarray, mask: np.ndarray, n: int, length: int,
               fit: tuple[float, float, float, float, float, float], buf: np.ndarray,
               aux: np.ndarray) -> tuple[float, float]:
    """``(resid_std, slope_se)`` of a :func:`_fit` over the first ``length`` entries:
    ``sqrt(Σr²/n)`` and ``sqrt(Σr²/(n−2)/Σ(t−t̄)²)`` (0 when n = 2), both nan when the
    slope is, with ``r = (y−ȳ) − b(t−t̄)``."""
    _, _, slope, stt, t_mean, y_mean = fit
    ok = not math.isnan(slope)  # = n ≥ 2 and Σ(t−t̄)² > 0
    s = slope if ok else 0.0
    for k in range(length):
        dt = t[k] - t_mean if mask[k] else 0.0
        dy = y[k] - y_mean if mask[k] else 0.0
        r = dy - s * dt
        buf[0, k] = r * r
    ssr = _rsum(buf[0], length, aux)
    if not ok:
        return np.nan, np.nan
    return math.sqrt(ssr / n), (math.sqrt(ssr / (n - 2) / stt) if n > 2 else 0.0)


@_jit
def _corr(x: np.ndarray, y: np.ndarray, mask: np.ndarray, length: int, buf: np.ndarray,
          aux: np.ndarray) -> float:
    """Pearson correlation of ``x`` and ``y`` over ``mask`` and where both are finite
    (nan: fewer than 3 such rows, or a flat series)."""
    n = 0
    for k in range(length):
        both = mask[k] and math.isfinite(x[k]) and math.isfinite(y[k])
        buf[5, k] = 1.0 if both else 0.0
        buf[0, k] = x[k] if both else 0.0
        buf[1, k] = y[k] if both else 0.0
        n += both
    if n < 3:  # (e.g. no latency readings: most sources)
        return np.nan
    mx = _rsum(buf[0], length, aux) / n
    my = _rsum(buf[1], length, aux) / n
    for k in range(length):
        both = buf[5, k] != 0.0
        dx = x[k] - mx if both else 0.0
        dy = y[k] - my if both else 0.0
        buf[0, k] = dx * dy
        buf[1, k] = dx * dx
        buf[2, k] = dy * dy
    cov = _rsum(buf[0], length, aux)
    den = math.sqrt(_rsum(buf[1], length, aux) * _rsum(buf[2], length, aux))
    return cov / den if n >= 3 and den > 0 else np.nan


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


@_jit
def _stepped_sum(x: np.ndarray, column: int, present: np.ndarray, width: int,
                 buf: np.ndarray, aux: np.ndarray) -> float:
    """``Σ max(Δ, 0)`` over the steps of a counter (each valid reading paired with the
    previous one), summed over the window's row as numpy does."""
    prev = -1
    for j in range(width):
        v = x[j, column]
        buf[0, j] = 0.0
        if present[j] and math.isfinite(v):
            if prev >= 0:
                d = v - x[prev, column]
                buf[0, j] = 0.0 if d < 0.0 else d
            prev = j
    return _rsum(buf[0], width, aux)


@_jit
def kernel(window: np.ndarray, rs: int, out: np.ndarray) -> None:
    """Every feature of every container of ``window`` (C-contiguous ``[N, W, M]``, W ≥
    1; ``rs`` the first recent row) into ``out`` (``[N, len(FEATURES)]``): per
    container, its W rows from memory once (prefetched while the container before is
    computed; they stay in cache for the short passes below). The module doc's
    formulas; every sum is over the window's row (or its recent part) with 0.0 where
    the mask is False, pairwise as numpy sums it (:func:`_rsum`)."""
    n_containers, width, _ = window.shape
    n_recent = width - rs
    buf = np.empty((max(6, 2 * _N_BYTES), width))
    aux = np.empty((4, 64))  # _rsum's stack
    ts = np.empty(width)
    present = np.empty(width, dtype=np.bool_)
    usage = np.empty(width)
    ok = np.empty(width, dtype=np.bool_)  # memory usage valid
    rate = np.empty(width)  # cpu rate at its step's end row
    step = np.empty(width, dtype=np.bool_)
    lat = np.empty(width)
    lat_ok = np.empty(width, dtype=np.bool_)
    both = np.empty(width, dtype=np.bool_)
    values = np.zeros(_OUT.shape[0])
    seen = np.empty(window.shape[2], dtype=np.bool_)  # a finite reading in a present row
    n_cols = window.shape[2]
    zero = np.intp(0)  # a plain int: a literal 0 argument would compile a helper again
    for i in range(n_containers):
        x = window[i]
        o = out[i]
        # (counts and rows passed to a helper start from ``zero``, not a literal: the
        # helper would be compiled for the literal too)
        n_present = 0
        last_row = zero - 1
        n_ok = zero
        ahead = (i + 1) * width * n_cols if i + 1 < n_containers else 0  # the next one
        seen[:] = False
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
                for c in range(n_cols):  # (a contiguous row: a few vector ops)
                    seen[c] |= math.isfinite(x[j, c])
            u = x[j, _USAGE]
            usage[j] = u
            ok[j] = p and math.isfinite(u)
            n_ok += ok[j]
            v = x[j, _LATENCY]
            lat[j] = v
            lat_ok[j] = p and math.isfinite(v)

        # memory
        u_last = np.nan
        for j in range(width - 1, -1, -1):
            if ok[j]:
                u_last = usage[j]
                break
        l_last = _last_known(x, _COLUMNS[0], present, width - 1)
        headroom = l_last - u_last
        fit = _fit(ts, usage, ok, zero, n_ok, width, buf, aux)
        sum_u, ss_u, slope = fit[0], fit[1], fit[2]
        resid_std, slope_se = _residuals(ts, usage, ok, n_ok, width, fit, buf, aux)
        n_recent_ok = zero
        for j in range(rs, width):
            n_recent_ok += ok[j]
        recent_slope = _fit(ts, usage, ok, rs, n_recent_ok, n_recent, buf, aux)[2]
        if math.isnan(headroom) or (math.isnan(slope) and math.isfinite(headroom)
                                  and headroom > 0):
            ttl = np.nan
        elif headroom <= 0:
            ttl = 0.0
        elif slope > 0:
            ttl = headroom / slope
        else:
            ttl = np.inf
        low = np.inf
        high = -np.inf
        for j in range(width):
            if ok[j]:
                low = min(low, usage[j])
                high = max(high, usage[j])
        mean_u = sum_u / n_ok if n_ok > 0 else np.nan
        std_u = math.sqrt(ss_u / n_ok) if n_ok > 0 else np.nan
        if n_ok == 0:
            low = high = np.nan

        # cpu rates ρ at the step's end row (steps with Δt > 0)
        prev = -1
        n_steps = zero
        last_rate = np.nan
        for j in range(width):
            v = x[j, _CPU]
            step[j] = False
            rate[j] = np.nan
            buf[0, j] = 0.0
            buf[1, j] = 0.0
            if present[j] and math.isfinite(v):
                if prev >= 0:
                    dt = ts[j] - ts[prev]
                    if dt > 0:
                        d = v - x[prev, _CPU]
                        if d < 0.0:
                            d = 0.0
                        step[j] = True
                        rate[j] = d / dt
                        buf[0, j] = d
                        buf[1, j] = dt
                        n_steps += 1
                        last_rate = rate[j]
                prev = j
        sum_d = _rsum(buf[0], width, aux)
        sum_dt = _rsum(buf[1], width, aux)
        _, ss_rate, rate_slope, _, _, _ = _fit(ts, rate, step, zero, n_steps, width, buf, aux)
        for j in range(width):
            both[j] = step[j] and ok[j]
        cpu_mem = _corr(rate, usage, both, width, buf, aux)
        mean_cores = sum_d / sum_dt if n_steps > 0 else np.nan
        quota = _last_known(x, _COLUMNS[1], present, width - 1)

        # block latency
        lat_last = np.nan
        for j in range(width - 1, -1, -1):
            if lat_ok[j]:
                lat_last = lat[j]
                break
        n_late = 0
        n_early = 0
        for j in range(width):
            late = lat_ok[j] and j >= rs
            early = lat_ok[j] and j < rs
            n_late += late
            n_early += early
            buf[0, j] = lat[j] if late else 0.0
            buf[1, j] = lat[j] if early else 0.0
        change = (_rsum(buf[0], width, aux) / (n_late if n_late > 0 else np.nan)
                  - _rsum(buf[1], width, aux) / (n_early if n_early > 0 else np.nan))
        for j in range(width):
            both[j] = ok[j] and lat_ok[j]
        mem_lat = _corr(usage, lat, both, width, buf, aux)

        # memory pressure (PSI): Σ max(Δ, 0) / Σ Δt over the steps with Δt > 0
        prev = -1
        for j in range(width):
            v = x[j, _PSI]
            buf[0, j] = 0.0
            buf[1, j] = 0.0
            if present[j] and math.isfinite(v):
                if prev >= 0:
                    dt = ts[j] - ts[prev]
                    if dt > 0:
                        d = v - x[prev, _PSI]
                        buf[0, j] = 0.0 if d < 0.0 else d
                        buf[1, j] = dt
                prev = j
        psi_dt = _rsum(buf[1], width, aux)
        psi = _rsum(buf[0], width, aux) / psi_dt if psi_dt > 0 else np.nan

        # cpu throttling over the recent rows: steps within them, Δperiods > 0, Δthr ≥ 0
        prev = -1
        for k in range(n_recent):
            j = rs + k
            per = x[j, _PERIODS]
            thr = x[j, _THROTTLED]
            buf[0, k] = 0.0
            buf[1, k] = 0.0
            if present[j] and math.isfinite(per) and math.isfinite(thr):
                if prev >= 0:
                    d_per = per - x[prev, _PERIODS]
                    d_thr = thr - x[prev, _THROTTLED]
                    if d_per > 0 and d_thr >= 0:
                        buf[0, k] = d_per
                        buf[1, k] = d_thr
                prev = j
        sum_per = _rsum(buf[0], n_recent, aux)
        throttled = 0.0
        if sum_per > 0:
            throttled = _rsum(buf[1], n_recent, aux) / sum_per
            if throttled < 0.0:
                throttled = 0.0
            elif throttled > 1.0:
                throttled = 1.0

        oom = _stepped_sum(x, _COLUMNS[2], present, width, buf, aux)
        failcnt = _stepped_sum(x, _COLUMNS[3], present, width, buf, aux)
        if math.isinf(l_last):
            fraction = 0.0
        elif l_last > 0:
            fraction = u_last / l_last
        else:
            fraction = np.nan

        # byte rates: steps between adjacent rows with both readings and Δt > 0
        for j in range(1, width):
            dt = ts[j] - ts[j - 1]
            for c in range(_N_BYTES):
                dv = x[j, _BYTE0 + c] - x[j - 1, _BYTE0 + c]
                use = math.isfinite(dv) and dt > 0
                buf[2 * c, j - 1] = dt if use else 0.0
                buf[2 * c + 1, j - 1] = (0.0 if dv < 0.0 else dv) if use else 0.0
        for c in range(_N_BYTES):
            total_dt = _rsum(buf[2 * c], width - 1, aux)
            o[_FIRST_RATE + c] = (_rsum(buf[2 * c + 1], width - 1, aux) / total_dt
                                  if total_dt > 0 else np.nan)
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
