"""Long-horizon peaks (app/core/peaks.py): the worked example, re-indexing, the state."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from prescale.app.core.peaks import PeakTracker
from prescale.app.core.sample import Tier


def _obs(p: PeakTracker, t: float, mem: float, names=("c",)) -> None:
    p.observe(t, list(names), {Tier.MEMORY: np.full(len(names), mem)})


def test_worked_example_a_burst_is_kept_for_the_buckets_then_leaves():
    p = PeakTracker(bucket_s=3600, buckets=3)
    for t, u in ((0, 100), (1800, 700), (3600, 120), (7200, 120)):
        _obs(p, t, u)
    assert p.peak(Tier.MEMORY).tolist() == [700]
    _obs(p, 10800, 120)  # three newer buckets: the burst's bucket leaves
    assert p.peak(Tier.MEMORY).tolist() == [120]
    assert math.isnan(p.peak(Tier.CPU)[0])  # never observed


def test_a_gap_longer_than_every_bucket_forgets_everything_before_it():
    p = PeakTracker(bucket_s=10, buckets=2)
    _obs(p, 0, 500)
    _obs(p, 1000, 50)
    assert p.peak(Tier.MEMORY).tolist() == [50]


def test_unknown_usage_is_ignored_and_containers_are_reindexed_by_name():
    p = PeakTracker(bucket_s=60, buckets=2)
    p.observe(0, ["a", "b"], {Tier.MEMORY: np.array([10.0, 20.0])})
    p.observe(1, ["a", "b"], {Tier.MEMORY: np.array([np.nan, 5.0])})
    assert p.peak(Tier.MEMORY).tolist() == [10.0, 20.0]
    p.observe(2, ["c", "b"], {Tier.MEMORY: np.array([1.0, 3.0])})  # a left, c is new
    assert p.names == ["c", "b"] and p.peak(Tier.MEMORY).tolist() == [1.0, 20.0]


def test_state_round_trips_through_json():
    p = PeakTracker(bucket_s=60, buckets=3)
    p.observe(0, ["a", "b"], {Tier.MEMORY: np.array([10.0, np.nan]),
                              Tier.CPU: np.array([0.5, 0.25])})
    p.observe(70, ["a", "b"], {Tier.MEMORY: np.array([4.0, 8.0])})
    q = PeakTracker.from_dict(json.loads(json.dumps(p.to_dict())))
    for t in (Tier.MEMORY, Tier.CPU):
        np.testing.assert_array_equal(q.peak(t), p.peak(t))
    assert (q.bucket, q.names) == (p.bucket, p.names)


def test_bad_input_is_refused_and_changes_nothing():
    with pytest.raises(ValueError, match="bucket_s"):
        PeakTracker(bucket_s=0)
    with pytest.raises(ValueError, match="buckets"):
        PeakTracker(buckets=0)
    p = PeakTracker(bucket_s=60, buckets=2)
    _obs(p, 0, 5.0)
    with pytest.raises(ValueError, match="now_s"):
        _obs(p, math.nan, 9.0)
    with pytest.raises(ValueError, match=r"usage\[memory\] has shape"):
        p.observe(500, ["c", "d"], {Tier.MEMORY: np.array([1.0])})  # later bucket, new name
    assert (p.names, p.bucket, p.peak(Tier.MEMORY).tolist()) == (["c"], 0, [5.0])


def test_checkpoint_form_is_the_per_value_one():
    """``to_dict`` writes what the per-value loop wrote (nan → None, inf kept, Python
    floats), and ``from_dict`` reads it back bit for bit."""
    p = PeakTracker(10.0, 4)
    rng = np.random.default_rng(1)
    names = [f"c{i}" for i in range(50)]
    for k in range(6):
        usage = rng.random(50) * 1e9
        usage[rng.random(50) < 0.2] = np.nan
        usage[3] = np.inf
        p.observe(10.0 * k, names, {Tier.MEMORY: usage, Tier.CPU: usage / 1e9})
    d = p.to_dict()
    for t in (Tier.MEMORY, Tier.CPU):
        want = [[None if math.isnan(x) else float(x) for x in row] for row in p.maxima[t]]
        assert d["maxima"][t.value] == want
        assert any(None in row for row in want) and any(math.inf in row for row in want)
        assert all(type(x) is float for row in d["maxima"][t.value] for x in row
                   if x is not None)
    q = PeakTracker.from_dict(json.loads(json.dumps(d)))
    for t in (Tier.MEMORY, Tier.CPU):
        np.testing.assert_array_equal(q.maxima[t], p.maxima[t])
