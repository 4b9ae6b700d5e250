"""One tenant resolver (app/core/tenants.py), used by the engine (threshold owner,
judgements) and by contention (DRF): by container, else by app."""

from __future__ import annotations

from prescale.app.core.contention import arbitrate
from prescale.app.core.engine import Engine, EngineConfig
from prescale.app.core.sample import Tier
from prescale.app.core.tenants import tenant_of
from prescale.app.core.thresholds import ThresholdBook
from tests.unit.test_contention import GiB, three_tenants

APP_OF = {"api-1": "api", "api-2": "api", "batch-1": "batch", "web-1": "web", "web-2": "web",
          "cron": "cron", "etl": "etl"}
BY_APP = {"api": "acme", "batch": "acme", "web": "globex", "cron": "initech", "etl": "initech"}


def test_worked_example():
    tenants = {"db-0": "team-b", "web": "team-a", "empty": ""}
    assert tenant_of(tenants, "db-0", "db") == "team-b"
    assert tenant_of(tenants, "web-3", "web") == "team-a"
    assert tenant_of(tenants, "cache-1", "cache") == ""
    assert tenant_of(tenants, "empty", "web") == "team-a"  # an empty entry is none
    assert tenant_of({"web-3": "team-c", "web": "team-a"}, "web-3", "web") == "team-c"


def test_the_engine_resolves_owners_with_it():
    eng = Engine(EngineConfig(tenants={"db-0": "team-b", "web": "team-a"}))
    assert [eng.owner(c, a) for c, a in (("db-0", "db"), ("web-3", "web"), ("x", "y"))] == [
        "team-b", "team-a", ""]
    book = ThresholdBook()
    book.set(Tier.MEMORY, owner="team-a", value=0.3)
    thr = eng.thresholds(book, ["web-3", "db-0"], ["web", "db"])
    assert thr[Tier.MEMORY].tolist() == [0.3, 0.5]


def _arbitrate(tenants, apps=None):
    p, asks, idle, _, weights = three_tenants()
    return arbitrate(asks, p, idle=idle, tenants=tenants, weights=weights, now_s=100.0,
                     apps=apps)


def test_contention_finds_tenants_keyed_by_app_as_keyed_by_container():
    """The three-tenant pool with its tenants keyed by app gives the same verdicts and
    explanations (tenant names and DRF shares) as keyed by container: every container
    of the pool asks or may be reclaimed, so its app is known from the ask or the
    candidate. Before the one resolver, contention looked tenants up by container only
    and saw none of them."""
    by_container = {c: BY_APP[a] for c, a in APP_OF.items()}
    want = _arbitrate(by_container)
    got = _arbitrate(BY_APP)
    assert got.explanations == want.explanations and got.order == want.order
    assert "tenant initech share 0.172" in got.explanations["etl/memory@100000"]
    assert _arbitrate(BY_APP, apps=APP_OF).explanations == want.explanations


def test_contention_uses_the_apps_given_for_containers_that_do_not_ask():
    """A container that neither asks nor may be reclaimed is found by its app only when
    ``apps`` names it; otherwise it counts as unassigned."""
    def run(tenants, apps=None):
        p, asks, idle, _, weights = three_tenants()
        p.observe("web-3", Tier.MEMORY, 2 * GiB)  # globex's, idle-free and not asking
        return arbitrate(asks, p, idle=idle, tenants=tenants, weights=weights, now_s=100.0,
                         apps=apps)

    by_container = {c: BY_APP[a] for c, a in {**APP_OF, "web-3": "web"}.items()}
    want = run(by_container)
    assert run(BY_APP, apps={**APP_OF, "web-3": "web"}).explanations == want.explanations
    assert run(BY_APP).explanations != want.explanations  # web-3 unassigned: globex smaller
