"""The hot-reload cache of current models from a registry.

:class:`ModelCache` is the hot-reload helper for the coordinator and the Serve
deployment: ``refresh(registry)`` every tick costs one small read while nothing
changed, reloads only the (app, tier) whose current version changed, and keeps
serving the previous model when a new one is corrupt.
"""

from __future__ import annotations

from prescale.app.models.base import FailureModel
from prescale.app.store.registry import ModelRegistry
from prescale.app.store.registry_index import GLOBAL_APP, CorruptModelError, ModelVersion


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
