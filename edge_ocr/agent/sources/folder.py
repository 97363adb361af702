"""Folder source: a watchdog observer, a debouncer that waits until a file is complete, a startup rescan.

Watchdog handlers only note paths. A file is complete when:
- it was renamed or moved into the folder (complete on arrival: no settle wait);
- with inotify, its writer closed it (IN_CLOSE_WRITE) and nobody holds it open any more: pauses
  while the writer keeps it open, however long, are not mistaken for the end;
- otherwise (polling, or only attribute changes), its size and mtime stayed the same for
  `settle_seconds`.
The debouncer then hashes it and hands a `FileCandidate` to `emit`, which may block (backpressure).
Entries that must not be read (links out of the folder, link loops, dangling links, FIFOs and
devices, folders named like images) become a `FileRejected` with the reason, for the agent to
record. Claiming, reading and the state machine belong to the agent.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from edge_ocr.agent.sources import dirfd
from edge_ocr.agent.sources.dirfd import Identity
from edge_ocr.agent.sources.entries import inspect_entry
from edge_ocr.config import FolderSourceConfig
from edge_ocr.errors import ConfigError
from edge_ocr.line.model import LineJob
from edge_ocr.store.files import display_path

logger = logging.getLogger(__name__)

CLOSED_SETTLE = 0.1  # seconds of stability required after the writer closed the file
OPEN_CEILING = 120.0  # seconds without a write after which a file still held open is read anyway
TICK = 0.05


@dataclass(frozen=True)
class FileCandidate:
    """A file that is completely written, with its content hash."""

    path: Path  # the name in the watched folder
    sha256: str
    size: int
    mtime: float
    folder: FolderSourceConfig
    seen_at: float  # time.monotonic() of the first event, for latency figures
    source: Path | None = None  # what to open: the file, or the target of a link inside the folder
    arrived: bool = False  # renamed or moved into the folder (complete on arrival)
    ident: Identity | None = None  # the entry that was hashed: only it is archived, deleted or quarantined
    job: LineJob | None = None  # the line trigger it answers (a folder read on triggers)

    @property
    def read_path(self) -> Path:
        return self.source or self.path


@dataclass(frozen=True)
class FileRejected:
    """An entry that is never read, with the reason to record. `move`: quarantine it (a link, a
    FIFO); else leave it where it is (a folder named like an image)."""

    path: Path
    reason: str
    folder: FolderSourceConfig
    move: bool = True


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_entry(root: Path, path: Path, chunk: int = 1 << 20) -> tuple[str, tuple[int, int]]:
    """The sha256 of a regular file under `root` (opened through `dirfd`: no link on the way, nor
    the file itself a link) and its (size, mtime_ns) once read. Raises OSError."""
    fd = dirfd.open_file(root, dirfd.parts_under(path, root))
    with open(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        h = hashlib.sha256()
        while block := fh.read(chunk):
            h.update(block)
        st = os.fstat(fd)
    return h.hexdigest(), (st.st_size, st.st_mtime_ns)


def wanted(folder: FolderSourceConfig, path: Path) -> bool:
    """Whether a path under the folder matches its include globs and none of its exclude globs."""
    try:
        rel = path.relative_to(folder.path)
    except ValueError:
        return False
    if not folder.recursive and len(rel.parts) > 1:
        return False
    name = path.name.lower()
    for part in rel.parts[:-1]:
        if any(fnmatch.fnmatch(part.lower(), g.lower()) for g in folder.exclude):
            return False
    if any(fnmatch.fnmatch(name, g.lower()) for g in folder.exclude):
        return False
    return any(fnmatch.fnmatch(name, g.lower()) for g in folder.include)


def scan(folder: FolderSourceConfig) -> Iterator[Path]:
    """Entries under the folder that match its globs (files, links, and folders named like images,
    which the debouncer rejects). Folder symlinks are not followed (no loops)."""
    root = folder.path
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=_walk_error):
        if not folder.recursive:
            dirnames.clear()
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if wanted(folder, Path(dirpath) / d)]:
            p = Path(dirpath) / name
            if wanted(folder, p):
                yield p


def _walk_error(exc: OSError) -> None:
    logger.warning("cannot list %s: %s", display_path(exc.filename or ""), exc.strerror)


class _Handler(FileSystemEventHandler):
    """Only notes paths in the debouncer."""

    def __init__(self, debouncer: Debouncer, folder: FolderSourceConfig) -> None:
        self._debouncer = debouncer
        self._folder = folder

    def _path(self, raw: str | bytes) -> Path | None:
        if not raw:
            return None  # a move out of the watched tree has no destination
        path = Path(os.fsdecode(raw))
        return path if wanted(self._folder, path) else None

    def on_created(self, event: FileSystemEvent) -> None:
        if (path := self._path(event.src_path)) is not None:
            self._debouncer.touch(path)

    def on_modified(self, event: FileSystemEvent) -> None:
        if not event.is_directory and (path := self._path(event.src_path)) is not None:
            self._debouncer.touch(path)

    def on_opened(self, event: FileSystemEvent) -> None:
        if (path := self._path(event.src_path)) is not None:
            self._debouncer.opened(path)

    def on_closed(self, event: FileSystemEvent) -> None:  # IN_CLOSE_WRITE
        if (path := self._path(event.src_path)) is not None:
            self._debouncer.closed(path, wrote=True)

    def on_closed_no_write(self, event: FileSystemEvent) -> None:
        if (path := self._path(event.src_path)) is not None:
            self._debouncer.closed(path, wrote=False)

    def on_deleted(self, event: FileSystemEvent) -> None:
        if not event.is_directory and event.src_path:
            self._debouncer.forget_opens(Path(os.fsdecode(event.src_path)))

    def on_moved(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            self._debouncer.rescan_later()
            return
        src = Path(os.fsdecode(event.src_path)) if event.src_path else None
        opens = self._debouncer.forget_opens(src) if src is not None else 0
        if (path := self._path(event.dest_path)) is not None:
            self._debouncer.touch(path, arrived=opens == 0, opens=opens)  # a rename is atomic


@dataclass
class _Pending:
    first_event: float
    last_event: float
    closed: bool  # the last write event was the writer closing the file
    arrived: bool  # renamed or moved in: complete as it is
    stat_key: tuple[int, int] | None  # (size, mtime_ns) at the last event


def _stat_key(path: Path, root: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of what a path reads (a link inside the folder: its target), else None."""
    return inspect_entry(path, root).key


