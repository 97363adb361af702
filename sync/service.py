"""The sync service: cut outbox rows into batches, send them, mark them synced on acknowledgement.

Runs inside `edge-ocr run` (a thread: `SyncService(config, db_path, stop_event).run()`) or once
from `edge-ocr sync --once`. It is safe to kill at any point: batches and their exact bodies are
in the database, so a restart resends the same batch ids and the endpoint answers "duplicate"
for any it already stored.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from edge_ocr.store import outbox, sync_state
from edge_ocr.store.db import open_connection, utcnow
from edge_ocr.store.sync_state import UploadState
from edge_ocr_sync.backoff import Backoff, CircuitBreaker, CircuitState, parse_retry_after
from edge_ocr_sync.client import Answer, EndpointClient
from edge_ocr_sync.config import SyncConfig
from edge_ocr_sync.payload import make_serializer

logger = logging.getLogger(__name__)

PENDING, SKIPPED = UploadState.PENDING, UploadState.SKIPPED

UPLOADS_PER_PASS = 20


@dataclass
class SyncReport:
    batches_cut: int = 0
    batches_sent: int = 0
    batches_acked: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    records_acked: int = 0
    failures: int = 0
    images_uploaded: int = 0
    last_error: str | None = None
    circuit: str = CircuitState.CLOSED.value
    retry_in_s: float | None = None
    pending_batches: int = 0
    queued_records: int = 0

    @property
    def drained(self) -> bool:
        return self.pending_batches == 0 and self.queued_records == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def then(self, later: SyncReport) -> SyncReport:
        """This pass followed by `later`: the counts added up, the state (last error, circuit,
        what is still pending) as `later` left it; what `sync --once` reports over its passes."""
        counts = {f: getattr(self, f) + getattr(later, f) for f in _COUNTS}
        return replace(later, **counts, last_error=later.last_error or self.last_error)


_COUNTS = (
    "batches_cut",
    "batches_sent",
    "batches_acked",
    "duplicates",
    "conflicts",
    "rejected",
    "records_acked",
    "failures",
    "images_uploaded",
)


class _Retryable(Exception):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SyncService:
    def __init__(
        self,
        config: SyncConfig,
        db_path: Path | None,
        stop_event: threading.Event | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.db_path = db_path
        self.stop_event = stop_event or threading.Event()
        self._transport = transport
        self._secret = config.load_secret()
        self._serialize = make_serializer(config.device_id)
        self.backoff = Backoff(config.backoff_base_s, config.backoff_max_s, rng or random.Random())
        self.breaker = CircuitBreaker(config.circuit_failures, config.circuit_open_s)
        self._not_before = 0.0  # monotonic time before which no request is sent (backoff)
        self._conn = None
        self._client: EndpointClient | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def _open(self):
        if self._conn is None:
            self._conn = open_connection(self.db_path)
            self._set_state(endpoint=self.config.endpoint_url, device_id=self.config.device_id)
        if self._client is None:
            self._client = EndpointClient(self.config, self._secret, transport=self._transport)
        return self._conn, self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run(self) -> None:
        """Loop until the stop event is set; the caller runs this in a thread and joins it."""
        logger.info("sync service started: %s as %s", self.config.endpoint_url, self.config.device_id)
        try:
            while not self.stop_event.is_set():
                try:
                    report = self.run_once()
                except Exception:  # keep the loop alive: the database may be busy, a bug must not stop sync
                    logger.exception("sync pass failed")
                    wait = self.backoff.next_delay()
                else:
                    if report.retry_in_s is not None:
                        wait = report.retry_in_s
                    elif report.pending_batches or report.queued_records >= self.config.batch_max_records:
                        wait = 0.0
                    else:
                        wait = self.config.poll_interval_s
                self.stop_event.wait(wait)
        finally:
            self.close()
            logger.info("sync service stopped")

    # --- one pass -------------------------------------------------------------------------------
    def run_once(self, *, flush: bool = False) -> SyncReport:
        """Cut due batches (all queued rows with `flush`), send pending batches while the endpoint
        accepts them, then upload images if configured. Never raises for endpoint failures."""
        conn, client = self._open()
        report = SyncReport()
        while True:
            batch = outbox.cut_batch(
                conn,
                self._serialize,
                max_records=self.config.batch_max_records,
                max_age_s=self.config.batch_max_age_s,
                force=flush,
            )
            if batch is None:
                break
            report.batches_cut += 1
        sent_ok = self._send_batches(conn, client, report)
        if sent_ok and self.config.upload_images and not report.failures:
            self._upload_images(conn, client, report)
        stats = outbox.outbox_stats(conn)
        report.pending_batches = stats["pending_batches"]
        report.queued_records = stats["queued_records"]
        report.circuit = self.breaker.state.value
        now = time.monotonic()
        if report.failures or now < self._not_before:
            report.retry_in_s = max(self._not_before - now, 0.0)
        if not self.breaker.allow():
            report.retry_in_s = max(report.retry_in_s or 0.0, self.breaker.remaining_s())
        self._set_state(circuit=report.circuit, consecutive_failures=self.breaker.consecutive_failures)
        return report

    def _send_batches(self, conn, client: EndpointClient, report: SyncReport) -> bool:
        if time.monotonic() < self._not_before or not self.breaker.allow():
            return False
        for batch in outbox.pending_batches(conn, self.config.max_batches_per_pass):
            if self.stop_event.is_set():
                return False
            body = batch.body
            if body is None:  # cut by an older version: rebuild from its rows
                body, sha = self._serialize(
                    outbox.batch_rows(conn, batch.batch_id), batch.batch_id, batch.created_at
                )
                if sha != batch.content_sha256:
                    logger.error("batch %s: rebuilt content differs; releasing its rows", batch.batch_id)
                    outbox.release_batch(conn, batch.batch_id)
                    continue
            report.batches_sent += 1
            try:
                answer = client.post_batch(body)
                self._handle_batch_answer(conn, batch, answer, report)
            except _Retryable as exc:
                self._failure(conn, batch.batch_id, str(exc), exc.retry_after_s, report)
                return False
            except httpx.TransportError as exc:
                self._failure(
                    conn,
                    batch.batch_id,
                    f"endpoint unreachable: {exc.__class__.__name__}: {exc}",
                    None,
                    report,
                )
                return False
        return True

    def _handle_batch_answer(
        self, conn, batch: outbox.PendingBatch, answer: Answer, report: SyncReport
    ) -> None:
        if answer.status == 200:
            if (
                answer.body.get("content_sha256") != batch.content_sha256
                or answer.body.get("batch_id") != batch.batch_id
            ):
                raise _Retryable(f"batch {batch.batch_id}: acknowledgement does not match the batch")
            n = outbox.ack_batch(conn, batch.batch_id, batch.content_sha256)
            outbox.record_attempt(conn, batch.batch_id, None)
            report.batches_acked += 1
            report.records_acked += n
            if answer.body.get("status") == "duplicate":
                report.duplicates += 1
            self._success()
            logger.debug(
                "batch %s acknowledged (%s, %d records)", batch.batch_id, answer.body.get("status"), n
            )
            return
        if answer.status == 409:
            # the endpoint holds other content under this id: send these rows again under a new id
            logger.error(
                "batch %s: %s; re-cutting its rows under a new batch id", batch.batch_id, answer.error
            )
            outbox.release_batch(conn, batch.batch_id)
            report.conflicts += 1
            self._success()
            return
        retry_after = parse_retry_after(answer.retry_after)
        if answer.status in (408, 425, 429) or answer.status >= 500:
            raise _Retryable(f"endpoint answered {answer.status}: {answer.error}", retry_after)
        if answer.status in (401, 403):
            raise _Retryable(
                f"endpoint refused the request ({answer.status}: {answer.error}); check device_id, "
                "the secret file and the clock"
            )
        # 400/413/...: this batch is refused; keep it, report it, and go on with the others
        outbox.record_attempt(conn, batch.batch_id, f"{answer.status}: {answer.error}")
        report.rejected += 1
        report.last_error = f"batch {batch.batch_id} refused ({answer.status}): {answer.error}"
        self._set_state(last_error=report.last_error, last_error_at=utcnow())
        logger.error("%s", report.last_error)

    def _success(self) -> None:
        if self.breaker.state is not CircuitState.CLOSED or self.backoff.failures:
            logger.info("endpoint reachable again")
        self.breaker.record_success()
        self.backoff.reset()
        self._not_before = 0.0
        self._set_state(last_success_at=utcnow(), next_attempt_at=None)

    def _failure(
        self, conn, batch_id: str | None, message: str, retry_after_s: float | None, report: SyncReport
    ) -> None:
        if batch_id is not None:
            outbox.record_attempt(conn, batch_id, message)
        self.breaker.record_failure()
        delay = self.backoff.next_delay(retry_after_s)
        self._not_before = time.monotonic() + delay
        report.failures += 1
        report.last_error = message
        logger.warning("sync: %s; retrying in %.1f s (circuit %s)", message, delay, self.breaker.state.value)
        self._set_state(last_error=message, last_error_at=utcnow(), next_attempt_at=_iso_in(delay))

    # --- images ---------------------------------------------------------------------------------
    def _upload_images(self, conn, client: EndpointClient, report: SyncReport) -> None:
        from edge_ocr.ocr.imageio import sniff_format

        for image in sync_state.images_to_upload(conn, UPLOADS_PER_PASS):
            if self.stop_event.is_set():
                return
            capture_id = image.capture_id
            path = image.path  # the exact name, never a look-alike
            try:
                data = path.read_bytes()
            except OSError as exc:
                sync_state.record_upload(
                    conn,
                    capture_id,
                    "",
                    SKIPPED,
                    error=f"cannot read {image.stored_image}: {exc.strerror or exc}",
                )
                continue
            fmt = sniff_format(data[:16])
            ctype = {
                "jpeg": "image/jpeg",
                "png": "image/png",
                "tiff": "image/tiff",
                "bmp": "image/bmp",
                "webp": "image/webp",
                "gif": "image/gif",
            }.get(fmt or "")
            sha = hashlib.sha256(data).hexdigest()
            if ctype is None:
                sync_state.record_upload(
                    conn, capture_id, sha, SKIPPED, error="not an image the endpoint accepts"
                )
                continue
            try:
                answer = client.request_upload(sha, len(data), ctype)
                if answer.status != 200:
                    if answer.status in (400, 413, 415):
                        sync_state.record_upload(conn, capture_id, sha, SKIPPED, error=answer.error)
                        continue
                    raise _Retryable(
                        f"upload URL refused ({answer.status}): {answer.error}",
                        parse_retry_after(answer.retry_after),
                    )
                key = answer.body.get("key")
                if answer.body.get("status") == "upload":
                    status = client.put_presigned(answer.body["url"], data, answer.body.get("headers", {}))
                    if status >= 300:
                        raise _Retryable(f"image PUT to storage answered {status}")
                sync_state.record_upload(conn, capture_id, sha, UploadState.UPLOADED, object_key=key)
                report.images_uploaded += 1
            except _Retryable as exc:
                sync_state.record_upload(conn, capture_id, sha, PENDING, error=str(exc))
                self._failure(conn, None, str(exc), exc.retry_after_s, report)
                return
            except httpx.TransportError as exc:
                sync_state.record_upload(conn, capture_id, sha, PENDING, error=str(exc))
                self._failure(conn, None, f"image upload failed: {exc}", None, report)
                return

    # --- state shown by `edge-ocr status` and the GUI --------------------------------------------
    def _set_state(self, **values: Any) -> None:
        if self._conn is None:
            return
        sync_state.set_state(self._conn, **values)


def _iso_in(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + seconds)) + "Z"


def agent_service(
    settings: dict[str, Any], *, db_path: Path, base_dir: Path, stop_event: threading.Event
) -> SyncService:
    """The `edge_ocr.agent.services` entry point: the sync service inside `edge-ocr run`."""
    return SyncService(SyncConfig.from_dict(settings, base_dir=base_dir), db_path, stop_event)
