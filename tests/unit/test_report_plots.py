"""The PNG plots of ``prescale evaluate --out`` (app/evaluation/plots.py), read from the
matplotlib figures and the saved files: every container drawn or the subset named, the
y axis shared along each row, one legend, prescale's columns and bars marked, text
readable at 100 % (size in px at the saved DPI, inside the image, not overlapping),
y labels with units, each scenario drawn in the tier where it fails (memory, CPU, disk,
network). Records are built here, or by a short run of the static baseline: quick."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from prescale.app.evaluation import plots, report, runner, scenarios
from prescale.app.evaluation.record import AppliedAction, RunRecord
from prescale.app.evaluation.runner import POLICIES, PRESCALE_POLICIES

MIB = 2**20
BASELINE = next(p for p in POLICIES if p not in PRESCALE_POLICIES)
PRESCALE = PRESCALE_POLICIES[0]


def _rec(policy: str, n: int, scale: float = 1.0, t: int = 40, names: list[str] | None = None
         ) -> RunRecord:
    """Container i's demand and limit grow with i and with ``scale``: rows differ from
    each other, and so do policies of different ``scale`` within a row."""
    size = (np.arange(n)[:, None] + 1.0) * scale
    demand = size * np.linspace(100, 400, t)[None, :] * MIB
    limit = size * np.full((n, t), 450.0) * MIB
    off = np.zeros((n, t), dtype=bool)
    oom = off.copy()
    oom[0, t // 2] = True
    timeout = off.copy()
    timeout[n - 1, t // 3] = True
    return RunRecord(
        scenario="s", policy=policy, step_s=60.0, t0_s=0.0,
        names=names or [f"box-{chr(97 + i)}" for i in range(n)],
        memory_demand_bytes=demand, memory_limit_bytes=limit,
        cpu_demand_cores=np.full((n, t), 0.5), cpu_quota_cores=np.ones((n, t)),
        replicas=np.ones((n, t)), down=off.copy(), oom_kill=oom, timeout=timeout,
        disk_full=off.copy(),
        actions=[AppliedAction(step=5, ts_s=300.0, container=0, tier="memory", old=1.0,
                               new=2.0, preemptive=True)])


def _grid(fig: Figure, n_cols: int) -> list[list]:
    axes = fig.axes
    return [axes[r * n_cols:(r + 1) * n_cols] for r in range(len(axes) // n_cols)]


def _drawn(fig: Figure) -> None:
    fig.savefig(io.BytesIO(), format="png", dpi=plots.DPI)  # lays out and draws


# -- pages: which containers, and the note that names them ----------------------------------

@pytest.mark.parametrize(("n", "rows", "max_pages"), [(1, 6, 5), (6, 6, 5), (20, 6, 5),
                                                      (40, 6, 5), (7, 2, 2)])
def test_pages_cover_the_containers_in_order_up_to_the_cap(n: int, rows: int,
                                                           max_pages: int) -> None:
    ranges = plots.pages(n, rows, max_pages)
    drawn = [i for r in ranges for i in r]
    assert drawn == list(range(min(n, rows * max_pages)))
    assert all(0 < len(r) <= rows for r in ranges) and len(ranges) <= max_pages


def test_page_notes_name_the_shown_containers_the_other_files_and_the_undrawn() -> None:
    names = [f"vm{i:02d}" for i in range(7)]
    assert plots.page_note("s", names[:3], plots.pages(3, 6, 5), 0) == "all 3 containers"
    ranges = plots.pages(len(names), 2, 2)  # 4 drawn, 3 nowhere
    for k, r in enumerate(ranges):
        note = plots.page_note("s", names, ranges, k)
        listed = re.search(r"of 7: ([^—;]*)", note)
        assert listed is not None, note
        assert [x.strip() for x in listed.group(1).split(",")] == [names[i] for i in r]
        others = {plots.page_file("s", j) for j in range(len(ranges)) if j != k}
        assert others and all(f in note for f in others)
        assert plots.page_file("s", k) not in note
        assert f"{len(names) - sum(map(len, ranges))} not drawn" in note


def test_every_container_is_on_a_page_or_counted_in_the_title(
        monkeypatch: pytest.MonkeyPatch) -> None:
    n = 8
    by_policy = {BASELINE: _rec(BASELINE, n), PRESCALE: _rec(PRESCALE, n)}
    figs = plots.scenario_figures("s", by_policy)
    assert [f for f, _ in figs] == [plots.page_file("s", k)
                                    for k in range(-(-n // plots.ROWS_PER_PAGE))]
    rows = [_grid(fig, 2) for _, fig in figs]
    labels = [g[0].get_ylabel().split("\n")[0] for page in rows for g in page]
    assert labels == by_policy[BASELINE].names
    for (_, fig), page in zip(figs, rows, strict=True):
        shown = [g[0].get_ylabel().split("\n")[0] for g in page]
        assert ", ".join(shown) in fig.get_suptitle().replace("\n", " ")

    monkeypatch.setattr(plots, "ROWS_PER_PAGE", 3)
    monkeypatch.setattr(plots, "MAX_PAGES", 2)
    figs = plots.scenario_figures("s", by_policy)
    assert len(figs) == 2
    drawn = sum(len(_grid(fig, 2)) for _, fig in figs)
    assert drawn == 6
    for _, fig in figs:
        assert f"{n - drawn} not drawn" in fig.get_suptitle().replace("\n", " ")


# -- one page: shared y per row, one legend, prescale marked ---------------------------------

def test_the_y_axis_is_shared_along_each_row_and_covers_every_policy() -> None:
    n = 3
    by_policy = {BASELINE: _rec(BASELINE, n, scale=1.0), PRESCALE: _rec(PRESCALE, n, scale=3.0)}
    (_, fig), = plots.scenario_figures("s", by_policy)
    _drawn(fig)
    grid = _grid(fig, 2)
    assert len(grid) == n
    tops = []
    for i, row in enumerate(grid):
        lims = {ax.get_ylim() for ax in row}
        assert len(lims) == 1, f"row {i}: {lims}"
        unit = plots.GIB if row[0].get_ylabel().endswith("GiB") else MIB
        biggest = max(float(np.nanmax(r.memory_limit_bytes[i])) for r in by_policy.values())
        assert lims.pop()[1] >= biggest / unit
        tops.append(row[0].get_ylim()[1] * unit)
    assert tops == sorted(tops) and len(set(tops)) == n  # rows have their own scale


def test_one_legend_for_the_figure_and_none_in_a_panel() -> None:
    by_policy = {p: _rec(p, 2) for p in (BASELINE, PRESCALE)}
    (_, fig), = plots.scenario_figures("s", by_policy)
    assert len(fig.legends) == 1
    assert all(ax.get_legend() is None for ax in fig.axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"memory demand", "memory limit", "OOM kill"} <= set(labels)


def test_prescale_columns_are_titled_and_coloured_as_prescale() -> None:
    pols = list(POLICIES)
    (_, fig), = plots.scenario_figures("s", {p: _rec(p, 1) for p in pols})
    top = _grid(fig, len(pols))[0]
    for p, ax in zip(pols, top, strict=True):
        title = ax.get_title()
        assert p in title
        assert ("prescale" in title) == (p in PRESCALE_POLICIES), title
        assert ("baseline" in title) == (p not in PRESCALE_POLICIES), title
    faces = {p: ax.get_facecolor() for p, ax in zip(pols, top, strict=True)}
    colours = {p: ax.title.get_color() for p, ax in zip(pols, top, strict=True)}
    pre = {faces[p] for p in PRESCALE_POLICIES}
    base = {faces[p] for p in pols if p not in PRESCALE_POLICIES}
    assert len(pre) == 1 and len(base) == 1 and pre != base
    assert {colours[p] for p in PRESCALE_POLICIES}.isdisjoint(
        colours[p] for p in pols if p not in PRESCALE_POLICIES)


# -- readable at 100 % -------------------------------------------------------------------------

def _texts(fig: Figure) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _check_readable(fig: Figure) -> Image.Image:
    canvas = FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=plots.DPI)
    img = Image.open(buf)
    w, h = fig.get_size_inches() * plots.DPI
    assert img.size == (round(w), round(h))
    assert img.size[0] <= 1800  # the issue: 2592 px wide was unreadable at 100 %
    renderer = canvas.get_renderer()
    for t in _texts(fig):
        assert t.get_fontsize() * plots.DPI / 72 >= plots.MIN_TEXT_PX, (t.get_text(),
                                                                        t.get_fontsize())
    drawn = fig.get_tightbbox(renderer)  # every artist drawn, in inches
    width, height = fig.get_size_inches()
    assert drawn.x0 >= -0.01 and drawn.y0 >= -0.01, f"something drawn left/below: {drawn}"
    assert drawn.x1 <= width + 0.01 and drawn.y1 <= height + 0.01, f"cut off: {drawn}"
    pieces = [("legend", lg.get_window_extent(renderer)) for lg in fig.legends]
    if fig._suptitle is not None:
        pieces.append(("title", fig._suptitle.get_window_extent(renderer)))
    for ax in fig.axes:
        for what, box in pieces:
            assert not ax.get_tightbbox(renderer).overlaps(box), f"{what} overlaps a panel"
    if len(pieces) == 2:
        assert not pieces[0][1].overlaps(pieces[1][1]), "legend overlaps the title"
    labels = [t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label)
              if t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            assert not a.overlaps(boxes[j]), (labels[i].get_text(), labels[j].get_text())
    return img


@pytest.mark.parametrize(("n_pols", "n"), [(1, 1), (2, 6), (len(POLICIES), 6)])
def test_scenario_pages_are_readable_at_100_percent(n_pols: int, n: int) -> None:
    pols = list(POLICIES)[-n_pols:]
    names = [f"a-rather-long-container-name-{i}" for i in range(n)]
    figs = plots.scenario_figures("scenario", {p: _rec(p, n, names=names) for p in pols})
    for _, fig in figs:
        _check_readable(fig)


def test_a_note_longer_than_the_page_is_wrapped_inside_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots, "ROWS_PER_PAGE", 1)
    names = [f"container-with-a-long-name-{i}" for i in range(4)]
    figs = plots.scenario_figures("s", {PRESCALE: _rec(PRESCALE, 4, names=names)})
    assert "\n" in figs[0][1].get_suptitle()
    _check_readable(figs[0][1])


# -- the summary -------------------------------------------------------------------------------

def _result(pols: list[str], n_scenarios: int) -> dict:
    rng = np.random.default_rng(3)
    scen = [{"name": f"scen{k}", "policies": {
        p: {"failures": int(rng.integers(0, 3)) * int(rng.integers(0, 40)),
            "slack_memory": float(rng.uniform(0, 1))} for p in pols}}
            for k in range(n_scenarios)]
    return {"scenarios": [*scen, {"name": "gone", "skipped": "no trace"}], "policies": pols}


@pytest.mark.parametrize("n_scenarios", [1, 4, 12])
def test_summary_bars_have_units_one_legend_and_prescale_marked(n_scenarios: int) -> None:
    pols = list(POLICIES)
    res = _result(pols, n_scenarios)
    fig = plots.summary_figure(res)
    assert fig is not None
    a1, a2 = fig.axes
    for ax in (a1, a2):
        assert re.search(r"\((count|%)[^)]*\)", ax.get_ylabel()), ax.get_ylabel()
        assert ax.get_legend() is None
    assert "count" in a1.get_ylabel() and "%" in a2.get_ylabel()
    ok = [e for e in res["scenarios"] if "skipped" not in e]
    assert [t.get_text() for t in a2.get_xticklabels()] == [e["name"] for e in ok]
    assert len(fig.legends) == 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [plots.policy_label(p) for p in pols]
    for p, fails, slack in zip(pols, a1.containers, a2.containers, strict=True):
        assert [b.get_height() for b in fails] == [e["policies"][p]["failures"] for e in ok]
        assert np.allclose([b.get_height() for b in slack],
                           [100 * e["policies"][p]["slack_memory"] for e in ok])
        hatched = {b.get_hatch() for b in fails}
        assert (hatched != {None}) == (p in PRESCALE_POLICIES), (p, hatched)
    zeros = sum(e["policies"][p]["failures"] == 0 for e in ok for p in pols)
    assert sum(t.get_text() == "0" for t in a1.texts) == zeros
    _check_readable(fig)


def test_no_summary_when_every_scenario_was_skipped() -> None:
    assert plots.summary_figure({"scenarios": [{"name": "x", "skipped": "why"}],
                                 "policies": ["static"]}) is None


# -- the report: every page written and linked -------------------------------------------------

def test_write_report_writes_and_links_every_page(tmp_path) -> None:
    n = plots.ROWS_PER_PAGE + 2
    pols = [BASELINE, PRESCALE]
    recs = {p: _rec(p, n) for p in pols}
    entry = {"name": "s", "description": "d", "source": "synthetic", "containers": n,
             "steps": 40, "step_s": 60.0, "horizon_s": 600.0, "ground_truth": "",
             "pool": None, "trace_info": {}, "prescale_settings": {},
             "policies": {p: {"failures": 1, "slack_memory": 0.5} for p in pols}}
    res = {"scenarios": [entry], "policies": pols, "wall_s": 0.1, "_records": {"s": recs}}
    files = report.write_report(res, tmp_path)
    pngs = [f.name for f in files if f.suffix == ".png"]
    assert pngs == ["summary.png", "s.png", "s-p2.png"]
    md = (tmp_path / "report.md").read_text()
    assert all(f"]({name})" in md for name in pngs)
    assert all(Image.open(tmp_path / name).size[0] <= plots.MAX_WIDTH_PX for name in pngs)


@pytest.mark.parametrize("most", [4, plots.LINEAR_FAILURES_MAX + 93])
def test_the_failures_axis_reads_in_plain_counts(most: int) -> None:
    pols = [BASELINE, PRESCALE]
    res = {"scenarios": [{"name": "s", "policies": {
        BASELINE: {"failures": most, "slack_memory": 0.5},
        PRESCALE: {"failures": 1, "slack_memory": 0.4}}}], "policies": pols}
    fig = plots.summary_figure(res)
    assert fig is not None
    _drawn(fig)
    a1 = fig.axes[0]
    lo, hi = a1.get_ylim()
    ticks = [(v, t.get_text()) for v, t in zip(a1.get_yticks(), a1.get_yticklabels(),
                                                strict=True) if lo <= v <= hi]
    assert len(ticks) >= 3
    assert all(float(text) == v for v, text in ticks), ticks  # "20", not "$10^{1}$"
    assert hi >= most and ("log" in a1.get_ylabel()) == (most > plots.LINEAR_FAILURES_MAX)


# -- each scenario drawn in the tier where it fails -------------------------------------------

def _lines(ax) -> list[np.ndarray]:
    """The y data of the panel's solid lines (demand, limit), markers left out."""
    return [np.asarray(ln.get_ydata(), dtype=float) for ln in ax.get_lines()
            if ln.get_linestyle() == "-"]


