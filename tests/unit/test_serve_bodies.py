"""Prediction bodies as arrays (app.serve_bodies) and the client's encoders
(app.serve_client), without Ray or HTTP: the Arrow request's worked example and every
refusal (status, column, row, container), the JSON array path against the pydantic
models (a hypothesis property: whenever the array path answers, the models accept the
body and build the same window), and the Arrow answer against the JSON answer."""

from __future__ import annotations

import json
import math
import struct
import tempfile

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from prescale.app.api_models import PredictRequest
from prescale.app.core.gc_pause import gc_paused
from prescale.app.core.sample import METRICS
from prescale.app.serve_bodies import (
    BodyError,
    _batch_header,
    _series_job,
    arrow_job,
    column_problem,
    json_job,
    predictions_table,
    windows,
)
from prescale.app.serve_client import (
    arrow_body,
    json_body,
    predictions_from_table,
    read_table,
    samples_table,
)
from prescale.app.serve_jobs import prediction_json, window_of

M = len(METRICS)
MEM = METRICS.index("memory_usage_bytes")
LIMIT = METRICS.index("memory_limit_bytes")
T0 = 1.7e9


def stream(table: pa.Table, **options) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema,
                           options=pa.ipc.IpcWriteOptions(**options)) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def job_of(table: pa.Table, max_containers: int = 100, max_samples: int = 10_000):
    return arrow_job(stream(table), max_containers=max_containers, max_samples=max_samples)


def refusal(table_or_body, **limits) -> BodyError:
    body = table_or_body if isinstance(table_or_body, bytes) else stream(table_or_body)
    with pytest.raises(BodyError) as info:
        arrow_job(body, max_containers=limits.get("max_containers", 100),
                  max_samples=limits.get("max_samples", 10_000),
                  max_bytes=limits.get("max_bytes"))
    return info.value


# ------------------------------------------------------------------ Arrow request


def test_module_worked_example():
    """rows (a, 2, 5), (b, 1), (a, 1, null) → containers [a, b], window [2, 2, M]."""
    table = pa.table({"container": ["a", "b", "a"], "ts_s": [2.0, 1.0, 1.0],
                      "memory_usage_bytes": pa.array([5, None, None], pa.int64())})
    job = job_of(table)
    assert job.names == ["a", "b"] and job.apps == ["", ""]
    assert job.window.shape == (2, 2, M)
    a, b = job.window
    assert a[:, 0].tolist() == [1.0, 2.0] and np.isnan(a[0, MEM]) and a[1, MEM] == 5.0
    assert np.isnan(b[0]).all()  # padding
    assert b[1, 0] == 1.0 and np.isnan(b[1, MEM]) and b[1, LIMIT] == math.inf  # default
    assert job.latest_ts_s == 2.0 and job.now_s is None


@pytest.mark.parametrize("compression", [None, "lz4", "zstd"])
def test_the_same_windows_as_the_json_models(compression):
    """Rows shuffled, ints, float32, a dictionary-encoded container column, apps, an
    all-null column and now_s in the metadata, compressed or not: the window of the
    pydantic path."""
    containers = [
        {"name": "web-1", "app": "shop", "samples": [
            {"ts_s": T0 + i, "memory_usage_bytes": 40.0 + i, "memory_limit_bytes": 128.0,
             "cpu_usage_s_total": 0.5 * i} for i in range(6)]},
        {"name": "web-2", "app": "shop", "samples": [
            {"ts_s": T0 + i, "memory_usage_bytes": 48.0} for i in range(3)]},
    ]
    want = window_of(PredictRequest.model_validate({"containers": containers, "now_s": T0 + 9}))
    table = samples_table(containers)
    # shuffled, but web-1's first row first: containers are answered in first-row order
    rows = [0, *(1 + np.random.default_rng(3).permutation(table.num_rows - 1))]
    table = table.take(pa.array(rows))
    table = table.set_column(0, "container", table.column("container").dictionary_encode())
    table = table.set_column(table.column_names.index("cpu_usage_s_total"), "cpu_usage_s_total",
                             table.column("cpu_usage_s_total").cast(pa.float32()))
    table = table.append_column("oom_kills_total", pa.nulls(table.num_rows))
    body = arrow_body(table, now_s=T0 + 9, compression=compression)
    schema = read_table(body).schema
    assert schema.field("memory_usage_bytes").type == pa.float32()  # exact in float32
    assert schema.field("ts_s").type == pa.float64()  # never narrowed
    job = arrow_job(body, max_containers=10, max_samples=100)
    assert job.names == want.names and job.apps == want.apps
    np.testing.assert_array_equal(job.window, want.window)  # nan == nan here
    assert job.latest_ts_s == want.latest_ts_s and job.now_s == T0 + 9


