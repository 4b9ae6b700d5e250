"""The column-wise proposals of :mod:`app.core.policy` (``_propose`` with the buffer,
proportional and multi-tier sizing on whole columns) against the per-row rules as they
were written before (kept below verbatim as the specification): for random
predictions, usages, thresholds, configs and row subsets, the same decisions (every
reason, every float bit). Also :func:`app.core.policy_types.fmt_all` against
:func:`fmt`."""

from __future__ import annotations

import math

import numpy as np

from prescale.app.core import policy as pol
from prescale.app.core.actions import ActionKind, Decision, ScalingAction, action_id_for
from prescale.app.core.policy import PolicyConfig, PolicyInput
from prescale.app.core.policy_types import fmt, fmt_all
from prescale.app.core.predictor import Prediction, TierPrediction
from prescale.app.core.sample import Tier

MiB = 2**20
_STEPPED = (Tier.CPU, Tier.NETWORK, Tier.IO)


# -- the specification: the per-row rules, as before the columns ---------------------
def _ref_buffer_target(tier, limit, forecast, margin, cfg):
    base = max(forecast if math.isfinite(forecast) else limit, limit)
    buffer = max(margin * base, cfg.buffer_abs.get(tier, 0.0))
    new = base + buffer
    why = f"buffer {fmt(tier, buffer)} above {fmt(tier, base)}"
    if tier in _STEPPED and limit * (1 + cfg.cpu_step_fraction) > new:
        new = limit * (1 + cfg.cpu_step_fraction)
        why = (f"{'CPU' if tier == Tier.CPU else tier} step {cfg.cpu_step_fraction:.0%} "
               "(demand above the limit is not visible)" if tier != Tier.CPU else
               f"CPU step {cfg.cpu_step_fraction:.0%} (demand above the quota is not visible)")
    return new, why


def _ref_proportional_target(tier, limit, forecast, usage, margin, cfg):
    if not (math.isfinite(usage) and usage > 0 and math.isfinite(forecast)):
        new, why = _ref_buffer_target(tier, limit, forecast, margin, cfg)
        return new, f"usage or forecast unknown: fell back to the buffer rule, {why}"
    ratio = max(forecast / usage, 1.0)
    new = limit * ratio * (1 + margin)
    why = (f"load × {ratio:.2f} (usage {fmt(tier, usage)} → {fmt(tier, forecast)}), "
           f"margin {margin:.0%}")
    if tier in _STEPPED and limit * (1 + cfg.cpu_step_fraction) > new:
        new = limit * (1 + cfg.cpu_step_fraction)
        why += f"; {'CPU' if tier == Tier.CPU else tier} step {cfg.cpu_step_fraction:.0%}"
    return new, why


def _ref_propose(inp, size, *, per_tier_threshold, rows=None):
    decisions = []
    names = inp.containers
    for tier, tp in inp.prediction.tiers.items():
        for i in (range(len(names)) if rows is None else rows[tier]):
            name = names[i]
            p = float(tp.p_fail[i])
            thr = inp.threshold_of(tier, i) if per_tier_threshold else float(inp.thresholds[i])
            limit = float(tp.limit[i])
            forecast = float(tp.forecast[i])
            ttl = float(tp.time_to_limit_s[i])
            action = None
            if not math.isfinite(limit):
                reason = "no limit set: nothing to protect"
            elif not p >= thr:
                reason = f"p_fail {p:.2f} < threshold {thr:.2f}"
            else:
                new, how = size(inp, i, tier, limit, forecast)
                reason = (f"p_fail {p:.2f} >= {thr:.2f}: forecast {fmt(tier, forecast)} at "
                          f"horizon {inp.prediction.horizon_s:g} s vs limit {fmt(tier, limit)}; "
                          f"{how}")
                if new > limit:
                    action = ScalingAction(
                        action_id=action_id_for(name, tier, inp.now_s),
                        now_s=inp.now_s, container=name, tier=tier, old_limit=limit,
                        new_limit=new, p_fail=p, threshold=thr, time_to_limit_s=ttl,
                        forecast=forecast, reason=reason, kind=ActionKind.RESIZE,
                        app=inp.app_of(i), preemptive=True,
                    )
                else:
                    reason += ": no growth asked"
            decisions.append(
                Decision(inp.now_s, name, tier, p, thr, ttl, forecast, limit, action, reason))
    return decisions


def _ref_sizers(cfg):
    def buffer(inp, i, tier, lim, f):
        return _ref_buffer_target(tier, lim, f, cfg.margin_fraction, cfg)

    def proportional(inp, i, tier, lim, f):
        return _ref_proportional_target(tier, lim, f, inp.usage_of(tier, i),
                                        cfg.margin_fraction, cfg)

    def multi(inp, i, tier, lim, f):
        method = cfg.multi_tier_methods.get(tier, "preemptive_buffer")
        margin = cfg.multi_tier_margins.get(tier, cfg.margin_fraction)
        if method == "proportional":
            new, how = _ref_proportional_target(tier, lim, f, inp.usage_of(tier, i), margin, cfg)
        else:
            new, how = _ref_buffer_target(tier, lim, f, margin, cfg)
        return new, f"{tier} tier ({method}): {how}"

    return {"preemptive_buffer": (buffer, False), "proportional": (proportional, False),
            "multi_tier": (multi, True)}


