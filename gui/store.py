"""The GUI's session with one store: a read connection for the UI thread (small, indexed queries
only), a write connection opened on the first reviewer action, and live-update polling."""

from __future__ import annotations

import getpass
import logging
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from edge_ocr.store import review
from edge_ocr.store.db import Connection, SqliteError, open_connection, set_busy_timeout

logger = logging.getLogger(__name__)

POLL_MS = 500
WRITE_BUSY_MS = 3000  # a reviewer action waits at most this long for the agent's write lock


class StoreSession(QObject):
    """Open with `StoreSession.open(path)`; raises StoreError with a message for the user."""

    changed = Signal()  # another connection committed (new results, the agent's heartbeat ...)

    def __init__(self, path: Path, conn: Connection, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self.conn = conn
        self.reviewer = getpass.getuser() or "reviewer"
        self._writer: Connection | None = None
        self._version = review.data_version(conn)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)

    @classmethod
    def open(cls, path: Path, parent: QObject | None = None) -> StoreSession:
        conn = open_connection(Path(path), readonly=True, create=False)
        return cls(Path(path), conn, parent)

    def start_polling(self) -> None:
        self._timer.start()

    def poll(self) -> bool:
        """Emit `changed` when another connection committed since the last poll. PRAGMA
        data_version reads a counter in shared memory: it never waits for the writer."""
        try:
            version = review.data_version(self.conn)
        except SqliteError as exc:
            logger.warning("polling %s failed: %s", self.path, exc)
            return False
        if version == self._version:
            return False
        self._version = version
        self.changed.emit()
        return True

    @property
    def writer(self) -> Connection:
        if self._writer is None:
            self._writer = open_connection(self.path, create=False)
            set_busy_timeout(self._writer, WRITE_BUSY_MS)
        return self._writer

    def close(self) -> None:
        self._timer.stop()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.conn.close()
