"""The PNG plots of ``prescale evaluate --out DIR`` (an I/O edge: matplotlib, files).

Figures are built as matplotlib :class:`~matplotlib.figure.Figure` objects (no pyplot,
no global backend), so that tests read what is drawn, and saved at :data:`DPI`.

- **Per scenario** (:func:`scenario_figures`): the demand against the limit over time
  in each tier where the scenario's containers can fail (``RunRecord.failure_tiers``,
  :data:`TIER_VIEWS`): memory (totals over replicas) for most, CPU against the quota
  for ``cpu_saturation``, the disk against the volume's capacity for ``disk_fill``, the
  receive rate against its limit for ``net_saturation``; with the applied actions of
  that tier and its failures marked, and the failures of the tiers not drawn as ticks
  along the bottom. One row per container (and tier) and one column per policy. The y
  axis is shared along each row: one container, one scale, every policy. prescale's
  columns are titled ``prescale`` in :data:`PRESCALE_COLOUR` on a tinted background,
  the baselines' ``baseline``. One legend for the whole figure, below the grid.
  Rows go :data:`ROWS_PER_PAGE` to a page: ``leak.png``, ``leak-p2.png``, ... at
  most :data:`MAX_PAGES` pages; every page's title says which containers it shows, of
  how many, in which files the others are and how many are drawn nowhere.
- **Summary** (:func:`summary_figure`): failures (count) and memory slack (%) per
  scenario and policy, bars grouped by scenario, prescale's bars hatched in blues, y
  labels with units, one legend.

Readable at 100 % zoom: at :data:`DPI` = 100 a point is 100/72 px, so the smallest
text (:data:`TICK_PT` = 8 pt) is 11 px high, and a figure of 9 policies is
≈ 1,700 px wide (panels of :data:`PANEL_W_IN` inches, narrower when more policies
would pass :data:`MAX_WIDTH_PX`, never below :data:`MIN_PANEL_W_IN`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prescale.app.evaluation.record import RunRecord
from prescale.app.evaluation.runner import PRESCALE_POLICIES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
TICK_PT = 8.0  # 11 px at DPI 100: the smallest text drawn
LABEL_PT = 9.0
TITLE_PT = 10.0
SUPTITLE_PT = 11.0
MIN_TEXT_PX = 10.0  # what "readable at 100 %" means here (tests check every text)

ROWS_PER_PAGE = 6
MAX_PAGES = 5
PANEL_W_IN = 1.75
MIN_PANEL_W_IN = 1.3
PANEL_H_IN = 1.35
MAX_PANEL_W_IN = 5.0  # with one or two policies the panels widen to MIN_WIDTH_IN
LEFT_IN = 1.0  # the row labels and the y tick labels
RIGHT_IN = 0.15
MIN_WIDTH_IN = 8.0
MAX_WIDTH_PX = 1800
LINEAR_FAILURES_MAX = 20  # the summary's failures axis: linear up to this, log above
PAD_IN = 0.1  # above the title, below the legend

PRESCALE_COLOUR = "#08519c"
PRESCALE_TINT = "#e8f0fa"
BASELINE_COLOUR = "#333333"
#: prescale's bars in the summary: blues, hatched; the baselines': muted, distinct
PRESCALE_BARS = ("#08519c", "#3182bd", "#9ecae1")
BASELINE_BARS = ("#a6761d", "#e6ab02", "#66a61e", "#e7298a", "#7570b3", "#d95f02",
                 "#666666", "#1b9e77")
DEMAND_COLOUR, LIMIT_COLOUR = "#1f77b4", "#ff7f0e"
ACTION_COLOUR, FAILURE_COLOUR, OTHER_FAILURE_COLOUR = "#2ca02c", "#d62728", "#7b3294"

GIB = 2**30
MIB = 2**20


def is_prescale(policy: str) -> bool:
    return policy in PRESCALE_POLICIES


def policy_label(policy: str) -> str:
    """``"prescale: proportional"`` / ``"baseline: vpa"``: how a policy is named in
    every legend and column title."""
    return f"{'prescale' if is_prescale(policy) else 'baseline'}: {policy}"


# -- which containers go on which page (pure) ---------------------------------------------

def pages(n: int, rows: int | None = None, max_pages: int | None = None) -> list[range]:
    """The containers (indices) of each page: ``rows`` to a page (default
    :data:`ROWS_PER_PAGE`), at most ``max_pages`` (default :data:`MAX_PAGES`).
    Worked example: 20 containers, 6 rows, 5 pages → 0–5, 6–11, 12–17, 18–19; 40
    containers → five pages of 6, and 10 containers drawn nowhere."""
    rows = ROWS_PER_PAGE if rows is None else rows
    max_pages = MAX_PAGES if max_pages is None else max_pages
    if rows < 1 or max_pages < 1:
        raise ValueError("rows and max_pages must be >= 1")
    return [range(s, min(s + rows, n)) for s in range(0, min(n, rows * max_pages), rows)]


def page_file(scenario: str, k: int) -> str:
    """The file of page ``k`` (0-based): ``leak.png``, ``leak-p2.png``, ..."""
    return f"{scenario}.png" if k == 0 else f"{scenario}-p{k + 1}.png"


def page_note(scenario: str, names: Sequence[str], ranges: Sequence[range], k: int) -> str:
    """What page ``k`` shows, of how many, and where the others are: ``"all 6
    containers"``, or ``"containers 1–6 of 20: a, b, c, d, e, f — the others in
    s-p2.png, s-p3.png, s-p4.png"``, with ``"; 10 not drawn"`` when the pages run out."""
    n = len(names)
    drawn = sum(len(r) for r in ranges)
    if len(ranges) == 1 and drawn == n:
        return f"all {n} containers"
    r = ranges[k]
    shown = ", ".join(names[i] for i in r)
    span = f"container {r.start + 1}" if len(r) == 1 else f"containers {r.start + 1}–{r.stop}"
    others = [page_file(scenario, j) for j in range(len(ranges)) if j != k]
    text = f"{span} of {n}: {shown}"
    if others:
        text += (" — the others in " if drawn == n else " — more in ") + ", ".join(others)
    if drawn < n:
        text += (f"; {n - drawn} not drawn (the first {drawn} are: "
                 f"{len(ranges)} pages × {len(ranges[0])} rows)")
    return text


