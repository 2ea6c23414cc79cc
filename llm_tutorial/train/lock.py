"""One run per folder: an exclusive lock on the run directory, held while a run trains.

Two runs writing into one folder would interleave their checkpoints, and each one's clean-up would
delete the other's half-written files. So a run takes an exclusive ``flock`` on the file
``.lock`` inside its directory before it reads or writes a checkpoint, and keeps it until it ends.
The operating system releases a ``flock`` when its process dies, however it dies (even
``SIGKILL``), so a killed run never blocks the next one; there is no stale lock to delete by hand.

A second run (or ``--resume``) of a locked folder refuses at once, naming the holder: the process
id, host and start time that the holder wrote into the lock file.

The lock is not re-entrant: two trainers in one notebook are two runs, and the second is refused
too. (The command line takes the lock before it reads the data and hands it to its trainer.) On
systems without ``fcntl`` (Windows) there is no lock: the guarantee is POSIX's.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run directory's lock."""


class RunDirectoryError(OSError):
    """The run directory cannot hold checkpoints (not writable, a file, under /proc, ...)."""


_held: dict[Path, object] = {}  # resolved directory -> its open lock file, for as long as this process holds it


def check_writable(directory: str | Path, what: str = "the run directory") -> None:
    """Fail now, not at the first checkpoint, if no checkpoint can be written under ``directory``.

    Makes no directory: it checks that ``directory`` is a directory or can become one, and writes
    (and at once deletes) a probe file in it or in its nearest existing parent."""
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise RunDirectoryError(f"{what} {path} is a file, not a directory; give a directory for the checkpoints")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirectoryError(f"{what} {path} cannot be made: {existing} is a file, not a directory")
    try:
        handle, probe = tempfile.mkstemp(prefix=".write-test-", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise RunDirectoryError(
            f"{what} {path} is not writable: creating a file in {existing} failed ({error.strerror}). "
            "Choose a directory you can write to."
        ) from error


def acquire(directory: str | Path) -> Path:
    """Take the exclusive lock of ``directory`` (created if missing); return its resolved path.

    Raises :class:`RunLockedError` at once, naming the holder, if another process holds it."""
    path = Path(directory)
    check_writable(path)
    path.mkdir(parents=True, exist_ok=True)
    key = path.resolve()
    handle = open(key / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while the lock is held
    if fcntl is not None:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _describe(handle.read())
            handle.close()
            raise RunLockedError(
                f"{path} is in use by another run ({holder}). Two runs in one folder would overwrite each "
                "other's checkpoints: wait for that run to end (or stop it), or choose another directory."
            ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}))
    handle.flush()
    _held[key] = handle
    return key


def release(key: Path) -> None:
    """Give back the lock taken by :func:`acquire` (nothing happens if it is not held)."""
    handle = _held.pop(key, None)
    if handle is not None:
        handle.close()  # closing the file releases the flock


def holds(directory: str | Path) -> bool:
    """Whether this process holds the lock of ``directory``."""
    return Path(directory).resolve() in _held


def _describe(content: str) -> str:
    try:
        holder = json.loads(content)
        return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown: it has only just started"
