"""The agent writer's answer to another process holding the database's write lock: wait with
backoff and never give up while running; say so in the log and, through a file beside the
database, in `edge-ocr status`. Once asked to stop, it gives up after the shutdown grace (files
it held stay `processing` and are retried at the next start)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

from edge_ocr.errors import StoreError
from edge_ocr.store.agents import clear_lock_wait, write_lock_wait
from edge_ocr.store.db import utcnow

logger = logging.getLogger(__name__)

LOCK_POLL_MS = 1000  # the writer's busy timeout: one attempt to take the lock lasts this long
BACKOFF_MAX_S = 2.0
LOG_EVERY_S = 30.0


class WriterLockWait:
    """A `store.db.LockWait` for the agent's connection."""

    def __init__(self, db_path: Path, agent_id: str, stop: threading.Event, grace_s: float) -> None:
        self._db = db_path
        self._agent_id = agent_id
        self._stop = stop
        self._grace_s = grace_s
        self._started: float | None = None
        self._started_at = ""
        self._last_log = 0.0
        self._stopping_since: float | None = None
        self.waits = 0  # times the lock was waited for
        self.waited_s = 0.0  # in total

    def waiting(self, attempt: int) -> None:
        now = time.monotonic()
        if attempt == 1 or self._started is None:
            self._started = now - LOCK_POLL_MS / 1000
            self._started_at = utcnow()
            self._last_log = 0.0
        waited = now - self._started
        if now - self._last_log >= LOG_EVERY_S:
            logger.warning(
                "the database %s is locked by another process (%.0f s so far); waiting for it, "
                "nothing is lost (attempt %d)",
                self._db,
                waited,
                attempt,
            )
            self._last_log = now
        try:
            write_lock_wait(
                self._db,
                {
                    "agent_id": self._agent_id,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "since": self._started_at,
                    "waited_s": round(waited, 1),
                    "attempts": attempt,
                    "at": utcnow(),
                },
            )
        except OSError as exc:
            logger.debug("cannot write the lock-wait note: %s", exc)
        if self._stop.is_set():
            self._stopping_since = self._stopping_since or now
            if now - self._stopping_since > self._grace_s:
                self._clear()
                raise StoreError(
                    f"{self._db} stayed locked by another process for {waited:.0f} s while stopping; "
                    "unfinished files are retried at the next start"
                )
        time.sleep(min(0.05 * 2**attempt, BACKOFF_MAX_S))

    def acquired(self, attempts: int) -> None:
        waited = time.monotonic() - (self._started or time.monotonic())
        self.waits += 1
        self.waited_s += waited
        self._started = None
        logger.warning("the database lock was released after %.1f s; going on", waited)
        self._clear()

    def _clear(self) -> None:
        try:
            clear_lock_wait(self._db)
        except OSError as exc:
            logger.debug("cannot remove the lock-wait note: %s", exc)
