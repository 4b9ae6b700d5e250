"""Evaluation metrics: the module doc's worked examples, computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from prescale.app.models.metrics import (
    FeatureRule,
    LeadTimeStats,
    OperatingPoint,
    base_rate,
    best_single_feature_rule,
    brier_score,
    confusion,
    lead_time_stats,
    operating_point,
    pr_auc,
    precision,
    recall,
    recall_at_fpr,
    roc_auc,
)

pytestmark = pytest.mark.filterwarnings("error")

Y = [1, 0, 1, 0]
P = [0.9, 0.8, 0.7, 0.1]


def test_precision_recall_confusion():
    assert confusion(Y, P, threshold=0.75) == (1, 1, 1, 1)
    assert precision(Y, P, threshold=0.75) == 0.5
    assert recall(Y, P, threshold=0.75) == 0.5
    # threshold 0.5: alarms 0, 1, 2 → TP 2, FP 1 → precision 2/3, recall 1
    assert precision(Y, P) == pytest.approx(2 / 3)
    assert recall(Y, P) == 1.0
    # the alarm is p ≥ t: at exactly 0.7 row 2 alarms
    assert confusion(Y, P, threshold=0.7) == (2, 1, 0, 1)


def test_undefined_precision_and_recall_are_nan():
    assert math.isnan(precision(Y, P, threshold=0.95))  # nothing alarms
    assert math.isnan(recall([0, 0], [0.9, 0.1]))  # no positive


def test_pr_auc_worked_example():
    # (P, R) = (1, .5), (.5, .5), (2/3, 1), (.5, 1) → .5·1 + .5·2/3
    assert pr_auc(Y, P) == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-15)
    assert pr_auc([1, 1, 0, 0], [4, 3, 2, 1]) == 1.0
    assert math.isnan(pr_auc([0, 0], [0.1, 0.2]))


def test_pr_auc_ties_are_one_threshold():
    # all scores tied: one threshold, P = 2/4, R = 1 → AP = 0.5 (= the base rate)
    assert pr_auc([1, 0, 1, 0], [0.3, 0.3, 0.3, 0.3]) == 0.5
    # tie of a positive and a negative at the top: (1/2, 1/2), then (2/3, 1) → .25 + .3333
    assert pr_auc([1, 0, 1], [0.9, 0.9, 0.5]) == pytest.approx(0.25 + 1 / 3)


def test_pr_auc_matches_scikit_learn_and_accepts_infinities():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.normal(size=500) + y, 1)  # rounding makes many ties
    assert pr_auc(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    # only the order matters: ±inf are just the extremes
    assert pr_auc([1, 0, 0], [math.inf, 1.0, -math.inf]) == 1.0


def test_edge_cases_are_nan_or_exact_and_never_warn():
    # (the module turns warnings into errors: scikit-learn's own warnings would fail here)
    # no positive: PR-AUC nan (scikit-learn: a warning and 0.0); ROC-AUC needs both classes
    assert math.isnan(pr_auc([0, 0, 0], [0.9, 0.5, 0.1]))
    assert math.isnan(roc_auc([0, 0, 0], [0.9, 0.5, 0.1]))
    assert math.isnan(roc_auc([1, 1], [0.9, 0.1]))
    # only positives: every threshold has precision 1 → AP 1
    assert pr_auc([1, 1], [0.9, 0.1]) == 1.0
    # no rows at all
    assert math.isnan(pr_auc([], []))
    assert math.isnan(roc_auc([], []))
    assert math.isnan(brier_score([], []))
    # Brier with one class only is still the mean squared error:
    # (0.1² + 0.2²)/2 = 0.025 and (0.9² + 0.8²)/2 = 0.725
    assert brier_score([0, 0], [0.1, 0.2]) == pytest.approx(0.025, abs=1e-15)
    assert brier_score([1, 1], [0.1, 0.2]) == pytest.approx(0.725, abs=1e-15)


def test_roc_auc_worked_example_ties_and_infinities():
    # positives 0.9, 0.7 against negatives 0.8, 0.1 → 3 of 4 pairs ordered → 0.75
    assert roc_auc(Y, P) == 0.75
    # a positive tied with a negative counts ½: (½ + 1)/2
    assert roc_auc([1, 0, 0], [0.5, 0.5, 0.1]) == 0.75
    assert roc_auc([1, 0, 0], [math.inf, 1.0, -math.inf]) == 1.0
    assert roc_auc([0, 1, 1], [math.inf, 1.0, -math.inf]) == 0.0


def test_the_numbers_are_scikit_learns():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)
    p = rng.random(300)
    assert pr_auc(y, s) == average_precision_score(y, s)
    assert roc_auc(y, s) == roc_auc_score(y, s)
    assert brier_score(y, p) == brier_score_loss(y, p)


def test_recall_at_fpr_worked_example():
    assert operating_point(Y, P, max_fpr=0.5) == OperatingPoint(0.7, 1.0, 0.5)
    assert operating_point(Y, P, max_fpr=0.0) == OperatingPoint(0.9, 0.5, 0.0)
    assert recall_at_fpr(Y, P, max_fpr=0.49) == 0.5
    assert recall_at_fpr(Y, P, max_fpr=1.0) == 1.0
    # a negative on top: no threshold has FPR ≤ 0 → never alarm
    assert operating_point([0, 1], [0.9, 0.1], max_fpr=0.0) == OperatingPoint(math.inf, 0.0, 0.0)


def test_recall_at_fpr_with_a_minimum_lead_time():
    # the positive at 0.9 was only 5 s ahead: with min_lead 10 it is left out, so the
    # remaining positive (0.7, lead 20) is caught at FPR 0.5 and missed at FPR 0
    lead = [5.0, math.nan, 20.0, math.nan]
    assert recall_at_fpr(Y, P, max_fpr=0.5, lead_time_s=lead, min_lead_s=10.0) == 1.0
    assert recall_at_fpr(Y, P, max_fpr=0.0, lead_time_s=lead, min_lead_s=10.0) == 0.0
    # a positive with an unknown lead time is left out too
    assert math.isnan(
        recall_at_fpr([1, 0], [0.9, 0.1], max_fpr=0.0, lead_time_s=[math.nan, math.nan],
                      min_lead_s=1.0)
    )


def test_brier_and_base_rate():
    assert brier_score(Y, P) == pytest.approx(0.1875, abs=1e-15)
    assert brier_score([1, 0], [1.0, 0.0]) == 0.0
    assert base_rate(Y) == 0.5
    assert base_rate([0, 0, 0, 1]) == 0.25
    assert math.isnan(base_rate([]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score([1], [1.5])


def test_lead_time_stats_of_true_positives():
    y = [1, 1, 1, 1, 1, 1, 0, 1]
    p = [0.9, 0.8, 0.7, 0.6, 0.55, 0.2, 0.9, 0.9]
    lead = [10.0, 20.0, 30.0, 40.0, 50.0, 99.0, 77.0, math.nan]
    # TPs with a lead time: 10..50 (the 0.2 row is missed, the negative is no TP,
    # the last has no lead time) → median 30, p10 = 10 + 0.4·10 = 14, p90 = 46
    assert lead_time_stats(y, p, lead) == LeadTimeStats(5, 30.0, 14.0, 46.0)
    empty = lead_time_stats([0, 1], [0.9, 0.1], [1.0, 2.0])
    assert empty.n == 0 and math.isnan(empty.median_s)


def test_best_single_feature_rule():
    X = np.array([[1, 4, 0], [2, 3, 0], [3, 2, 0], [4, 1, 0]], dtype=float)
    y = [0, 0, 1, 1]
    assert best_single_feature_rule(X, y, ["a", "b", "c"]) == FeatureRule("a", 0, "high", 1.0)
    # b alone: "low" wins
    assert best_single_feature_rule(X[:, 1:], y, ["b", "c"]) == FeatureRule("b", 0, "low", 1.0)
    # nan never alarms: column [nan, nan, 5, 6] ranks the positives first
    X2 = np.array([[np.nan], [np.nan], [5.0], [6.0]])
    assert best_single_feature_rule(X2, y, ["m"]) == FeatureRule("m", 0, "high", 1.0)


def test_best_single_feature_rule_on_noisy_data_picks_the_informative_column():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    X = rng.normal(size=(400, 5))
    X[:, 3] -= 2.0 * y  # small values of column 3 mean failure
    rule = best_single_feature_rule(X, y, list("abcde"))
    assert (rule.feature, rule.index, rule.direction) == ("d", 3, "low")
    assert rule.pr_auc == pytest.approx(pr_auc(y, -X[:, 3]))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: pr_auc([1, 2], [0.1, 0.2]), "0/1"),
        (lambda: pr_auc([1, 0], [0.1]), "one value per label"),
        (lambda: pr_auc([1, 0], [0.1, math.nan]), "nan"),
        (lambda: recall_at_fpr([1, 0], [0.1, 0.2], max_fpr=1.5), "max_fpr"),
        (lambda: lead_time_stats([1, 0], [0.1, 0.2], [1.0]), "lead_time_s"),
        (lambda: best_single_feature_rule(np.zeros((2, 2)), [0, 1], ["a"]), "names"),
    ],
)
def test_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()
