import numpy as np
import pytest

from prescale.app.core.ring import RingBuffer
from prescale.app.core.sample import METRICS, M, Sample


def test_window_pads_front_and_drops_oldest():
    rb = RingBuffer(3)
    for t in (1, 2, 3, 4):
        rb.push(Sample("a", float(t), memory_usage_bytes=t * 10.0))
    rb.push(Sample("b", 9.0, memory_usage_bytes=5.0))
    names, w = rb.window()
    assert names == ["a", "b"]
    assert w.shape == (2, 3, len(METRICS))
    assert list(w[0, :, M["ts_s"]]) == [2.0, 3.0, 4.0]
    assert list(w[0, :, M["memory_usage_bytes"]]) == [20.0, 30.0, 40.0]
    assert np.isnan(w[1, :2]).all()
    assert w[1, 2, M["ts_s"]] == 9.0


def test_unknown_name_is_all_nan_and_forget():
    rb = RingBuffer(2)
    rb.push(Sample("a", 1.0))
    _, w = rb.window(["zz"])
    assert np.isnan(w).all()
    rb.forget("a")
    assert rb.names() == []
    with pytest.raises(ValueError):
        RingBuffer(0)
