"""The progress display of the long commands (app/cli/progress.py) and the plain hooks
that feed it: tuning/progress.py's stage counter, Tune's ProgressCallback, evaluate's
run watcher. No Ray, no subprocess: the commands themselves run in
tests/e2e/test_progress_commands.py."""

from __future__ import annotations

import io

import pytest

from prescale.app.cli.progress import Progress, plain_line, wanted
from prescale.tuning.progress import Stages


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_wanted_is_the_flag_else_whether_stderr_is_a_terminal():
    assert wanted(None, Tty()) is True
    assert wanted(None, io.StringIO()) is False
    assert wanted(True, io.StringIO()) is True
    assert wanted(False, Tty()) is False


def test_plain_line_worked_examples():
    assert plain_line("evaluate", 3, 18, "running leak/vpa 40%", 12.4, "runs") == \
        "evaluate: 3/18 runs (17%) running leak/vpa 40% [0:00:12]"
    assert plain_line("replay", 4827, 4827, "", 3725, "rows") == \
        "replay: 4,827/4,827 rows (100%) [1:02:05]"
    assert plain_line("train", 0, None, "reading the trace t.csv", 0) == \
        "train: reading the trace t.csv [0:00:00]"
    assert plain_line("tune", 1, 1, "x", 0) == "tune: 1/1 x [0:00:00]"  # no 100 % of one


def lines(stream: io.StringIO) -> list[str]:
    return [ln.rsplit(" [", 1)[0] for ln in stream.getvalue().splitlines()]


def test_plain_lines_one_per_unit_of_a_small_count_first_and_last_always():
    out, clock = io.StringIO(), Clock()
    with Progress("tune", True, stream=out, clock=clock) as p:
        p(0, None, "loading")
        p(0, None, "loading")  # nothing new
        p(0, None, "reading")  # a new label without a count
        for done in (0, 0.5, 1, 1.7, 2, 3):
            p(done, 3, f"trials {done}")
        p(0, 4, "registering")  # a new phase (another total) starts over
        p(4, 4, "v0001 promoted")
    assert lines(out) == [
        "tune: loading", "tune: reading", "tune: 0/3 (0%) trials 0", "tune: 1/3 (33%) trials 1",
        "tune: 2/3 (67%) trials 2", "tune: 3/3 (100%) trials 3", "tune: 0/4 (0%) registering",
        "tune: 4/4 (100%) v0001 promoted"]


def test_plain_lines_every_tenth_of_a_large_count():
    out = io.StringIO()
    with Progress("replay", True, unit="rows", stream=out) as p:
        for done in range(0, 100_001, 1_000):
            p(done, 100_000, "")
    got = lines(out)
    assert len(got) == 11 and got[0] == "replay: 0/100,000 rows (0%)"
    assert got[-1] == "replay: 100,000/100,000 rows (100%)"


def test_disabled_says_nothing():
    out = Tty()
    with Progress("evaluate", False, stream=out) as p:
        p(1, 2, "x")
        p(2, 2, "done")
    assert out.getvalue() == ""


def test_a_terminal_gets_the_rich_bar_left_on_screen_with_its_final_count():
    out = Tty()
    with Progress("evaluate", True, unit="runs", stream=out) as p:
        p(0, None, "loading")
        p(1, 3, "running leak/vpa 40%")
        p(3, 3, "done")
    text = out.getvalue()
    assert "\x1b[" in text and "━" in text  # drawn in place, not plain lines
    assert "3/3" in text and "runs" in text and "done" in text
    assert "evaluate:" not in text


def test_stages_report_each_stage_as_it_starts_and_finish_reaches_the_total():
    got = []
    stage = Stages(lambda d, t, label: got.append((d, t, label)), 3, "preparing: ")
    stage("read")
    stage("fit")
    stage.finish("done")
    assert got == [(0, 3, "preparing: read"), (1, 3, "preparing: fit"),
                   (3, 3, "preparing: done")]
    Stages(None, 2)("nothing to call")  # no hook: a no-op


def test_evaluate_watch_counts_finished_runs_and_names_the_ones_in_flight():
    from prescale.app.evaluation.report import _Watch

    got = []
    w = _Watch(lambda d, t, label: got.append((d, t, label)),
               [("leak", "static", 100), ("leak", "vpa", 200), ("spike", "hpa", 50)],
               every_s=0.0, idle="starting 2 worker processes")
    w.poll()
    w.array[0], w.array[1] = 40, 10
    w.poll()
    w.array[0] = 100
    w.finish(0)
    w.array[1] = 200
    w.finish(1)
    w.finish(2)
    assert got == [(0, 3, "starting 2 worker processes"),
                   (0, 3, "running leak/static 40%, leak/vpa 5%"),
                   (1, 3, "running leak/vpa 5%"),
                   (2, 3, "next spike/hpa"),
                   (3, 3, "done")]


@pytest.fixture(scope="module")
def callback_class():
    from prescale.tuning.trainable import ProgressCallback

    return ProgressCallback


class Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def test_tune_callback_counts_finished_trials_and_the_best_score(callback_class):
    got = []
    cb = callback_class(3, lambda d, t, label: got.append((d, t, label)))
    a, b, c = Trial("a"), Trial("b"), Trial("c")
    cb.setup()
    cb.on_trial_start(0, [], a)
    cb.on_trial_start(0, [], b)
    cb.on_trial_result(0, [], a, {"val_pr_auc": 0.5, "kind": "random_forest"})
    cb.on_trial_result(0, [], b, {"val_pr_auc": float("nan"), "kind": "heuristic"})
    cb.on_trial_complete(0, [], a)  # completed or stopped early by ASHA
    cb.on_trial_error(0, [], b)
    cb.on_trial_start(0, [], c)
    cb.on_trial_result(0, [], c, {"val_pr_auc": 0.7, "kind": "hist_gradient_boosting"})
    cb.on_trial_complete(0, [], c)
    assert got[0] == (0, 3, "trials: 0 running; no score yet")
    assert got[3] == (0, 3, "trials: 2 running; best val PR-AUC 0.500 (random_forest)")
    assert [d for d, _, _ in got] == [0, 0, 0, 0, 0, 1, 2, 2, 2, 3]
    assert got[-1] == (3, 3, "trials: 0 running; best val PR-AUC 0.700 "
                             "(hist_gradient_boosting)")


def test_tune_callback_pickles_without_the_display(callback_class):
    """Tune pickles its run config, callbacks included; the CLI's display holds locks
    and a thread (the first real `prescale tune` on a terminal died of it)."""
    import pickle
    import threading

    lock = threading.RLock()
    got = []

    def on_progress(d, t, label):
        with lock:
            got.append(d)

    cb = callback_class(2, on_progress)
    copy = pickle.loads(pickle.dumps(cb))
    assert copy.on_progress is None and copy.total == 2
    copy.setup()  # a restored callback reports nothing, and does not fail
    cb.setup()
    assert got == [0]
