"""The agent's composition root: sources -> bounded queue -> worker processes -> one SQLite writer.

The thread that calls `Agent.run` is the only one writing to the database. Sources (folder
debouncers, cameras) put work on a bounded queue and block when it is full (backpressure). A file
is claimed (seen -> processing) just before it goes to a worker; its results and its `done`
transition commit in one transaction, so a crash at any point neither loses nor repeats a file:
at startup, files left in `processing` are retried. A worker that dies is restarted and its job
retried, up to the folder's `max_attempts`, then the file is quarantined.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from multiprocessing.connection import wait as wait_connections
from pathlib import Path

from edge_ocr import __version__
from edge_ocr.agent.diskwait import DiskFullWait
from edge_ocr.agent.filing import FileDesk, FileFlight
from edge_ocr.agent.health import Health
from edge_ocr.agent.line_desk import JobOutcome, LineDesk
from edge_ocr.agent.lockwait import LOCK_POLL_MS, WriterLockWait
from edge_ocr.agent.outputs import Outputs
from edge_ocr.agent.preflight import check_folders
from edge_ocr.agent.records import AgentStats, emit_verdicts, store_camera_record
from edge_ocr.agent.retries import RetryQueue
from edge_ocr.agent.sources.camera import CameraCapture, CameraSource
from edge_ocr.agent.sources.folder import FileCandidate, FileRejected, FolderSource
from edge_ocr.agent.storeguard import StoreGuard
from edge_ocr.agent.workers import (
    FramesJob,
    JobDone,
    JobFailed,
    WorkerFatal,
    WorkerHandle,
    WorkerReady,
)
from edge_ocr.config import AfterSuccess, Config
from edge_ocr.errors import EdgeOcrError, StoreError
from edge_ocr.line.model import LineResult, LineVerdict
from edge_ocr.ocr.machine import cores
from edge_ocr.ops import metrics
from edge_ocr.store import agents, files
from edge_ocr.store.agentlock import AgentLocks
from edge_ocr.store.db import (
    Connection,
    SqliteError,
    is_full_error,
    open_connection,
    set_busy_timeout,
    set_durable,
    transaction,
    utcnow,
    waits_for_space,
)
from edge_ocr.store.events import record_event
from edge_ocr.store.files import display_path
from edge_ocr.store.results import PageOutcome, StoredResult
from edge_ocr.store.retention import apply_retention

logger = logging.getLogger(__name__)

TICK = 0.05
MAX_STARTUP_FAILURES = 3
CAMERA_ATTEMPTS = 2


@dataclass
class _CameraFlight:
    job: FramesJob
    item: CameraCapture
    attempts: int = 1


Flight = FileFlight | _CameraFlight
Work = FileCandidate | FileRejected | CameraCapture


class Agent:
    """Run with `run(stop_event)`; returns when the event is set (or, with `once`, when idle)."""

    def __init__(self, cfg: Config, *, once: bool = False, agent_id: str | None = None) -> None:
        folders = tuple(replace(f, path=f.path.expanduser().resolve()) for f in cfg.folders)
        self.cfg = replace(cfg, folders=folders)
        self.once = once
        self.agent_id = agent_id or socket.gethostname()
        self.stats = AgentStats()
        self.jobs: queue.Queue[Work] = queue.Queue(cfg.agent.queue_size)
        self._retries: RetryQueue[Work] = RetryQueue()
        self._inflight: dict[int, Flight] = {}
        self._in_hand = 0  # an item taken from the queues and not yet in flight (being prepared)
        self._next_job = 0
        self._workers: list[WorkerHandle] = []
        self._folders: list[FolderSource] = []
        self._cameras: list[CameraSource] = []
        self._conn = None
        self._desk: FileDesk | None = None
        self._lock_wait: WriterLockWait | None = None
        self._outputs: Outputs | None = None
        self._engine: tuple[str, str] | None = None
        self._started_at = utcnow()
        self._startup_failures = 0
        self._locks: AgentLocks | None = None
        self._guard: StoreGuard | None = None
        self.health = Health()
        self._line: LineDesk | None = None  # the production line's channels, when [line] has any
        self._wake_r, self._wake_w = socket.socketpair()  # a line trigger wakes the loop at once
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.ready = threading.Event()  # set once every worker has loaded its pipeline

    @property
    def line(self) -> LineDesk | None:
        """The production line's desk (channels, hub), when [line] configures a channel."""
        return self._line

    # -- sources' side --------------------------------------------------------------------------
    def submit(self, item: Work, timeout: float = 0.2) -> bool:
        """Put work on the bounded queue; False when it stayed full for `timeout` (caller retries)."""
        try:
            self.jobs.put(item, timeout=timeout)
        except queue.Full:
            return False
        self._wake()  # dispatched now, not at the loop's next tick
        return True

    # -- lifecycle --------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> AgentStats:
        check_folders(self.cfg)
        db_path = self.cfg.db_path()
        # one agent per database and data folder: a second one stops here, naming the first
        self._locks = AgentLocks.take(db_path, self.cfg.data_dir(), self.agent_id)
        try:
            self._conn = open_connection(db_path)
        except BaseException:
            self._locks.release()
            raise
        try:
            # the only writer: wait out another process's write lock instead of failing
            self._lock_wait = WriterLockWait(db_path, self.agent_id, stop, self.cfg.agent.shutdown_grace)
            self._conn.lock_wait = self._lock_wait
            set_busy_timeout(self._conn, LOCK_POLL_MS)
            # a full disk: pause until there is space (and say so), as for a lock
            self._conn.space_wait = DiskFullWait(
                db_path, stop, self.cfg.agent.shutdown_grace, locks=self._locks, health=self.health
            )
            if any(f.after is not AfterSuccess.KEEP for f in self.cfg.folders):
                # an input is archived or deleted only once its result is on disk, power loss or not
                set_durable(self._conn)
            self._guard = StoreGuard(db_path)  # the file opened; checked before each move and tick
            self._outputs = Outputs.from_config(self.cfg.outputs)
            if self.cfg.line.enabled:
                self._line = LineDesk(
                    self.cfg,
                    self._conn,
                    db_path=db_path,
                    wake=self._wake,
                    status_extra=lambda: {
                        "engine": (self._engine or (self.cfg.engine.name, None))[0],
                        "model": (self._engine or (None, None))[1],
                    },
                )
            line = self._line
            self._folders = [
                FolderSource(folder, line.gate_for(folder, self.submit) if line is not None else self.submit)
                for folder in self.cfg.folders
            ]
            self._desk = FileDesk(
                self.cfg,
                self._conn,
                self.stats,
                sources={src.folder: src for src in self._folders},
                outputs=self._outputs,
                retries=self._retries,
                health=self.health,
                guard=self._guard,
                line=self._line,
            )
            files.recover_processing(self._conn)
            record_event(self._conn, "agent.started", f"agent {self.agent_id} started (pid {os.getpid()})")
            self._heartbeat("starting")
            if self._line is not None:
                self._line.start()
            self._start_workers()
            self._start_sources()
            self._loop(stop)
        finally:
            self._shutdown()
        return self.stats

    def _start_workers(self) -> None:
        n = self.cfg.agent.workers or cores()
        threads = self.cfg.engine.threads or max(1, cores() // n)
        scratch = self.cfg.data_dir() / "work"
        shutil.rmtree(scratch, ignore_errors=True)  # copies left by workers that were killed
        for i in range(n):
            w = WorkerHandle(i, self.cfg.engine, threads, scratch)
            w.start()
            self._workers.append(w)
        logger.info("started %d worker(s), %d thread(s) each", n, threads)

    def _start_sources(self) -> None:
        line = self._line
        for src in self._folders:
            src.start()
        for cam in self.cfg.cameras:
            if line is not None:
                csrc = CameraSource(cam, self.submit, continuous=lambda: line.hub.continuous)
                line.attach_camera(csrc)
            else:
                csrc = CameraSource(cam, self.submit)
            self._cameras.append(csrc)
            csrc.start()

    def _wake(self) -> None:
        """Work waits (a line trigger, a capture): end the loop's wait now (any thread)."""
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def queue_depth(self) -> int:
        return (
            self.jobs.qsize()
            + self._in_hand
            + len(self._retries)
            + len(self._inflight)
            + sum(s.pending() for s in self._folders)
        )

    def _idle(self) -> bool:
        return (
            self.jobs.empty()
            and not self._retries
            and not self._inflight
            and all(s.settled() for s in self._folders)
            and all(c.finished.is_set() for c in self._cameras)
        )

    def _loop(self, stop: threading.Event) -> None:
        last_beat = 0.0
        last_retention = 0.0
        idle_since: float | None = None
        while not stop.is_set():
            self._supervise()
            if self._line is not None:
                for item in reversed(self._line.poll()):
                    self._retries.put_first(item)  # a triggered read goes first
            if self._store_intact():
                self._dispatch()
            self._collect(TICK)
            now = time.monotonic()
            if now - last_beat >= self.cfg.agent.heartbeat:
                self._heartbeat("running" if self.ready.is_set() else "starting")
                last_beat = now
            if now - last_retention >= self.cfg.retention.interval:
                self._retention()
                last_retention = now
            if self.once:
                if self._idle():
                    idle_since = idle_since or now
                    if now - idle_since > 0.3:  # idle across a few ticks: nothing in any pipe
                        return
                else:
                    idle_since = None

    def _shutdown(self) -> None:
        grace_until = time.monotonic() + self.cfg.agent.shutdown_grace
        with contextlib.suppress(EdgeOcrError):
            self._heartbeat("stopping")
        for src in (*self._folders, *self._cameras):  # a folder source never started stops at once
            try:
                src.stop()
            except Exception:  # keep stopping the others
                logger.exception("stopping %s", src.name)
        try:
            # finish what the workers hold (and queued camera captures, which have no file to rescan)
            while (
                self._workers
                and (self._inflight or self._has_camera_work())
                and time.monotonic() < grace_until
            ):
                self._supervise(restart=False)
                self._dispatch(cameras_only=True)
                self._collect(TICK)
            for flight in list(self._inflight.values()):
                if isinstance(flight, FileFlight) and self._desk is not None:
                    self._desk.release(flight)
            if self._inflight:
                logger.warning("%d job(s) unfinished at shutdown", len(self._inflight))
        finally:
            for w in self._workers:
                w.stop()
            if self._line is not None:
                self._line.stop()
            if self._outputs is not None:
                self._outputs.close()
            self._wake_r.close()
            self._wake_w.close()
            try:
                if self._conn is not None:
                    try:
                        self._heartbeat("stopped")
                    finally:
                        self._conn.close()
                        self._conn = None
            finally:
                if self._locks is not None:
                    self._locks.release()

    def _store_intact(self) -> bool:
        """False once the database file is not the one the agent opened (`StoreGuard`): then
        nothing more is taken, stored, archived or deleted; `--once` ends with the reason."""
        if self._guard is None or self._guard.intact(self._conn, self.health, self._locks):
            return True
        if self.once:
            raise StoreError(self._guard.message or "the database is gone")
        return False

    def _has_camera_work(self) -> bool:
        return any(isinstance(i, CameraCapture) for i in self._retries) or any(
            isinstance(i, CameraCapture) for i in list(self.jobs.queue)
        )

    # -- workers ----------------------------------------------------------------------------------
    def _supervise(self, restart: bool = True) -> None:
        for w in self._workers:
            if not w.dead():
                continue
            code = w.process.exitcode if w.process else None
            job = w.job
            w.stop(timeout=1)
            if w.ready is None and job is None:
                self._startup_failures += 1
                if self._startup_failures > MAX_STARTUP_FAILURES:
                    raise EdgeOcrError(f"worker processes keep dying while starting (exit code {code})")
            if job is not None:
                self._job_crashed(job.job_id, f"worker crashed (exit code {code})")
            if restart:
                self.stats.worker_restarts += 1
                w.restarts += 1
                logger.warning("worker %d died (exit code %s); restarting it", w.index, code)
                w.start()

    def _collect(self, timeout: float) -> None:
        conns = {w.conn: w for w in self._workers if w.conn is not None}
        for conn in wait_connections([*conns, self._wake_r], timeout):
            if conn is self._wake_r:
                with contextlib.suppress(BlockingIOError, OSError):
                    self._wake_r.recv(4096)
                continue
            w = conns[conn]
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                if w.process is not None:
                    w.process.join(1)
                continue  # _supervise sees it dead
            if isinstance(msg, WorkerReady):
                w.ready = msg
                self._engine = (msg.engine, msg.model)
                if all(x.ready is not None for x in self._workers):
                    if not self.ready.is_set():
                        if self._line is not None:
                            self._line.set_ready(msg.model)
                        self._heartbeat("running")
                    self.ready.set()
            elif isinstance(msg, WorkerFatal):
                err = EdgeOcrError(msg.error)
                err.exit_code = msg.exit_code
                raise err
            else:
                w.job = None
                self._finish(msg, w.versions)

    def _dispatch(self, cameras_only: bool = False) -> None:
        if self._line is not None and not self._line.hub.dispatch_allowed():
            return  # halted: what runs finishes, nothing new starts
        for w in self._workers:
            if not w.idle:
                continue
            while True:
                self._in_hand = 1  # counted by queue_depth() from the moment it leaves a queue
                try:
                    got = self._next_item(cameras_only)
                    if got is None:
                        return
                    item, attempts = got
                    flight = self._prepare(item, attempts)
                    if flight is not None:
                        self._inflight[flight.job.job_id] = flight
                        w.send(flight.job)
                        break
                finally:
                    self._in_hand = 0

    def _next_item(self, cameras_only: bool) -> tuple[Work, int] | None:
        retry = self._retries.take(lambda item: not cameras_only or isinstance(item, CameraCapture))
        if retry is not None:
            return retry
        try:
            item = self.jobs.get_nowait()
        except queue.Empty:
            return None
        if cameras_only and not isinstance(item, CameraCapture):
            return self._next_item(cameras_only)  # dropped: rescanned at the next start
        return item, 1

    def _new_job_id(self) -> int:
        self._next_job += 1
        return self._next_job

    def _prepare(self, item: Work, attempts: int) -> Flight | None:
        if isinstance(item, CameraCapture):
            cam = item.camera
            job = FramesJob(
                self._new_job_id(),
                item.frames,
                item.sharpness,
                cam.rois,
                print_profile=self.cfg.print_profile(cam, item.job.recipe if item.job is not None else None),
            )
            return _CameraFlight(job, item, attempts)
        assert self._desk is not None
        try:
            if isinstance(item, FileRejected):
                self._desk.reject(item)
                return None
            return self._desk.prepare(item, attempts, self._new_job_id())
        except Exception as exc:  # one file must not stop the agent
            self._desk.contain(item, exc)
            return None

    # -- results ----------------------------------------------------------------------------------
    def _finish(self, msg: JobDone | JobFailed, versions: Mapping[str, str]) -> None:
        """A worker's answer; `versions`: its runtime versions, stored with the results."""
        flight = self._inflight.pop(msg.job_id, None)
        if flight is None:
            logger.warning("reply for unknown job %s", msg.job_id)
            return
        metrics.record_job(flight.item, msg)
        if isinstance(flight, _CameraFlight):
            if isinstance(msg, JobDone):
                self._store_camera(flight.item, msg, versions)
            else:
                logger.error("camera %s: record lost: %s", flight.item.camera.name, msg.error)
                self._camera_unread(flight.item, msg.error)
            return
        assert self._desk is not None
        if not self._store_intact():  # kept where it is: read again by the next agent
            logger.info("%s: result not stored: the database is gone", display_path(flight.item.path))
            return
        try:
            self._desk.finish(flight, msg, versions)
        except Exception as exc:  # one file must not stop the agent
            self._desk.contain(flight.item, exc, flight.file_id)

    def _job_crashed(self, job_id: int, error: str) -> None:
        flight = self._inflight.pop(job_id, None)
        if flight is None:
            return
        if isinstance(flight, _CameraFlight):
            if flight.attempts < CAMERA_ATTEMPTS:
                self._retries.put(flight.item, flight.attempts + 1)
            else:
                logger.error("camera %s: record lost: %s", flight.item.camera.name, error)
                self._camera_unread(flight.item, error)
            return
        assert self._desk is not None
        try:
            self._desk.failed(flight, error)
        except Exception as exc:  # one file must not stop the agent
            self._desk.contain(flight.item, exc, flight.file_id)

    def _store_camera(self, cap: CameraCapture, msg: JobDone, versions: Mapping[str, str]) -> None:
        cam = cap.camera
        line = self._line
        recipe_name = cam.recipe
        if line is not None and cap.job is not None:
            recipe_name = cap.job.recipe  # the recipe the trigger asked for, or the line's active one
        captures_dir = self.cfg.data_dir() / "captures"
        recipe = self.cfg.recipes.get(recipe_name) if recipe_name else None

        @waits_for_space
        def store(conn: Connection) -> tuple[StoredResult, PageOutcome, Path, LineResult | None]:
            with transaction(conn):  # the record and the line's result of it commit together
                stored, outcome, path = store_camera_record(
                    conn, cap, msg, captures_dir=captures_dir, recipe=recipe, versions=dict(versions)
                )
                announced = None
                if line is not None:
                    grab = {"grab": cap.grab_ms} if cap.job is not None else None
                    job_outcome = JobOutcome(
                        cam.source_name, [stored], [outcome], image=str(path), timings_ms=grab
                    )
                    announced = line.record(cap.job, job_outcome)
                return stored, outcome, path, announced

        stored, outcome, path, announced = store(self._conn)
        self.stats.camera_records += 1
        emit_verdicts(self._outputs, [stored], [outcome], str(path))
        if line is not None:
            line.announce(announced)

    def _camera_unread(self, cap: CameraCapture, error: str) -> None:
        if self._line is not None:
            self._line.unread(cap.job, cap.camera.source_name, LineVerdict.ERROR, error)

    # -- housekeeping -----------------------------------------------------------------------------
    def _heartbeat(self, state: str) -> None:
        if state == "running" and not self.health.healthy:
            state = "unhealthy"
        problems = self.health.problems()
        if self._guard is not None and self._guard.lost is not None:
            state = "stopped taking files"
        if self._locks is not None:
            self._locks.note(state=state, problems=problems or None)
        if self._conn is None or (self._guard is not None and self._guard.lost is not None):
            return
        engine, model = self._engine or (self.cfg.engine.name, None)
        waits = self._lock_wait
        agents.write_heartbeat(
            self._conn,
            self.agent_id,
            state=state,
            started_at=self._started_at,
            queue_depth=self.queue_depth(),
            engine=engine,
            model=model,
            version=__version__,
            details={
                "workers": len(self._workers),
                "busy": sum(1 for w in self._workers if w.job is not None),
                "heartbeat_s": self.cfg.agent.heartbeat,
                "sources": [s.name for s in (*self._folders, *self._cameras)],
                "files_done": self.stats.files_done,
                "camera_records": self.stats.camera_records,
                "worker_restarts": self.stats.worker_restarts,
                "lock_waits": waits.waits if waits else 0,
                "lock_waited_s": round(waits.waited_s, 1) if waits else 0.0,
                "problems": problems,
                **({"line": self._line.status()} if self._line is not None else {}),
            },
        )

    def _retention(self) -> None:
        r = self.cfg.retention
        if r.max_age_days is None and r.max_rows is None and r.max_images_mb is None:
            return
        try:
            report = apply_retention(
                self._conn,
                owned_images_dir=self.cfg.data_dir() / "captures",
                max_age_days=r.max_age_days,
                max_rows=r.max_rows,
                max_images_mb=r.max_images_mb,
                protect_unsynced=bool(self.cfg.sync),
            )
        except SqliteError as exc:  # a full disk: retention runs again next time
            if not is_full_error(exc, self.cfg.db_path()):
                raise
            logger.warning("retention skipped this time: %s", exc)
            return
        if report.results_deleted or report.images_deleted:
            logger.info(
                "retention: %d result(s), %d image(s), %.1f MB freed",
                report.results_deleted,
                report.images_deleted,
                report.bytes_freed / 1e6,
            )


@contextlib.contextmanager
def running_in_thread(
    cfg: Config, *, name: str = "agent", ready_timeout: float = 60.0, stop_timeout: float = 60.0
) -> Iterator[Agent]:
    """Run an agent in a thread (benchmarks, tests, embedding): yields it once every worker is
    ready, stops and joins it on exit, and re-raises in the caller whatever the agent raised."""
    agent = Agent(cfg)
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            agent.run(stop)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name=name)
    thread.start()
    try:
        deadline = time.monotonic() + ready_timeout
        while not agent.ready.wait(0.05):
            if errors:
                raise errors[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"agent workers not ready within {ready_timeout:.0f} s")
        yield agent
    finally:
        stop.set()
        thread.join(stop_timeout)
        if thread.is_alive():
            raise RuntimeError(f"agent did not stop within {stop_timeout:.0f} s")
    if errors:
        raise errors[0]
