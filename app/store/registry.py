"""The model registry: versioned failure models on disk, with promote and rollback.

Layout under ``root``::

    <root>/index.json                                 every version (the source of truth)
    <root>/.lock                                      flock for read-modify-write of the index
    <root>/models/<app-escaped>/<tier>/<version>.model  the bytes of FailureModel.to_bytes()

The index's entries, version ids, app directory names and what promote and rollback
do are :mod:`app.store.registry_index`'s; the hot-reload cache of current models is
:class:`app.store.model_cache.ModelCache`.

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
from pathlib import Path
from typing import Any

from prescale.app.models import load_model
from prescale.app.models.base import FailureModel
from prescale.app.store.durable import write_bytes_atomic
from prescale.app.store.jsonfile import write_atomic
from prescale.app.store.registry_index import (
    GLOBAL_APP,
    INDEX_FORMAT,
    CorruptModelError,
    ModelVersion,
    apply_promote,
    apply_rollback,
    check_app,
    check_metadata,
    check_tier,
    check_version_id,
    current_of,
    find,
    model_rel_path,
    next_version_id,
    to_version,
    validate_index,
)

INDEX_NAME = "index.json"
LOCK_NAME = ".lock"
_HEAD_RE = re.compile(rb'^\{"format": (\d+), "revision": (\d+),')
_HEAD_BYTES = 128


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
        return to_version(entries[find(entries, app, tier, version_id)])

    def current(self, app: str, tier: str) -> ModelVersion | None:
        check_app(app, lookup=True)
        check_tier(tier)
        return current_of(self._read()[1], app, tier)

    def resolve(self, app: str, tier: str) -> ModelVersion | None:
        """The app's current version, else ``"_global"``'s current, else None."""
        check_app(app, lookup=True)
        check_tier(tier)
        entries = self._read()[1]
        return current_of(entries, app, tier) or current_of(entries, GLOBAL_APP, tier)

    def load(self, version: ModelVersion) -> FailureModel:
        """The model of ``version``, after checking its file against the index (afresh):
        the entry must exist with the same sha256, and the file the recorded size and
        sha256; only then is it unpickled. ``CorruptModelError`` names the file and what
        is wrong; ``KeyError`` if the index has no such version."""
        if not isinstance(version, ModelVersion):
            raise ValueError(f"load needs a ModelVersion, got {type(version).__name__}")
        entries = self._read()[1]
        e = entries[find(entries, version.app, version.tier, version.version_id)]
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
            return to_version(entries[find(entries, app, tier, version_id)])

    def rollback(self, app: str, tier: str) -> ModelVersion:
        """Retire the current version and make the one retired last by a promotion
        current again (module doc); ValueError if there is none."""
        check_app(app)
        check_tier(tier)
        with self._locked() as (rev, entries):
            t = apply_rollback(entries, app, tier, rev + 1, float(self.clock()))
            self._write_index(rev + 1, entries)
            return to_version(entries[t])
