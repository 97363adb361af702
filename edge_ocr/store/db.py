"""Opening the results database: WAL, foreign keys, migrations with a backup first.

The file is a plain SQLite database: it opens as is in `sqlite3` and Datasette.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import functools
import itertools
import logging
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlite_utils

from edge_ocr.config import default_db_path
from edge_ocr.errors import SchemaTooNewError, StoreError
from edge_ocr.store.migrations import LATEST_VERSION, MIGRATIONS

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
FULL_BELOW_BYTES = 1024 * 1024  # free space under which a file system counts as full


class LockWait(Protocol):
    """What a writer does when another process holds the write lock past the busy timeout."""

    def waiting(self, attempt: int) -> None:
        """Called after each failed attempt: wait (back off), log, or raise to give up."""

    def acquired(self, attempts: int) -> None:
        """Called once the lock was taken after `attempts` failed attempts."""


class SpaceWait(Protocol):
    """What a writer does when the disk holding the database is full."""

    def waiting(self, attempt: int, exc: sqlite3.Error) -> None:
        """Called after each failed attempt: wait for space, log, or raise to give up."""

    def acquired(self, attempts: int) -> None:
        """Called once a write went through after `attempts` failed attempts."""


class Connection(sqlite3.Connection):
    """The store's connection: `lock_wait`, when set, makes `transaction` wait out a lock;
    `space_wait`, when set, makes the writing functions marked `@waits_for_space` wait for space."""

    lock_wait: LockWait | None = None
    space_wait: SpaceWait | None = None
    path: Path | None = None


def disk_full(path: Path) -> str | None:
    """Why the file system holding `path` (or its nearest existing folder) counts as full, or None."""
    base = Path(path)
    while not base.exists() and base != base.parent:
        base = base.parent
    try:
        usage = shutil.disk_usage(base)
    except OSError:
        return None
    if usage.free >= FULL_BELOW_BYTES:
        return None
    return f"the disk holding {base} is full ({usage.free / 1e3:.0f} kB free of {usage.total / 1e6:.0f} MB)"


def is_full_error(exc: BaseException, path: Path | None = None) -> bool:
    """SQLite's "database or disk is full", or an I/O error on a file system that is full."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    if "disk is full" in text:
        return True
    return "disk i/o error" in text and path is not None and disk_full(path) is not None


F = TypeVar("F", bound=Callable[..., Any])


def waits_for_space(fn: F) -> F:
    """For a store function that runs one transaction and nothing else: when the disk is full and
    the connection has a `space_wait` (the agent's writer), wait for space and run the function
    again (its transaction was rolled back: nothing is done twice, nothing is lost)."""

    @functools.wraps(fn)
    def wrapper(conn: sqlite3.Connection, *args: Any, **kwargs: Any) -> Any:
        wait: SpaceWait | None = getattr(conn, "space_wait", None)
        attempt = 0
        while True:
            try:
                out = fn(conn, *args, **kwargs)
            except sqlite3.OperationalError as exc:
                if wait is None or conn.in_transaction or not is_full_error(exc, getattr(conn, "path", None)):
                    raise
                attempt += 1
                wait.waiting(attempt, exc)
                continue
            if attempt and wait is not None:
                wait.acquired(attempt)
            return out

    return wrapper  # type: ignore[return-value]


#: SQLite's base error, for code outside the store: only `edge_ocr.store` imports sqlite3 (an
#: import-linter contract), so the GUI and the commands catch the driver's errors by this name
SqliteError = sqlite3.Error


def is_store_failure(exc: BaseException) -> bool:
    """Whether an error is the database's own (locked past every wait, full, damaged), not a
    record's: those propagate instead of being blamed on the file being handled."""
    return isinstance(exc, StoreError) or type(exc) in (sqlite3.OperationalError, sqlite3.DatabaseError)


def set_busy_timeout(conn: sqlite3.Connection, ms: int) -> None:
    """How long a statement waits for another connection's lock before it fails."""
    conn.execute(f"PRAGMA busy_timeout = {int(ms)}")


def copy_database(conn: sqlite3.Connection, target: Path) -> None:
    """Copy what `conn` sees into a new database file at `target` (SQLite's online backup)."""
    dest = sqlite3.connect(str(target))
    try:
        conn.backup(dest)
    finally:
        dest.close()


def set_durable(conn: sqlite3.Connection) -> None:
    """Every commit reaches the disk before it returns (synchronous = FULL): for a writer that
    archives or deletes its inputs once their result is committed, power loss or not."""
    conn.execute("PRAGMA synchronous = FULL")


