"""Replace a whole directory at once, so readers see the old one or the new one, never half.

An index is a directory of several files that must agree with each other. Writing them in
place would leave a mix of old and new files if the writer dies halfway, so every write goes to
a fresh sibling directory that is swapped into place only once it is complete and on disk.

On Linux the swap is one ``renameat2(RENAME_EXCHANGE)`` call: at every instant ``path`` names
either the complete old directory or the complete new one. Where that call is unavailable
(another OS, an old C library, a filesystem that refuses it) the fallback renames the old
directory aside and the new one into place; between those two renames ``path`` is briefly
missing, and a writer killed in that gap leaves the old directory at ``<path>.old-<pid>-<hex>``,
which :func:`clean_stale_temporaries` puts back on the next write.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from kosearch.errors import ConfigError

__all__ = ["atomic_directory", "atomic_write_lines", "clean_stale_temporaries", "fsync_tree"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@contextmanager
def atomic_directory(path: str | os.PathLike[str], *, marker: str | None = None) -> Iterator[Path]:
    """Build a directory's new content aside, then put it in place of ``path`` in one step.

    The block receives a fresh, empty temporary sibling directory
    (``<path>.tmp-<pid>-<hex>``). When the block ends normally, the temporary directory is
    flushed to disk and atomically exchanged with ``path`` (or renamed to it when ``path`` does
    not exist yet), and the old content is deleted. When the block raises, the temporary
    directory is deleted and ``path`` is left untouched. Leftovers of writers that were killed
    are cleaned first (see :func:`clean_stale_temporaries`). Missing parent directories are
    created.

    Args:
        path: The directory to create or replace.
        marker: When given and ``path`` already exists and is not empty, ``path`` must contain a
            file of this name (e.g. ``"manifest.json"``); this keeps an unrelated directory from
            being replaced by mistake.

    Yields:
        The temporary directory to write the new content into.

    Raises:
        ConfigError: If ``path`` exists and is not a directory, lacks ``marker``, or cannot be
            written.

    Example:
        >>> with atomic_directory("my-index") as tmp:  # doctest: +SKIP
        ...     (tmp / "manifest.json").write_text("{}")
    """
    target = _absolute(path)
    try:
        clean_stale_temporaries(target)
        _check_target(target, marker)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _sibling(target, "tmp")
        tmp.mkdir()
    except OSError as error:
        reason = error.strerror or error
        raise ConfigError(f"cannot write the directory {target}: {reason}") from error
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        fsync_tree(tmp)
        _commit(tmp, target)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = error.strerror or error
        raise ConfigError(f"cannot replace the directory {target}: {reason}") from error


def atomic_write_lines(path: str | os.PathLike[str], lines: Iterable[str]) -> None:
    """Write ``lines`` (each ended by a newline) to ``path`` so readers see the old file or the
    new one: into a temporary sibling, flushed to disk, then moved onto ``path``.

    Any error (from the disk, or raised while producing ``lines``) removes the temporary file,
    leaves ``path`` as it was, and propagates.
    """
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            for line in lines:
                handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise


def fsync_tree(path: Path) -> None:
    """Flush every file and directory under ``path`` (and ``path`` itself) to disk.

    Args:
        path: A directory.
    """
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            _fsync(Path(root, name), directory=False)
        for name in dirs:
            if not Path(root, name).is_symlink():
                _fsync(Path(root, name), directory=True)
    _fsync(path, directory=True)


def clean_stale_temporaries(path: str | os.PathLike[str]) -> int:
    """Remove the debris that killed writers of ``path`` left beside it.

    Temporary directories (``<path>.tmp-<pid>-<hex>``) whose writer process is gone are
    deleted. A set-aside old directory (``<path>.old-<pid>-<hex>``, from the fallback swap)
    of a dead writer is moved back to ``path`` when ``path`` is missing, and deleted otherwise.
    Entries of live processes, this one included, are left alone.

    Args:
        path: The directory whose siblings to clean.

    Returns:
        How many leftover directories were removed or restored.
    """
    target = _absolute(path)
    pattern = re.compile(re.escape(target.name) + r"\.(tmp|old)-(\d+)-[0-9a-f]+")
    try:
        siblings = sorted(target.parent.iterdir())
    except FileNotFoundError:
        return 0
    cleaned = 0
    for sibling in siblings:
        found = pattern.fullmatch(sibling.name)
        if found is None or _pid_alive(int(found.group(2))):
            continue
        if found.group(1) == "old" and not os.path.lexists(target):
            os.rename(sibling, target)
        elif sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)
        cleaned += 1
    return cleaned


def _absolute(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute; a symlink is followed so that its target is what gets replaced."""
    target = Path(os.path.abspath(path))
    return target.resolve() if target.is_symlink() else target


def _check_target(target: Path, marker: str | None) -> None:
    """Refuse to replace something that is not a (kosearch) directory."""
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise ConfigError(f"cannot write the directory {target}: it exists and is not a directory")
    if marker is not None and any(target.iterdir()) and not (target / marker).is_file():
        raise ConfigError(
            f"refusing to replace {target}: it is not empty and has no {marker}, "
            "so it does not look like a kosearch directory"
        )


def _sibling(target: Path, kind: str) -> Path:
    """A fresh name beside ``target``: ``<name>.<kind>-<pid>-<hex>``."""
    return target.with_name(f"{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def _commit(tmp: Path, target: Path) -> None:
    """Put ``tmp`` in place of ``target`` and delete the old content."""
    if not os.path.lexists(target):
        os.rename(tmp, target)
        _fsync(target.parent, directory=True)
        return
    try:
        _exchange(tmp, target)
    except OSError:
        _replace_by_renames(tmp, target)
        return
    _fsync(target.parent, directory=True)
    shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old content


def _exchange(a: Path, b: Path) -> None:
    """Atomically swap two paths with Linux ``renameat2(RENAME_EXCHANGE)``.

    Raises:
        OSError: If the call is unavailable or fails (ENOSYS, EINVAL, ...).
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError) as error:
        raise OSError(errno.ENOSYS, "renameat2 is not available") from error
    path_type = ctypes.c_char_p
    renameat2.argtypes = [ctypes.c_int, path_type, ctypes.c_int, path_type, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a), None, str(b))


def _replace_by_renames(tmp: Path, target: Path) -> None:
    """Fallback swap: move the old directory aside, the new one in, then delete the old one."""
    old = _sibling(target, "old")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        os.rename(old, target)
        raise
    _fsync(target.parent, directory=True)
    shutil.rmtree(old, ignore_errors=True)


def _fsync(path: Path, *, directory: bool) -> None:
    """fsync one file or directory."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (ours counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
