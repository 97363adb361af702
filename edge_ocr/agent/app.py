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
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from multiprocessing.connection import wait as wait_connections
from pathlib import Path

import cv2

from edge_ocr import __version__
from edge_ocr.agent.outputs import Outputs
from edge_ocr.agent.sources.camera import CameraCapture, CameraSource
from edge_ocr.agent.sources.folder import (
    FileCandidate,
    FolderSource,
    after_success,
    check_folders,
    quarantine,
)
from edge_ocr.agent.workers import (
    FileJob,
    FramesJob,
    JobDone,
    JobFailed,
    WorkerFatal,
    WorkerHandle,
    WorkerReady,
)
from edge_ocr.config import AfterSuccess, Config, FolderSourceConfig
from edge_ocr.errors import EdgeOcrError
from edge_ocr.ocr.machine import cores
from edge_ocr.ops import metrics
from edge_ocr.rules.verdict import Verdict, evaluate
from edge_ocr.store import results as store
from edge_ocr.store.db import open_connection, utcnow
from edge_ocr.store.events import log_event

logger = logging.getLogger(__name__)

TICK = 0.05
MAX_STARTUP_FAILURES = 3
CAMERA_ATTEMPTS = 2


@dataclass
class AgentStats:
    files_done: int = 0
    files_duplicate: int = 0
    files_failed: int = 0
    files_quarantined: int = 0
    camera_records: int = 0
    worker_restarts: int = 0
    latencies_s: list[float] = field(default_factory=list)  # first event -> commit


@dataclass
class _InFlight:
    job: FileJob | FramesJob
    item: FileCandidate | CameraCapture
    file_id: int | None = None
    attempts: int = 1


def verdict_info(verdict: Verdict) -> store.VerdictInfo:
    return store.VerdictInfo(verdict.status.value, verdict.reasons, verdict.fields_dict(), verdict.recipe)


