"""Worker processes: each opens its own OCR pipeline and answers jobs over a pipe.

The parent (agent/app.py) owns the database; workers never touch it. A worker holds at most one
job; if it dies, the parent sees EOF on its pipe (or its exit code), restarts it and retries the
job. Workers ignore SIGINT (the parent coordinates shutdown) and exit when the parent disappears.

A file job reads exactly the bytes the folder source hashed: the worker opens the file once, from
a handle on the watched folder (`sources.dirfd`: never through a link, so never outside it),
copies it to its scratch folder while hashing, and answers `changed` when the hash differs; the
pipeline then reads the copy. Error messages never carry the file's bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import multiprocessing as mp
import os
import re
import shutil
import signal
import stat
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edge_ocr.agent.sources import dirfd
from edge_ocr.config import EngineConfig, Roi
from edge_ocr.errors import EdgeOcrError, InputError
from edge_ocr.types import OcrResult, PrintProfile

logger = logging.getLogger(__name__)

# Test hook: a worker reading a file whose name contains this marker dies at once, as a crashing
# native library would. Only read from the environment, only used by the test suite.
ENV_CRASH_MARK = "EDGE_OCR_TEST_CRASH_MARK"
_MP = mp.get_context("spawn")


@dataclass(frozen=True)
class FileJob:
    job_id: int
    file_id: int
    path: str  # what to open (a file, or the target of a link inside the folder)
    sha256: str = ""  # the content the folder source hashed ("" = do not check)
    root: str = ""  # the watched folder's real path: nothing outside it is opened ("" = no check)
    name: str = ""  # the file's name for messages (display form)
    print_profile: PrintProfile = PrintProfile.AUTO  # the source's print (Config.print_profile)


@dataclass(frozen=True)
class FramesJob:
    """Frames of one physical object (camera): OCR each (or its ROIs), vote, keep the sharpest."""

    job_id: int
    frames: tuple[np.ndarray, ...]
    sharpness: tuple[float, ...]
    rois: tuple[Roi, ...] = ()
    print_profile: PrintProfile = PrintProfile.AUTO  # the camera's print (Config.print_profile)


@dataclass(frozen=True)
class PageRead:
    index: int
    count: int
    result: OcrResult
    best_frame: int | None = None  # FramesJob: the frame kept as the record's image


@dataclass(frozen=True)
class JobDone:
    job_id: int
    pages: tuple[PageRead, ...]
    elapsed_ms: float


@dataclass(frozen=True)
class JobFailed:
    job_id: int
    error: str
    bad_input: bool  # the input can never be read (quarantine at once)
    vanished: bool = False  # the file disappeared before it was read
    changed: bool = False  # the content is not what was hashed (still being written): look again
    incomplete: bool = False  # empty or truncated: maybe still being written
    mtime: float | None = None  # the file's mtime when it was read (time.time() scale)
    internal: bool = False  # the agent's own trouble (its scratch folder, its disk): not the file's


@dataclass(frozen=True)
class WorkerReady:
    engine: str
    model: str
    versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerFatal:
    error: str
    exit_code: int = 1


def _run_rois(
    pipe, image: np.ndarray, rois: tuple[Roi, ...], use_cls: bool, print_profile: PrintProfile
) -> OcrResult:
    if not rois:
        return pipe.run(image, cls=use_cls, print_profile=print_profile)
    from edge_ocr.types import TextLine

    lines: list[TextLine] = []
    timings: dict[str, float] = {}
    h, w = image.shape[:2]
    for roi in rois:
        crop = image[roi.y : min(roi.y + roi.h, h), roi.x : min(roi.x + roi.w, w)]
        if crop.size == 0:
            continue
        res = pipe.run(np.ascontiguousarray(crop), cls=use_cls, print_profile=print_profile)
        for k, v in res.timings_ms.items():
            timings[k] = timings.get(k, 0.0) + v
        for line in res.lines:
            box = tuple((x + roi.x, y + roi.y) for x, y in line.box)
            lines.append(TextLine(line.text, line.confidence, box, line.raw_text, line.corrections))  # type: ignore[arg-type]
    return OcrResult(tuple(lines), (w, h), pipe.engine_name, pipe.model_id, timings)


_BYTES_REPR = re.compile(r"\bb'(?:[^'\\]|\\.)*'" + r'|\bb"(?:[^"\\]|\\.)*"')


def scrub(message: str) -> str:
    """An error message without any bytes of the file in it (`b'...'` reprs)."""
    return _BYTES_REPR.sub("<file bytes withheld>", message)


def _open_job_file(job: FileJob) -> int | JobFailed:
    """A descriptor on the job's file: found from the watched folder's handle (`dirfd`), never
    through a link; or the JobFailed saying why not."""
    name = job.name or job.path
    try:
        if job.root:
            return dirfd.open_file(job.root, dirfd.parts_under(job.path, job.root))
        return os.open(job.path, dirfd.READ_FLAGS)
    except FileNotFoundError:
        return JobFailed(job.job_id, f"{name}: no such file", bad_input=False, vanished=True)
    except (dirfd.LinkInTheWay, dirfd.NotUnderRoot) as exc:  # swapped since it was hashed: look again
        return JobFailed(job.job_id, f"{name}: {exc.strerror}", bad_input=False, changed=True)
    except OSError as exc:
        return JobFailed(job.job_id, f"{name}: cannot open ({exc.strerror}); not read", bad_input=True)


def _open_scratch(scratch: Path) -> BinaryIO:
    """The copy's file in the worker's scratch folder; a folder removed under the agent (a
    temporary-file cleaner, a second agent of old) is made again."""
    try:
        return scratch.open("wb")
    except FileNotFoundError:
        scratch.parent.mkdir(parents=True, exist_ok=True)
        return scratch.open("wb")


def _own_trouble(job: FileJob, what: str) -> JobFailed:
    return JobFailed(
        job.job_id,
        f"the agent {what}; not the file's fault: it is kept and read again",
        bad_input=False,
        internal=True,
    )


def _copy_checked(job: FileJob, scratch: Path) -> tuple[Path, float] | JobFailed:
    """Copy the job's file to `scratch` while hashing it; a JobFailed when it must not be read."""
    from edge_ocr.ocr.imageio import MAX_FILE_BYTES

    name = job.name or job.path
    fd = _open_job_file(job)
    if isinstance(fd, JobFailed):
        return fd
    with os.fdopen(fd, "rb") as src:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return JobFailed(job.job_id, f"{name}: not a regular file; not read", bad_input=True)
        if st.st_size > MAX_FILE_BYTES:
            return JobFailed(
                job.job_id,
                f"{name}: file is {st.st_size / 1e6:.0f} MB, over the {MAX_FILE_BYTES / 1e6:.0f} MB limit",
                bad_input=True,
            )
        h = hashlib.sha256()
        try:
            dst = _open_scratch(scratch)
        except OSError as exc:
            return _own_trouble(job, f"cannot write its copy in {scratch.parent} ({exc.strerror or exc})")
        try:
            while block := src.read(1 << 20):  # an error reading is the input's: raised as before
                h.update(block)
                try:
                    dst.write(block)
                except OSError as exc:  # a full disk, the scratch folder gone: the agent's
                    return _own_trouble(job, f"cannot write its copy in {scratch.parent} ({exc.strerror})")
            try:
                dst.close()
            except OSError as exc:
                return _own_trouble(job, f"cannot write its copy in {scratch.parent} ({exc.strerror})")
        finally:
            with contextlib.suppress(OSError):
                dst.close()
    if job.sha256 and h.hexdigest() != job.sha256:
        return JobFailed(job.job_id, f"{name}: changed since it was hashed", bad_input=False, changed=True)
    return scratch, st.st_mtime


