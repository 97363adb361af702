"""One agent per store: an exclusive `flock` on `<db>.agent-lock` beside the database (and on
`agent.lock` in the data folder, whose scratch and quarantine the agent owns), held for the
agent's life and released by the kernel however the agent ends.

The lock file is also the agent's note for what it cannot write into the database (the database
file deleted or replaced under it, the disk full): pid, host, start, state and problem, as JSON,
read by `edge-ocr status` and `doctor`. The note is rewritten in place inside space reserved when
the lock was taken, so it can still be updated on a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from edge_ocr.errors import StoreInUseError

logger = logging.getLogger(__name__)

NOTE_BYTES = 4096  # reserved for the note: it never needs a new block
TAKE_TRIES = 20  # status probes the lock for an instant: try for a second before refusing
TAKE_PAUSE_S = 0.05


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".agent-lock")


def data_lock_path(data_dir: Path) -> Path:
    return data_dir / "agent.lock"


def _read_note(fd: int) -> dict[str, Any]:
    for _ in range(3):  # a note being rewritten reads as broken JSON: read again
        raw = os.pread(fd, NOTE_BYTES, 0).rstrip(b"\0 \n")
        if not raw:
            return {}
        try:
            note = json.loads(raw)
        except ValueError:
            time.sleep(0.01)
            continue
        return note if isinstance(note, dict) else {}
    return {}


class AgentLock:
    """The held lock on one file; `note(...)` updates what status reads."""

    def __init__(self, path: Path, fd: int, note: dict[str, Any]) -> None:
        self.path = path
        self._fd: int | None = fd
        self._note = note

    @classmethod
    def take(cls, path: Path, what: str, note: dict[str, Any]) -> AgentLock:
        """Take the lock or raise StoreInUseError naming the holder. `what`: the store or folder."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            for attempt in range(TAKE_TRIES):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == TAKE_TRIES - 1:
                        raise StoreInUseError(_in_use(what, _read_note(fd), path)) from None
                    time.sleep(TAKE_PAUSE_S)
            lock = cls(path, fd, dict(note))
            with contextlib.suppress(OSError):  # reserve the note's space while there is some
                os.posix_fallocate(fd, 0, NOTE_BYTES)
            lock.note()
            return lock
        except BaseException:
            os.close(fd)
            raise

    def note(self, **changes: Any) -> None:
        """Update the note (None removes a field). Never raises: the note is a courtesy."""
        for key, value in changes.items():
            if value is None:
                self._note.pop(key, None)
            else:
                self._note[key] = value
        if self._fd is None:
            return
        raw = json.dumps({**self._note, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, sort_keys=True).encode()
        if len(raw) > NOTE_BYTES:
            raw = json.dumps({k: self._note[k] for k in ("pid", "host", "since") if k in self._note}).encode()
        try:
            os.pwrite(self._fd, raw.ljust(NOTE_BYTES), 0)
        except OSError as exc:
            logger.debug("cannot update %s: %s", self.path, exc)

    def release(self) -> None:
        """Let go (the file stays: removing it would race with the next agent taking it)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.pwrite(self._fd, b" " * NOTE_BYTES, 0)
        os.close(self._fd)  # closing releases the flock
        self._fd = None


def _in_use(what: str, note: dict[str, Any], path: Path) -> str:
    who = f"pid {note['pid']}" if note.get("pid") else "another process"
    if note.get("host"):
        who += f" on {note['host']}"
    since = f", running since {note['since']}" if note.get("since") else ""
    return (
        f"another edge-ocr agent ({who}{since}) is already using {what}; stop it first, or give this "
        f"one its own [agent] db and data_dir (lock: {path})"
    )


class AgentLocks:
    """The agent's two locks: its database's and its data folder's."""

    def __init__(self, db: AgentLock, data: AgentLock | None) -> None:
        self.db = db
        self.data = data

    @classmethod
    def take(cls, db_path: Path, data_dir: Path, agent_id: str) -> AgentLocks:
        note = {
            "agent_id": agent_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "db": str(db_path),
            "state": "starting",
        }
        db = AgentLock.take(lock_path(db_path), f"the database {db_path}", note)
        if data_lock_path(data_dir) == db.path:
            return cls(db, None)
        try:
            data = AgentLock.take(data_lock_path(data_dir), f"the data folder {data_dir}", note)
        except BaseException:
            db.release()
            raise
        return cls(db, data)

    def note(self, **changes: Any) -> None:
        """What status shows beside the database (the data folder's lock carries only who holds it)."""
        self.db.note(**changes)

    def release(self) -> None:
        try:
            if self.data is not None:
                self.data.release()
        finally:
            self.db.release()


def read_holder(db_path: Path) -> dict[str, Any] | None:
    """The note of the agent holding the database's lock, with `held: True`; None when no agent
    holds it. Probes the lock for an instant (a starting agent tries again)."""
    path = lock_path(db_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            return {**_read_note(fd), "held": True}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
