"""The model registry: versioned failure models on disk, with promote and rollback.

Layout under ``root``::

    <root>/index.json                                 every version (the source of truth)
    <root>/.lock                                      flock for read-modify-write of the index
    <root>/models/<app-escaped>/<tier>/<version>.model  the bytes of FailureModel.to_bytes()

- ``app`` is any non-empty ``str``; ``"_global"`` is the fallback model used for apps
  without their own (:meth:`ModelRegistry.resolve`). Its directory name is
  percent-encoded (:func:`app_dir_name`), so no app name can leave the root:
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

Guarantees:

1. *A model file is complete before the index names it*: written under a hidden
   temporary name, fsynced, renamed, directory fsynced; then the index is rewritten
   atomically (:func:`app.store.jsonfile.write_atomic`). A crash leaves at most an
   unreferenced model file (overwritten by the next registration of that id) or a
   hidden temp file.
2. *Concurrent processes*: every read-modify-write of the index holds an exclusive
   ``flock`` on ``<root>/.lock`` (local filesystems), so concurrent registrations
   get distinct, increasing ids and no update is lost. Readers take no lock: the
   index is replaced atomically, so they see the old or the new one.
3. *Only vouched-for bytes are unpickled*: :meth:`ModelRegistry.load` reads the
   index afresh, checks the file's size and sha256 against it and only then
   unpickles; a missing, truncated or changed file, or bytes that are not a prescale
   model, raise :class:`CorruptModelError` naming the file and what is wrong.
4. *Corruption is never papered over*: an unreadable ``index.json`` raises
   :class:`CorruptModelError` naming it (the registry is not reset).
5. *Bad input changes nothing*: an unknown tier, an empty app, a malformed or
   unknown version id, an unfitted model, metadata that is not JSON → ``ValueError``
   / ``KeyError`` naming it, raised before anything is written.

JSON has no ``nan``/``inf``: in ``metrics`` and ``training`` they are stored (and
returned) as ``None``.

:class:`ModelCache` is the hot-reload helper for the coordinator and the Serve
deployment: ``refresh(registry)`` every tick costs one small read while nothing
changed, reloads only the (app, tier) whose current version changed, and keeps
serving the previous model when a new one is corrupt.
"""

from __future__ import annotations

import builtins
import fcntl
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from prescale.app.learning.labels import LABEL_TIERS
from prescale.app.models import load_model
from prescale.app.models.base import FailureModel
from prescale.app.store.durable import write_bytes_atomic
from prescale.app.store.jsonfile import dumps, write_atomic

GLOBAL_APP = "_global"
INDEX_FORMAT = 1
INDEX_NAME = "index.json"
LOCK_NAME = ".lock"
MODELS_DIR = "models"
MODEL_SUFFIX = ".model"
STATUSES = ("candidate", "current", "retired")
MAX_DIR_NAME_BYTES = 255
#: Keys ``training`` must have (``params`` and ``seed`` default to the model's).
TRAINING_KEYS = ("since_s", "until_s", "rows", "positives", "data_hash")
_VERSION_RE = re.compile(r"^v(\d{4,})$")
_HEAD_RE = re.compile(rb'^\{"format": (\d+), "revision": (\d+),')
_HEAD_BYTES = 128


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


# --- pure helpers ---------------------------------------------------------------------
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


def _find(entries: list[dict[str, Any]], app: str, tier: str, version_id: str) -> int:
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
    i = _find(entries, app, tier, version_id)
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


