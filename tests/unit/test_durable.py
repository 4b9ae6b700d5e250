"""app.store.durable: the one temp-file + fsync + rename helper (real files, tmp_path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prescale.app.store.durable import (
    atomic_file,
    makedirs_durable,
    remove_durable,
    write_bytes_atomic,
)


def test_write_bytes_atomic_creates_directories_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "pool.json"
    write_bytes_atomic(target, b"old")
    write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["pool.json"]  # no temp left


def test_a_failing_writer_leaves_the_old_content_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "part.parquet"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as fh:
        fh.write(b"half")
        raise RuntimeError("writer died")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["part.parquet"]


def test_a_named_temp_file_is_used_and_renamed(tmp_path: Path) -> None:
    target, tmp = tmp_path / "x.parquet", tmp_path / ".tmp-x.parquet"
    with atomic_file(target, tmp=tmp) as fh:
        fh.write(b"data")
        assert tmp.exists() and not target.exists()
    assert target.read_bytes() == b"data" and not tmp.exists()


def test_makedirs_and_remove(tmp_path: Path) -> None:
    makedirs_durable(tmp_path / "x" / "y")
    makedirs_durable(tmp_path / "x" / "y")  # exists: nothing to do
    assert (tmp_path / "x" / "y").is_dir()
    f = tmp_path / "x" / "f"
    f.write_bytes(b"1")
    remove_durable(f)
    remove_durable(f)  # gone already: no error
    assert not f.exists()
