"""Is the database file the agent writes still the one it opened? A file deleted (or replaced) under
a running agent keeps taking writes into the unlinked file, where nobody will ever read them. The
guard compares the path's identity (st_dev, st_ino) with the one the agent opened, before every
archive or delete of an input and at every tick of the agent's loop. Once it differs the agent
keeps a copy of what it had written (SQLite's backup of the open connection, beside the path),
stops taking files and says so in the log and, through the note beside the database, in `status`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from edge_ocr.agent.health import Health
from edge_ocr.store.agentlock import AgentLocks
from edge_ocr.store.db import Connection, SqliteError, copy_database

logger = logging.getLogger(__name__)

STORE_GONE = "database gone"  # the Health kind


class StoreGuard:
    """The identity of the database file when it was opened, and checks against it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        st = os.stat(path)
        self._ident = (st.st_dev, st.st_ino)
        self.lost: str | None = None  # why, once the file is no longer the one opened
        self.message: str | None = None  # what the agent said about it (once)

    def intact(self, conn: Connection | None, health: Health, locks: AgentLocks | None) -> bool:
        """True while the file is the one opened. The first time it is not: rescue what `conn`
        holds, say so (log, health, the note beside the database) and answer False from then on."""
        if self.lost is None and self.check() is None:
            return True
        if self.message is None:
            rescued = self.rescue(conn) if conn is not None else None
            self.message = (
                f"the database {self.path} {self.lost} while the agent was running; it has stopped "
                "taking files (nothing more is read, archived or deleted: the files stay in the watched "
                "folders)"
                + (f"; what it had written is saved in {rescued}" if rescued else "")
                + "; restart the agent to go on with a database at that path"
            )
            logger.critical("%s", self.message)
            health.failed(STORE_GONE, self.message, at_once=True)
            if locks is not None:
                locks.note(state="stopped taking files", problems=health.problems())
        return False

    def check(self) -> str | None:
        """None while the path is the file that was opened; else what happened to it (sticky)."""
        if self.lost is not None:
            return self.lost
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.lost = "was deleted"
        except OSError as exc:
            self.lost = f"cannot be checked ({exc.strerror})"
        else:
            if (st.st_dev, st.st_ino) != self._ident:
                self.lost = "was replaced by another file"
        return self.lost

    def rescue(self, conn: Connection) -> Path | None:
        """Copy what the open connection still sees (everything written since it was opened) beside
        the path, so nothing written into the lost file is lost. None when it cannot be done."""
        target = self.path.with_name(f"{self.path.name}.rescued-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            copy_database(conn, target)
        except (SqliteError, OSError) as exc:
            logger.error("cannot copy the lost database to %s: %s", target, exc)
            return None
        return target
