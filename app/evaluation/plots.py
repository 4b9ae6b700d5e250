"""The PNG plots of ``prescale evaluate --out DIR`` (an I/O edge: matplotlib, files).

Figures are built as matplotlib :class:`~matplotlib.figure.Figure` objects (no pyplot,
no global backend), so that tests read what is drawn, and saved at :data:`DPI`.

- **Per scenario** (:func:`scenario_figures`): memory demand against the limit over
  time (totals over replicas), one row per container and one column per policy. The y
  axis is shared along each row: one container, one scale, every policy. prescale's
  columns are titled ``prescale`` in :data:`PRESCALE_COLOUR` on a tinted background,
  the baselines' ``baseline``. One legend for the whole figure, above the grid.
  Containers go :data:`ROWS_PER_PAGE` to a page: ``leak.png``, ``leak-p2.png``, ... at
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


def _unit(peak_bytes: float) -> tuple[float, str]:
    return (GIB, "GiB") if peak_bytes >= 4 * GIB else (MIB, "MiB")


def _time_axis(rec: RunRecord) -> tuple[np.ndarray, str]:
    t = np.arange(rec.memory_limit_bytes.shape[1]) * rec.step_s
    if len(t) and t[-1] > 72 * 3600:
        return t / 86_400, "days"
    return t / 3600, "hours"


# -- the per-scenario figures -------------------------------------------------------------

def _totals(rec: RunRecord, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Memory demand served and the limit, totals over the replicas (bytes)."""
    reps = rec.replicas[i]
    serving = reps if rec.replicas_ready is None else rec.replicas_ready[i]
    return rec.memory_demand_bytes[i] * serving, rec.memory_limit_bytes[i] * reps


def _legend_handles() -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [Line2D([], [], color=DEMAND_COLOUR, lw=1.2, label="memory demand"),
            Line2D([], [], color=LIMIT_COLOUR, lw=1.2, label="memory limit"),
            Line2D([], [], ls="", marker="^", color=ACTION_COLOUR, ms=6,
                   label="limit or replicas raised"),
            Line2D([], [], ls="", marker="v", color=ACTION_COLOUR, ms=6,
                   label="limit or replicas lowered"),
            Line2D([], [], ls="", marker="x", color=FAILURE_COLOUR, ms=7, mew=1.5,
                   label="OOM kill"),
            Line2D([], [], ls="", marker="|", color=OTHER_FAILURE_COLOUR, ms=8, mew=1.5,
                   label="timeout or disk full (that tier is not drawn)"),
            Patch(facecolor=PRESCALE_TINT, edgecolor=PRESCALE_COLOUR,
                  label="prescale's policies (tinted)")]


def _panel(ax: Any, rec: RunRecord, i: int, x: np.ndarray, div: float) -> None:
    """One container under one policy: demand and limit, the applied memory/replica
    actions (at the limit they set), OOM kills (at the limit they hit), the other
    failures as ticks along the bottom."""
    demand, limit = _totals(rec, i)
    ax.plot(x, demand / div, lw=1.0, color=DEMAND_COLOUR)
    ax.plot(x, limit / div, lw=1.0, color=LIMIT_COLOUR)
    last = len(x) - 1
    for up, marker in ((True, "^"), (False, "v")):
        steps = np.array([a.step for a in rec.actions
                          if a.container == i and a.tier in ("memory", "replicas")
                          and (a.new > a.old) == up], dtype=int)
        if len(steps):
            ax.plot(x[np.minimum(steps, last)], limit[np.minimum(steps + 1, last)] / div,
                    ls="", marker=marker, ms=5, color=ACTION_COLOUR)
    kills = np.flatnonzero(rec.oom_kill[i])
    if len(kills):
        ax.plot(x[kills], np.nan_to_num(limit[kills]) / div, ls="", marker="x",
                color=FAILURE_COLOUR, ms=6, mew=1.5)
    other = np.flatnonzero(rec.timeout[i] | rec.disk_full[i])
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
    """One page: the containers ``rows`` (rows) × the policies of ``by_policy`` (columns),
    y shared along each row; ``note`` (:func:`page_note`) under the title.

    The layout is set in inches (no layout engine: a page of 54 panels draws in half
    the time): the title and the column titles above the grid, the x labels and one
    legend below it; the title and the legend are measured (the legend in as many
    columns as fit the width)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    pols = list(by_policy)
    first = by_policy[pols[0]]
    n_rows, n_cols = len(rows), len(pols)
    room = MAX_WIDTH_PX / DPI - LEFT_IN - RIGHT_IN
    panel_w = max(MIN_PANEL_W_IN, min(PANEL_W_IN, room / n_cols))
    panel_w = max(panel_w, min(MAX_PANEL_W_IN, (MIN_WIDTH_IN - LEFT_IN - RIGHT_IN) / n_cols))
    width = _whole_px(LEFT_IN + n_cols * panel_w + RIGHT_IN)
    fig = Figure(figsize=(width, 1.0), dpi=DPI)
    renderer = FigureCanvasAgg(fig).get_renderer()
    what = (f"{scenario}: memory demand vs limit (totals over replicas)",
            "one row per container, y shared along the row")
    one_line = _wrap(", ".join(what), width * DPI - 40, SUPTITLE_PT)
    head_text = one_line if "\n" not in one_line else "\n".join(what)  # cut between phrases
    title = fig.suptitle(_wrap(f"{head_text}\n{note}", width * DPI - 40, SUPTITLE_PT),
                         fontsize=SUPTITLE_PT, va="top")
    title_h = title.get_window_extent(renderer).height / DPI
    legend = _fitted_legend(fig, _legend_handles(), width * DPI - 20, renderer)
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
    for r, i in enumerate(rows):
        peak = max((float(np.nanmax(np.concatenate(_totals(rec, i)), initial=0.0))
                    for rec in by_policy.values()), default=0.0)
        div, unit = _unit(peak)
        for j, p in enumerate(pols):
            ax = axes[r][j]
            _panel(ax, by_policy[p], i, x, div)
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
    """Every page of one scenario: ``[(file name, figure), ...]``."""
    if not by_policy:
        return []
    names = next(iter(by_policy.values())).names
    ranges = pages(len(names))
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


__all__ = ["DPI", "MAX_PAGES", "ROWS_PER_PAGE", "bar_style", "page_file", "page_note",
           "pages", "policy_label", "scenario_figures", "scenario_page", "summary_figure",
           "write_plots"]
