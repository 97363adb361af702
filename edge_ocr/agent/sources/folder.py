"""Folder source: a watchdog observer, a debouncer with a size/mtime-stable check, a startup rescan.

Watchdog handlers only note paths. The debouncer thread waits until a file's size and mtime have
stayed the same for `settle_seconds` (shorter after inotify reports the writer closed it), hashes it
and hands a `FileCandidate` to `emit`, which may block (backpressure). Claiming, reading and the
state machine belong to the agent; this module also holds the moves done after a file is finished
(archive, delete, quarantine with an `.error.txt` beside the file).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from edge_ocr.config import AfterSuccess, Config, FolderSourceConfig
from edge_ocr.errors import ConfigError

logger = logging.getLogger(__name__)

CLOSED_SETTLE = 0.1  # seconds of stability required after the writer closed the file
TICK = 0.05


@dataclass(frozen=True)
class FileCandidate:
    """A file that is completely written, with its content hash."""

    path: Path
    sha256: str
    size: int
    mtime: float
    folder: FolderSourceConfig
    seen_at: float  # time.monotonic() of the first event, for latency figures


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def check_folders(cfg: Config) -> None:
    """Refuse folders that overlap: an input inside (or holding) another input, or an archive or
    quarantine folder. Raises ConfigError naming both."""
    inputs = [(f, f.path.expanduser().resolve()) for f in cfg.folders]
    for f, p in inputs:
        if not p.is_dir():
            raise ConfigError(f"{f.source_name}: {p} is not a folder; create it or fix sources.folder.path")
    outputs = []
    for f, _ in inputs:
        outputs.append((f"archive folder of {f.source_name}", cfg.archive_dir(f).expanduser().resolve()))
        outputs.append(
            (f"quarantine folder of {f.source_name}", cfg.quarantine_dir(f).expanduser().resolve())
        )
    for i, (f, p) in enumerate(inputs):
        for _g, q in inputs[i + 1 :]:
            if _inside(p, q) or _inside(q, p):
                raise ConfigError(f"input folders overlap: {p} and {q}; watch each folder once")
        for what, q in outputs:
            if _inside(p, q) or _inside(q, p):
                raise ConfigError(
                    f"{f.source_name}: input {p} overlaps the {what} {q}; "
                    "choose archive_dir/quarantine_dir outside every input folder"
                )


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
    """Files under the folder that match its globs. Folder symlinks are not followed (no loops)."""
    root = folder.path
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=_walk_error):
        if not folder.recursive:
            dirnames.clear()
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if wanted(folder, p):
                yield p


def _walk_error(exc: OSError) -> None:
    logger.warning("cannot list %s: %s", exc.filename, exc.strerror)


class _Handler(FileSystemEventHandler):
    """Only notes paths in the debouncer."""

    def __init__(self, debouncer: Debouncer, folder: FolderSourceConfig) -> None:
        self._debouncer = debouncer
        self._folder = folder

    def _note(self, raw: str | bytes, closed: bool = False) -> None:
        path = Path(os.fsdecode(raw))
        if wanted(self._folder, path):
            self._debouncer.touch(path, closed=closed)

    def on_created(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._note(event.src_path)

    def on_modified(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._note(event.src_path)

    def on_closed(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._note(event.src_path, closed=True)

    def on_moved(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            self._debouncer.rescan_later()
        else:
            self._note(event.dest_path, closed=True)  # a rename into the folder is atomic: complete


@dataclass
class _Pending:
    first_event: float
    last_event: float
    closed: bool
    stat_key: tuple[int, int] | None  # (size, mtime_ns) at the last event


def _stat_key(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of a regular file (following a file symlink), else None."""
    try:
        st = path.stat()
    except OSError:  # vanished, permission, symlink loop
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return st.st_size, st.st_mtime_ns