class Agent:
    """Run with `run(stop_event)`; returns when the event is set (or, with `once`, when idle)."""

    def __init__(self, cfg: Config, *, once: bool = False, agent_id: str | None = None) -> None:
        folders = tuple(replace(f, path=f.path.expanduser().resolve()) for f in cfg.folders)
        self.cfg = replace(cfg, folders=folders)
        self.once = once
        self.agent_id = agent_id or socket.gethostname()
        self.stats = AgentStats()
        self.jobs: queue.Queue[FileCandidate | CameraCapture] = queue.Queue(cfg.agent.queue_size)
        self._retry: deque[tuple[FileCandidate | CameraCapture, int]] = deque()
        self._inflight: dict[int, _InFlight] = {}
        self._next_job = 0
        self._workers: list[WorkerHandle] = []
        self._folders: list[FolderSource] = []
        self._cameras: list[CameraSource] = []
        self._conn = None
        self._outputs: Outputs | None = None
        self._engine: tuple[str, str] | None = None
        self._versions: dict[str, str] = {}
        self._started_at = utcnow()
        self._startup_failures = 0
        self.ready = threading.Event()  # set once every worker has loaded its pipeline

    # -- sources' side --------------------------------------------------------------------------
    def submit(self, item: FileCandidate | CameraCapture, timeout: float = 0.2) -> bool:
        """Put work on the bounded queue; False when it stayed full for `timeout` (caller retries)."""
        try:
            self.jobs.put(item, timeout=timeout)
            return True
        except queue.Full:
            return False

    # -- lifecycle --------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> AgentStats:
        check_folders(self.cfg)
        self._conn = open_connection(self.cfg.db_path())
        try:
            store.recover_processing(self._conn)
            log_event(self._conn, "agent.started", f"agent {self.agent_id} started (pid {os.getpid()})")
            self._heartbeat("starting")
            self._outputs = Outputs.from_config(self.cfg.outputs)
            self._start_workers()
            self._start_sources()
            self._loop(stop)
        finally:
            self._shutdown()
        return self.stats

    def _start_workers(self) -> None:
        n = self.cfg.agent.workers or cores()
        threads = self.cfg.engine.threads or max(1, cores() // n)
        for i in range(n):
            w = WorkerHandle(i, self.cfg.engine, threads)
            w.start()
            self._workers.append(w)
        logger.info("started %d worker(s), %d thread(s) each", n, threads)

    def _start_sources(self) -> None:
        for folder in self.cfg.folders:
            src = FolderSource(folder, self.submit)
            self._folders.append(src)
            src.start()
        for cam in self.cfg.cameras:
            csrc = CameraSource(cam, self.submit)
            self._cameras.append(csrc)
            csrc.start()

    def queue_depth(self) -> int:
        return (
            self.jobs.qsize()
            + len(self._retry)
            + len(self._inflight)
            + sum(s.pending() for s in self._folders)
        )

    def _idle(self) -> bool:
        return (
            self.jobs.empty()
            and not self._retry
            and not self._inflight
            and all(s.debouncer.scanned.is_set() and s.pending() == 0 for s in self._folders)
            and all(c.finished.is_set() for c in self._cameras)
        )

    def _loop(self, stop: threading.Event) -> None:
        last_beat = 0.0
        last_retention = 0.0
        idle_since: float | None = None
        while not stop.is_set():
            self._supervise()
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
        for src in (*self._folders, *self._cameras):
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
                if flight.file_id is not None and self._conn is not None:
                    store.release_file(self._conn, flight.file_id)
                    logger.info("handed back %s", flight.job.path)  # type: ignore[union-attr]
            if self._inflight:
                logger.warning("%d job(s) unfinished at shutdown", len(self._inflight))
        finally:
            for w in self._workers:
                w.stop()
            if self._outputs is not None:
                self._outputs.close()
            if self._conn is not None:
                try:
                    self._heartbeat("stopped")
                finally:
                    self._conn.close()
                    self._conn = None

    def _has_camera_work(self) -> bool:
        return any(isinstance(i, CameraCapture) for i, _ in self._retry) or any(
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
                self._job_crashed(job, f"worker crashed (exit code {code})")
            if restart:
                self.stats.worker_restarts += 1
                w.restarts += 1
                logger.warning("worker %d died (exit code %s); restarting it", w.index, code)
                w.start()

    def _collect(self, timeout: float) -> None:
        conns = {w.conn: w for w in self._workers if w.conn is not None}
        if not conns:
            time.sleep(timeout)
            return
        for conn in wait_connections(list(conns), timeout):
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
                self._versions = msg.versions
                if all(x.ready is not None for x in self._workers):
                    if not self.ready.is_set():
                        self._heartbeat("running")
                    self.ready.set()
            elif isinstance(msg, WorkerFatal):
                err = EdgeOcrError(msg.error)
                err.exit_code = msg.exit_code
                raise err
            else:
                w.job = None
                self._finish(msg)

    def _dispatch(self, cameras_only: bool = False) -> None:
        for w in self._workers:
            if not w.idle:
                continue
            while True:
                got = self._next_item(cameras_only)
                if got is None:
                    return
                item, attempts = got
                flight = self._prepare(item, attempts)
                if flight is not None:
                    self._inflight[flight.job.job_id] = flight
                    w.send(flight.job)
                    break

    def _next_item(self, cameras_only: bool) -> tuple[FileCandidate | CameraCapture, int] | None:
        if self._retry and (not cameras_only or isinstance(self._retry[0][0], CameraCapture)):
            return self._retry.popleft()
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

    def _prepare(self, item: FileCandidate | CameraCapture, attempts: int) -> _InFlight | None:
        if isinstance(item, CameraCapture):
            cam = item.camera
            return _InFlight(
                FramesJob(
                    self._new_job_id(),
                    item.frames,
                    item.sharpness,
                    cam.rois,
                    print_profile=self.cfg.print_profile(cam),
                ),
                item,
                None,
                attempts,
            )
        conn = self._conn
        folder = item.folder
        row = store.observe_file(conn, folder.source_name, str(item.path), item.sha256, item.size, item.mtime)
        if row.state is store.FileState.DONE:
            if row.duplicate_of is not None and attempts == 1:
                self.stats.files_duplicate += 1
            self._after_success(folder, item.path, [])
            return None
        if row.state is store.FileState.QUARANTINED:
            self._quarantine_move(folder, item.path, row.last_error or "quarantined")
            return None
        if not store.claim_file(conn, row.id):
            return None
        job = FileJob(
            self._new_job_id(), row.id, str(item.path), print_profile=self.cfg.print_profile(folder)
        )
        return _InFlight(job, item, row.id, attempts)

    # -- results ----------------------------------------------------------------------------------
    def _finish(self, msg: JobDone | JobFailed) -> None:
        flight = self._inflight.pop(msg.job_id, None)
        if flight is None:
            logger.warning("reply for unknown job %s", msg.job_id)
            return
        metrics.record_job(flight.item, msg)
        if isinstance(flight.item, CameraCapture):
            if isinstance(msg, JobDone):
                self._store_camera(flight.item, msg)
            else:
                logger.error("camera %s: record lost: %s", flight.item.camera.name, msg.error)
            return
        cand = flight.item
        if isinstance(msg, JobDone):
            self._store_file(flight, cand, msg)
        elif msg.vanished:
            store.fail_file(self._conn, flight.file_id, msg.error, max_attempts=1 << 30)
            self.stats.files_failed += 1
        elif msg.bad_input:
            store.quarantine_file(self._conn, flight.file_id, msg.error)
            self._quarantine_move(cand.folder, cand.path, msg.error)
        else:
            self._file_failed(flight, msg.error)

    def _job_crashed(self, job: FileJob | FramesJob, error: str) -> None:
        flight = self._inflight.pop(job.job_id, None)
        if flight is None:
            return
        if isinstance(flight.item, CameraCapture):
            if flight.attempts < CAMERA_ATTEMPTS:
                self._retry.append((flight.item, flight.attempts + 1))
            else:
                logger.error("camera %s: record lost: %s", flight.item.camera.name, error)
            return
        self._file_failed(flight, error)

    def _file_failed(self, flight: _InFlight, error: str) -> None:
        cand = flight.item
        assert isinstance(cand, FileCandidate) and flight.file_id is not None
        state = store.fail_file(self._conn, flight.file_id, error, cand.folder.max_attempts)
        if state is store.FileState.QUARANTINED:
            self._quarantine_move(cand.folder, cand.path, error)
        else:
            self.stats.files_failed += 1
            self._retry.append((cand, flight.attempts + 1))

    def _store_file(self, flight: _InFlight, cand: FileCandidate, msg: JobDone) -> None:
        folder = cand.folder
        recipe = self.cfg.recipes.get(folder.recipe) if folder.recipe else None
        pages = []
        verdicts: list[Verdict] = []
        for page in msg.pages:
            cap = store.CaptureInfo(
                source=folder.source_name,
                source_path=str(cand.path),
                page=page.index + 1,
                sha256=cand.sha256,
                size=cand.size,
                width=page.result.image_size[0],
                height=page.result.image_size[1],
                stored_image=str(cand.path) if folder.after is not AfterSuccess.DELETE else None,
                station=folder.station,
                recipe=folder.recipe,
            )
            verdict = evaluate(recipe, page.result) if recipe else None
            if verdict:
                verdicts.append(verdict)
            pages.append(store.PageOutcome(cap, page.result, verdict_info(verdict) if verdict else None))
        try:
            stored = store.complete_file(self._conn, flight.file_id, pages, model_versions=self._versions)
        except store.StaleClaimError as exc:
            logger.warning("%s: %s; result discarded", cand.path, exc)
            return
        self.stats.files_done += 1
        self.stats.latencies_s.append(time.monotonic() - cand.seen_at)
        self._emit_verdicts(stored, pages, str(cand.path))
        self._after_success(folder, cand.path, [s.capture_id for s in stored])

    def _store_camera(self, cap: CameraCapture, msg: JobDone) -> None:
        cam = cap.camera
        page = msg.pages[0]
        best = page.best_frame or 0
        image = cap.frames[best]
        day = cap.captured_at[:10]
        out_dir = self.cfg.data_dir() / "captures" / cam.name / day
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = cap.captured_at.replace(":", "").replace("-", "").replace(".", "")
        path = out_dir / f"{stamp}_{msg.job_id}.jpg"
        if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92]):
            logger.error("cannot write %s", path)
        recipe = self.cfg.recipes.get(cam.recipe) if cam.recipe else None
        verdict = evaluate(recipe, page.result) if recipe else None
        info = store.CaptureInfo(
            source=cam.source_name,
            source_path=str(path),
            width=int(image.shape[1]),
            height=int(image.shape[0]),
            stored_image=str(path),
            station=cam.station,
            recipe=cam.recipe,
        )
        outcome = store.PageOutcome(info, page.result, verdict_info(verdict) if verdict else None)
        stored = store.store_capture(self._conn, outcome, model_versions=self._versions)
        self.stats.camera_records += 1
        self._emit_verdicts([stored], [outcome], str(path))

    def _emit_verdicts(
        self, stored: list[store.StoredResult], pages: list[store.PageOutcome], image: str
    ) -> None:
        metrics.record_outcomes(pages)
        if self._outputs is None or not self._outputs.sinks:
            return
        for s, p in zip(stored, pages):
            if p.verdict is None or s.verdict_id is None:
                continue
            self._outputs.emit(
                {
                    "verdict_id": s.verdict_id,
                    "result_id": s.result_id,
                    "capture_id": s.capture_id,
                    "image": image,
                    "page": p.capture.page,
                    "station": p.capture.station,
                    "recipe": p.verdict.recipe,
                    "verdict": p.verdict.status,
                    "reasons": list(p.verdict.reasons),
                    "fields": p.verdict.fields,
                    "text": p.result.text,
                    "at": datetime.now().astimezone().isoformat(timespec="milliseconds"),
                }
            )

    def _after_success(self, folder: FolderSourceConfig, path: Path, capture_ids: list[int]) -> None:
        try:
            where = after_success(folder, path, self.cfg.archive_dir(folder))
        except OSError as exc:
            logger.error("%s: done, but cannot %s it: %s", path, folder.after.value, exc)
            return
        if capture_ids and where != path:
            with store.transaction(self._conn):
                marks = ",".join("?" * len(capture_ids))
                self._conn.execute(
                    f"UPDATE captures SET stored_image = ? WHERE id IN ({marks})",
                    (str(where) if where else None, *capture_ids),
                )

    def _quarantine_move(self, folder: FolderSourceConfig, path: Path, error: str) -> None:
        self.stats.files_quarantined += 1
        try:
            target = quarantine(folder, path, self.cfg.quarantine_dir(folder), error)
        except OSError as exc:
            logger.error("%s: cannot move to quarantine: %s", path, exc)
            return
        logger.warning("quarantined %s -> %s: %s", path, target, error)

    # -- housekeeping -----------------------------------------------------------------------------
    def _heartbeat(self, state: str) -> None:
        if self._conn is None:
            return
        engine, model = self._engine or (self.cfg.engine.name, None)
        store.write_heartbeat(
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
            },
        )

    def _retention(self) -> None:
        r = self.cfg.retention
        if r.max_age_days is None and r.max_rows is None and r.max_images_mb is None:
            return
        report = store.apply_retention(
            self._conn,
            owned_images_dir=self.cfg.data_dir() / "captures",
            max_age_days=r.max_age_days,
            max_rows=r.max_rows,
            max_images_mb=r.max_images_mb,
            protect_unsynced=bool(self.cfg.sync),
        )
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