Emitted = FileCandidate | FileRejected


class Debouncer:
    """Collects paths from events and scans; emits each once it is complete."""

    def __init__(
        self,
        folder: FolderSourceConfig,
        emit: Callable[[Emitted], bool],
        stop: threading.Event,
        *,
        open_tracking: bool = False,
    ) -> None:
        self.folder = folder
        self._root = Path(os.path.realpath(folder.path))
        self._emit = emit
        self._stop = stop
        self._open_tracking = open_tracking  # inotify reports opens and closes
        self._lock = threading.Lock()
        self._pending: dict[Path, _Pending] = {}
        self._opens: dict[Path, int] = {}  # open file descriptions seen through inotify
        self._not_before: dict[Path, float] = {}  # rechecks asked for by the agent
        self._skipped: set[Path] = set()  # rejected without a move: said once per run
        self._wake = threading.Event()
        self._rescan = threading.Event()
        self._in_hand = 0  # being hashed or handed over (no longer in _pending)
        self.scanned = threading.Event()  # the startup rescan has listed every file

    def touch(self, path: Path, *, closed: bool = False, arrived: bool = False, opens: int = 0) -> None:
        """Note an event. `arrived`: renamed or moved in, complete as it is. `opens`: open file
        descriptions that came with a rename (a writer renaming a file it still writes)."""
        now = time.monotonic()
        key = _stat_key(path, self._root)
        with self._lock:
            if opens:
                self._opens[path] = self._opens.get(path, 0) + opens
            p = self._pending.get(path)
            if p is None:
                self._pending[path] = _Pending(now, now, closed, arrived, key)
            else:
                p.last_event = now
                p.closed = closed
                p.arrived = arrived
                p.stat_key = key
        self._wake.set()

    def opened(self, path: Path) -> None:
        with self._lock:
            self._opens[path] = self._opens.get(path, 0) + 1

    def forget_opens(self, path: Path) -> int:
        """The file is gone (deleted, or renamed away): drop its open count, and return it."""
        with self._lock:
            return self._opens.pop(path, 0)

    def closed(self, path: Path, *, wrote: bool) -> None:
        with self._lock:
            n = self._opens.pop(path, 0) - 1
            if n > 0:
                self._opens[path] = n
        if wrote:
            self.touch(path, closed=True)
        else:
            self._wake.set()

    def recheck(self, path: Path, after: float = 0.0) -> None:
        """Look at a path again (at the earliest `after` seconds from now): the agent found it
        changed since it was hashed, or incomplete."""
        with self._lock:
            self._not_before[path] = time.monotonic() + after
        self.touch(path)

    def rescan_later(self) -> None:
        self._rescan.set()
        self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._pending) + self._in_hand

    def add_all(self, paths: Iterable[Path]) -> int:
        n = 0
        for path in paths:
            self.touch(path)
            n += 1
        return n

    def _settle(self, path: Path, p: _Pending, now: float) -> float | None:
        """Seconds of quiet this path needs before it is checked; None: wait for its writer."""
        if now < self._not_before.get(path, 0.0):
            return None
        if p.arrived:
            return 0.0
        if self._open_tracking and self._opens.get(path, 0) > 0 and now - p.last_event < OPEN_CEILING:
            return None  # a writer (or reader) still holds it open
        if p.closed:
            return min(self.folder.settle_seconds, CLOSED_SETTLE)
        return self.folder.settle_seconds

    def _due(self) -> list[tuple[Path, _Pending]]:
        now = time.monotonic()
        out = []
        with self._lock:
            for path, p in self._pending.items():
                settle = self._settle(path, p, now)
                if settle is not None and now - p.last_event >= settle:
                    out.append((path, p))
        return out

    def run(self) -> None:
        """The debouncer thread's loop, until the stop event is set."""
        while not self._stop.is_set():
            self._wake.wait(TICK)
            self._wake.clear()
            if self._rescan.is_set():
                self._rescan.clear()
                self.add_all(scan(self.folder))
                self.scanned.set()
            for path, p in self._due():
                if self._stop.is_set():
                    return
                try:
                    self._check(path, p)
                except Exception as exc:  # one file must not stop the folder
                    logger.exception("%s: unexpected error while checking it", display_path(path))
                    self._drop(path, p)
                    self._hand_over(
                        FileRejected(
                            path,
                            f"internal error while checking it: {exc!r}; not read",
                            self.folder,
                            move=False,
                        )
                    )

    def _drop(self, path: Path, p: _Pending) -> bool:
        with self._lock:
            if self._pending.get(path) is not p:
                return False
            del self._pending[path]
            self._not_before.pop(path, None)
            return True

    def _check(self, path: Path, p: _Pending) -> None:
        entry = inspect_entry(path, self._root)
        if entry.reason is not None:
            if self._drop(path, p) and (entry.move or path not in self._skipped):
                if not entry.move:
                    self._skipped.add(path)
                self._hand_over(FileRejected(path, entry.reason, self.folder, move=entry.move))
            return
        key = entry.key
        if key is None:
            self._drop(path, p)
            logger.debug("%s vanished; ignored", display_path(path))
            return
        if key != p.stat_key:
            with self._lock:  # still changing: wait another settle period
                p.last_event = time.monotonic()
                p.stat_key = key
                p.closed = False
                p.arrived = False
            return
        read_path = entry.source or path
        key_after: tuple[int, int] | None
        try:
            digest, key_after = hash_entry(self._root, read_path)
        except OSError as exc:
            logger.debug("%s: cannot read (%s); ignored", display_path(path), exc.strerror)
            key_after = None
            digest = ""
        with self._lock:
            if self._pending.get(path) is not p:
                return
            if key_after is None:
                del self._pending[path]
                return
            if key_after != key:
                p.last_event = time.monotonic()
                p.stat_key = key_after
                return
            del self._pending[path]
            self._not_before.pop(path, None)
        candidate = FileCandidate(
            path,
            digest,
            key[0],
            key[1] / 1e9,
            self.folder,
            p.first_event,
            entry.source,
            p.arrived,
            entry.ident,
        )
        self._hand_over(candidate)

    def _hand_over(self, item: Emitted) -> None:
        with self._lock:
            self._in_hand += 1
        try:
            while not self._stop.is_set():
                if self._emit(item):
                    return
        finally:
            with self._lock:
                self._in_hand -= 1