def _do_file(pipe, job: FileJob, use_cls: bool, scratch_dir: Path) -> JobDone | JobFailed:
    from edge_ocr.ocr.imageio import read_pages

    mark = os.environ.get(ENV_CRASH_MARK)
    if mark and mark in Path(job.path).name:
        os._exit(70)
    t0 = time.perf_counter()
    copied = _copy_checked(job, scratch_dir / "input")
    if isinstance(copied, JobFailed):
        return copied
    path, mtime = copied
    pages = []
    try:
        for page in read_pages(path):
            result = pipe.run(page.image, cls=use_cls, print_profile=job.print_profile)
            pages.append(PageRead(page.index, page.count, result))
    except InputError as exc:
        if not path.exists():  # the copy was removed while it was read: not the file's fault
            return _own_trouble(job, f"lost its copy in {path.parent} while reading it")
        message = scrub(str(exc).replace(str(path), job.name or job.path))
        incomplete = "truncated" in message or "file is empty" in message
        return JobFailed(job.job_id, message, bad_input=True, incomplete=incomplete, mtime=mtime)
    finally:
        path.unlink(missing_ok=True)
    return JobDone(job.job_id, tuple(pages), (time.perf_counter() - t0) * 1000)


def _do_frames(pipe, job: FramesJob, use_cls: bool) -> JobDone:
    from edge_ocr.agent.sources.camera import vote

    t0 = time.perf_counter()
    results = [_run_rois(pipe, frame, job.rois, use_cls, job.print_profile) for frame in job.frames]
    voted, best = vote(results, job.sharpness)
    return JobDone(job.job_id, (PageRead(0, 1, voted, best),), (time.perf_counter() - t0) * 1000)


