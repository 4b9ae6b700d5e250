"""Durable thresholds: the :class:`~app.core.thresholds.ThresholdBook` as a JSON file.

One file (by default ``<data_dir>/thresholds.json``) is shared by ``prescale
threshold get|set|list`` and the coordinator's learning. Every write is a
read-modify-write under an exclusive ``flock`` on ``.<name>.lock`` next to it and
lands with :func:`app.store.jsonfile.write_atomic`, so a user's ``set`` and the
coordinator's learning never lose each other's change, and a reader (no lock) sees
the old or the new file, never a partial one. A change that raises ``ValueError``
writes nothing.

The functions for the CLI return plain dicts (JSON-ready).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from prescale.app.core.outcomes import Judgement
from prescale.app.core.sample import Tier
from prescale.app.core.thresholds import Adjustment, ThresholdBook, ThresholdConfig
from prescale.app.store import jsonfile

FILE = "thresholds.json"
T = TypeVar("T")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def load_book(path: Path | str, config: ThresholdConfig | None = None) -> ThresholdBook:
    """The book in ``path`` (empty if the file does not exist). A corrupt or invalid
    file raises ``ValueError`` naming it."""
    p = Path(path)
    data = jsonfile.read(p)
    if data is None:
        return ThresholdBook(config)
    try:
        return ThresholdBook.from_dict(data, config)
    except ValueError as exc:
        raise ValueError(f"{p}: {exc}") from exc


def save_book(path: Path | str, book: ThresholdBook) -> None:
    jsonfile.write_atomic(Path(path), book.to_dict())


def update(path: Path | str, change: Callable[[ThresholdBook], T],
           config: ThresholdConfig | None = None) -> T:
    """Locked read-modify-write: ``change(book)``, then save. If ``change`` raises,
    nothing is written."""
    p = Path(path)
    with _locked(p):
        book = load_book(p, config)
        result = change(book)
        save_book(p, book)
    return result


def learn(path: Path | str, judgements: Iterable[Judgement],
          config: ThresholdConfig | None = None) -> list[Adjustment]:
    """Apply judged outcomes to the stored book (one locked write for all of them); a
    judgement the book learned before is skipped (:meth:`ThresholdBook.learn_new`)."""
    items = list(judgements)
    if not items:
        return []
    return update(path, lambda b: b.learn_new(items), config)


class ThresholdStore:
    """The coordinator's view: :meth:`book` re-reads the file only when it changed."""

    def __init__(self, path: Path | str, config: ThresholdConfig | None = None) -> None:
        self.path = Path(path)
        self.config = config
        self._stamp: tuple[int, int, int] | None = None
        self._book = ThresholdBook(config)
        self._good: ThresholdBook | None = None  # the last book read from the file

    def book(self) -> ThresholdBook:
        """The stored book (re-read when the file changed); a corrupt or invalid file
        raises ValueError naming it (the loop then calls :meth:`discard`)."""
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._book = load_book(self.path, self.config)
            self._stamp = stamp
            if stamp is not None:
                self._good = self._book
        return self._book

    def discard(self, why: str) -> str:
        """Set the unreadable file aside; write back the last good book this store read
        (the learned and set thresholds survive), or, with none, go on with the
        configured thresholds. Returns the line to log."""
        with _locked(self.path):
            if self._good is not None:
                line = jsonfile.quarantine(self.path, why, "the last good thresholds were "
                                           "written back")
                save_book(self.path, self._good)
            else:
                line = jsonfile.quarantine(self.path, why, "the configured thresholds apply "
                                           "(the learned and set ones are in the file set "
                                           "aside)")
        self._stamp = None
        return line

    def learn(self, judgements: Iterable[Judgement]) -> list[Adjustment]:
        out = learn(self.path, judgements, self.config)
        self._stamp = None  # re-read on the next book()
        return out


# -- the CLI's functions (prescale threshold get|set|list) --------------------------
def _effective(book: ThresholdBook, app: str | None, owner: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for t in Tier:
        d = book.lookup(t, app, owner).to_dict()
        d.pop("tier")
        if app:
            d["recent"] = book.rates(app, t)
        out[t.value] = d
    return out


def get_thresholds(path: Path | str, app: str | None = None, owner: str | None = None,
                   config: ThresholdConfig | None = None) -> dict[str, Any]:
    """The thresholds in effect for an app (and/or owner; neither: the default), per
    tier: value, bounds, sensitivity, where each came from and, for an app, the recent
    outcome rates."""
    book = load_book(path, config)
    return {"app": app, "owner": owner or (book.app_owner.get(app) if app else None),
            "thresholds": _effective(book, app, owner)}


def set_threshold(path: Path | str, *, app: str | None = None, owner: str | None = None,
                  tier: str, value: float | None = None, min: float | None = None,
                  max: float | None = None, sensitivity: float | None = None,
                  config: ThresholdConfig | None = None) -> dict[str, Any]:
    """Set fields of one scope (``app``, else ``owner``, else the default) and store
    them. ``ValueError`` names a bad input; the file is then left as it was."""
    def change(book: ThresholdBook) -> dict[str, Any]:
        thr = book.set(tier, app=app, owner=owner, value=value, min=min, max=max,
                       sensitivity=sensitivity)
        d = thr.to_dict()
        return {"scope": f"app:{app}" if app else f"owner:{owner}" if owner else "default",
                "tier": d.pop("tier"), "threshold": d}
    return update(path, change, config)


def seed_threshold(path: Path | str, *, tier: str, value: float, app: str | None = None,
                   config: ThresholdConfig | None = None) -> tuple[bool, str]:
    """Start ``app``'s adaptive threshold (``None``: the default) at a promoted model's
    operating threshold (:meth:`ThresholdBook.seed`), durably; ``(seeded, why)``."""
    return update(path, lambda book: book.seed(tier, value, app=app), config)


def list_thresholds(path: Path | str, config: ThresholdConfig | None = None) -> dict[str, Any]:
    """Everything stored: the default in effect, what each scope sets, and for every
    known app the thresholds in effect with its recent outcome rates."""
    book = load_book(path, config)
    apps = sorted({n for (k, n) in book.specs if k == "app"} | {a for a, _ in book.recent}
                  | set(book.app_owner))
    return {
        "default": _effective(book, None, None),
        "set": book.scopes(),
        "app_owner": dict(sorted(book.app_owner.items())),
        "apps": {a: _effective(book, a, None) for a in apps},
    }
