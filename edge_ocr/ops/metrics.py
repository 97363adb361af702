"""Counters and latency histograms in the Prometheus text format, served on a loopback port.

Off by default: the agent serves them only when `EDGE_OCR_METRICS_PORT` is set (e.g. 9464), on
127.0.0.1 (`EDGE_OCR_METRICS_HOST` may name another loopback address; anything else is refused,
put a reverse proxy in front to publish them). Recording is cheap and always on, so the
numbers are right from the first job whenever the server starts.

The metrics live in the agent's main process: workers report each job there, and the agent
records it (`record_job`, `record_outcomes`); the sync client records each request
(`observe_sync`). No dependency: the exposition format is small enough to write by hand.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from edge_ocr.errors import ConfigError

logger = logging.getLogger(__name__)

ENV_PORT = "EDGE_OCR_METRICS_PORT"
ENV_HOST = "EDGE_OCR_METRICS_HOST"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

T = TypeVar("T")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        self.name, self.help, self.labelnames = name, help, tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help, labelnames)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [*self.header(), *(f"{self.name}{_labels(self.labelnames, k)} {_num(v)}" for k, v in items)]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> None:
        super().__init__(name, help, labelnames)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], list[float]] = {}  # bucket counts..., +Inf count, sum

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            s = self._series.setdefault(key, [0.0] * (len(self.buckets) + 2))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    s[i] += 1
            s[-2] += 1
            s[-1] += value

    def count(self, **labels: str) -> int:
        with self._lock:
            s = self._series.get(self._key(labels))
            return int(s[-2]) if s else 0

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        out = self.header()
        for key, s in items:
            for bound, n in zip((*self.buckets, math.inf), s[:-1]):
                le = 'le="' + _num(bound) + '"'
                out.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {_num(n)}")
            out.append(f"{self.name}_sum{_labels(self.labelnames, key)} {_num(s[-1])}")
            out.append(f"{self.name}_count{_labels(self.labelnames, key)} {_num(s[-2])}")
        return out


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def add(self, metric: T) -> T:
        with self._lock:
            if metric.name in self._metrics:  # type: ignore[attr-defined]
                raise ValueError(f"metric {metric.name} registered twice")  # type: ignore[attr-defined]
            self._metrics[metric.name] = metric  # type: ignore[attr-defined,index]
        return metric

    def render(self) -> str:
        with self._lock:
            metrics = list(self._metrics.values())
        lines: list[str] = []
        for m in metrics:
            lines.extend(m.render())  # type: ignore[attr-defined]
        return "\n".join(lines) + "\n"


REGISTRY = Registry()

CAPTURES = REGISTRY.add(
    Counter(
        "edge_ocr_captures_total",
        "Inputs taken in and answered by a worker, by source and outcome.",
        ("source", "outcome"),
    )
)
CAPTURE_SECONDS = REGISTRY.add(
    Histogram(
        "edge_ocr_capture_seconds",
        "From a file settling (or a camera record closing) to its OCR answer reaching the agent.",
        ("source",),
    )
)
OCR_SECONDS = REGISTRY.add(
    Histogram("edge_ocr_ocr_seconds", "OCR time of one job in a worker (all pages or frames).", ("source",))
)
RESULTS = REGISTRY.add(
    Counter("edge_ocr_results_total", "Results stored (one per page or camera record).", ("source",))
)
VERDICTS = REGISTRY.add(
    Counter("edge_ocr_verdicts_total", "Label verdicts, by recipe and verdict.", ("recipe", "verdict"))
)
SYNC_REQUESTS = REGISTRY.add(
    Counter(
        "edge_ocr_sync_requests_total",
        "Requests to the sync endpoint, by route and outcome.",
        ("route", "outcome"),
    )
)
SYNC_SECONDS = REGISTRY.add(
    Histogram("edge_ocr_sync_seconds", "Latency of requests to the sync endpoint.", ("route",))
)
UP_SINCE = time.time()


# -- recording hooks --------------------------------------------------------------------------------


def _source_kind(item: Any) -> str:
    return "camera" if hasattr(item, "camera") else "folder"


def record_job(item: Any, msg: Any) -> None:
    """A worker answered a job: `item` is a FileCandidate or CameraCapture, `msg` a JobDone or JobFailed."""
    source = _source_kind(item)
    if hasattr(msg, "elapsed_ms"):
        outcome = "done"
        OCR_SECONDS.observe(msg.elapsed_ms / 1000.0, source=source)
    else:
        outcome = (
            "vanished" if getattr(msg, "vanished", False) else "bad_input" if msg.bad_input else "failed"
        )
    CAPTURES.inc(source=source, outcome=outcome)
    seen = getattr(item, "seen_at", None)
    if outcome == "done" and isinstance(seen, float):
        CAPTURE_SECONDS.observe(max(0.0, time.monotonic() - seen), source=source)


def record_outcomes(pages: Sequence[Any], source: str | None = None) -> None:
    """Stored results (store.PageOutcome): count them and their verdicts."""
    for p in pages:
        kind = source or (
            "camera" if str(getattr(p.capture, "source", "")).startswith("camera:") else "folder"
        )
        RESULTS.inc(source=kind)
        if p.verdict is not None:
            VERDICTS.inc(recipe=p.verdict.recipe or "", verdict=str(p.verdict.status))


def observe_sync(route: str, send: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call `send(*args, **kwargs)` (an HTTP request returning a response with `status_code`) and
    record its outcome and latency; transport errors count as `unreachable` and propagate."""
    start = time.perf_counter()
    try:
        resp = send(*args, **kwargs)
    except Exception:
        SYNC_REQUESTS.inc(route=route, outcome="unreachable")
        raise
    finally:
        SYNC_SECONDS.observe(time.perf_counter() - start, route=route)
    code = int(getattr(resp, "status_code", 0))
    SYNC_REQUESTS.inc(route=route, outcome=f"{code // 100}xx" if code else "unknown")
    return resp


# -- serving ------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    registry: Registry = REGISTRY

    def do_GET(self) -> None:
        if self.path.split("?")[0] not in ("/metrics", "/"):
            self.send_error(404, "try /metrics")
            return
        body = (
            self.registry.render()
            + "# HELP edge_ocr_start_time_seconds When the agent started.\n"
            + f"# TYPE edge_ocr_start_time_seconds gauge\nedge_ocr_start_time_seconds {UP_SINCE:.3f}\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:
        logger.debug("metrics: " + fmt, *args)


class MetricsServer:
    """Serves GET /metrics on a loopback address in a daemon thread; `stop()` joins it."""

    def __init__(self, port: int, host: str = "127.0.0.1", registry: Registry = REGISTRY) -> None:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise ConfigError(
                f"metrics host {host!r} is not a loopback address; metrics are served locally only"
            )
        handler = type("Handler", (_Handler,), {"registry": registry})
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
        self._server.daemon_threads = True
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()
        logger.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@contextlib.contextmanager
def serve_from_env(env: dict[str, str] | None = None) -> Iterator[MetricsServer | None]:
    """Serve metrics while the block runs when EDGE_OCR_METRICS_PORT is set; else do nothing."""
    env = dict(os.environ) if env is None else env
    raw = env.get(ENV_PORT, "").strip()
    if not raw:
        yield None
        return
    try:
        port = int(raw)
        if not 0 <= port <= 65535:
            raise ValueError(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PORT}={raw!r} is not a port number (unset it to turn metrics off)") from None
    server = MetricsServer(port, env.get(ENV_HOST) or "127.0.0.1")
    try:
        yield server
    finally:
        server.stop()