def worker_main(
    conn: Connection, engine: EngineConfig, threads: int, scratch_root: str | None = None
) -> None:
    """Entry point of a worker process."""
    try:
        if scratch_root:
            Path(scratch_root).mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="worker-", dir=scratch_root))
    except OSError as exc:  # an unwritable data folder: the system's temporary folder will do
        logger.warning("cannot use %s for copies (%s); using the temporary folder", scratch_root, exc)
        scratch = Path(tempfile.mkdtemp(prefix="edge-ocr-worker-"))
    try:
        _serve_jobs(conn, engine, threads, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _serve_jobs(conn: Connection, engine: EngineConfig, threads: int, scratch: Path) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = mp.parent_process()
    from edge_ocr.ocr.reader import open_pipeline

    try:
        pipe = open_pipeline(
            engine.name, engine.variant, models=engine.models, models_dir=engine.models_dir, threads=threads
        )
    except EdgeOcrError as exc:
        conn.send(WorkerFatal(str(exc), exc.exit_code))
        return
    with pipe:
        conn.send(WorkerReady(pipe.engine_name, pipe.model_id, dict(pipe.engine.versions())))
        while True:
            if not conn.poll(0.5):
                if parent is not None and not parent.is_alive():
                    return  # the agent was killed: nothing to report to
                continue
            try:
                job = conn.recv()
            except (EOFError, OSError):
                return
            if job is None:
                return
            try:
                if isinstance(job, FileJob):
                    reply = _do_file(pipe, job, engine.cls, scratch)
                else:
                    reply = _do_frames(pipe, job, engine.cls)
            except Exception as exc:  # an engine bug must not kill the worker silently
                logger.exception("job %s failed", job.job_id)
                reply = JobFailed(
                    job.job_id, scrub(f"internal error: {type(exc).__name__}: {exc}"), bad_input=False
                )
            try:
                conn.send(reply)
            except (BrokenPipeError, OSError):
                return


class WorkerHandle:
    """The parent's view of one worker process."""

    def __init__(
        self, index: int, engine: EngineConfig, threads: int, scratch_root: Path | None = None
    ) -> None:
        self.index = index
        self._engine = engine
        self._threads = threads
        self._scratch_root = str(scratch_root) if scratch_root else None
        self.process: mp.process.BaseProcess | None = None
        self.conn: Connection | None = None
        self.ready: WorkerReady | None = None
        self.job: FileJob | FramesJob | None = None
        self.job_started: float = 0.0
        self.started_at = 0.0
        self.restarts = 0

    def start(self) -> None:
        parent_conn, child_conn = _MP.Pipe(duplex=True)
        proc = _MP.Process(
            target=worker_main,
            args=(child_conn, self._engine, self._threads, self._scratch_root),
            name=f"edge-ocr-worker-{self.index}",
            daemon=True,
        )
        proc.start()
        child_conn.close()
        self.process, self.conn = proc, parent_conn
        self.ready, self.job = None, None
        self.started_at = time.monotonic()

    @property
    def idle(self) -> bool:
        return self.ready is not None and self.job is None

    @property
    def versions(self) -> dict[str, str]:
        """The runtime versions this worker reported when it was ready (stored with its results)."""
        return dict(self.ready.versions) if self.ready is not None else {}

    def send(self, job: FileJob | FramesJob) -> None:
        assert self.conn is not None
        self.job = job
        self.job_started = time.monotonic()
        self.conn.send(job)

    def dead(self) -> bool:
        return self.process is None or self.process.exitcode is not None

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit; terminate it if it does not. Always joins."""
        proc, conn = self.process, self.conn
        if proc is None:
            return
        try:
            if conn is not None and proc.exitcode is None:
                conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        proc.join(timeout)
        if proc.exitcode is None:
            proc.terminate()
            proc.join(timeout)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
        if conn is not None:
            conn.close()
        self.process, self.conn = None, None
