"""The agent's side of the production line: triggers become recorded jobs read from the triggered
source, and every job ends in exactly one result, stored and announced on every channel.

Runs on the agent's writer thread (it writes the database), except `FolderGate.emit`, which a
folder source's thread calls. The channels themselves live in `edge_ocr.line`.

A job's life: a channel's trigger waits in the hub; `poll` records it (`line_jobs`, state queued)
and answers its job id; the triggered source reads for it (a camera: the freshest frames; a folder:
the newest complete file not read yet, or at once "no-read" when there is none); its result is
stored with the job's verdict and MQTT messages in one transaction (`record`), then announced
(`announce`: OPC UA, Modbus, the MQTT sender). A job that cannot be read (a broken file, a worker
that keeps failing, no frame within `job_timeout`) still gets its one result (`unread`). Jobs a
previous agent left queued are finished as errors at start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge_ocr.agent.sources.camera import CameraSource
from edge_ocr.agent.sources.folder import FileCandidate
from edge_ocr.config import Config, FolderSourceConfig
from edge_ocr.line.channels import LineChannels
from edge_ocr.line.hub import PendingTrigger
from edge_ocr.line.model import LineJob, LineResult, LineVerdict, TriggerReply, TriggerStatus
from edge_ocr.store import line as line_store
from edge_ocr.store.db import Connection, SqliteError, transaction, waits_for_space
from edge_ocr.store.results import PageOutcome, StoredResult

logger = logging.getLogger(__name__)

#: newest complete files a triggered folder keeps in view (older ones stay on disk, unread)
HELD_FILES = 256
#: MQTT messages the broker acknowledged are forgotten after a day (the results stay, with their
#: line jobs, until retention removes them), looked at every ten minutes
ACKED_KEPT_S = 86_400.0
PRUNE_EVERY_S = 600.0


class FolderGate:
    """A folder whose files are read on line triggers: complete files are held, and a trigger
    takes the newest; in continuous execution they pass straight through."""

    def __init__(
        self, folder: FolderSourceConfig, submit: Callable[[Any, float], bool], continuous: Callable[[], bool]
    ) -> None:
        self.folder = folder
        self._submit = submit
        self._continuous = continuous
        self._lock = threading.Lock()
        self._held: dict[Path, FileCandidate] = {}

    def emit(self, item: Any, timeout: float = 0.2) -> bool:
        """The folder source's emit: hold complete files while the line waits for triggers."""
        if not isinstance(item, FileCandidate) or self._continuous():
            return self._submit(item, timeout)
        with self._lock:
            self._held.pop(item.path, None)
            self._held[item.path] = item
            while len(self._held) > HELD_FILES:
                oldest = min(self._held.values(), key=lambda c: c.mtime)
                del self._held[oldest.path]
        return True

    def newest(self) -> FileCandidate | None:
        with self._lock:
            if not self._held:
                return None
            cand = max(self._held.values(), key=lambda c: (c.mtime, c.seen_at))
            del self._held[cand.path]
            return cand

    def release_all(self) -> list[FileCandidate]:
        """Continuous execution started: every held file is read, oldest first."""
        with self._lock:
            out = sorted(self._held.values(), key=lambda c: c.mtime)
            self._held.clear()
            return out

    def held(self) -> int:
        with self._lock:
            return len(self._held)


@dataclass(frozen=True)
class JobOutcome:
    """What a job's source gave: its stored results, or why there was nothing to store."""

    source: str
    stored: Sequence[StoredResult] = ()
    pages: Sequence[PageOutcome] = ()
    image: str | None = None
    image_sha256: str | None = None
    verdict: LineVerdict | None = None  # set when nothing was read (no-read, error)
    reason: str = ""
    timings_ms: dict[str, float] | None = None