@contextlib.contextmanager
def reading_damaged(path: Path) -> Iterator[None]:
    """A damaged page met while reading becomes one StoreError with doctor's fix, never a traceback."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise damaged_error(path, exc) from None


def is_lock_error(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def sqlite_reason(exc: sqlite3.Error) -> str:
    """The error's text, never empty (some damage raises with no message)."""
    text = str(exc).strip()
    if text:
        return text
    code = getattr(exc, "sqlite_errorname", None)
    return code or f"{type(exc).__name__} without a message"


def backups_of(path: Path) -> list[Path]:
    """The backups taken before migrations, newest first."""
    return sorted(path.parent.glob(f"{path.name}.v*.bak"), key=lambda p: p.stat().st_mtime, reverse=True)


def damaged_fix(path: Path) -> str:
    """What to do about a damaged database file (the same words from doctor and every command)."""
    backups = backups_of(path)
    return f"stop the agent, move the file aside (mv {path} {path}.corrupt) and " + (
        f"restore the newest backup: cp {backups[0]} {path}"
        if backups
        else "start the agent to create an empty one"
    )


def damaged_error(path: Path, exc: sqlite3.Error, what: str = "is damaged") -> StoreError:
    """One line for a damaged database: what is wrong, and doctor's fix; on a full disk, that
    (the database is most likely intact: never advise replacing it then)."""
    full = disk_full(path)
    if full is not None:
        return StoreError(
            f"{path} cannot be read now: {full} ({sqlite_reason(exc)}); the database is most likely "
            f"intact: free space there, do not replace it (`edge-ocr doctor --only database disk`)"
        )
    return StoreError(
        f"{path} {what} ({sqlite_reason(exc)}); fix: {damaged_fix(path)} "
        "(`edge-ocr doctor --only database` checks it)"
    )


def _begin_immediate(conn: sqlite3.Connection) -> None:
    wait: LockWait | None = getattr(conn, "lock_wait", None)
    attempt = 0
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if wait is None or not is_lock_error(exc):
                raise
            attempt += 1
            wait.waiting(attempt)
            continue
        if attempt and wait is not None:
            wait.acquired(attempt)
        return


