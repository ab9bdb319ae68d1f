"""Files written whole or not at all: a temporary name in the same directory, then ``os.replace``.

A reader (or a crash) never sees a half-written file: the rename is atomic on POSIX and Windows when
source and target are in the same directory. :func:`replace_together` renames several files with a
rollback, so that a failure part-way leaves the previous set in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def temporary_path(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh, not yet existing file name next to ``path`` (same suffix); removed on exit if it exists.

    Write to the yielded path, then move it into place (:func:`replace_together` or ``os.replace``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")  # created by the writer,
    try:  # so it gets the usual permissions
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a clean exit it replaces ``path`` in one rename.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with atomic_path(Path(folder) / "a.txt") as tmp:
    ...         _ = tmp.write_text("whole")
    ...     (Path(folder) / "a.txt").read_text(), sorted(p.name for p in Path(folder).iterdir())
    ('whole', ['a.txt'])
    """
    with temporary_path(path) as tmp:
        yield tmp
        os.replace(tmp, path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def replace_together(moves: Sequence[tuple[Path, Path]]) -> None:
    """Rename each temporary file onto its target; if one rename fails, restore every earlier target.

    The previous version of each target is kept as a hard link (a copy where links are not supported) at
    :func:`previous_version` until every rename succeeded, so an exception part-way leaves the old set of
    files as it was, and a process killed part-way leaves the old version readable there.
    """
    backups: list[tuple[Path, Path | None]] = []
    try:
        for source, target in moves:
            backup = None
            if target.exists():
                backup = previous_version(target)
                backup.unlink(missing_ok=True)
                try:
                    os.link(target, backup)
                except OSError:
                    shutil.copy2(target, backup)
            backups.append((target, backup))
            os.replace(source, target)
    except BaseException:
        for target, backup in reversed(backups):
            if backup is None:
                target.unlink(missing_ok=True)
                continue
            os.replace(backup, target)  # a no-op when the target was never replaced (the same inode)
            backup.unlink(missing_ok=True)
        raise
    for _, backup in backups:
        if backup is not None:
            backup.unlink(missing_ok=True)


def previous_version(path: str | os.PathLike) -> Path:
    """Where :func:`replace_together` keeps the previous version of ``path`` until every rename succeeded.

    A process killed between two renames leaves it behind, so a reader can still find the previous set.
    """
    path = Path(path)
    return path.with_name(f".{path.name}.previous")


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_writable(path: str | os.PathLike, *, directory: bool) -> Path:
    """``path`` once it is known that an output can be written there, before any work is done.

    ``directory=True``: ``path`` is an output directory; otherwise a file. Nothing is created: the nearest
    existing folder on the way must be a directory in which a probe file can be created (and is removed
    again), so read-only places and paths under a file are found now rather than after training.
    ValueError naming the path and the reason otherwise.
    """
    path = Path(path)
    if directory is False and path.is_dir():
        raise ValueError(f"{path} is a directory; give a file name (--out).")
    existing = path if directory else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"cannot write to {path}: {existing} is a file, not a folder; choose another output "
                         "path (--out).")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".samsvae-write-check-"):
            pass
    except OSError as error:
        raise ValueError(f"cannot write to {path}: {error.strerror or error} in {existing}; choose another "
                         "output path (--out).") from error
    return path
