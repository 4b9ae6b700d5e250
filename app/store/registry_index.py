"""The model registry's index, pure: its entries and their checks, version ids, app
directory names, and what promote and rollback do to the entries. No I/O:
:mod:`app.store.registry` reads and writes the index (under its lock) and the model files.

- ``app`` is any non-empty ``str``; ``"_global"`` is the fallback model used for apps
  without their own (:meth:`app.store.registry.ModelRegistry.resolve`). Its directory
  name is percent-encoded (:func:`app_dir_name`), so no app name can leave the root:
  ``"web"`` → ``web``, ``"a/b"`` → ``a%2Fb``, ``".."`` → ``%2E.``, ``"_global"`` →
  ``_global``. ``tier`` is one of :data:`app.learning.labels.LABEL_TIERS`.
- ``version_id`` is ``"v"`` + at least 4 digits (``"v0007"``), one counter per
  (app, tier): the next id is the largest registered number + 1 (versions are never
  deleted, so ids are unique and increasing even across processes).
- ``index.json`` is ``{"format": 1, "revision": R, "versions": [...]}`` (keys sorted,
  so the revision is in its first bytes). ``R`` increases by exactly 1 on every
  change (register, promote, rollback); a call that changes nothing (promoting the
  current version) leaves it. Worked example: a fresh registry has revision 0;
  ``register`` → 1; ``register(promote=True)`` → 2; ``promote`` of another → 3;
  ``rollback`` → 4.

Status of a version: ``candidate`` (registered, never served), ``current`` (at most
one per (app, tier); the one served) or ``retired`` (was current). Promote makes a
version current and retires the previous current. Rollback retires the current and
makes current again the version that was retired most recently *by a promotion*
(versions retired by a rollback are skipped, so repeated rollbacks walk back through
the promotion history). Worked example: promote v1, v2, v3 in turn (v1 and v2
retired) → rollback: v3 retired, v2 current → rollback: v2 retired, v1 current →
rollback: ``ValueError`` (nothing left to roll back to), nothing changes.

JSON has no ``nan``/``inf``: in ``metrics`` and ``training`` they are stored (and
returned) as ``None``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from prescale.app.learning.labels import LABEL_TIERS
from prescale.app.models.base import FailureModel
from prescale.app.store.jsonfile import dumps

GLOBAL_APP = "_global"
INDEX_FORMAT = 1
MODELS_DIR = "models"
MODEL_SUFFIX = ".model"
STATUSES = ("candidate", "current", "retired")
MAX_DIR_NAME_BYTES = 255
#: Keys ``training`` must have (``params`` and ``seed`` default to the model's).
TRAINING_KEYS = ("since_s", "until_s", "rows", "positives", "data_hash")
_VERSION_RE = re.compile(r"^v(\d{4,})$")


class CorruptModelError(Exception):
    """A model file or the index is unreadable or does not match the index."""


@dataclass(frozen=True)
class ModelVersion:
    version_id: str  # "v0007": increasing per (app, tier)
    app: str  # an app name, or "_global" for the fallback model
    tier: str  # one of LABEL_TIERS
    kind: str  # FailureModel.kind
    created_s: float
    sha256: str  # of the model file's bytes
    path: str  # relative to the registry root, "/"-separated
    features: list[str]  # feature names the model expects (input order)
    metrics: dict  # e.g. pr_auc, recall_at_fpr, brier, base_rate, lead_time_median_s
    training: dict  # since_s, until_s, rows, positives, data_hash, params, seed
    status: str  # "candidate" | "current" | "retired"
    size_bytes: int = 0  # of the model file
    promoted_s: float | None = None  # last time it became current
    retired_s: float | None = None  # last time it stopped being current
    seq: int = 0  # the index revision that registered it (global registration order)
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __hash__(self) -> int:
        return hash((self.app, self.tier, self.version_id, self.sha256, self.status))

    @property
    def key(self) -> tuple[str, str]:
        return (self.app, self.tier)


def check_tier(tier: Any) -> str:
    if not isinstance(tier, str) or tier not in LABEL_TIERS:
        raise ValueError(f"tier must be one of {list(LABEL_TIERS)}, got {tier!r}")
    return tier


def check_app(app: Any, *, lookup: bool = False) -> str:
    """``app`` if it can name a model. A lookup accepts any ``str``: an app that cannot
    have a model (``""``, a container without an app; a name too long to store) has
    none of its own, so ``resolve`` gives the global one."""
    if not isinstance(app, str):
        raise ValueError(f"app must be a str, got {type(app).__name__} {app!r}")
    if lookup:
        return app
    if app == "":
        raise ValueError(f"app must not be empty (use {GLOBAL_APP!r} for the fallback model)")
    app_dir_name(app)  # encodable and not too long
    return app


def check_version_id(version_id: Any) -> str:
    if not isinstance(version_id, str) or not _VERSION_RE.match(version_id):
        raise ValueError(f"version id must look like 'v0007', got {version_id!r}")
    return version_id


def app_dir_name(app: str) -> str:
    """The directory of ``app`` under ``models/``; ``ValueError`` naming it if impossible.

    ``"web"`` → ``web``; ``"a/b"`` → ``a%2Fb``; ``".."`` → ``%2E.``; ``"_global"`` →
    ``_global``; ``"50%"`` → ``50%25`` (so the encoding is one-to-one).
    """
    try:
        value = quote(app, safe="")
    except UnicodeEncodeError as exc:
        raise ValueError(f"app {app!r}: cannot be encoded as UTF-8 ({exc.reason})") from None
    if value.startswith("."):
        value = "%2E" + value[1:]
    if len(value.encode()) > MAX_DIR_NAME_BYTES:
        raise ValueError(
            f"app {app!r}: too long, its directory name would be {len(value.encode())} "
            f"bytes (at most {MAX_DIR_NAME_BYTES})"
        )
    return value


def model_rel_path(app: str, tier: str, version_id: str) -> str:
    """``("a/b", "memory", "v0003")`` → ``"models/a%2Fb/memory/v0003.model"``."""
    return f"{MODELS_DIR}/{app_dir_name(app)}/{tier}/{version_id}{MODEL_SUFFIX}"


def version_number(version_id: str) -> int:
    """``"v0007"`` → 7; ``"v12345"`` → 12345."""
    return int(check_version_id(version_id)[1:])


def next_version_id(entries: Sequence[Mapping[str, Any]], app: str, tier: str) -> str:
    """One more than the largest id of (app, tier): none → ``"v0001"``; v0001, v0009 →
    ``"v0010"``; v9999 → ``"v10000"``."""
    nums = [
        version_number(e["version_id"]) for e in entries if (e["app"], e["tier"]) == (app, tier)
    ]
    return f"v{max(nums, default=0) + 1:04d}"


def _json_copy(what: str, obj: Any) -> Any:
    """``obj`` as it will read back from the index (nan/inf → None); ValueError if not JSON."""
    try:
        return json.loads(dumps(obj))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON-serialisable: {exc}") from None


def check_metadata(
    model: FailureModel, features: Any, metrics: Any, training: Any
) -> tuple[list[str], dict, dict]:
    """Validated copies of ``features``, ``metrics`` and ``training`` (as stored)."""
    if not isinstance(features, (list, tuple)) or not features:
        raise ValueError(f"features must be a non-empty list of names, got {features!r}")
    bad = [f for f in features if not isinstance(f, str) or not f]
    if bad:
        raise ValueError(f"features must be non-empty strings, got {bad[:5]!r}")
    dup = sorted({f for f in features if list(features).count(f) > 1})
    if dup:
        raise ValueError(f"features must be unique, repeated: {dup[:5]}")
    shape = getattr(model, "_shape", None)
    if model.input == "features" and shape and shape[0] != len(features):
        raise ValueError(
            f"features names {len(features)} columns but model {model.name} expects {shape[0]}"
        )
    if not isinstance(metrics, dict) or not all(isinstance(k, str) for k in metrics):
        raise ValueError(f"metrics must be a dict with str keys, got {metrics!r}")
    if not isinstance(training, dict) or not all(isinstance(k, str) for k in training):
        raise ValueError(f"training must be a dict with str keys, got {training!r}")
    missing = [k for k in TRAINING_KEYS if k not in training]
    if missing:
        raise ValueError(f"training is missing {missing} (needs {list(TRAINING_KEYS)})")
    since, until = training["since_s"], training["until_s"]
    for name, v in (("since_s", since), ("until_s", until)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"training[{name!r}] must be a finite number, got {v!r}")
    if since > until:
        raise ValueError(f"training since_s {since} is after until_s {until}")
    rows, pos = training["rows"], training["positives"]
    for name, v in (("rows", rows), ("positives", pos)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"training[{name!r}] must be an int ≥ 0, got {v!r}")
    if pos > rows:
        raise ValueError(f"training positives {pos} > rows {rows}")
    if not isinstance(training["data_hash"], str) or not training["data_hash"]:
        raise ValueError(
            f"training['data_hash'] must be a non-empty str, got {training['data_hash']!r}"
        )
    training = {
        "params": dict(model.params),
        "seed": model.fit_info.get("seed"),
        **training,
    }
    return (
        list(features),
        _json_copy("metrics", metrics),
        _json_copy("training", training),
    )


_ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "version_id": (str,),
    "app": (str,),
    "tier": (str,),
    "kind": (str,),
    "created_s": (int, float),
    "sha256": (str,),
    "size_bytes": (int,),
    "path": (str,),
    "features": (list,),
    "metrics": (dict,),
    "training": (dict,),
    "status": (str,),
    "seq": (int,),
}


def validate_index(doc: Any, where: str) -> tuple[int, list[dict[str, Any]]]:
    """``(revision, entries)`` of an index document; ``CorruptModelError`` naming
    ``where`` and the first problem otherwise."""

    def bad(msg: str) -> CorruptModelError:
        return CorruptModelError(
            f"{where}: corrupt model index ({msg}); not reset, fix or restore it"
        )

    if not isinstance(doc, dict):
        raise bad(f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("format") != INDEX_FORMAT:
        raise bad(f"format {doc.get('format')!r}, this version reads {INDEX_FORMAT}")
    rev, entries = doc.get("revision"), doc.get("versions")
    if isinstance(rev, bool) or not isinstance(rev, int) or rev < 0:
        raise bad(f"revision must be an int ≥ 0, got {rev!r}")
    if not isinstance(entries, list):
        raise bad(f"versions must be a list, got {type(entries).__name__}")
    seen: set[tuple[str, str, str]] = set()
    current: set[tuple[str, str]] = set()
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise bad(f"versions[{i}] is not an object")
        for k, types in _ENTRY_TYPES.items():
            if isinstance(e.get(k), bool) or not isinstance(e.get(k), types):
                raise bad(f"versions[{i}].{k} is {e.get(k)!r}")
        ident = f"versions[{i}] ({e['app']}/{e['tier']} {e['version_id']})"
        if not _VERSION_RE.match(e["version_id"]):
            raise bad(f"{ident}: malformed version id")
        if e["tier"] not in LABEL_TIERS or e["status"] not in STATUSES or not e["app"]:
            raise bad(f"{ident}: bad tier, status or app")
        try:
            expected = model_rel_path(e["app"], e["tier"], e["version_id"])
        except ValueError as exc:
            raise bad(f"{ident}: {exc}") from None
        if e["path"] != expected:
            raise bad(f"{ident}: path {e['path']!r}, expected {expected!r}")
        key = (e["app"], e["tier"], e["version_id"])
        if key in seen:
            raise bad(f"{ident}: registered twice")
        seen.add(key)
        if e["status"] == "current":
            if key[:2] in current:
                raise bad(f"{ident}: a second current version of {e['app']}/{e['tier']}")
            current.add(key[:2])
    return rev, entries


def to_version(e: Mapping[str, Any]) -> ModelVersion:
    return ModelVersion(
        version_id=e["version_id"],
        app=e["app"],
        tier=e["tier"],
        kind=e["kind"],
        created_s=float(e["created_s"]),
        sha256=e["sha256"],
        path=e["path"],
        features=list(e["features"]),
        metrics=dict(e["metrics"]),
        training=dict(e["training"]),
        status=e["status"],
        size_bytes=e["size_bytes"],
        promoted_s=e.get("promoted_s"),
        retired_s=e.get("retired_s"),
        seq=e["seq"],
        extra={k: e[k] for k in ("retired_by", "retired_rev") if k in e},
    )


def find(entries: list[dict[str, Any]], app: str, tier: str, version_id: str) -> int:
    """Index of (app, tier, version_id) in ``entries``; KeyError naming it if absent."""
    for i, e in enumerate(entries):
        if (e["app"], e["tier"], e["version_id"]) == (app, tier, version_id):
            return i
    raise KeyError(f"no model version {version_id} of app {app!r} tier {tier!r}")


def _retire(e: dict[str, Any], *, by: str, rev: int, now_s: float) -> None:
    e.update(status="retired", retired_s=now_s, retired_by=by, retired_rev=rev)


def apply_promote(
    entries: list[dict[str, Any]], app: str, tier: str, version_id: str, rev: int, now_s: float
) -> bool:
    """Make ``version_id`` current in place (the previous current → retired); returns
    whether anything changed (False: it already was current). KeyError if unknown."""
    i = find(entries, app, tier, version_id)
    if entries[i]["status"] == "current":
        return False
    for e in entries:
        if (e["app"], e["tier"]) == (app, tier) and e["status"] == "current":
            _retire(e, by="promote", rev=rev, now_s=now_s)
    entries[i].update(status="current", promoted_s=now_s)
    return True


def rollback_target(entries: Sequence[Mapping[str, Any]], app: str, tier: str) -> int:
    """Index of the version a rollback makes current: of (app, tier)'s versions retired
    by a promotion, the one retired last. ValueError if there is no current or none."""
    mine = [i for i, e in enumerate(entries) if (e["app"], e["tier"]) == (app, tier)]
    if not any(entries[i]["status"] == "current" for i in mine):
        raise ValueError(f"cannot roll back {app!r} tier {tier!r}: it has no current version")
    targets = [
        i
        for i in mine
        if entries[i]["status"] == "retired"
        and entries[i].get("retired_by", "promote") == "promote"
    ]
    if not targets:
        raise ValueError(
            f"cannot roll back {app!r} tier {tier!r}: no version was retired by a promotion"
        )
    return max(targets, key=lambda i: (entries[i].get("retired_rev", 0), entries[i]["seq"]))


def apply_rollback(
    entries: list[dict[str, Any]], app: str, tier: str, rev: int, now_s: float
) -> int:
    """Roll back in place; returns the index of the new current (see :func:`rollback_target`)."""
    t = rollback_target(entries, app, tier)
    for e in entries:
        if (e["app"], e["tier"]) == (app, tier) and e["status"] == "current":
            _retire(e, by="rollback", rev=rev, now_s=now_s)
    entries[t].update(status="current", promoted_s=now_s)
    return t


def current_of(entries: Sequence[Mapping[str, Any]], app: str, tier: str) -> ModelVersion | None:
    """The current version of (app, tier), or None."""
    for e in entries:
        if (e["app"], e["tier"]) == (app, tier) and e["status"] == "current":
            return to_version(e)
    return None