class LineDesk:
    """Owns the line's channels for the agent; every method runs on the agent's writer thread."""

    def __init__(
        self,
        cfg: Config,
        conn: Connection,
        *,
        db_path: Path,
        wake: Callable[[], None],
        status_extra: Callable[[], dict[str, Any]],
    ) -> None:
        self.cfg = cfg
        self.conn = conn
        self.channels = LineChannels(cfg, db_path=db_path, wake=wake, status_extra=status_extra)
        self.hub = self.channels.hub
        self.station = self.hub.station
        self._queued: dict[int, LineJob] = {}  # jobs recorded and not yet finished
        self._camera: CameraSource | None = None
        self._gate: FolderGate | None = None
        self._was_continuous = self.hub.continuous
        self._pruned_at = time.monotonic()
        self.model: str | None = None

    # -- wiring ------------------------------------------------------------------------------------
    def gate_for(
        self, folder: FolderSourceConfig, submit: Callable[[Any, float], bool]
    ) -> Callable[..., bool]:
        """The emit a folder source gets: through a gate when it is the triggered source."""
        if self.hub.triggered_source != folder.source_name:
            return submit
        self._gate = FolderGate(folder, submit, lambda: self.hub.continuous)
        return self._gate.emit

    def attach_camera(self, camera: CameraSource) -> None:
        if self.hub.triggered_source == camera.name:
            self._camera = camera

    def start(self) -> list[LineResult]:
        """Finish the jobs a previous agent left queued (each gets its one result, an error), then
        start the channels. Returns those results (already stored)."""
        orphans = []
        for row in line_store.orphaned_jobs(self.conn):
            job = LineJob(row.job_id, row.origin, row.recipe, row.meas_id, row.part_id, row.requested_at)
            result = self._finish_unread(
                job, row.source or "", LineVerdict.ERROR, "the agent stopped before the job was read"
            )
            if result is not None:
                orphans.append(result)
        if orphans:
            logger.warning("line: %d job(s) left by a stopped agent finished as errors", len(orphans))
        self.channels.start()
        for result in orphans:
            self.announce(result)
        return orphans

    def stop(self) -> None:
        """Stop the channels (MQTT waits a moment for outstanding acknowledgements), then record the
        acknowledgements that came in, so a restart does not send those messages again."""
        self.channels.stop()
        acks = self.channels.take_acks()
        if acks:
            line_store.ack_messages(self.conn, acks)

    def set_ready(self, model: str | None) -> None:
        self.model = model
        self.hub.set_ready(True)

    # -- each turn of the agent's loop -------------------------------------------------------------
    def poll(self) -> list[Any]:
        """Record waiting triggers, send each to its source, time out jobs that got nothing, record
        broker acknowledgements. Returns work for the agent to dispatch first (folder files)."""
        work: list[Any] = []
        acks = self.channels.take_acks()
        if acks:
            line_store.ack_messages(self.conn, acks)
        now = time.monotonic()
        if now - self._pruned_at > PRUNE_EVERY_S:
            self._pruned_at = now
            line_store.prune_acked(self.conn, older_than_iso=_iso_ago(ACKED_KEPT_S))
        continuous = self.hub.continuous
        if continuous and not self._was_continuous and self._gate is not None:
            work.extend(self._gate.release_all())
        self._was_continuous = continuous
        for pending in self.hub.take_triggers():
            item = self._take(pending)
            if item is not None:
                work.append(item)
        self._expire()
        return work

    def _take(self, pending: PendingTrigger) -> Any:
        req = pending.request
        source = self.hub.triggered_source or ""
        recipe = req.recipe or self.hub.active_recipe
        try:
            row = line_store.create_job(
                self.conn,
                origin=req.origin,
                source=source,
                recipe=recipe,
                meas_id=req.meas_id,
                part_id=req.part_id,
            )
        except SqliteError as exc:
            logger.error("line: cannot record a trigger: %s", exc)
            self.hub.refused(
                pending, TriggerReply(TriggerStatus.REFUSED, reason=f"the store cannot record it: {exc}")
            )
            return None
        job = LineJob(
            row.job_id, req.origin, recipe, req.meas_id, req.part_id, row.requested_at, pending.received_mono
        )
        self._queued[job.job_id] = job
        if not self.hub.accepted(pending, job):
            self.unread(
                job, source, LineVerdict.ERROR, "the trigger's channel stopped waiting for its job id"
            )
            return None
        if self._camera is not None:
            self._camera.read_for(job)
            return None
        if self._gate is not None:
            cand = self._gate.newest()
            if cand is None:
                self.unread(job, source, LineVerdict.NO_READ, f"no new image in {self._gate.folder.path}")
                return None
            return replace(cand, job=job)
        self.unread(job, source, LineVerdict.ERROR, "the triggered source is not running")
        return None

    def _expire(self) -> None:
        limit = self.cfg.line.job_timeout
        now = time.monotonic()
        for job in list(self._queued.values()):
            if job.requested_mono and now - job.requested_mono > limit:
                self.unread(
                    job,
                    self.hub.triggered_source or "",
                    LineVerdict.NO_READ,
                    f"nothing to read within {limit:g} s",
                )

    # -- results -----------------------------------------------------------------------------------
    def record(self, job: LineJob | None, outcome: JobOutcome) -> LineResult | None:
        """Inside the transaction that stored `outcome`: finish the job (or record a read the station
        made on its own as a job) and queue its MQTT messages; nothing else changes until
        `announce`, so a transaction rolled back and run again (a full disk) records it again. None
        when the job already has its result (it timed out): the read is kept in the store, not
        announced twice."""
        if job is not None and job.job_id not in self._queued:
            logger.warning(
                "line: job %d already has its result; a late read is stored, not announced", job.job_id
            )
            return None
        pages = outcome.pages
        verdict = outcome.verdict or _verdict_of(pages)
        recipe = next((p.verdict.recipe for p in pages if p.verdict is not None), None)
        if job is None:
            row = line_store.create_job(
                self.conn, origin="continuous", source=outcome.source, recipe=recipe or self.hub.active_recipe
            )
            job = LineJob(row.job_id, "continuous", row.recipe, requested_at=row.requested_at)
        first = outcome.stored[0] if outcome.stored else None
        at = line_store.finish_job(
            self.conn,
            job.job_id,
            verdict=verdict.value,
            result_id=first.result_id if first else None,
            capture_id=first.capture_id if first else None,
            error=outcome.reason or None,
        )
        result = LineResult(
            job_id=job.job_id,
            station=self.station,
            origin=job.origin,
            source=outcome.source,
            verdict=verdict,
            text="\n".join(p.result.text for p in pages),
            confidence=min((_confidence(p) for p in pages), default=0.0),
            reasons=tuple(r for p in pages if p.verdict is not None for r in p.verdict.reasons)
            or ((outcome.reason,) if outcome.reason else ()),
            fields={k: v for p in pages if p.verdict is not None for k, v in p.verdict.fields.items()},
            recipe=recipe or job.recipe,
            image_sha256=outcome.image_sha256,
            image=outcome.image,
            model=pages[0].result.model if pages else self.model,
            at=at,
            result_id=first.result_id if first else None,
            capture_id=first.capture_id if first else None,
            pages=len(pages),
            meas_id=job.meas_id,
            part_id=job.part_id,
            timings_ms=_timings(job, pages, outcome.timings_ms),
        )
        line_store.add_messages(self.conn, job.job_id, self.channels.messages_for(result))
        return result

    def announce(self, result: LineResult | None) -> None:
        """After the commit: the job has its result (a transaction rolled back and run again records
        it again); to OPC UA, Modbus and the MQTT sender."""
        if result is None:
            return
        self._queued.pop(result.job_id, None)
        self.hub.publish(result)
        self.channels.wake_publishers()

    def unread(self, job: LineJob | None, source: str, verdict: LineVerdict, reason: str) -> None:
        """A job that ends without a stored read: its one result says why."""
        if job is None or job.job_id not in self._queued:
            return
        result = self._finish_unread(job, source, verdict, reason)
        self.announce(result)

    def _finish_unread(
        self, job: LineJob, source: str, verdict: LineVerdict, reason: str
    ) -> LineResult | None:
        self._queued[job.job_id] = job
        return _record_alone(self.conn, self, job, JobOutcome(source, verdict=verdict, reason=reason))

    def status(self) -> dict[str, Any]:
        out = self.channels.status()
        out["unsent_messages"] = line_store.count_unacked(self.conn)
        if self._gate is not None:
            out["held_files"] = self._gate.held()
        return out


