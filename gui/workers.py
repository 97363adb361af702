"""Background work on a QThreadPool. Workers never touch Qt widgets: they answer through signals,
which Qt delivers on the GUI thread. Each job opens its own read connection."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from edge_ocr.errors import EdgeOcrError
from edge_ocr.store.db import Connection, SqliteError, open_connection

logger = logging.getLogger(__name__)


class JobSignals(QObject):
    done = Signal(object)  # the job's return value
    failed = Signal(str)  # a message for the user
    progress = Signal(int, int)  # done, total (total 0: unknown)


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class Job(QRunnable):
    """Runs `fn(conn, report, token)` with a fresh read-only connection to `db`."""

    def __init__(
        self,
        db: Path,
        fn: Callable[[Connection, Callable[[int, int], None], CancelToken], Any],
        *,
        readonly: bool = True,
    ) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self.db = db
        self.fn = fn
        self.readonly = readonly
        self.token = CancelToken()
        self.signals = JobSignals()

    def run(self) -> None:
        try:
            conn = open_connection(self.db, readonly=self.readonly, create=False)
        except EdgeOcrError as exc:
            self.signals.failed.emit(str(exc))
            return
        try:
            result = self.fn(conn, self.signals.progress.emit, self.token)
        except (EdgeOcrError, SqliteError, OSError, ValueError) as exc:
            logger.info("background job failed: %s", exc)  # `failed` carries it to the user
            self.signals.failed.emit(str(exc))
            return
        finally:
            conn.close()
        self.signals.done.emit(result)


def pool() -> QThreadPool:
    return QThreadPool.globalInstance()


_running: set[Job] = set()  # keeps each job's signal object alive until it has reported


def start(job: Job) -> Job:
    _running.add(job)
    job.signals.done.connect(lambda _value: _running.discard(job))
    job.signals.failed.connect(lambda _msg: _running.discard(job))
    pool().start(job)
    return job


def wait_all(msecs: int = 10_000) -> bool:
    """Wait for running jobs (shutdown and tests)."""
    return pool().waitForDone(msecs)
