"""Verdict sinks: JSON lines to a file or stdout, and a webhook (HTTP POST with retry).

The agent calls `emit` after the verdict is committed. The webhook posts from its own thread
through a bounded queue, so a slow receiver never holds up the store; it retries with backoff and
logs what it finally could not deliver (the durable channel is the outbox, shipped by sync).
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
from pathlib import Path
from typing import Any, Protocol, TextIO

from edge_ocr.config import OutputsConfig

logger = logging.getLogger(__name__)


class VerdictSink(Protocol):
    def emit(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """One JSON object per line, flushed after each."""

    def __init__(self, target: str) -> None:
        self._own = target != "-"
        if self._own:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        self._fh: TextIO = open(target, "a", encoding="utf-8") if self._own else sys.stdout  # noqa: SIM115
        self._lock = threading.Lock()

    def emit(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, sort_keys=True)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._own:
            self._fh.close()


class WebhookSink:
    """POSTs each record as JSON from a background thread, retrying with exponential backoff."""

    def __init__(
        self, url: str, *, timeout: float = 5.0, retries: int = 5, backoff: float = 0.5, max_queue: int = 1000
    ) -> None:
        self.url = url
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._stop = threading.Event()
        self.delivered = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def emit(self, record: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.failed += 1
            logger.warning("webhook queue full; verdict %s not posted", record.get("verdict_id"))

    def _post(self, client, record: dict[str, Any]) -> bool:
        import httpx

        delay = self._backoff
        for attempt in range(self._retries + 1):
            try:
                resp = client.post(self.url, json=record)
                if resp.status_code < 300:
                    return True
                if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
                    logger.warning("webhook %s refused verdict: HTTP %d", self.url, resp.status_code)
                    return False
                reason = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                reason = str(exc) or type(exc).__name__
            if attempt < self._retries:
                logger.info("webhook %s: %s; retrying in %.1f s", self.url, reason, delay)
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, 30.0)
        logger.warning("webhook %s: giving up after %d attempts (%s)", self.url, self._retries + 1, reason)
        return False

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self._timeout) as client:
            while True:
                record = self._queue.get()
                if record is None:
                    return
                if self._post(client, record):
                    self.delivered += 1
                else:
                    self.failed += 1

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (within `timeout`), then stop and join the thread."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()


class Outputs:
    """All configured sinks."""

    def __init__(self, sinks: list[VerdictSink]) -> None:
        self.sinks = sinks

    @classmethod
    def from_config(cls, cfg: OutputsConfig) -> Outputs:
        sinks: list[VerdictSink] = []
        if cfg.jsonl:
            sinks.append(JsonlSink(cfg.jsonl))
        if cfg.webhook:
            sinks.append(WebhookSink(cfg.webhook, timeout=cfg.webhook_timeout, retries=cfg.webhook_retries))
        return cls(sinks)

    def emit(self, record: dict[str, Any]) -> None:
        for sink in self.sinks:
            try:
                sink.emit(record)
            except OSError as exc:
                logger.warning("verdict output failed: %s", exc)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