@waits_for_space
def _record_alone(conn: Connection, desk: LineDesk, job: LineJob, outcome: JobOutcome) -> LineResult | None:
    """A job's result with nothing else to store, in a transaction of its own (waiting for space)."""
    with transaction(conn):
        return desk.record(job, outcome)


def _iso_ago(seconds: float) -> str:
    """The store's time format, `seconds` ago."""
    from datetime import datetime, timedelta, timezone

    then = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    return then.strftime("%Y-%m-%dT%H:%M:%S.") + f"{then.microsecond // 1000:03d}Z"


def _verdict_of(pages: Sequence[PageOutcome]) -> LineVerdict:
    """Worst page first: fail, no-read, pass. No recipe: a page with any text passes."""
    verdicts = []
    for p in pages:
        if p.verdict is not None:
            verdicts.append(
                {"pass": LineVerdict.PASS, "fail": LineVerdict.FAIL}.get(
                    p.verdict.status, LineVerdict.NO_READ
                )
            )
        else:
            verdicts.append(LineVerdict.PASS if p.result.text.strip() else LineVerdict.NO_READ)
    for worst in (LineVerdict.FAIL, LineVerdict.NO_READ):
        if worst in verdicts:
            return worst
    return LineVerdict.PASS if verdicts else LineVerdict.NO_READ


def _confidence(page: PageOutcome) -> float:
    lines = page.result.lines
    return float(sum(ln.confidence for ln in lines) / len(lines)) if lines else 0.0


def _timings(job: LineJob, pages: Sequence[PageOutcome], extra: dict[str, float] | None) -> dict[str, float]:
    out: dict[str, float] = dict(extra or {})
    for p in pages:
        for k in ("det", "cls", "rec", "post", "total"):
            if k in p.result.timings_ms:
                out[k] = out.get(k, 0.0) + float(p.result.timings_ms[k])
    if job.requested_mono:
        out["trigger_to_commit"] = (time.monotonic() - job.requested_mono) * 1000
    return out
