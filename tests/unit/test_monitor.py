"""The monitor's logic (no Ray): several sources, bad samples dropped, a broken source."""

import math
import time

from prescale.app.core.sample import METRICS, Event, EventKind, M, Sample, SourceBatch
from prescale.app.node_monitor import Monitor
from prescale.app.settings import Settings


class ListSource:
    """A source that plays back prepared batches (test input, not a stand-in)."""

    kind = "list"

    def __init__(self, batches):
        self.batches = list(batches)

    def poll(self):
        return self.batches.pop(0) if self.batches else SourceBatch()

    def close(self):
        pass


class BrokenSource:
    kind = "broken"

    def poll(self):
        raise RuntimeError("endpoint down")

    def close(self):
        pass


def test_monitor_drops_bad_samples_and_survives_a_broken_source():
    now = time.time()
    good = [Sample("a", now - 2, memory_usage_bytes=10.0), Sample("b", now - 2,
                                                                  memory_usage_bytes=5.0)]
    bad = [
        Sample("a", now - 1, memory_usage_bytes=11.0),
        Sample("a", now - 1, memory_usage_bytes=12.0),  # duplicate in the batch
        Sample("b", now - 3, memory_usage_bytes=6.0),  # goes back in time
        Sample("c", now - 1, memory_usage_bytes=math.nan),  # no data
        Sample("d", now - 1, memory_usage_bytes=-5.0),  # negative
    ]
    ev = Event("a", now - 1, EventKind.OOM_KILL, "x")
    m = Monitor(Settings(), sources=[ListSource([SourceBatch(good), SourceBatch(bad, [ev])]),
                                     BrokenSource()])
    first = m.collect()
    assert first["names"] == ["a", "b"]
    second = m.collect()
    assert second["names"] == ["a"]
    assert second["window"].shape == (1, Settings().loop.window_steps, len(METRICS))
    assert list(second["window"][0, -2:, M["memory_usage_bytes"]]) == [10.0, 11.0]
    assert second["dropped"] == {"duplicate_in_batch": 1, "timestamp_not_increasing": 1,
                                 "no_data": 1, "negative:memory_usage_bytes": 1}
    assert second["events"] == [ev]
    assert second["errors"] == {"_source:broken": "RuntimeError: endpoint down"}
    # "b" had a (bad) sample this tick: its history is kept, not forgotten
    assert m.ring.names() == ["a", "b"]
    third = m.collect()
    assert third["names"] == []
    assert m.ring.names() == []  # nobody reported anything: forgotten


def test_merge_sources_worked_example():
    from prescale.app.core.sample import merge_sources

    cg = [Sample("web", 10.0, memory_usage_bytes=5.0, app="web")]
    tm = [Sample("web", 11.0, block_latency_s=0.2), Sample("api", 11.0, block_latency_s=0.1)]
    web, api = merge_sources([cg, tm])
    assert (web.container, web.ts_s, web.memory_usage_bytes, web.block_latency_s, web.app) == (
        "web", 11.0, 5.0, 0.2, "web")
    assert (api.container, api.block_latency_s) == ("api", 0.1)
    assert math.isnan(api.memory_usage_bytes)
    # duplicates inside one source are kept for the validator to count
    assert len(merge_sources([cg + cg, tm])) == 3


def test_monitor_refuses_to_apply_a_scale_out_to_a_cgroup():
    from prescale.app.core.actions import ActionKind, ResultStatus, ScalingAction
    from prescale.app.core.sample import Tier

    m = Monitor(Settings(), sources=[])
    a = ScalingAction("web/replicas@1", 1.0, "web", Tier.CPU, 1, 2, 0.9, 0.5, 10.0, 2.0, "",
                      kind=ActionKind.SCALE_OUT)
    [r] = m.apply([a])
    assert r.status is ResultStatus.FAILED and "cannot scale_out" in r.reason
