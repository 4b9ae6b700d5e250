"""The promotion gate (app/models/gate.py) and the operating threshold
(app/models/operating_threshold.py), with the worked examples of their docstrings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prescale.app.models.gate import Reference, judge, paired_ap_gains
from prescale.app.models.metrics import pr_auc
from prescale.app.models.operating_threshold import choose_threshold


def _data(n_groups: int = 40, seed: int = 0):
    """Rows in groups of 10; positives score high for the good model, at random for the
    weak one."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), 10)
    y = (rng.random(groups.size) < 0.2).astype(int)
    good = np.clip(0.6 * y + rng.normal(0.2, 0.15, y.size), 0, 1)
    weak = rng.random(y.size)
    return y, groups, good, weak


def test_a_clearly_better_candidate_is_promoted_with_its_numbers():
    y, groups, good, weak = _data()
    r = judge(y, good, [Reference("heuristic", scores=weak)], groups, n_train_positive=50)
    assert r.promote and r.learned
    [c] = r.comparisons
    assert c.gain_ap == pytest.approx(pr_auc(y, good) - pr_auc(y, weak))
    assert c.ci_low > 0 and c.ci_low <= c.gain_ap <= c.ci_high
    assert r.reason == (f"promoted: validation AP {pr_auc(y, good):.3f}; beats the heuristic "
                        f"by {c.gain_ap:+.3f} AP (95% interval [{c.ci_low:.3f}, "
                        f"{c.ci_high:.3f}])")
    assert r.to_dict()["comparisons"][0]["passed"] is True


def test_a_tie_or_a_loss_is_not_promoted_and_says_why():
    y, groups, good, weak = _data()
    tie = judge(y, good, [Reference("current model v0001 (random_forest)", scores=good)], groups,
                n_train_positive=50)
    assert not tie.promote and tie.learned
    assert tie.reason == ("not promoted: AP gain over the current model v0001 (random_forest) "
                          "+0.000 is below the margin 0.01")
    loss = judge(y, weak, [Reference("heuristic", scores=good)], groups, n_train_positive=50)
    assert not loss.promote and "below the margin" in loss.reason


def test_a_gain_whose_interval_reaches_zero_is_not_promoted():
    # 4 groups of one row each, 2 positives: any gain is noise
    y = np.array([1, 0, 1, 0])
    cand = np.array([0.9, 0.1, 0.4, 0.5])  # AP (1 + 2/3)/2 = 0.833
    ref = np.array([0.5, 0.4, 0.6, 0.9])  # AP (1/2 + 2/3)/2 = 0.583
    r = judge(y, cand, [Reference("heuristic", scores=ref)], np.arange(4), n_train_positive=3,
              margin_ap=0.0)
    [c] = r.comparisons
    assert c.ci_low <= 0 and not r.promote
    assert r.reason == (f"not promoted: the 95% interval of the AP gain over the heuristic "
                        f"reaches {c.ci_low:.3f}")


def test_nothing_learned_is_never_promoted():
    y, groups, good, weak = _data()
    r = judge(y, good, [], groups, n_train_positive=0)
    assert (r.promote, r.learned) == (False, False)
    assert r.reason == "the training split has no positive window: nothing to learn from"
    r = judge(np.zeros(5, int), np.zeros(5), [], np.arange(5), n_train_positive=3)
    assert (r.promote, r.learned) == (False, False)
    assert r.reason == ("the validation split (5 windows) has no positive window: the model "
                        "cannot be judged")


def test_a_reference_without_scores_is_compared_by_its_registered_ap():
    y, groups, good, _ = _data()
    ap = pr_auc(y, good)
    r = judge(y, good, [Reference("current model v0003 (lstm)", registered_ap=ap - 0.2,
                                  note="not re-scored")], groups, n_train_positive=9)
    [c] = r.comparisons
    assert c.passed and c.ci_low is None and c.note == "not re-scored"
    assert "its scores on these rows are unknown, no interval" in c.reason
    r = judge(y, good, [Reference("current model v0003 (lstm)", registered_ap=ap + 0.2)],
              groups, n_train_positive=9)
    assert not r.promote


def test_paired_gains_resample_whole_groups():
    y, groups, good, weak = _data(n_groups=10)
    d = paired_ap_gains(y, good, {"w": weak}, groups, reps=50, seed=1)
    assert d["w"].size == 50 and np.all(np.isfinite(d["w"]))
    again = paired_ap_gains(y, good, {"w": weak}, groups, reps=50, seed=1)
    assert np.array_equal(d["w"], again["w"])  # seeded


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="must match y"):
        judge([1, 0], [0.5], [], [0, 1], n_train_positive=1)
    with pytest.raises(ValueError, match="margin_ap"):
        judge([1, 0], [0.5, 0.1], [], [0, 1], n_train_positive=1, margin_ap=-1)


# --------------------------------------------------------------------------- thresholds


def test_threshold_worked_examples():
    y, p = [1, 0, 1, 0, 0], [0.9, 0.8, 0.7, 0.3, 0.1]
    for target in ("balance", "cost"):
        t = choose_threshold(y, p, target=target)
        assert (t.threshold, t.precision, t.recall, t.alarms) == (0.7, 2 / 3, 1.0, 3)
    t = choose_threshold(y, p, target="precision", min_precision=0.9)
    assert (t.threshold, t.precision, t.recall) == (0.9, 1.0, 0.5)
    assert t.target == "precision ≥ 0.9"
    y2, p2 = [1, 0, 0, 0, 0, 0, 1], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    bal = choose_threshold(y2, p2)
    assert (bal.threshold, bal.recall, bal.precision) == (0.5, 0.5, 0.2)
    assert bal.target == "balance: a miss costs 4 × a false alarm"
    cost = choose_threshold(y2, p2, target="cost")
    assert (cost.threshold, cost.recall, cost.precision) == (0.9, 0.5, 1.0)


def test_threshold_edges_and_bad_input():
    never = choose_threshold([0, 0], [0.5, 0.4])
    assert never.threshold == math.inf and never.alarms == 0
    assert never.to_dict()["threshold"] is None  # JSON: inf → null
    unreachable = choose_threshold([1, 0], [0.1, 0.9], target="precision", min_precision=1.0)
    assert unreachable.threshold == math.inf
    with pytest.raises(ValueError, match="target must be one of"):
        choose_threshold([1, 0], [0.1, 0.9], target="f1")
    with pytest.raises(ValueError, match="cost_miss"):
        choose_threshold([1, 0], [0.1, 0.9], cost_miss=0)
    with pytest.raises(ValueError, match="0/1 labels"):
        choose_threshold([2, 0], [0.1, 0.9])


def test_a_reference_compared_on_the_rows_it_did_not_train_on():
    y, groups, good, weak = _data()
    rows = groups >= 20  # half the groups are new to the reference
    r = judge(y, good, [Reference("current model v0002 (hist_gradient_boosting)", scores=weak,
                                  rows=rows)], groups, n_train_positive=9)
    [c] = r.comparisons
    assert c.gain_ap == pytest.approx(pr_auc(y[rows], good[rows]) - pr_auc(y[rows], weak[rows]))
    assert c.reason.endswith(f"on the {int(rows.sum())} validation windows it did not train on")