# -- random cases -------------------------------------------------------------------------
TIERS = (Tier.MEMORY, Tier.CPU, Tier.DISK, Tier.NETWORK, Tier.IO)


def _case(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9))
    tiers = TIERS[: int(rng.integers(1, 6))]

    def col(choices, dtype=np.float64):
        return np.array(rng.choice(choices, n), dtype=dtype)

    scale = {t: (1.0 if t == Tier.CPU else MiB) for t in tiers}
    pred = Prediction(float(rng.choice([30.0, 60.0, 12.5])), "t", {
        t: TierPrediction(
            col([0.0, 0.3, 0.5, 0.7, 0.99, math.nan], np.float32 if rng.random() < 0.2
                else np.float64),
            col([5.0, 40.0, math.inf, math.nan]),
            col([0.1, 0.2, 0.5, 1.0, 3.0, -1.0, math.nan, math.inf]) * scale[t],
            col([0.1, 0.25, 0.5, 1.0, 2.0, math.inf, 0.0]) * scale[t])
        for t in tiers})
    usage = {t: col([0.0, 0.05, 0.2, 0.9, -1.0, math.nan]) * scale[t] for t in tiers
             if rng.random() < 0.8}
    inp = PolicyInput(
        1_700_000_000.5, [f"c{k}" for k in range(n)], pred, col([0.3, 0.5, 0.9]),
        apps=[str(a) for a in rng.choice(["", "web"], n)] if rng.random() < 0.5 else None,
        usage=usage or {Tier.MEMORY: np.full(n, math.nan)},
        tier_thresholds={t: col([0.2, 0.6]) for t in tiers if rng.random() < 0.5} or None)
    cfg = PolicyConfig(
        margin_fraction=float(rng.choice([0.0, 0.1, 0.25])),
        buffer_abs={"memory": float(rng.choice([0.0, 64 * MiB])), "cpu": 0.0, "disk": 3},
        cpu_step_fraction=float(rng.choice([0.0, 0.5, 2.0])),
        multi_tier_methods={t: str(rng.choice(["preemptive_buffer", "proportional"]))
                            for t in tiers if rng.random() < 0.7},
        multi_tier_margins={"cpu": 0.4, "network": 1} if rng.random() < 0.5 else {})
    rows = None
    if rng.random() < 0.5:
        rows = {t: sorted(set(rng.integers(0, n, n).tolist())) for t in tiers}
    return inp, cfg, rows


def test_proposals_are_the_per_row_rules_bit_for_bit():
    seen = set()
    for seed in range(700):
        inp, cfg, rows = _case(seed)
        ref = _ref_sizers(cfg)
        for kind, raw in (("preemptive_buffer", pol._raw_buffer),
                          ("proportional", pol._raw_proportional)):
            size, per_tier = ref[kind]
            want = _ref_propose(inp, size, per_tier_threshold=per_tier, rows=rows)
            got = raw(inp, cfg, rows)
            assert repr(got) == repr(want), (seed, kind)
            # decide's cost decisions put in place of those without an action, unbuilt
            instead = {(d.container, d.tier): f"instead of {d.container}/{d.tier}"
                       for d in got[::2]}
            assert repr(raw(inp, cfg, rows, instead)) == repr([
                instead.get((d.container, d.tier), d) if d.action is None else d for d in got])
        # multi_tier: its sizing, column-wise, inside the same ranking as before
        size, _ = ref["multi_tier"]
        real = pol._propose
        try:
            pol._propose = lambda inp_, _size, ref=size, **kw: _ref_propose(inp_, ref, **kw)
            want = pol._raw_multi_tier(inp, cfg, rows)
        finally:
            pol._propose = real
        got = pol._raw_multi_tier(inp, cfg, rows)
        assert repr(got) == repr(want), (seed, "multi_tier")
        for d in got:
            seen.add("act" if d.action else "no growth" if "no growth" in d.reason
                      else d.reason.split(" ")[0])
            seen |= {w for w in ("fell back", "step", "load ×", "buffer ") if w in d.reason}
    assert seen >= {"act", "no growth", "no", "p_fail", "fell back", "step", "load ×",
                    "buffer "}


def test_fmt_all_is_fmt():
    rng = np.random.default_rng(1)
    values = np.concatenate([[0.0, -0.0, math.nan, math.inf, -math.inf, 1e300, 5e-324, 0.375,
                              0.005, 2**27, 1048576 * 0.05, 2.5e9],
                             rng.normal(0, 1, 3000) * 10.0 ** rng.integers(-4, 12, 3000)])
    for tier in (*TIERS, "gpu"):
        assert fmt_all(tier, values) == [fmt(tier, float(v)) for v in values], tier
    assert fmt_all("memory", [2**27]) == ["128.0 MiB"]
