import math

from prescale.app.core.sample import Sample
from prescale.app.core.validation import Validator, check

NOW = 1_700_000_000.0


def s(name, ts, **kw):
    kw.setdefault("memory_usage_bytes", 1.0)
    return Sample(name, NOW + ts, **kw)


def test_worked_example():
    v = Validator(last_ts_s={"a": NOW + 100})
    kept = v.filter(
        [s("a", 99), s("b", 101, memory_usage_bytes=-1.0), s("c", 101), s("c", 102)],
        now_s=NOW + 200, known={"a", "b", "c"},
    )
    assert [(k.container, k.ts_s - NOW) for k in kept] == [("c", 101)]
    assert dict(v.dropped) == {
        "timestamp_not_increasing": 1,
        "negative:memory_usage_bytes": 1,
        "duplicate_in_batch": 1,
    }
    assert v.last_ts_s["c"] == NOW + 101


def test_each_reason():
    assert check(s("a", 0, memory_usage_bytes=math.nan), NOW) == "no_data"
    assert check(Sample("a", math.nan, memory_usage_bytes=1.0), NOW) == "bad_timestamp"
    assert check(Sample("a", 1000.0, memory_usage_bytes=1.0), NOW) == "bad_timestamp"
    assert check(s("a", 3600), NOW) == "bad_timestamp"  # an hour in the future
    assert check(s("a", 0, memory_usage_bytes=2.0**51), NOW) == "absurd:memory_usage_bytes"
    assert check(s("a", 0, cpu_quota_cores=math.inf), NOW) is None  # unlimited is fine
    assert check(s("a", 0, cpu_usage_s_total=-0.5), NOW) == "negative:cpu_usage_s_total"
    assert check(s("a", 0, block_latency_s=1e6), NOW) == "absurd:block_latency_s"
    v = Validator()
    assert v.filter([s("zz", 0)], NOW, known={"a"}) == []
    assert dict(v.dropped) == {"unknown_container": 1}


def test_vectorised_check_agrees_with_the_scalar_rules():
    import numpy as np

    from prescale.app.core.sample import METRICS
    from prescale.app.core.validation import check_rows

    rng = np.random.default_rng(0)
    samples = []
    for i in range(2000):
        kw = {m: float(rng.choice([math.nan, -1.0, 5.0, 1e6, 2.0**51, math.inf]))
              for m in METRICS if m != "ts_s"}
        ts = float(rng.choice([NOW, math.nan, 1000.0, NOW + 1e5]))
        samples.append(Sample(f"c{i}", ts, **kw))
    rows = np.array([x.row() for x in samples])
    assert check_rows(rows, NOW) == [check(x, NOW) for x in samples]