def _table(**cols) -> pa.Table:
    base = {"container": ["a", "a", "b"], "ts_s": [T0, T0 + 1, T0]}
    base.update(cols)
    return pa.table({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize("cols, column, row, container, words", [
    ({"memory_usage_bytes": [1.0, -1.0, 2.0]}, "memory_usage_bytes", 1, "a",
     "must be ≥ 0, got -1"),
    ({"ts_s": [T0, None, T0]}, "ts_s", 1, "a", "must be a finite time, got null"),
    ({"ts_s": [T0, T0, math.nan]}, "ts_s", 2, "b", "must be a finite time, got null"),
    ({"ts_s": [T0, T0, 1e12]}, "ts_s", 2, "b", "must be ≤ 1e+11 (Unix seconds), got 1e+12"),
    ({"cpu_usage_s_total": [1.0, 2.0, math.inf]}, "cpu_usage_s_total", 2, "b",
     "must be finite and ≤ 1e+18, got inf (inf is for the limits only)"),
    ({"memory_usage_bytes": [1e19, 1.0, 1.0]}, "memory_usage_bytes", 0, "a",
     "must be finite and ≤ 1e+18, got 1e+19"),
    ({"memory_limit_bytes": [1.0, -math.inf, 1.0]}, "memory_limit_bytes", 1, "a",
     "must be ≥ 0, got -inf"),
    ({"container": ["a", None, "b"]}, "container", 1, None, "must be a name, got null"),
    ({"container": ["a", "", "b"]}, "container", 1, None,
     "must be 1 to 256 characters, got 0"),
    ({"app": ["x", "y", "x"]}, "app", 1, "a", "'y' here but 'x' in row 0 (one app per "
     "container)"),
])
def test_bad_values_name_column_row_and_container(cols, column, row, container, words):
    err = refusal(_table(**cols))
    assert err.status == 422
    where = f"{column}, row {row}" + (f" (container {container!r})" if container else "")
    assert err.message() == f"{where}: {words}"
    entry = err.payload()["detail"][0]
    assert (entry["field"], entry["row"], entry["loc"]) == (column, row, ["body", column, row])


def test_every_bad_column_is_named_not_only_the_first():
    err = refusal(_table(memory_usage_bytes=[1.0, 1.0, -5.0], cpu_quota_cores=[-1.0, 1.0, 1.0]))
    assert err.message() == ("memory_usage_bytes, row 2 (container 'b'): must be ≥ 0, got -5; "
                             "cpu_quota_cores, row 0 (container 'a'): must be ≥ 0, got -1")
    assert [d["field"] for d in err.payload()["detail"]] == ["memory_usage_bytes",
                                                              "cpu_quota_cores"]


@pytest.mark.parametrize("table, words", [
    (pa.table({"container": ["a"], "ts_s": [T0], "memry": [1.0]}),
     "memry: unknown column (expected container, app, ts_s or a metric"),
    (pa.table({"container": ["a"]}), "ts_s: the column is required"),
    (pa.table({"ts_s": [T0]}), "container: the column is required"),
    (pa.table({"container": ["a"], "ts_s": [T0], "memory_usage_bytes": ["5"]}),
     "memory_usage_bytes: must be a number column (integer or floating), got string"),
    (pa.table({"container": ["a"], "ts_s": [T0], "oom_kills_total": [True]}),
     "oom_kills_total: must be a number column (integer or floating), got bool"),
    (pa.table({"container": [1], "ts_s": [T0]}), "container: must be a string column, got int64"),
    (pa.table([pa.array(["a"]), pa.array([T0]), pa.array([T0])],
              names=["container", "ts_s", "ts_s"]), "ts_s: the column appears twice"),
    (pa.table({"container": pa.array([], pa.string()), "ts_s": pa.array([], pa.float64())}),
     "body: the table has no rows"),
    (pa.table({"container": ["a"], "ts_s": [T0]}).replace_schema_metadata({"now_s": "soon"}),
     "now_s: (schema metadata) must be a number, got 'soon'"),
    (pa.table({"container": ["a"], "ts_s": [T0]}).replace_schema_metadata({"now_s": "1e12"}),
     "now_s: (schema metadata) must be a finite time in [0, 1e+11], got 1e+12"),
])
def test_bad_tables_are_422_naming_the_column(table, words):
    err = refusal(table)
    assert err.status == 422 and words in err.message(), err.message()


def test_unreadable_bodies_are_400():
    table = pa.table({"container": ["a"], "ts_s": [T0]})
    err = refusal(b"not arrow at all")
    assert err.status == 400 and "not a readable Arrow IPC stream" in err.message()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    err = refusal(sink.getvalue().to_pybytes())
    assert err.status == 400 and "the Arrow IPC file format: send the stream" in err.message()
    err = refusal(stream(table)[:-20])
    assert err.status == 400


def test_limits_are_413_with_the_json_words_before_values_are_read():
    many = pa.table({"container": [f"c{i}" for i in range(11)], "ts_s": [T0] * 11,
                     "memory_usage_bytes": [-1.0] * 11})  # bad values, but too many first
    err = refusal(many, max_containers=10)
    assert (err.status, err.payload()) == (413, {
        "detail": "11 containers in one request is above max_containers = 10"})
    err = refusal(many, max_samples=10)  # from the IPC headers, before any buffer
    assert err.payload()["detail"] == "11 samples in one request is above max_samples = 10"
    wide = pa.table({"container": ["a"] * 5 + ["b"], "ts_s": [T0 + i for i in range(6)]})
    assert refusal(wide, max_samples=8).payload()["detail"] == (
        "containers × longest window = 2 × 5 = 10 samples is above max_samples = 8")


def test_compressed_streams_are_read_up_to_max_bytes_declared():
    """Each compressed buffer declares its size; their sum is checked before anything
    is decompressed: an honest stream above max_bytes, and a forged declaration of a
    terabyte in a small body, are 413."""
    i = np.arange(10_000)
    table = pa.table({"container": [f"c{k}" for k in i // 100], "ts_s": T0 + i % 100,
                      "memory_usage_bytes": np.full(10_000, 5.0)})
    for compression in ("lz4", "zstd"):
        body = stream(table, compression=compression)
        assert len(body) < 60_000  # ≈ 230 KB uncompressed
        job = arrow_job(body, max_containers=100, max_samples=10_000, max_bytes=400_000)
        assert job.window.shape[:2] == (100, 100)
        np.testing.assert_array_equal(job.window[7, :, 0], T0 + np.arange(100.0))
        err = refusal(body, max_containers=100, max_bytes=100_000)
        assert err.status == 413 and "declares at least" in err.message(), err.message()
        assert "above max_body_bytes = 100000" in err.message()
        at = body.index(struct.pack("<q", 80_000))  # a float column: 10,000 × 8 bytes
        forged = body[:at] + struct.pack("<q", 10**12) + body[at + 8:]
        err = refusal(forged, max_containers=100, max_bytes=8 * 2**20)
        assert err.status == 413 and "at least 1000000" in err.message(), err.message()


def test_narrowed_keeps_only_what_float32_holds_exactly():
    """The serve_client._narrowed worked example."""
    from prescale.app.serve_client import _narrowed

    MiB = 2**20
    table = _narrowed(pa.table({
        "container": ["a"] * 3, "ts_s": [T0, T0 + 1, T0 + 2],
        "memory_usage_bytes": [40.0 * MiB, 44.0 * MiB, None],
        "cpu_usage_s_total": [0.3, 0.6, 0.9], "memory_limit_bytes": [math.inf] * 3}))
    types = {f.name: f.type for f in table.schema}
    assert types == {"container": pa.string(), "ts_s": pa.float64(),
                     "memory_usage_bytes": pa.float32(), "cpu_usage_s_total": pa.float64(),
                     "memory_limit_bytes": pa.float32()}
    assert table.column("memory_usage_bytes").to_numpy()[:2].tolist() == [40.0 * MiB,
                                                                           44.0 * MiB]


def test_ipc_header_peek():
    table = pa.table({"container": ["a", "b"], "ts_s": [T0, T0]})
    for compression, want in ((None, False), ("zstd", True), ("lz4", True)):
        reader = pa.ipc.MessageReader.open_stream(pa.py_buffer(stream(
            table, compression=compression)))
        kinds = [_batch_header(m.metadata.to_pybytes()) for m in reader]
        assert kinds == [(1, 0, False), (3, 2, want)]


# ------------------------------------------------------------------ pieces


def test_column_problem_worked_examples():
    assert column_problem("memory_usage_bytes", np.array([5, np.nan, -1.0])) == (
        2, "must be ≥ 0, got -1")
    assert column_problem("ts_s", np.array([1.0, np.nan])) == (
        1, "must be a finite time, got null")
    assert column_problem("memory_limit_bytes", np.array([np.inf])) is None


def test_windows_worked_example():
    out = windows({"ts_s": np.array([10.0, 11.0, 20.0])}, np.array([2, 1]))
    assert out.shape == (2, 2, M)
    assert out[0, :, 0].tolist() == [10.0, 11.0]
    assert np.isnan(out[1, 0]).all() and out[1, 1, 0] == 20.0
    assert out[1, 1, LIMIT] == math.inf and np.isnan(out[1, 1, MEM])
    # one metric's readings of a container are contiguous: [N, M, W] seen as [N, W, M]
    assert out.transpose(0, 2, 1).flags.c_contiguous
    same = windows({"ts_s": np.array([1.0, 2.0])}, np.array([1, 1]))
    assert same[:, 0, 0].tolist() == [1.0, 2.0]


# ------------------------------------------------------------------ JSON: array path


def test_json_worked_example():
    body = b'{"containers": [{"name": "a", "series": {"ts_s": [2, 1], ' \
           b'"memory_usage_bytes": [5, null]}}]}'
    job = json_job(body)
    assert job.window.shape == (1, 2, M)
    assert job.window[0, :, 0].tolist() == [1.0, 2.0]
    assert np.isnan(job.window[0, 0, MEM]) and job.window[0, 1, MEM] == 5.0
    assert (job.window[0, :, LIMIT] == math.inf).all()
    assert json_job(body.replace(b"[5, null]", b"[-1, 5]")) is None


@pytest.mark.parametrize("body", [
    b'{"containers": [{"name": "a", "samples": [{"ts_s": 1, "memory_usage_bytes": true}]}]}',
    b'{"containers": [{"name": "a", "samples": [{"ts_s": 1, "memory_usage_bytes": "5"}]}]}',
    b'{"containers": [{"name": "a", "samples": [{"ts_s": 1, "memory_usage_bytes": NaN}]}]}',
    b'{"containers": [{"name": "a", "samples": [{"ts_s": 1, "memry": 5}]}]}',
    b'{"containers": [{"name": "a", "samples": [{"ts_s": 1}]}], "colour": 1}',
    b'{"containers": [{"name": "a", "series": {"ts_s": [1, 2], "memory_usage_bytes": [1]}}]}',
    b'{"containers": [{"name": "a", "samples": [{"ts_s": 1}]}, {"name": "a", "samples": '
    b'[{"ts_s": 1}]}]}',
    b'{"containers": [{"name": "a", "samples": [{"ts_s": null}]}]}',
    b'{"containers": [{"name": "a", "samples": [[1]]}]}',
    b'{"containers": [{"name": "a", "samples": []}]}',
    b'{"containers": [{"name": 5, "samples": [{"ts_s": 1}]}]}',
    b'{"containers": [{"name": "a", "app": null, "samples": [{"ts_s": 1}]}]}',
    b'{"features": [[1, 2]]}',
    b'{"containers": [{"name": "a", "samples": [{"ts_s": 1}]}], "now_s": -1}',
    b'{"containers": [',
    b'{"containers": [{"name": "a", "series": {"ts_s": [1]}, "samples": [{"ts_s": 1}]}]}',
    b'{"containers": [{"name": "a", "series": {"ts_s": [1]}, "app": ["x"]}]}',
])
def test_json_bodies_the_array_path_leaves_to_the_models(body):
    assert json_job(body) is None


def _number():
    return st.one_of(
        st.integers(min_value=-2, max_value=2**64),
        st.floats(allow_nan=False, allow_infinity=False, width=64),
        st.sampled_from([0.0, 1e18, 1e19, 5e-324, 1.7e9, -0.0]),
        st.none(), st.just("inf"), st.just("Inf"), st.booleans())


_METRIC = st.sampled_from(["memory_usage_bytes", "memory_limit_bytes", "cpu_usage_s_total",
                           "cpu_quota_cores", "oom_kills_total", "disk_limit_bytes"])
_TS = st.one_of(st.floats(min_value=0, max_value=2e9, allow_nan=False),
                st.integers(min_value=0, max_value=2**40), st.just(1e12), st.none())


@st.composite
def container(draw, name):
    n = draw(st.integers(1, 4))
    metrics = draw(st.lists(_METRIC, max_size=3, unique=True))
    if draw(st.booleans()):
        series = {"ts_s": [draw(_TS) for _ in range(n)]}
        for m in metrics:
            series[m] = [draw(_number()) for _ in range(draw(st.sampled_from([n, n, n, n + 1])))]
        body = {"series": series}
    else:
        body = {"samples": [{"ts_s": draw(_TS), **{m: draw(_number()) for m in metrics
                                                   if draw(st.booleans())}}
                            for _ in range(n)]}
    app = draw(st.sampled_from(["", "web", None]))
    return {"name": name, **({"app": app} if app != "" else {}), **body}


@st.composite
def request_body(draw):
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "ü" * 3]), min_size=1, max_size=3))
    doc = {"containers": [draw(container(n)) for n in names]}
    if draw(st.booleans()):
        doc["now_s"] = draw(_TS)
    # with ensure_ascii, "ü" is written \u00fc: a backslash, so not the numbers-only path
    return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=request_body())