# -- the per-scenario figures -------------------------------------------------------------

@dataclass(frozen=True)
class TierView:
    """How one tier is drawn: its title phrase, legend labels, the applied actions marked
    on it, the failure marked on its limit and the unit line of its rows' y label."""

    tier: str
    what: str  # the title: what is drawn against what
    demand: str
    limit: str
    action_tiers: tuple[str, ...]  # AppliedAction.tier values marked on it
    raised: str
    lowered: str
    failure: str  # the legend's label of the failures marked on the limit line
    failure_kind: str  # the same, short, when the tier is not drawn
    y_unit: str  # "{unit}" is replaced by the row's unit


#: every tier a figure can draw, in the order of its rows
TIER_VIEWS: dict[str, TierView] = {v.tier: v for v in (
    TierView("memory", "memory demand vs limit (totals over replicas)", "memory demand",
             "memory limit", ("memory", "replicas"), "limit or replicas raised",
             "limit or replicas lowered", "OOM kill", "OOM kill", "{unit}"),
    TierView("cpu", "CPU demand vs quota (totals over replicas)", "CPU demand", "CPU quota",
             ("cpu", "replicas"), "quota or replicas raised", "quota or replicas lowered",
             "timeout (latency above target)", "CPU timeout", "CPU {unit}"),
    TierView("disk", "disk demand vs volume capacity", "disk demand (written)",
             "disk capacity", ("disk",), "volume grown", "volume shrunk", "disk full",
             "disk full", "disk {unit}"),
    TierView("network", "receive rate vs receive limit", "receive rate (traffic sent)",
             "receive limit", ("network",), "receive limit raised", "receive limit lowered",
             "timeout (traffic above the limit)", "network timeout", "receive {unit}"),
)}