class FolderSource:
    """One watched folder: observer + debouncer thread. `start()`, then `stop()` (joins both)."""

    def __init__(self, folder: FolderSourceConfig, emit: Callable[[Emitted], bool]) -> None:
        self.folder = folder
        self._stop = threading.Event()
        self.debouncer = Debouncer(folder, emit, self._stop, open_tracking=not folder.polling)
        self._observer: Observer | PollingObserver | None = None
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.folder.source_name

    def start(self) -> None:
        if self.folder.polling:
            observer = PollingObserver(timeout=self.folder.poll_interval)
        else:
            observer = _native_observer()
        observer.schedule(
            _Handler(self.debouncer, self.folder), str(self.folder.path), recursive=self.folder.recursive
        )
        observer.daemon = True
        self._observer = observer
        self._thread = threading.Thread(
            target=self.debouncer.run, name=f"debounce:{self.folder.path}", daemon=True
        )
        try:
            observer.start()
        except OSError as exc:
            raise ConfigError(
                f"{self.name}: cannot watch {self.folder.path} ({exc}); for network shares set polling = true"
            ) from exc
        self._thread.start()
        self.debouncer.rescan_later()  # files that arrived while the agent was down
        logger.info("watching %s (%s)", self.folder.path, "polling" if self.folder.polling else "inotify")

    def pending(self) -> int:
        return self.debouncer.pending()

    def settled(self) -> bool:
        """The startup rescan is done and no file is waiting to be complete."""
        return self.debouncer.scanned.is_set() and self.pending() == 0

    def recheck(self, path: Path, after: float = 0.0) -> None:
        """Look at a file again `after` seconds from now (it changed, or was still being written,
        or a copy of it vanished): it is handed over once it is complete again."""
        self.debouncer.recheck(path, after)

    def stop(self) -> None:
        self._stop.set()
        try:
            if self._observer is not None:
                self._observer.stop()
        finally:
            if self._observer is not None and self._observer.is_alive():
                self._observer.join(timeout=10)
            if self._thread is not None:
                self._thread.join(timeout=10)


def _native_observer() -> Observer:
    """inotify with full move events (a move in from outside is a move, not a creation), else the
    platform's observer."""
    try:
        from watchdog.observers.inotify import InotifyObserver
    except ImportError:  # not Linux
        return Observer()
    return InotifyObserver(generate_full_events=True)
