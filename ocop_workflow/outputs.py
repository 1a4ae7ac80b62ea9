"""Files written with ``-o``: all or nothing, and a missing folder is a usage error.

An export that fails half-way (a full disk, a bad row, an interrupt) must not leave a truncated
file that looks like a finished one: the data goes to a temporary file in the same folder, which
is renamed over the target only once it is complete (a rename within one folder is atomic).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UsageError


def check_output(path: Path) -> Path:
    """Refuse, before any work is done, an output whose folder is missing or is not a folder,
    or that names an existing folder."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise UsageError(f"-o {path}: folder {folder} does not exist")
    if not folder.is_dir():
        raise UsageError(f"-o {path}: {folder} is not a folder")
    if path.is_dir():
        raise UsageError(f"-o {path}: is a folder, not a file")
    return path


def rename_target(path: Path) -> tuple[Path, bool]:
    """Where an all-or-nothing write of ``path`` goes, and whether it must be written directly.

    Through a symlink the file it points to is written, as a plain ``open`` would: the link is
    never replaced by the rename. A device or a pipe (``-o /dev/stdout``, a FIFO a script reads)
    has nothing to rename over, and replacing it would destroy it (as root, ``-o /dev/full``
    turned the device into a file): the data is written straight into it (``direct``)."""
    target = path.resolve() if path.is_symlink() else path
    return target, target.exists() and not target.is_file()


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` on success, removed on
    any failure. The file gets the permissions a plain ``open`` would give it (umask)."""
    check_output(path)
    target, direct = rename_target(path)
    if direct:
        try:
            yield target
        except OSError as exc:
            raise UsageError(f"-o {path}: cannot write: {exc.strerror or exc}") from None
        return
    path = target
    try:
        fd, tmp_name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=f".part{path.suffix}"
        )
    except OSError as exc:
        raise UsageError(f"-o {path}: cannot write there: {exc.strerror}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a folder made read-only meanwhile
        tmp.unlink(missing_ok=True)
        raise UsageError(f"-o {path}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """``text`` to ``path``, all or nothing."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