def _markers(ax, marker: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for ln in ax.get_lines():
        if ln.get_marker() == marker and ln.get_linestyle() == "None":
            xs += list(ln.get_xdata())
            ys += list(ln.get_ydata())
    return np.array(xs, dtype=float), np.array(ys, dtype=float)


def _legend_labels(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


@pytest.mark.parametrize(("name", "tiers"), [
    ("leak", ("memory",)), ("plateau", ("memory",)), ("diurnal", ("memory",)),
    ("burst", ("memory",)), ("creep", ("memory",)), ("tenants", ("memory",)),
    ("idle", ("memory",)), ("cpu_saturation", ("cpu",)), ("disk_fill", ("disk",)),
    ("net_saturation", ("network",))])
def test_each_scenario_names_the_tier_it_fails_in(name: str, tiers: tuple[str, ...]) -> None:
    assert scenarios.SYNTHETIC[name]().failure_tiers == tiers


def _short_run(name: str, fraction: float, policy: str = "static") -> RunRecord:
    return runner.run(scenarios.scaled(scenarios.SYNTHETIC[name](), fraction), policy)


def test_a_cpu_saturation_run_is_drawn_as_cpu_demand_against_the_quota() -> None:
    rec = _short_run("cpu_saturation", 0.25)
    assert rec.timeout.any()
    (_, fig), = plots.scenario_figures("cpu_saturation", {"static": rec})
    grid = _grid(fig, 1)
    assert len(grid) == len(rec.names)
    head = fig.get_suptitle().split("\n")[0]
    assert "CPU demand vs quota" in head and "memory" not in head
    labels = _legend_labels(fig)
    assert {"CPU demand", "CPU quota", "timeout (latency above target)"} <= set(labels)
    assert not any(lbl.startswith("memory") for lbl in labels)
    for i, (ax,) in enumerate(grid):
        assert ax.get_ylabel() == f"{rec.names[i]}\nCPU cores"
        demand, quota = _lines(ax)
        assert np.allclose(demand, rec.cpu_demand_cores[i] * rec.replicas_ready[i],
                           equal_nan=True)
        assert np.allclose(quota, rec.cpu_quota_cores[i] * rec.replicas[i])
        assert np.nanmax(demand) > 1.0  # the ramp, not a flat memory line in MiB
        _, at = _markers(ax, "x")  # the timeouts, on the quota they broke
        assert len(at) == rec.timeout[i].sum()
        assert np.allclose(at, quota[rec.timeout[i]])
        assert not _markers(ax, "|")[0].size  # no failure of another tier here


def test_a_memory_scenario_run_still_draws_memory() -> None:
    rec = _short_run("leak", 0.25)
    assert rec.oom_kill.any()
    (_, fig), = plots.scenario_figures("leak", {"static": rec})
    assert fig.get_suptitle().startswith("leak: memory demand vs limit (totals over replicas)")
    assert {"memory demand", "memory limit", "OOM kill",
            "timeout or disk full (that tier is not drawn)"} <= set(_legend_labels(fig))
    for i, (ax,) in enumerate(_grid(fig, 1)):
        assert ax.get_ylabel() == f"{rec.names[i]}\nMiB"
        demand, limit = _lines(ax)
        assert np.allclose(demand * MIB, rec.memory_demand_bytes[i], equal_nan=True)
        assert np.allclose(limit * MIB, rec.memory_limit_bytes[i])
        assert len(_markers(ax, "x")[0]) == rec.oom_kill[i].sum()


def test_a_disk_fill_run_is_drawn_as_the_disk_against_the_volume() -> None:
    s = scenarios.scaled(scenarios.disk_fill(), 0.5)
    rec = runner.run(s, "static")
    assert rec.disk_demand_bytes is not None and rec.disk_capacity_bytes is not None
    assert np.allclose(rec.disk_demand_bytes, s.disk_bytes)  # the world records the series
    assert np.allclose(rec.disk_capacity_bytes, s.disk_capacity_bytes[:, None])
    assert rec.disk_full.any()
    (_, fig), = plots.scenario_figures("disk_fill", {"static": rec})
    assert "disk demand vs volume capacity" in fig.get_suptitle()
    assert {"disk capacity", "disk full", "volume grown"} <= set(_legend_labels(fig))
    for i, (ax,) in enumerate(_grid(fig, 1)):
        assert ax.get_ylabel() == f"{rec.names[i]}\ndisk GiB"
        demand, cap = _lines(ax)
        assert np.allclose(demand * plots.GIB, rec.disk_demand_bytes[i])
        assert np.allclose(cap * plots.GIB, rec.disk_capacity_bytes[i])
        _, at = _markers(ax, "x")
        assert len(at) == rec.disk_full[i].sum() and np.allclose(at, 10.0)


def test_a_net_saturation_run_is_drawn_as_the_receive_rate_against_its_limit() -> None:
    s = scenarios.scaled(scenarios.net_saturation(), 0.25)
    rec = runner.run(s, "static")
    assert rec.net_demand_bytes_per_s is not None and rec.net_limit_bytes_per_s is not None
    assert np.allclose(rec.net_demand_bytes_per_s, s.net_demand_bytes_per_s)
    assert rec.timeout.any()
    (_, fig), = plots.scenario_figures("net_saturation", {"static": rec})
    assert "receive rate vs receive limit" in fig.get_suptitle()
    assert {"receive limit", "timeout (traffic above the limit)",
            "OOM kill, CPU timeout or disk full (that tier is not drawn)"
            } <= set(_legend_labels(fig))
    for i, (ax,) in enumerate(_grid(fig, 1)):
        assert ax.get_ylabel() == f"{rec.names[i]}\nreceive MiB/s"
        demand, limit = _lines(ax)
        assert np.allclose(demand * MIB, rec.net_demand_bytes_per_s[i])
        assert np.allclose(limit, 10.0)
        assert len(_markers(ax, "x")[0]) == rec.timeout[i].sum()


def _cpu_rec(policy: str, n: int, tiers: tuple[str, ...] = ("cpu",)) -> RunRecord:
    """``_rec`` whose CPU ramps 0.3 → 2.5 cores over a 1-core quota on 2 replicas (one
    ready) with a timeout, a CPU action, an OOM kill and a disk-full step."""
    rec = _rec(policy, n)
    t = rec.memory_limit_bytes.shape[1]
    rec.failure_tiers = tiers
    rec.cpu_demand_cores = np.tile(np.linspace(0.3, 2.5, t), (n, 1))
    rec.replicas = np.full((n, t), 2)
    rec.replicas_ready = np.ones((n, t), dtype=int)
    rec.disk_full[0, 7] = True
    rec.actions.append(AppliedAction(step=9, ts_s=540.0, container=0, tier="cpu", old=1.0,
                                     new=1.5, preemptive=True))
    rec.cpu_quota_cores[0, 10:] = 1.5
    return rec


def test_only_the_drawn_tiers_actions_and_failures_are_marked_on_it() -> None:
    rec = _cpu_rec(BASELINE, 1)
    (_, fig), = plots.scenario_figures("s", {BASELINE: rec})
    ax, = fig.axes
    x = np.arange(rec.memory_limit_bytes.shape[1]) * rec.step_s / 3600
    ups_x, ups_y = _markers(ax, "^")  # the CPU action, not the memory one at step 5
    assert np.allclose(ups_x, x[[9]]) and np.allclose(ups_y, [1.5 * 2])  # 2 replicas
    other, _ = _markers(ax, "|")  # the disk full and the OOM kill: tiers not drawn
    assert np.allclose(sorted(other), x[[7, 20]]), other
    kills, at = _markers(ax, "x")  # the timeout (step 13), not the OOM kill
    assert np.allclose(kills, x[[13]]) and np.allclose(at, [1.5 * 2])


def test_two_tiers_are_two_rows_per_container_and_stay_readable() -> None:
    n = 4
    pols = [BASELINE, PRESCALE]
    figs = plots.scenario_figures("s", {p: _cpu_rec(p, n, ("cpu", "memory")) for p in pols})
    assert len(figs) == 2  # 3 containers to a page: 6 rows
    first = _grid(figs[0][1], 2)
    assert [row[0].get_ylabel().split("\n")[1] for row in first] == ["MiB", "CPU cores"] * 3
    head = figs[0][1].get_suptitle()
    assert "memory demand vs limit" in head and "CPU demand vs quota" in head
    for _, fig in figs:
        _check_readable(fig)


def test_the_tier_pages_are_readable_at_100_percent() -> None:
    pols = list(POLICIES)
    recs = {p: _cpu_rec(p, 6) for p in pols}
    for r in recs.values():
        r.names = [f"a-rather-long-container-name-{i}" for i in range(6)]
    (_, fig), = plots.scenario_figures("scenario", recs)
    _check_readable(fig)


@pytest.mark.parametrize(("change", "error"), [
    ({"failure_tiers": ("memory", "gpu")}, "failure_tiers"),
    ({"failure_tiers": ()}, "failure_tiers"),
    ({"failure_tiers": ("disk",)}, "no disk_demand_bytes, disk_capacity_bytes"),
    ({"failure_tiers": ("network",)}, "no net_demand_bytes_per_s")])
def test_a_tier_that_cannot_be_drawn_is_an_error_naming_it(change: dict, error: str) -> None:
    rec = _rec(BASELINE, 1)
    for k, v in change.items():
        setattr(rec, k, v)
    with pytest.raises(ValueError, match=error):
        plots.scenario_figures("s", {BASELINE: rec})
