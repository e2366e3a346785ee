"""Atomic writes leave complete files with ordinary permissions, and nothing on failure."""

import os
import stat

import pytest

from esva.io import atomic_dir, atomic_path, atomic_write


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_and_dirs_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.txt") as handle:
            handle.write("x")
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"y")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("z")
    finally:
        os.umask(umask)
    assert _mode(tmp_path / "a.txt") == 0o644 and _mode(tmp_path / "b.bin") == 0o644
    assert _mode(tmp_path / "d") == 0o755


def test_a_failed_write_leaves_nothing(tmp_path):
    (tmp_path / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "keep.txt") as handle:
        handle.write("half")
        raise RuntimeError("disk full")
    assert (tmp_path / "keep.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
