"""One sender per database: an OS file lock beside it (``newsletter.db.lock``).

``filelock`` takes an flock(2) lock, which the kernel releases when the
process ends however it ends (SIGKILL included), so a crashed scheduler
never leaves a stale lock behind. The holder writes its pid into a second
file so the next one can say who holds it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import LockedError, StoreError


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


@contextmanager
def sender_lock(database: Path, *, command: str) -> Iterator[None]:
    """Hold the database's sender lock for the block, or raise LockedError naming the holder."""
    path = lock_path(database)
    holder_file = database.with_name(database.name + ".lock-holder")
    lock = FileLock(str(path), timeout=0)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        holder = _read(holder_file) or "another process"
        raise LockedError(
            f"{database}: {holder} is already sending for this database (lock {path}); "
            "only one `newsletter run` or `newsletter digest` at a time — stop it first"
        ) from None
    except OSError as exc:  # after Timeout, a TimeoutError (an OSError): the folder is a file, a directory where the lock goes, read-only ...
        why = f"{path.parent} is not a directory" if isinstance(exc, (FileExistsError, NotADirectoryError)) else exc.strerror or str(exc)
        raise StoreError(f"{database}: cannot take the sender lock {path}: {why}") from None
    try:
        holder_file.write_text(f"`newsletter {command}` (pid {os.getpid()})", encoding="utf-8")
        yield
    finally:
        holder_file.unlink(missing_ok=True)
        lock.release()


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