def figure_tiers(rec: RunRecord) -> tuple[str, ...]:
    """The tiers a record's figures draw (its ``failure_tiers``, in the order of
    :data:`TIER_VIEWS`); a tier that is unknown, or whose series the record does not
    carry, is an error naming it."""
    bad = [t for t in rec.failure_tiers if t not in TIER_VIEWS]
    if bad or not rec.failure_tiers:
        raise ValueError(f"{rec.scenario}/{rec.policy}: failure_tiers {rec.failure_tiers!r}: "
                         f"need one or more of {', '.join(TIER_VIEWS)}")
    need = {"disk": ("disk_demand_bytes", "disk_capacity_bytes"),
            "network": ("net_demand_bytes_per_s", "net_limit_bytes_per_s")}
    for t in rec.failure_tiers:
        missing = [f for f in need.get(t, ()) if getattr(rec, f) is None]
        if missing:
            raise ValueError(f"{rec.scenario}/{rec.policy}: the {t} tier is to be drawn "
                             f"but the record has no {', '.join(missing)}")
    return tuple(t for t in TIER_VIEWS if t in rec.failure_tiers)


def _series(rec: RunRecord, i: int, tier: str) -> tuple[np.ndarray, np.ndarray]:
    """Container i's demand and limit in ``tier``: memory and CPU as totals over the
    replicas (per-replica demand × the replicas serving, per-replica limit × the
    replicas in the spec; worked example: 0.6 cores per replica on 2 ready of 3
    replicas under a 1-core quota → demand 1.2, quota 3.0); the disk (bytes) and the
    receive rate (bytes/s) per container, as the simulated world applies them."""
    if tier in ("memory", "cpu"):
        reps = rec.replicas[i]
        serving = reps if rec.replicas_ready is None else rec.replicas_ready[i]
        if tier == "memory":
            return rec.memory_demand_bytes[i] * serving, rec.memory_limit_bytes[i] * reps
        return rec.cpu_demand_cores[i] * serving, rec.cpu_quota_cores[i] * reps
    if tier == "disk":
        assert rec.disk_demand_bytes is not None and rec.disk_capacity_bytes is not None
        return rec.disk_demand_bytes[i], rec.disk_capacity_bytes[i]
    assert rec.net_demand_bytes_per_s is not None and rec.net_limit_bytes_per_s is not None
    return rec.net_demand_bytes_per_s[i], rec.net_limit_bytes_per_s[i]


def _tier_failures(rec: RunRecord, i: int, tier: str) -> np.ndarray:
    """Container i's failure steps in ``tier``: OOM kills (memory), the disk full
    (disk), timeouts with the traffic above the receive limit (network), the other
    timeouts (cpu: latency above its target)."""
    if tier == "memory":
        return rec.oom_kill[i]
    if tier == "disk":
        return rec.disk_full[i]
    over = np.zeros_like(rec.timeout[i])
    if rec.net_demand_bytes_per_s is not None and rec.net_limit_bytes_per_s is not None:
        with np.errstate(invalid="ignore"):
            over = rec.net_demand_bytes_per_s[i] > rec.net_limit_bytes_per_s[i]
    return rec.timeout[i] & (over if tier == "network" else ~over)


def _unit(peak_bytes: float) -> tuple[float, str]:
    return (GIB, "GiB") if peak_bytes >= 4 * GIB else (MIB, "MiB")


def _row_unit(tier: str, peak: float) -> tuple[float, str]:
    """The divisor and the unit line of a row of ``tier`` whose highest value is
    ``peak``: bytes in MiB or GiB (/s for the receive rate), CPU in cores."""
    if tier == "cpu":
        return 1.0, TIER_VIEWS[tier].y_unit.format(unit="cores")
    div, unit = _unit(peak)
    return div, TIER_VIEWS[tier].y_unit.format(unit=f"{unit}/s" if tier == "network" else unit)