# --- I/O edge -------------------------------------------------------------------------
class ModelRegistry:
    """Versioned models under ``root`` (see the module doc). ``clock`` stamps promotions
    and retirements (``register`` takes its own)."""

    def __init__(self, root: str | os.PathLike, *, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.clock = clock
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"model registry root {self.root} is not a directory")

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_NAME

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # --- reading ----------------------------------------------------------------------
    def _read(self) -> tuple[int, list[dict[str, Any]]]:
        try:
            raw = self.index_path.read_bytes()
        except FileNotFoundError:
            return 0, []
        except IsADirectoryError:
            raise CorruptModelError(
                f"{self.index_path}: is a directory, not a model index"
            ) from None
        try:
            doc = json.loads(raw)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise CorruptModelError(
                f"{self.index_path}: corrupt model index, not valid JSON ({exc}); "
                "not reset, fix or restore it"
            ) from None
        return validate_index(doc, str(self.index_path))

    def revision(self) -> int:
        """The index revision (0 before the first registration). Reads the first 128
        bytes of the index only (the full index if they do not parse)."""
        try:
            with open(self.index_path, "rb") as fh:
                head = fh.read(_HEAD_BYTES)
        except FileNotFoundError:
            return 0
        except IsADirectoryError:
            raise CorruptModelError(
                f"{self.index_path}: is a directory, not a model index"
            ) from None
        m = _HEAD_RE.match(head)
        if m and int(m.group(1)) == INDEX_FORMAT:
            return int(m.group(2))
        return self._read()[0]

    def snapshot(self) -> tuple[int, builtins.list[ModelVersion]]:
        """``(revision, every version newest first)`` from one read of the index."""
        rev, entries = self._read()
        versions = [to_version(e) for e in entries]
        versions.sort(key=lambda v: v.seq, reverse=True)
        return rev, versions

    def list(
        self, *, app: str | None = None, tier: str | None = None
    ) -> builtins.list[ModelVersion]:
        """Versions (optionally of one app and/or tier), newest registration first."""
        if app is not None:
            check_app(app, lookup=True)
        if tier is not None:
            check_tier(tier)
        return [
            v
            for v in self.snapshot()[1]
            if (app is None or v.app == app) and (tier is None or v.tier == tier)
        ]

    def get(self, app: str, tier: str, version_id: str) -> ModelVersion:
        check_app(app, lookup=True)
        check_tier(tier)
        check_version_id(version_id)
        entries = self._read()[1]
        return to_version(entries[_find(entries, app, tier, version_id)])

    def current(self, app: str, tier: str) -> ModelVersion | None:
        check_app(app, lookup=True)
        check_tier(tier)
        return _current_of(self._read()[1], app, tier)

    def resolve(self, app: str, tier: str) -> ModelVersion | None:
        """The app's current version, else ``"_global"``'s current, else None."""
        check_app(app, lookup=True)
        check_tier(tier)
        entries = self._read()[1]
        return _current_of(entries, app, tier) or _current_of(entries, GLOBAL_APP, tier)

    def load(self, version: ModelVersion) -> FailureModel:
        """The model of ``version``, after checking its file against the index (afresh):
        the entry must exist with the same sha256, and the file the recorded size and
        sha256; only then is it unpickled. ``CorruptModelError`` names the file and what
        is wrong; ``KeyError`` if the index has no such version."""
        if not isinstance(version, ModelVersion):
            raise ValueError(f"load needs a ModelVersion, got {type(version).__name__}")
        entries = self._read()[1]
        e = entries[_find(entries, version.app, version.tier, version.version_id)]
        label = f"{version.app}/{version.tier} {version.version_id}"
        if e["sha256"] != version.sha256:
            raise CorruptModelError(
                f"model {label}: the index records sha256 {e['sha256'][:12]}…, this "
                f"ModelVersion says {version.sha256[:12]}…; refusing to load"
            )
        path = self.root / e["path"]
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise CorruptModelError(f"model file {path} ({label}) is missing") from None
        if len(data) != e["size_bytes"]:
            raise CorruptModelError(
                f"model file {path} ({label}) has {len(data)} bytes, the index records "
                f"{e['size_bytes']} (truncated or replaced); not loaded"
            )
        digest = hashlib.sha256(data).hexdigest()
        if digest != e["sha256"]:
            raise CorruptModelError(
                f"model file {path} ({label}) has sha256 {digest[:12]}…, the index records "
                f"{e['sha256'][:12]}… (its bytes changed); not loaded"
            )
        try:
            model = load_model(data)
        except ValueError as exc:
            raise CorruptModelError(f"model file {path} ({label}): {exc}") from None
        if model.kind != e["kind"]:
            raise CorruptModelError(
                f"model file {path} ({label}) holds a {model.kind!r} model, the index "
                f"records {e['kind']!r}"
            )
        return model

    # --- changing ---------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[tuple[int, builtins.list[dict[str, Any]]]]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._read()
        finally:
            os.close(fd)  # releases the lock

    def _write_index(self, rev: int, entries: builtins.list[dict[str, Any]]) -> None:
        write_atomic(
            self.index_path, {"format": INDEX_FORMAT, "revision": rev, "versions": entries}
        )

    def register(
        self,
        model: FailureModel,
        *,
        app: str,
        tier: str,
        features: Sequence[str],
        metrics: Mapping[str, Any],
        training: Mapping[str, Any],
        promote: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> ModelVersion:
        """Store ``model`` as the next version of (app, tier), as ``candidate`` (or
        ``current`` with ``promote=True``, retiring the previous current).

        ``training`` needs ``since_s ≤ until_s``, ``rows ≥ positives ≥ 0`` and
        ``data_hash``; ``params`` and ``seed`` default to the model's own.
        """
        check_app(app)
        check_tier(tier)
        if not isinstance(model, FailureModel):
            raise ValueError(f"model must be a FailureModel, got {type(model).__name__}")
        if not model.fitted:
            raise ValueError(f"model {model.name} is not fitted: fit it before registering")
        feats, mets, train = check_metadata(model, features, metrics, training)
        data = model.to_bytes()
        digest = hashlib.sha256(data).hexdigest()
        created_s = float(clock())
        if not math.isfinite(created_s):
            raise ValueError(f"clock() returned {created_s!r}, not a finite time")
        with self._locked() as (rev, entries):
            version_id = next_version_id(entries, app, tier)
            rel = model_rel_path(app, tier, version_id)
            rev += 1
            entry: dict[str, Any] = {
                "version_id": version_id,
                "app": app,
                "tier": tier,
                "kind": model.kind,
                "created_s": created_s,
                "sha256": digest,
                "size_bytes": len(data),
                "path": rel,
                "features": feats,
                "metrics": mets,
                "training": train,
                "status": "candidate",
                "seq": rev,
                "promoted_s": None,
                "retired_s": None,
            }
            entries.append(entry)
            if promote:
                apply_promote(entries, app, tier, version_id, rev, created_s)
            path = self.root / rel
            write_bytes_atomic(path, data)
            try:
                self._write_index(rev, entries)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            return to_version(entry)

    def promote(self, app: str, tier: str, version_id: str) -> ModelVersion:
        """Make ``version_id`` current (the previous current → retired). Promoting the
        current version changes nothing. KeyError if unknown."""
        check_app(app)
        check_tier(tier)
        check_version_id(version_id)
        with self._locked() as (rev, entries):
            if apply_promote(entries, app, tier, version_id, rev + 1, float(self.clock())):
                self._write_index(rev + 1, entries)
            return to_version(entries[_find(entries, app, tier, version_id)])

    def rollback(self, app: str, tier: str) -> ModelVersion:
        """Retire the current version and make the one retired last by a promotion
        current again (module doc); ValueError if there is none."""
        check_app(app)
        check_tier(tier)
        with self._locked() as (rev, entries):
            t = apply_rollback(entries, app, tier, rev + 1, float(self.clock()))
            self._write_index(rev + 1, entries)
            return to_version(entries[t])


def _current_of(entries: Sequence[Mapping[str, Any]], app: str, tier: str) -> ModelVersion | None:
    for e in entries:
        if (e["app"], e["tier"]) == (app, tier) and e["status"] == "current":
            return to_version(e)
    return None


class ModelCache:
    """Loaded current models by (app, tier), refreshed from a registry without restart.

    ``refresh(registry)`` (call it every tick): if the registry's revision is the one
    of the last refresh, it does nothing (one 128-byte read). Otherwise it loads the
    current version of every (app, tier) whose version id or hash differs from the
    loaded one, drops (app, tier) that no longer have a current version, and returns
    the error strings of this refresh. A version that fails to load (corrupt file,
    missing torch, unreadable) leaves the previously loaded model of that (app, tier)
    in service; the error is also kept in :attr:`failures` until a later load of that
    (app, tier) succeeds, and is retried at the next revision. A corrupt index leaves
    everything as it was and is reported once (until its message changes).
    """

    def __init__(self) -> None:
        self._revision: int | None = None
        self._loaded: dict[tuple[str, str], tuple[ModelVersion, FailureModel]] = {}
        self.failures: dict[tuple[str, str], str] = {}
        self._index_error: str | None = None

    @property
    def revision(self) -> int | None:
        """The registry revision of the last successful refresh (None before)."""
        return self._revision

    def loaded(self) -> dict[tuple[str, str], ModelVersion]:
        """The version in service for every (app, tier) that has one."""
        return {k: v for k, (v, _) in self._loaded.items()}

    def refresh(self, registry: ModelRegistry) -> list[str]:
        try:
            if registry.revision() == self._revision:
                return []
            rev, versions = registry.snapshot()
        except CorruptModelError as exc:
            msg = str(exc)
            if msg == self._index_error:
                return []
            self._index_error = msg
            return [msg]
        self._index_error = None
        currents = {v.key: v for v in versions if v.status == "current"}
        for key in [k for k in self._loaded if k not in currents]:
            del self._loaded[key]
        for key in [k for k in self.failures if k not in currents]:
            del self.failures[key]
        errors: list[str] = []
        for key in sorted(currents):
            v = currents[key]
            have = self._loaded.get(key)
            if have is not None and (have[0].version_id, have[0].sha256) == (
                v.version_id,
                v.sha256,
            ):
                self._loaded[key] = (v, have[1])  # same bytes; refresh the metadata
                self.failures.pop(key, None)
                continue
            try:
                model = registry.load(v)
            except (CorruptModelError, ImportError, OSError, KeyError) as exc:
                keeping = f"keeping {have[0].version_id}" if have else "no model of its own"
                msg = f"{key[0]}/{key[1]}: cannot load {v.version_id}: {exc} ({keeping})"
                errors.append(msg)
                self.failures[key] = msg
                continue
            self._loaded[key] = (v, model)
            self.failures.pop(key, None)
        self._revision = rev
        return errors

    def get(self, app: str, tier: str) -> tuple[ModelVersion, FailureModel] | None:
        """The (version, model) serving ``app``: its own, else ``"_global"``'s, else None."""
        return self._loaded.get((app, tier)) or self._loaded.get((GLOBAL_APP, tier))
