"""The agent's side of folder files: a complete file becomes a claimed job, a worker's answer
becomes stored results, a retry, a look again later, or a quarantine.

Runs on the agent's writer thread only (it writes the database). Every name written anywhere
people read goes through `display_path`; the store keeps the exact name (`store.files.path_key`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edge_ocr.agent.health import Health
from edge_ocr.agent.line_desk import JobOutcome, LineDesk
from edge_ocr.agent.outputs import Outputs
from edge_ocr.agent.records import AgentStats, emit_verdicts, page_outcomes
from edge_ocr.agent.retries import RetryQueue
from edge_ocr.agent.sources.dirfd import Identity
from edge_ocr.agent.sources.folder import FileCandidate, FileRejected
from edge_ocr.agent.sources.moves import NOTE_SUFFIX, NoteNotWritten, after_success, quarantine
from edge_ocr.agent.storeguard import StoreGuard
from edge_ocr.agent.workers import FileJob, JobDone, JobFailed
from edge_ocr.config import AfterSuccess, Config, FolderSourceConfig
from edge_ocr.line.model import LineResult, LineVerdict
from edge_ocr.store import files
from edge_ocr.store.db import Connection, is_store_failure, transaction, waits_for_space
from edge_ocr.store.events import record_event
from edge_ocr.store.files import clean_text, display_path
from edge_ocr.store.results import StoredResult, set_stored_image

logger = logging.getLogger(__name__)

SCRATCH = "scratch folder"  # the Health kind of the workers' own copies failing
INCOMPLETE_GRACE = 5.0  # seconds: a truncated file modified more recently may still be written
UNEXPECTED = (Exception,)


@dataclass
class FileFlight:
    """A file job in a worker."""

    job: FileJob
    item: FileCandidate
    file_id: int
    attempts: int = 1


class Rechecking(Protocol):
    """A folder source: it looks at a path again and hands it over once it is complete."""

    def recheck(self, path: Path, after: float = 0.0) -> None: ...


class FileDesk:
    """Claims, stores and moves folder files, counting in `stats`. Its collaborators: each folder's
    source (`sources`, by folder: a file handed back is looked at again there), the verdict
    `outputs`, and the agent's `retries` (a failed file's next attempt)."""

    def __init__(
        self,
        cfg: Config,
        conn: Connection,
        stats: AgentStats,
        *,
        sources: Mapping[FolderSourceConfig, Rechecking],
        outputs: Outputs,
        retries: RetryQueue,
        health: Health | None = None,
        guard: StoreGuard | None = None,
        line: LineDesk | None = None,
    ) -> None:
        self.cfg = cfg
        self.health = health or Health()
        self.guard = guard  # archive or delete an input only while the database is the one opened
        self.conn = conn
        self.stats = stats
        self.sources = sources
        self.outputs = outputs
        self.retries = retries
        self.line = line  # the production line: a file read for a trigger ends its job

    # -- before a worker --------------------------------------------------------------------------
    def prepare(self, item: FileCandidate, attempts: int, job_id: int) -> FileFlight | None:
        """The job for a complete file, or None when there is nothing to read (done, duplicate,
        quarantined, or someone else has it)."""
        folder = item.folder
        row = files.observe_file(self.conn, folder.source_name, item.path, item.sha256, item.size, item.mtime)
        if row.state is files.FileState.DONE:
            if row.duplicate_of is not None and attempts == 1:
                self.stats.files_duplicate += 1
            self._unread(item, LineVerdict.NO_READ, "the newest image was read before (the same content)")
            self.after_success(folder, item.path, [], expect=item.ident)
            return None
        if row.state is files.FileState.QUARANTINED:
            self._unread(item, LineVerdict.ERROR, row.last_error or "quarantined")
            self.quarantine_move(folder, item.path, row.last_error or "quarantined", expect=item.ident)
            return None
        if not files.claim_file(self.conn, row.id):
            self._unread(item, LineVerdict.ERROR, "the image is being read already")
            return None
        job = FileJob(
            job_id,
            row.id,
            str(item.read_path),
            sha256=item.sha256,
            root=str(folder.path),
            name=display_path(item.path),
            print_profile=self.cfg.print_profile(folder, item.job.recipe if item.job is not None else None),
        )
        return FileFlight(job, item, row.id, attempts)

    def reject(self, item: FileRejected) -> None:
        """Record an entry that is never read; quarantine it unless it is a folder."""
        shown = display_path(item.path)
        if not item.move:
            record_event(self.conn, "file.skipped", f"{shown}: {item.reason}", level="warning", subject=shown)
            logger.warning("skipped %s: %s", shown, item.reason)
            return
        row = files.reject_file(self.conn, item.folder.source_name, item.path, item.reason)
        self.quarantine_move(item.folder, item.path, row.last_error or item.reason)

    # -- a worker's answer ------------------------------------------------------------------------
    def finish(self, flight: FileFlight, msg: JobDone | JobFailed, versions: Mapping[str, str]) -> None:
        """A worker's answer; `versions`: that worker's runtime versions, stored with its results."""
        cand = flight.item
        if isinstance(msg, JobDone):
            self.health.recovered(SCRATCH)
            self._store(flight, msg, versions)
        elif msg.internal:
            self._own_trouble(flight, msg.error)
        elif msg.changed:
            self._hand_back(flight, msg.error, after=0.0)
        elif msg.incomplete and msg.mtime is not None and time.time() - msg.mtime < INCOMPLETE_GRACE:
            self._hand_back(flight, msg.error, after=INCOMPLETE_GRACE)
        elif msg.vanished:
            self._unread(cand, LineVerdict.NO_READ, f"the image went away before it was read: {msg.error}")
            dupes = files.forget_file(self.conn, flight.file_id, msg.error, vanished=True)
            self._recheck_paths(cand, dupes)
        elif msg.bad_input:
            self._unread(cand, LineVerdict.ERROR, msg.error)
            files.quarantine_file(self.conn, flight.file_id, msg.error)
            self.quarantine_move(cand.folder, cand.path, msg.error, expect=cand.ident)
        else:
            self.failed(flight, msg.error)

    def failed(self, flight: FileFlight, error: str) -> None:
        """An attempt failed (worker error or crash): retry, or quarantine once attempts are used."""
        cand = flight.item
        state = files.fail_file(self.conn, flight.file_id, error, cand.folder.max_attempts)
        if state is files.FileState.QUARANTINED:
            self._unread(cand, LineVerdict.ERROR, error)
            self.quarantine_move(cand.folder, cand.path, error, expect=cand.ident)
        else:
            self.stats.files_failed += 1
            self.retries.put(cand, flight.attempts + 1)

    def _own_trouble(self, flight: FileFlight, error: str) -> None:
        """The agent's own trouble (its scratch folder, its disk), not the file's: the file goes back
        to `seen` without counting the attempt and is read again after a pause that grows while
        the trouble lasts (`Health`)."""
        cand = flight.item
        self._unread(cand, LineVerdict.ERROR, f"the station could not read it now: {error}")
        files.release_file(self.conn, flight.file_id)
        self.health.failed(SCRATCH, error)
        after = self.health.retry_after(SCRATCH)
        logger.warning("%s: %s; reading it again in %.1f s", display_path(cand.path), error, after)
        self.sources[cand.folder].recheck(cand.path, after)

    def release(self, flight: FileFlight) -> None:
        """Shutdown before the worker answered: the file goes back to `seen` (rescanned at start)."""
        files.release_file(self.conn, flight.file_id)
        logger.info("handed back %s", display_path(flight.item.path))

    def _hand_back(self, flight: FileFlight, why: str, *, after: float) -> None:
        """Not the content that was hashed, or not complete yet: forget this row and let the
        folder source look again (one file, one result, however slowly it is written)."""
        cand = flight.item
        self._unread(cand, LineVerdict.NO_READ, f"the image was still changing when it was read ({why})")
        dupes = files.forget_file(self.conn, flight.file_id, why)
        self.stats.files_incomplete += 1
        logger.info("%s: %s; looking again in %.1f s", display_path(cand.path), why, after)
        self.sources[cand.folder].recheck(cand.path, after)
        self._recheck_paths(cand, dupes)

    def _recheck_paths(self, cand: FileCandidate, keys: list[str | bytes]) -> None:
        for key in keys:
            self.sources[cand.folder].recheck(Path(os.fsdecode(key)), 0.0)

    def _store(self, flight: FileFlight, msg: JobDone, versions: Mapping[str, str]) -> None:
        cand = flight.item
        folder = cand.folder
        recipe_name = cand.job.recipe if cand.job is not None else folder.recipe
        recipe = self.cfg.recipes.get(recipe_name) if recipe_name else None
        pages = page_outcomes(folder, cand, msg, recipe)
        line = self.line

        @waits_for_space
        def store(conn: Connection) -> tuple[list[StoredResult], LineResult | None]:
            with transaction(conn):  # the result, its file's `done` and the line's record of it together
                stored = files.complete_file(conn, flight.file_id, pages, model_versions=dict(versions))
                outcome = JobOutcome(
                    folder.source_name, stored, pages, image=display_path(cand.path), image_sha256=cand.sha256
                )
                return stored, (line.record(cand.job, outcome) if line is not None else None)

        try:
            stored, announced = store(self.conn)
        except files.StaleClaimError as exc:
            logger.warning("%s: %s; result discarded", display_path(cand.path), exc)
            self._unread(cand, LineVerdict.ERROR, "the image was claimed by another reader")
            return
        if line is not None:
            line.announce(announced)
        self.stats.files_done += 1
        latency = time.monotonic() - cand.seen_at
        self.stats.latencies_s.append(latency)
        (self.stats.latencies_renamed_s if cand.arrived else self.stats.latencies_written_s).append(latency)
        emit_verdicts(self.outputs, stored, pages, display_path(cand.path))
        self.after_success(folder, cand.path, [s.capture_id for s in stored], expect=cand.ident)

    # -- containment ------------------------------------------------------------------------------
    def contain(
        self, item: FileCandidate | FileRejected, exc: BaseException, file_id: int | None = None
    ) -> None:
        """An unexpected error while handling one file: log its traceback, quarantine the file with
        the reason recorded, and go on. A database that cannot be written (locked past the stop
        grace, full, damaged) is not the file's fault: that propagates."""
        if is_store_failure(exc):
            raise exc
        shown = display_path(item.path)
        reason = clean_text(f"internal error while handling it: {type(exc).__name__}: {exc} (see the log)")
        logger.error("%s: %s", shown, reason, exc_info=exc)
        if isinstance(item, FileCandidate):
            self._unread(item, LineVerdict.ERROR, reason)
        try:
            if file_id is not None:
                files.quarantine_file(self.conn, file_id, reason)
            else:
                files.reject_file(self.conn, item.folder.source_name, item.path, reason)
        except UNEXPECTED:
            logger.exception("%s: the quarantine could not be recorded either", shown)
        self.quarantine_move(item.folder, item.path, reason, expect=getattr(item, "ident", None))

    def _unread(self, cand: FileCandidate, verdict: LineVerdict, reason: str) -> None:
        """A file read for a line trigger that gives no result: its job still gets one."""
        if self.line is not None and cand.job is not None:
            self.line.unread(cand.job, cand.folder.source_name, verdict, clean_text(reason))

    # -- moves ------------------------------------------------------------------------------------
    def after_success(
        self,
        folder: FolderSourceConfig,
        path: Path,
        capture_ids: list[int],
        *,
        expect: Identity | None = None,
    ) -> None:
        lost = self.guard.check() if self.guard is not None else None
        if lost is not None and folder.after is not AfterSuccess.KEEP:
            logger.error(
                "%s: not %sd: the database %s, so its result is not kept; it stays where it is",
                display_path(path),
                folder.after.value,
                lost,
            )
            return
        try:
            where = after_success(folder, path, self.cfg.archive_dir(folder), expect=expect)
        except OSError as exc:
            logger.error(
                "%s: done, but cannot %s it: %s", display_path(path), folder.after.value, exc.strerror or exc
            )
            return
        if capture_ids and where != path:
            set_stored_image(self.conn, capture_ids, os.fsencode(where) if where else None)

    def quarantine_move(
        self, folder: FolderSourceConfig, path: Path, error: str, *, expect: Identity | None = None
    ) -> None:
        self.stats.files_quarantined += 1
        shown = display_path(path)
        try:
            target = quarantine(folder, path, self.cfg.quarantine_dir(folder), error, expect=expect)
        except NoteNotWritten as exc:
            logger.error(
                "quarantined %s -> %s: %s; its note (%s) could not be written: %s",
                shown,
                display_path(exc.target),
                clean_text(error),
                display_path(exc.target.name) + NOTE_SUFFIX,
                exc.strerror,
            )
            return
        except OSError as exc:
            logger.error("%s: cannot move to quarantine: %s", shown, exc.strerror or exc)
            return
        logger.warning("quarantined %s -> %s: %s", shown, display_path(target or ""), clean_text(error))