def _time_axis(rec: RunRecord) -> tuple[np.ndarray, str]:
    t = np.arange(rec.memory_limit_bytes.shape[1]) * rec.step_s
    if len(t) and t[-1] > 72 * 3600:
        return t / 86_400, "days"
    return t / 3600, "hours"


def _other_kinds(tiers: Sequence[str]) -> list[str]:
    """The failures of the tiers not drawn, named once each (in :data:`TIER_VIEWS`
    order); CPU and network timeouts both undrawn are one "timeout". Worked examples:
    memory drawn → ["timeout", "disk full"]; cpu drawn → ["OOM kill", "disk full",
    "network timeout"]."""
    out = [v.failure_kind for t, v in TIER_VIEWS.items() if t not in tiers]
    both = ("CPU timeout", "network timeout")
    if all(k in out for k in both):
        out = ["timeout" if k == both[0] else k for k in out if k != both[1]]
    return out


def _legend_handles(tiers: Sequence[str] = ("memory",)) -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    views = [TIER_VIEWS[t] for t in tiers]

    def label(field: str) -> str:
        return " / ".join(dict.fromkeys(getattr(v, field) for v in views))

    handles = [Line2D([], [], color=DEMAND_COLOUR, lw=1.2, label=label("demand")),
               Line2D([], [], color=LIMIT_COLOUR, lw=1.2, label=label("limit")),
               Line2D([], [], ls="", marker="^", color=ACTION_COLOUR, ms=6,
                      label=label("raised")),
               Line2D([], [], ls="", marker="v", color=ACTION_COLOUR, ms=6,
                      label=label("lowered")),
               Line2D([], [], ls="", marker="x", color=FAILURE_COLOUR, ms=7, mew=1.5,
                      label=label("failure"))]
    other = _other_kinds(tiers)
    if other:
        kinds = other[0] if len(other) == 1 else f"{', '.join(other[:-1])} or {other[-1]}"
        handles.append(Line2D([], [], ls="", marker="|", color=OTHER_FAILURE_COLOUR, ms=8,
                              mew=1.5, label=f"{kinds} (that tier is not drawn)"))
    handles.append(Patch(facecolor=PRESCALE_TINT, edgecolor=PRESCALE_COLOUR,
                         label="prescale's policies (tinted)"))
    return handles


def _panel(ax: Any, rec: RunRecord, i: int, x: np.ndarray, div: float,
           tier: str = "memory", tiers: Sequence[str] = ("memory",)) -> None:
    """One container in one tier under one policy: demand and limit, the applied
    actions of that tier (at the limit they set), its failures (at the limit they hit),
    and, on the first tier's row, the failures of the tiers not drawn (``tiers``: the
    figure's) as ticks along the bottom."""
    view = TIER_VIEWS[tier]
    demand, limit = _series(rec, i, tier)
    ax.plot(x, demand / div, lw=1.0, color=DEMAND_COLOUR)
    ax.plot(x, limit / div, lw=1.0, color=LIMIT_COLOUR)
    last = len(x) - 1
    for up, marker in ((True, "^"), (False, "v")):
        steps = np.array([a.step for a in rec.actions
                          if a.container == i and a.tier in view.action_tiers
                          and (a.new > a.old) == up], dtype=int)
        if len(steps):
            ax.plot(x[np.minimum(steps, last)], limit[np.minimum(steps + 1, last)] / div,
                    ls="", marker=marker, ms=5, color=ACTION_COLOUR, zorder=2.5)
    hits = np.flatnonzero(_tier_failures(rec, i, tier))
    if len(hits):
        ax.plot(x[hits], np.nan_to_num(limit[hits]) / div, ls="", marker="x",
                color=FAILURE_COLOUR, ms=6, mew=1.5)
    if tier != tiers[0]:
        return
    other = np.zeros(len(x), dtype=bool)
    for t in TIER_VIEWS:
        if t not in tiers:
            other |= _tier_failures(rec, i, t)
    other = np.flatnonzero(other)
    if len(other):
        ax.plot(x[other], np.full(len(other), 0.04), ls="", marker="|", ms=8, mew=1.5,
                color=OTHER_FAILURE_COLOUR, transform=ax.get_xaxis_transform())