def test_json_array_path_agrees_with_the_models(body):
    """Whenever the array path answers, the models accept the body and build the same
    window; for bodies without strings or booleans the array path answers exactly when
    the models accept."""
    job = json_job(body)
    try:
        want = window_of(PredictRequest.model_validate(json.loads(body)))
    except ValidationError:
        want = None
    if job is not None:
        assert want is not None, body
        assert (job.names, job.apps, job.now_s) == (want.names, want.apps, want.now_s)
        np.testing.assert_array_equal(job.window, want.window)
        assert job.latest_ts_s == want.latest_ts_s
    elif b'"inf"' not in body and b'"Inf"' not in body and b"true" not in body \
            and b"false" not in body:
        assert want is None, body


@st.composite
def series_body(draw):
    """Every container a ``series`` with the same keys in the same order (the form the
    whole-body checks of ``_series_job`` take), with now and then one thing wrong: a
    list of another length, a value that is not a number, a bad name or app, a key of
    another order or an extra key."""
    n = draw(st.integers(1, 4))
    metrics = ["ts_s", *draw(st.lists(_METRIC, max_size=3, unique=True))]
    metrics = draw(st.permutations(metrics))
    apps = draw(st.sampled_from(["none", "all", "some"]))
    containers = []
    for i in range(n):
        w = draw(st.integers(1, 3))
        series = {m: [draw(_TS) if m == "ts_s" else draw(_number()) for _ in range(w)]
                  for m in metrics}
        c = {"name": f"c{i}", "series": series}
        if apps == "all" or (apps == "some" and draw(st.booleans())):
            c["app"] = draw(st.sampled_from(["", "web", "x" * 257]))
        containers.append(c)
    fault = draw(st.sampled_from([None] * 6 + ["length", "value", "name", "order", "key",
                                                "samples", "app", "empty"]))
    c = containers[draw(st.integers(0, n - 1))]
    m = draw(st.sampled_from(metrics))
    if fault == "length":
        c["series"][m] = c["series"][m] + [1.0]
    elif fault == "value":
        c["series"][m][0] = draw(st.sampled_from(["5", "inf", [1], {"a": 1}, -1, 1e19]))
    elif fault == "name":
        c["name"] = draw(st.sampled_from(["", 5, None, "c0" if c["name"] != "c0" else "c1",
                                          "y" * 257]))
    elif fault == "order":
        c["series"] = dict(reversed(list(c["series"].items())))
    elif fault == "key":
        c["series"]["memry"] = [1.0] * len(c["series"]["ts_s"])
    elif fault == "samples":
        c["samples"] = draw(st.sampled_from([None, [{"ts_s": 1}]]))
    elif fault == "app":
        c["app"] = draw(st.sampled_from([None, 5]))
    elif fault == "empty":
        c["series"] = {k: [] for k in c["series"]}
    doc = {"containers": containers}
    if draw(st.booleans()):
        doc["now_s"] = draw(_TS)
    return json.dumps(doc).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=series_body())