class Debouncer:
    """Collects paths from events and scans; emits each once its size and mtime are stable."""

    def __init__(
        self,
        folder: FolderSourceConfig,
        emit: Callable[[FileCandidate], bool],
        stop: threading.Event,
    ) -> None:
        self.folder = folder
        self._emit = emit
        self._stop = stop
        self._lock = threading.Lock()
        self._pending: dict[Path, _Pending] = {}
        self._wake = threading.Event()
        self._rescan = threading.Event()
        self._in_hand = 0  # being hashed or handed over (no longer in _pending)
        self.scanned = threading.Event()  # the startup rescan has listed every file

    def touch(self, path: Path, *, closed: bool = False) -> None:
        now = time.monotonic()
        key = _stat_key(path)
        with self._lock:
            p = self._pending.get(path)
            if p is None:
                self._pending[path] = _Pending(now, now, closed, key)
            else:
                p.last_event = now
                p.closed = closed
                p.stat_key = key
        self._wake.set()

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

    def _due(self) -> list[tuple[Path, _Pending]]:
        now = time.monotonic()
        out = []
        with self._lock:
            for path, p in self._pending.items():
                settle = (
                    min(self.folder.settle_seconds, CLOSED_SETTLE) if p.closed else self.folder.settle_seconds
                )
                if now - p.last_event >= settle:
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
                self._check(path, p)

    def _check(self, path: Path, p: _Pending) -> None:
        key = _stat_key(path)
        if key is None:
            with self._lock:
                if self._pending.get(path) is p:
                    del self._pending[path]
            logger.debug("%s vanished or is not a regular file; ignored", path)
            return
        if key != p.stat_key:
            with self._lock:  # still changing: wait another settle period
                p.last_event = time.monotonic()
                p.stat_key = key
                p.closed = False
            return
        try:
            digest = sha256_file(path)
            key_after = _stat_key(path)
        except OSError as exc:
            logger.debug("%s: cannot read (%s); ignored", path, exc)
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
            self._in_hand += 1
        candidate = FileCandidate(path, digest, key[0], key[1] / 1e9, self.folder, p.first_event)
        try:
            while not self._stop.is_set():
                if self._emit(candidate):
                    return
        finally:
            with self._lock:
                self._in_hand -= 1


class FolderSource:
    """One watched folder: observer + debouncer thread. `start()`, then `stop()` (joins both)."""

    def __init__(self, folder: FolderSourceConfig, emit: Callable[[FileCandidate], bool]) -> None:
        self.folder = folder
        self._stop = threading.Event()
        self.debouncer = Debouncer(folder, emit, self._stop)
        self._observer: Observer | PollingObserver | None = None
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.folder.source_name

    def start(self) -> None:
        if self.folder.polling:
            observer = PollingObserver(timeout=self.folder.poll_interval)
        else:
            observer = Observer()
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


# -- after a file is finished ---------------------------------------------------------------------


def _unique_target(target: Path) -> Path:
    if not target.exists():
        return target
    stem, suffix = target.stem, target.suffix
    for n in range(1, 10_000):
        candidate = target.with_name(f"{stem}.{n}{suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(target)


def _move_under(path: Path, root: Path, dest_root: Path) -> Path:
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = Path(path.name)
    target = _unique_target(dest_root / rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), str(target))
    return target


def after_success(folder: FolderSourceConfig, path: Path, archive_dir: Path) -> Path | None:
    """Keep, archive or delete a finished file. Returns where the file now is (None: deleted or gone)."""
    if not path.exists():
        return None
    if folder.after is AfterSuccess.KEEP:
        return path
    if folder.after is AfterSuccess.DELETE:
        path.unlink(missing_ok=True)
        return None
    return _move_under(path, folder.path, archive_dir)


def quarantine(folder: FolderSourceConfig, path: Path, quarantine_dir: Path, error: str) -> Path | None:
    """Move a bad file to the quarantine folder with `<name>.error.txt` beside it."""
    if not path.exists() and not path.is_symlink():
        return None
    target = _move_under(path, folder.path, quarantine_dir)
    target.with_name(target.name + ".error.txt").write_text(
        f"{path}\n{error}\nquarantined at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n", encoding="utf-8"
    )
    return target