def _wrap(text: str, width_px: float, pt: float) -> str:
    """``text`` wrapped to lines that fit ``width_px`` at ``pt`` (an average glyph is
    at most about 0.6 em wide in DejaVu Sans)."""
    import textwrap

    per_line = max(8, int(width_px / (0.6 * pt * DPI / 72)))
    return "\n".join(textwrap.fill(line, per_line) for line in text.split("\n"))


def _whole_px(inches: float) -> float:
    """``inches`` rounded to whole pixels at :data:`DPI` (the PNG is exactly that)."""
    return round(inches * DPI) / DPI


def _inches(pt: float, lines: int = 1) -> float:
    return lines * pt * 1.25 / 72


def _fitted_legend(fig: Figure, handles: list[Any], width_px: float, renderer: Any) -> Any:
    """The figure's legend, below the grid, in as many columns as fit ``width_px``."""
    for ncol in range(len(handles), 0, -1):
        legend = fig.legend(handles=handles, loc="lower center", ncol=ncol,
                            fontsize=LABEL_PT, frameon=False, borderaxespad=0,
                            handletextpad=0.4, columnspacing=1.2)
        if ncol == 1 or legend.get_window_extent(renderer).width <= width_px:
            return legend
        legend.remove()
    raise AssertionError("unreachable")