def test_whole_body_series_checks_agree_with_the_container_loop_and_the_models(body):
    """The whole-body pass over ``series`` containers answers exactly as the
    container-by-container path (``fast=False``), and, where it answers, as the models;
    for bodies without strings or booleans it answers exactly when the models accept."""
    job, slow = json_job(body), json_job(body, fast=False)
    assert (job is None) == (slow is None), body
    try:
        want = window_of(PredictRequest.model_validate(json.loads(body)))
    except ValidationError:
        want = None
    if job is not None:
        for other in (slow, want):
            assert other is not None, body
            assert (job.names, job.apps, job.now_s) == (other.names, other.apps, other.now_s)
            np.testing.assert_array_equal(job.window, other.window)
            assert job.latest_ts_s == other.latest_ts_s
    elif not any(w in body for w in (b'"inf"', b'"Inf"', b'"5"', b"true", b"false")):
        assert want is None, body


def test_series_numbers_convert_as_floats_do():
    """The struct conversion of the whole-body pass gives the doubles ``float()`` gives,
    ints beyond 2**53 rounded the same way; nulls and huge ints take the other paths."""
    body = orjson.dumps({"containers": [{"name": "a", "series": {
        "ts_s": [1, 2, 3], "memory_usage_bytes": [2**53 + 1, 0.1, 7],
        "memory_limit_bytes": [None, 1e18, 2**59 - 1]}}]})
    job, slow = json_job(body), json_job(body, fast=False)
    np.testing.assert_array_equal(job.window, slow.window)
    fast = _series_job(body, orjson.loads(body)["containers"], 1, None)  # it took this
    np.testing.assert_array_equal(fast.window, job.window)
    assert job.window[0, :, MEM].tolist() == [float(2**53 + 1), 0.1, 7.0]
    assert math.isnan(job.window[0, 0, LIMIT]) and job.window[0, 2, LIMIT] == float(2**59 - 1)
    assert json_job(body.replace(b"7]", b"70000000000000000000000]")) is None  # > 1e18


