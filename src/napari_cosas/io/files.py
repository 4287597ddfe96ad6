"""Writing files so that nothing is half-written, silently replaced or unreadable to others.

Every file the project writes goes through :func:`atomic_write`: the data go to a temporary
file ``.<name>.<random>.tmp`` in the target's folder, are flushed to disk, and the file is then
renamed onto the target (``overwrite=True``) or hard-linked to it, which fails if the target
exists (``overwrite=False``). A reader therefore sees either the old file, or the whole new one,
never a part; a process killed midway leaves at most a temporary file, which
:func:`is_temporary` recognises so that no reader takes it for data. The temporary file is
created with mode ``0o666`` so the user's umask decides who may read the result (``mkstemp``
would make every output ``0o600``).
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"

Writer = Callable[[BinaryIO], None]


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a temporary file of :func:`atomic_write` (or any hidden file)."""
    name = Path(path).name
    return name.startswith(".") or name.endswith(TEMP_SUFFIX)


def _open_temporary(folder: Path, name: str) -> tuple[int, Path]:
    """A new file ``folder/.<name>.<random>.tmp`` opened for writing, mode ``0o666 & ~umask``."""
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not create a temporary file", str(folder))


def atomic_write(path: str | os.PathLike, data: bytes | Writer, *, overwrite: bool = True) -> Path:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``path`` atomically.

    ``overwrite=False`` raises ``FileExistsError`` rather than replace an existing ``path``,
    checked atomically (a concurrent writer of the same path loses, it does not overwrite).
    The parent folder is created if needed. On any failure no temporary file is left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_temporary(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, (bytes, bytearray, memoryview)):
                fh.write(data)
            else:
                data(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _link_new(tmp: Path, path: Path) -> None:
    """Give ``tmp``'s content the name ``path``, failing with ``FileExistsError`` if it exists."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "refusing to replace an existing file", str(path)) from None
    except OSError as exc:  # a file system without hard links (FAT, some network shares)
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS):
            raise
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as out, tmp.open("rb") as src:
            while chunk := src.read(1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())


def claim(path: str | os.PathLike) -> bool:
    """Create ``path`` as an empty file if no file has that name; whether this call created it.

    The test and the creation are one step (``O_EXCL``), so of several processes claiming the
    same name at once exactly one gets it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def make_temporary_dir(parent: str | os.PathLike, name: str) -> Path:
    """A new empty folder ``parent/.<name>.<random>.tmp`` (mode ``0o777 & ~umask``)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = parent / f".{name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
        try:
            tmp.mkdir(mode=0o777)
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not create a temporary folder", str(parent))