_SAVEPOINTS = itertools.count()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception. A connection with a `lock_wait`
    (the agent's writer) waits out another process's write lock instead of failing.

    Inside an open transaction it is a savepoint instead, so a caller can make several store
    functions one transaction (a result and the line messages announcing it commit together)."""
    if conn.in_transaction:
        name = f"nested_{next(_SAVEPOINTS)}"  # unique while open
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:  # SQLite rolls the whole transaction back by itself on a full disk
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
        return
    _begin_immediate(conn)
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:  # SQLite rolls back by itself after some errors (a full disk)
            conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _set_wal_and_migrate(conn: sqlite3.Connection, path: Path) -> None:
    """WAL mode, then the pending migrations. Switching a new file to WAL while another connection
    opens it too (the agent and its sync service starting together) answers "locked" at once,
    without SQLite's busy handler: retried with backoff for as long as the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.05
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if not is_lock_error(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    if mode.lower() != "wal":
        logger.warning("%s: journal mode is %s, not WAL", path, mode)
    conn.execute("PRAGMA synchronous = NORMAL")
    migrate(conn, path)


class IntegrityProblem(enum.Enum):
    """Why `check_integrity` could not give the file a clean answer."""

    UNOPENABLE = "cannot be opened"
    LOCKED = "is locked"
    UNREADABLE = "is not a readable SQLite database"
    CORRUPT = "is corrupt"


@dataclass(frozen=True)
class IntegrityCheck:
    """SQLite's own check of a database file (`PRAGMA quick_check`, or `integrity_check`)."""

    pragma: str
    answers: tuple[str, ...] = ()  # ("ok",) when sound, else the damage SQLite lists
    version: int = 0  # the schema version recorded in the file
    problem: IntegrityProblem | None = None
    reason: str = ""  # SQLite's words for the problem

    @property
    def sound(self) -> bool:
        return self.problem is None and self.answers == ("ok",)


def check_integrity(path: Path, *, thorough: bool = False) -> IntegrityCheck:
    """Open the file read-only (never migrating, never waiting long) and run SQLite's check."""
    pragma = "integrity_check" if thorough else "quick_check"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        return IntegrityCheck(pragma, problem=IntegrityProblem.UNOPENABLE, reason=sqlite_reason(exc))
    try:
        answers = tuple(str(r[0]) for r in conn.execute(f"PRAGMA {pragma}").fetchall())
        version = schema_version(conn)
    except sqlite3.OperationalError as exc:
        problem = IntegrityProblem.LOCKED if is_lock_error(exc) else IntegrityProblem.UNREADABLE
        return IntegrityCheck(pragma, problem=problem, reason=sqlite_reason(exc))
    except sqlite3.DatabaseError as exc:
        return IntegrityCheck(pragma, problem=IntegrityProblem.CORRUPT, reason=sqlite_reason(exc))
    finally:
        conn.close()
    return IntegrityCheck(pragma, answers, version)


def utcnow() -> str:
    """ISO-8601 UTC with milliseconds, the store's time format."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def applied_versions(conn: sqlite3.Connection) -> set[int]:
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
    ).fetchone()
    if row is None:
        return set()
    return {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}


def schema_version(conn: sqlite3.Connection) -> int:
    return max(applied_versions(conn), default=0)


def pending_migrations(conn: sqlite3.Connection) -> list:
    """Every known migration not yet recorded, in version order (a lower-numbered migration that
    was added later still runs)."""
    done = applied_versions(conn)
    return sorted((m for m in MIGRATIONS if m.version not in done), key=lambda m: m.version)


def _connect(path: Path, *, readonly: bool) -> Connection:
    timeout = BUSY_TIMEOUT_MS / 1000
    if readonly:
        uri = f"file:{path}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False, factory=Connection)
    else:
        conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False, factory=Connection)
    conn.path = path
    conn.isolation_level = None  # explicit transactions only (BEGIN ... COMMIT)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def backup_database(conn: sqlite3.Connection, path: Path, from_version: int) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.v{from_version}.{stamp}.bak")
    dest = sqlite3.connect(str(target))
    try:
        conn.backup(dest)
    finally:
        dest.close()
    logger.info("backed up %s to %s before migrating", path, target)
    return target


def migrate(conn: sqlite3.Connection, path: Path | None) -> int:
    """Apply pending migrations, each in its own transaction. Returns the resulting version.

    Processes opening the same new database at once (agent, sync thread, GUI, CLI) take turns
    through a lock file beside it, so each migration runs exactly once."""
    if path is None:
        return _migrate_locked(conn, path)
    import fcntl

    lock_path = path.with_name(path.name + ".migrate-lock")
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _migrate_locked(conn, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _migrate_locked(conn: sqlite3.Connection, path: Path | None) -> int:
    current = schema_version(conn)
    if current > LATEST_VERSION:
        raise SchemaTooNewError(
            f"{path or 'database'} has schema version {current}, newer than this edge-ocr knows "
            f"({LATEST_VERSION}); upgrade edge-ocr to open it"
        )
    pending = pending_migrations(conn)
    if not pending:
        return current
    if current > 0 and path is not None:
        backup_database(conn, path, current)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at TEXT NOT NULL)"
    )
    for m in pending:
        try:
            # executescript() commits whatever is open before it runs, so the transaction is
            # part of the script itself; Python steps then run inside it.
            conn.executescript("BEGIN IMMEDIATE;\n" + m.sql)
            if m.apply is not None:
                m.apply(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (m.version, m.name, utcnow()),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        logger.info("migrated %s: applied migration %d (%s)", path or "database", m.version, m.name)
    return schema_version(conn)


def open_connection(path: Path | None = None, *, readonly: bool = False, create: bool = True) -> Connection:
    """Open (creating and migrating unless read-only) the store at `path`. Raises StoreError."""
    path = Path(path) if path is not None else default_db_path()
    if readonly or not create:
        if not path.is_file():
            raise StoreError(f"no database at {path}; run the agent or `edge-ocr demo-store` to create one")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = _connect(path, readonly=readonly)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise damaged_error(path, exc, "is not a readable SQLite database") from exc
    try:
        if readonly:
            version = schema_version(conn)
            if version > LATEST_VERSION:
                raise SchemaTooNewError(
                    f"{path} has schema version {version}, newer than this edge-ocr knows ({LATEST_VERSION}); "
                    "upgrade edge-ocr to open it"
                )
            if pending_migrations(conn):
                raise StoreError(
                    f"{path} has schema version {version}; open it once with the agent to upgrade it"
                )
        else:
            _set_wal_and_migrate(conn, path)
    except sqlite3.OperationalError as exc:
        conn.close()
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreError(f"{path} is locked by another process; try again or stop that process") from exc
        raise StoreError(f"{path}: {sqlite_reason(exc)}") from exc
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise damaged_error(path, exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def open_db(
    path: Path | None = None, *, readonly: bool = False, create: bool = True
) -> sqlite_utils.Database:
    """The same as `open_connection`, wrapped in a sqlite-utils Database."""
    return sqlite_utils.Database(open_connection(path, readonly=readonly, create=create))