def test_gc_paused_restores_the_collector():
    import gc

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: left off
    finally:
        gc.enable()
    json_job(b'{"containers": [')
    assert gc.isenabled()


# ------------------------------------------------------------------ client and answers


def test_client_tables_and_json_bodies():
    """The serve_client docstring's worked example."""
    table = samples_table([{"name": "a", "app": "web", "samples": [
        {"ts_s": 1, "memory_usage_bytes": 5}, {"ts_s": 2}]}])
    assert table.to_pydict() == {"container": ["a", "a"], "app": ["web", "web"],
                                 "ts_s": [1.0, 2.0], "memory_usage_bytes": [5.0, None]}
    assert orjson.loads(json_body(table)) == {"containers": [{
        "name": "a", "app": "web", "series": {"ts_s": [1.0, 2.0],
                                              "memory_usage_bytes": [5.0, None]}}]}
    limits = samples_table([{"name": "a", "samples": [
        {"ts_s": 1, "memory_limit_bytes": 9}, {"ts_s": 2}]}])  # omitted limit: unlimited
    assert limits.column("memory_limit_bytes").to_pylist() == [9.0, math.inf]
    assert orjson.loads(json_body(limits, form="samples"))["containers"][0]["samples"][1] == {
        "ts_s": 2.0, "memory_limit_bytes": "inf"}


