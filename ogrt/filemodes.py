"""Records are private: the modes of what the daemon creates, and a start-up check of what exists.

Records hold command lines and environment values. Whatever the umask it was started
with, the daemon creates its directories 0750 and its files 0640 or stricter:
`restrict_umask()` adds 027 to the process umask (SQLite creates its -wal/-shm and the
spool its cursor through the umask), and the outputs also pass FILE_MODE to os.open and
create directories with `make_dirs()`. Existing paths are never changed:
`report_wide_modes()` logs one warning per directory wider than 0750 or file wider than
0640 under the state directory and at the outputs' files.
"""
from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "restrict_umask", "make_dirs", "wide_modes", "report_wide_modes"]

log = logging.getLogger("ogrt.filemodes")

DIR_MODE = 0o750
FILE_MODE = 0o640
_UMASK = 0o027  # the bits no created file or directory gets (umask(2))


def restrict_umask() -> int:
    """Add 027 to the process umask (keeping stricter bits); return the new umask."""
    old = os.umask(_UMASK)
    new = old | _UMASK
    os.umask(new)
    return new


def make_dirs(path: str | os.PathLike[str]) -> None:
    """mkdir -p with DIR_MODE for every directory it creates (os.makedirs gives the
    intermediate ones the umask's mode); existing ones are left as they are."""
    p = Path(path)
    if p.is_dir():
        return
    if p.parent != p:
        make_dirs(p.parent)
    try:
        os.mkdir(p, DIR_MODE)
    except FileExistsError:
        if not p.is_dir():
            raise


def wide_modes(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[str, int]]:
    """(path, mode) of each existing directory wider than DIR_MODE or file (regular, not a
    symbolic link followed) wider than FILE_MODE among `paths`."""
    for path in paths:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        mode = stat.S_IMODE(st.st_mode)
        allowed = DIR_MODE if stat.S_ISDIR(st.st_mode) else FILE_MODE
        if stat.S_ISLNK(st.st_mode):
            continue
        if mode & ~allowed & 0o777:
            yield os.fspath(path), mode


def _under(root: Path) -> Iterator[str]:
    """root and every path below it (os.walk, symbolic links not followed)."""
    yield os.fspath(root)
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            yield os.path.join(top, name)


def _beside(path: str) -> Iterator[str]:
    """An output file, its -wal/-shm/.lock companions and its rotations (PATH.*)."""
    yield path
    d, base = os.path.split(os.path.abspath(path))
    try:
        names = os.listdir(d)
    except OSError:
        return
    for name in names:
        if name.startswith(base) and name != base and name[len(base)] in ".-":
            yield os.path.join(d, name)


def report_wide_modes(state_dir: str | os.PathLike[str], files: Iterable[str]) -> int:
    """Warn once per existing path the daemon uses whose mode is wider than it would
    create (the state directory and everything in it, the outputs' files); change nothing.
    The number of warnings."""
    seen: set[str] = set()
    paths = [*_under(Path(state_dir)), *(p for f in files for p in _beside(f))]
    n = 0
    for path, mode in wide_modes(p for p in paths if not (p in seen or seen.add(p))):
        kind = "directory" if os.path.isdir(path) else "file"
        want = DIR_MODE if kind == "directory" else FILE_MODE
        log.warning("%s %s has mode %04o, readable or writable beyond %04o: records are "
                    "private (command lines, environment); left as it is, tighten it with "
                    "chmod", kind, path, mode, want)
        n += 1
    return n
