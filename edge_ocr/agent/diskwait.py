"""The agent writer's answer to a full disk: pause and wait for space, as it waits out another
process's write lock, and lose nothing. The write that failed was rolled back; it runs again once
there is space (`store.db.waits_for_space`). While it waits, the agent says so in the log and in
the note beside the database (its lock file, whose space was reserved when it was taken), which
`edge-ocr status` reads: the heartbeat cannot be written. Once asked to stop, it gives up after the
shutdown grace (files it held stay `processing` and are retried at the next start)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from edge_ocr.agent.health import Health
from edge_ocr.errors import StoreError
from edge_ocr.store.agentlock import AgentLocks
from edge_ocr.store.db import SqliteError, disk_full, sqlite_reason

logger = logging.getLogger(__name__)

DISK_FULL = "disk full"  # the Health kind
BACKOFF_MAX_S = 2.0
LOG_EVERY_S = 60.0


class DiskFullWait:
    """A `store.db.SpaceWait` for the agent's connection."""

    def __init__(
        self,
        db_path: Path,
        stop: threading.Event,
        grace_s: float,
        *,
        locks: AgentLocks | None,
        health: Health,
    ) -> None:
        self._db = db_path
        self._stop = stop
        self._grace_s = grace_s
        self._locks = locks
        self._health = health
        self._started: float | None = None
        self._last_log = 0.0
        self._stopping_since: float | None = None
        self.waits = 0  # times the agent waited for space
        self.waited_s = 0.0  # in total

    def waiting(self, attempt: int, exc: SqliteError) -> None:
        now = time.monotonic()
        if self._started is None:
            self._started = now
            self._last_log = 0.0
        why = disk_full(self._db) or f"the database cannot grow ({sqlite_reason(exc)})"
        message = f"{why}; the agent has paused and goes on by itself once there is space, nothing is lost"
        self._health.failed(DISK_FULL, message, at_once=True)  # news at once: status shows it now
        if now - self._last_log >= LOG_EVERY_S:
            logger.error(
                "%s: %s (waiting %.0f s so far, attempt %d)", self._db, message, now - self._started, attempt
            )
            self._last_log = now
        if self._locks is not None:
            self._locks.note(state="paused", problems=self._health.problems())
        if self._stop.is_set():
            self._stopping_since = self._stopping_since or now
            if now - self._stopping_since >= self._grace_s:
                raise StoreError(
                    f"{self._db}: {why} while stopping; unfinished files are retried at the next start"
                )
            time.sleep(0.1)
        else:
            self._stop.wait(min(0.1 * 2**attempt, BACKOFF_MAX_S))

    def acquired(self, attempts: int) -> None:
        waited = time.monotonic() - (self._started or time.monotonic())
        self.waits += 1
        self.waited_s += waited
        self._started = None
        self._health.recovered(DISK_FULL)
        logger.warning("%s: there is space again after %.1f s; the agent goes on", self._db, waited)
        if self._locks is not None:
            self._locks.note(state="running", problems=self._health.problems() or None)