def test_arrow_answer_is_the_json_answer():
    from prescale.app.api_models import API_VERSION
    from prescale.app.core.predictor import TrendExhaustionPredictor
    from prescale.app.core.sample import Tier
    from prescale.app.serve_bodies import arrow_bytes
    from prescale.app.serve_jobs import predict_jobs
    from prescale.app.settings import load_settings

    cfg = load_settings(None, data_dir=tempfile.mkdtemp()).predictor
    predictor = TrendExhaustionPredictor.from_settings(cfg)
    containers = [
        {"name": "leak", "app": "web", "samples": [
            {"ts_s": T0 + i, "memory_usage_bytes": 40e6 + 4e6 * i, "memory_limit_bytes": 128e6}
            for i in range(20)]},
        {"name": "young", "samples": [{"ts_s": T0, "memory_usage_bytes": 5.0}]},  # a note
    ]
    job = window_of(PredictRequest.model_validate({"containers": containers}))
    res = predict_jobs([job], predictor, recent_steps=cfg.recent_steps, model_tier=Tier.MEMORY)[0]
    want = {"api_version": API_VERSION, "horizon_s": res.prediction.horizon_s,
            "model_revision": 3,
            "predictions": prediction_json(job, res, predictor.min_samples)}
    table = predictions_table(job, res, predictor.min_samples, 3)
    # a number that is not finite is null, as in JSON; the flag says when null is inf
    assert table.column("memory.limit").to_pylist() == [128e6, None]
    assert table.column("memory.unlimited").to_pylist() == [False, True]
    assert table.column("cpu.forecast").null_count == 2  # unknown → null, as in JSON
    assert predictions_from_table(read_table(arrow_bytes(table))) == want
    young = want["predictions"][1]["tiers"]["memory"]
    assert young["reason"] == ("1 sample: a trend needs at least 5 (predictor.min_samples), "
                               "so p_fail 0 is no forecast")
    assert table.column("memory.reason").to_pylist() == [None, young["reason"]]
    assert table.column("memory.forecast_ready").to_pylist() == [True, False]