def scenario_page(scenario: str, by_policy: Mapping[str, RunRecord], rows: range,
                  note: str) -> Figure:
    """One page: the containers ``rows`` (one row each per drawn tier,
    :func:`figure_tiers`) × the policies of ``by_policy`` (columns), y shared along each
    row; ``note`` (:func:`page_note`) under the title.

    The layout is set in inches (no layout engine: a page of 54 panels draws in half
    the time): the title and the column titles above the grid, the x labels and one
    legend below it; the title and the legend are measured (the legend in as many
    columns as fit the width)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    pols = list(by_policy)
    first = by_policy[pols[0]]
    tiers = figure_tiers(first)
    for p in pols[1:]:
        if figure_tiers(by_policy[p]) != tiers:
            raise ValueError(f"{scenario}: policy {p} draws {by_policy[p].failure_tiers}, "
                             f"{pols[0]} draws {first.failure_tiers}: one scenario, one set")
    grid_rows = [(i, t) for i in rows for t in tiers]
    n_rows, n_cols = len(grid_rows), len(pols)
    room = MAX_WIDTH_PX / DPI - LEFT_IN - RIGHT_IN
    panel_w = max(MIN_PANEL_W_IN, min(PANEL_W_IN, room / n_cols))
    panel_w = max(panel_w, min(MAX_PANEL_W_IN, (MIN_WIDTH_IN - LEFT_IN - RIGHT_IN) / n_cols))
    width = _whole_px(LEFT_IN + n_cols * panel_w + RIGHT_IN)
    fig = Figure(figsize=(width, 1.0), dpi=DPI)
    renderer = FigureCanvasAgg(fig).get_renderer()
    what = (f"{scenario}: " + "; ".join(TIER_VIEWS[t].what for t in tiers),
            "one row per container" + (" and tier" if len(tiers) > 1 else "")
            + ", y shared along the row")
    one_line = _wrap(", ".join(what), width * DPI - 40, SUPTITLE_PT)
    head_text = one_line if "\n" not in one_line else "\n".join(what)  # cut between phrases
    title = fig.suptitle(_wrap(f"{head_text}\n{note}", width * DPI - 40, SUPTITLE_PT),
                         fontsize=SUPTITLE_PT, va="top")
    title_h = title.get_window_extent(renderer).height / DPI
    legend = _fitted_legend(fig, _legend_handles(tiers), width * DPI - 20, renderer)
    legend_h = legend.get_window_extent(renderer).height / DPI
    head = PAD_IN + title_h + 0.12 + _inches(TITLE_PT, 2) + 0.05
    foot = _inches(TICK_PT) + _inches(LABEL_PT) + 0.2 + legend_h + PAD_IN
    width, height = _whole_px(width), _whole_px(head + n_rows * PANEL_H_IN + foot)
    fig.set_size_inches(width, height)
    title.set_y(1 - PAD_IN / height)
    legend.set_bbox_to_anchor((0.5, PAD_IN / height), transform=fig.transFigure)
    fig.subplots_adjust(left=LEFT_IN / width, right=1 - RIGHT_IN / width,
                        top=1 - head / height, bottom=foot / height, wspace=0.06,
                        hspace=0.12)
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=True, sharey="row")
    x, x_label = _time_axis(first)
    for r, (i, tier) in enumerate(grid_rows):
        peak = max((float(np.nanmax(np.concatenate(_series(rec, i, tier)), initial=0.0))
                    for rec in by_policy.values()), default=0.0)
        div, unit = _row_unit(tier, peak)
        for j, p in enumerate(pols):
            ax = axes[r][j]
            _panel(ax, by_policy[p], i, x, div, tier, tiers)
            if is_prescale(p):
                ax.set_facecolor(PRESCALE_TINT)
                for s in ax.spines.values():
                    s.set_edgecolor(PRESCALE_COLOUR)
            ax.tick_params(labelsize=TICK_PT)
            ax.yaxis.set_major_locator(MaxNLocator(4))
            ax.xaxis.set_major_locator(MaxNLocator(4, integer=True))
            if r == n_rows - 1:
                ax.set_xlabel(x_label, fontsize=LABEL_PT, labelpad=2)
            if r == 0:
                pre = is_prescale(p)
                ax.set_title(f"{'prescale' if pre else 'baseline'}\n{p}", fontsize=TITLE_PT,
                             color=PRESCALE_COLOUR if pre else BASELINE_COLOUR,
                             fontweight="bold" if pre else "normal", pad=4)
        name = _wrap(first.names[i], PANEL_H_IN * DPI * 0.9, LABEL_PT)
        axes[r][0].set_ylabel(f"{name}\n{unit}", fontsize=LABEL_PT)
    return fig


def scenario_figures(scenario: str, by_policy: Mapping[str, RunRecord]
                     ) -> list[tuple[str, Figure]]:
    """Every page of one scenario: ``[(file name, figure), ...]``; with k tiers drawn
    (:func:`figure_tiers`), max(1, :data:`ROWS_PER_PAGE` // k) containers to a page."""
    if not by_policy:
        return []
    first = next(iter(by_policy.values()))
    names = first.names
    ranges = pages(len(names), max(1, ROWS_PER_PAGE // len(figure_tiers(first))))
    return [(page_file(scenario, k),
             scenario_page(scenario, by_policy, r, page_note(scenario, names, ranges, k)))
            for k, r in enumerate(ranges)]


# -- the summary ----------------------------------------------------------------------------

def bar_style(policies: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Colour, hatch and label of each policy's bars: prescale's in blues, hatched."""
    out: dict[str, dict[str, Any]] = {}
    b = q = 0
    for p in policies:
        if is_prescale(p):
            out[p] = {"color": PRESCALE_BARS[q % len(PRESCALE_BARS)], "hatch": "//",
                      "edgecolor": "white", "label": policy_label(p)}
            q += 1
        else:
            out[p] = {"color": BASELINE_BARS[b % len(BASELINE_BARS)],
                      "label": policy_label(p)}
            b += 1
    return out


def summary_figure(result: Mapping[str, Any]) -> Figure | None:
    """Failures and memory slack per scenario (groups) and policy (bars); None when no
    scenario ran. The failures' axis is linear up to :data:`LINEAR_FAILURES_MAX`, and
    symmetric-log above (0, then 1, 2, 5, 10, 20, ... in plain numbers)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator, SymmetricalLogLocator

    ok = [e for e in result["scenarios"] if "skipped" not in e]
    if not ok:
        return None
    pols = list(result["policies"])
    x = np.arange(len(ok))
    w = 0.84 / max(len(pols), 1)
    width_in = _whole_px(min(MAX_WIDTH_PX / DPI,
                             max(8.0, 1.6 + len(ok) * (0.3 + 0.14 * len(pols)))))
    fig = Figure(figsize=(width_in, 7.0), dpi=DPI, layout="constrained")
    a1, a2 = fig.subplots(2, 1, sharex=True)
    style = bar_style(pols)
    for j, p in enumerate(pols):
        xs = x - 0.42 + (j + 0.5) * w
        fails = [e["policies"].get(p, {}).get("failures", np.nan) for e in ok]
        slack = [100 * e["policies"].get(p, {}).get("slack_memory", np.nan) for e in ok]
        a1.bar(xs, fails, w, **style[p])
        a2.bar(xs, slack, w, **{k: v for k, v in style[p].items() if k != "label"})
        for xi, f in zip(xs, fails, strict=True):
            if f == 0:  # a bar of height 0 is invisible: say it
                a1.annotate("0", (xi, 0), xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=TICK_PT,
                            color=style[p]["color"])
    most = max((f for e in ok for f in (e["policies"].get(p, {}).get("failures")
                                        for p in pols) if f is not None), default=0)
    if most > LINEAR_FAILURES_MAX:  # a few failures and a hundred on one axis
        a1.set_yscale("symlog", linthresh=1)
        a1.yaxis.set_major_locator(SymmetricalLogLocator(base=10, linthresh=1,
                                                         subs=(1.0, 2.0, 5.0)))
        a1.set_ylabel("failures\n(count, log scale)", fontsize=LABEL_PT)
    else:
        a1.yaxis.set_major_locator(MaxNLocator(6, integer=True))
        a1.set_ylabel("failures\n(count)", fontsize=LABEL_PT)
    a1.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a1.set_ylim(bottom=0)
    a1.set_title("failures: OOM kills + latency breaches + disk-full episodes",
                 fontsize=TITLE_PT)
    a2.set_ylabel("memory slack\n(% of allocated unused)", fontsize=LABEL_PT)
    a2.set_title("memory slack: (allocated − used) / allocated", fontsize=TITLE_PT)
    a2.set_ylim(0, 100)
    for ax in (a1, a2):
        ax.tick_params(labelsize=TICK_PT)
        ax.grid(axis="y", alpha=0.3)
        for b in x[:-1] + 0.5:
            ax.axvline(b, color="#cccccc", lw=0.8)
    a2.set_xticks(x, [e["name"] for e in ok], rotation=30 if len(ok) > 6 else 0,
                  ha="right" if len(ok) > 6 else "center", fontsize=LABEL_PT)
    a2.set_xlabel("scenario", fontsize=LABEL_PT)
    fig.suptitle("prescale evaluate: every scenario × policy (prescale's bars hatched, "
                 "in blues)", fontsize=SUPTITLE_PT)
    fig.legend(handles=a1.containers, loc="outside right center", fontsize=LABEL_PT,
               frameon=False)
    return fig


# -- writing ----------------------------------------------------------------------------------

def write_plots(result: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """``summary.png`` and every scenario's pages into ``out_dir`` (needs the records:
    ``evaluate(keep_records=True)``); returns the files written, summary first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    fig = summary_figure(result)
    if fig is not None:
        written.append(out_dir / "summary.png")
        fig.savefig(written[-1], dpi=DPI)
    records: Mapping[str, Mapping[str, RunRecord]] = result.get("_records", {})
    for name, by_policy in records.items():
        for file, page in scenario_figures(name, by_policy):
            written.append(out_dir / file)
            page.savefig(written[-1], dpi=DPI)
    return written


__all__ = ["DPI", "MAX_PAGES", "ROWS_PER_PAGE", "TIER_VIEWS", "TierView", "bar_style",
           "figure_tiers", "page_file", "page_note", "pages", "policy_label",
           "scenario_figures", "scenario_page", "summary_figure", "write_plots"]
