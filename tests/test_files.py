"""Atomic writes: whole files, the umask honoured by the kernel, and the umask never touched."""

import os
import stat

import pytest

from torch_ising._files import atomic_write, create_new


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_honours_the_umask_without_reading_it(tmp_path, monkeypatch, umask):
    old = os.umask(umask)
    try:

        def forbidden(*_):  # another thread could create a file while the umask were 0
            raise AssertionError("os.umask called during a write")

        monkeypatch.setattr(os, "umask", forbidden)
        path = atomic_write(tmp_path / "sub" / "a.bin", lambda fh: fh.write(b"abc"))
        fd = create_new(tmp_path / "lock")
        os.close(fd)
        monkeypatch.undo()
    finally:
        os.umask(old)
    assert path.read_bytes() == b"abc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "lock").stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "r.npz"
    target.write_bytes(b"old")

    def half(fh):
        fh.write(b"new but ")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.npz"]
    with pytest.raises(FileExistsError):
        create_new(target)
