"""The endpoint's own figures: requests and errors per route, request duration, OCR busy refusals,
result-cache hits, cold starts and memory used.

Kept in process (`EndpointMetrics`, the agent's Prometheus counter and histogram types) and
served by the local endpoint at `GET /v1/metrics` in the Prometheus text format; on Lambda each
invocation's figures are also written as CloudWatch embedded-metric-format records through
Powertools for AWS Lambda (`emit_emf`), which CloudWatch turns into metrics in the `EdgeOCR`
namespace that `edge-ocr endpoint stats --cloudwatch` reads back.
"""

from __future__ import annotations

import resource
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from edge_ocr.ops.metrics import CONTENT_TYPE, Counter, Histogram, Registry

NAMESPACE = "EdgeOCR"
SERVICE = "endpoint"
ROUTES = (
    "/v1/batches",
    "/v1/uploads",
    "/v1/ocr",
    "/v1/health",
    "/v1/openapi.json",
    "/v1/metrics",
    "/v1/objects",
    "s3-event",
    "schedule",
)
PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE


def route_label(path: str) -> str:
    """A bounded label for a request path (fuzzers must not grow the series without end)."""
    if path.startswith("/v1/objects/"):
        return "/v1/objects"
    return path if path in ROUTES else "other"


def memory_used_mb() -> float:
    """Peak resident memory of this process (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@dataclass(frozen=True)
class RequestRecord:
    route: str
    status: int
    seconds: float
    cold_start: bool


class EndpointMetrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.registry = Registry()
        self.requests = self.registry.add(
            Counter(
                "edge_ocr_endpoint_requests_total",
                "Requests answered, by route and status.",
                ("route", "status"),
            )
        )
        self.errors = self.registry.add(
            Counter("edge_ocr_endpoint_errors_total", "Requests answered with a 5xx, by route.", ("route",))
        )
        self.seconds = self.registry.add(
            Histogram("edge_ocr_endpoint_request_seconds", "Time to answer a request, by route.", ("route",))
        )
        self.ocr_busy = self.registry.add(
            Counter("edge_ocr_endpoint_ocr_busy_total", "OCR requests refused with 503: every slot taken.")
        )
        self.cache = self.registry.add(
            Counter("edge_ocr_endpoint_ocr_cache_total", "OCR answers by result cache outcome.", ("result",))
        )
        self.cold_starts = self.registry.add(
            Counter("edge_ocr_endpoint_cold_starts_total", "Processes (Lambda instances) started.")
        )
        self.cold_starts.inc()
        self._cold = True
        self._lock = threading.Lock()

    def observe(self, route: str, status: int, seconds: float) -> RequestRecord:
        with self._lock:
            cold, self._cold = self._cold, False
        self.requests.inc(route=route, status=str(status))
        if status >= 500:
            self.errors.inc(route=route)
        self.seconds.observe(seconds, route=route)
        return RequestRecord(route, status, seconds, cold)

    def render(self) -> str:
        """The Prometheus text format, with the process gauges at the end."""
        text = self.registry.render()
        gauges = [
            (
                "edge_ocr_endpoint_memory_used_bytes",
                "Peak resident memory of the endpoint process.",
                memory_used_mb() * 1024 * 1024,
            ),
            (
                "edge_ocr_endpoint_up_seconds",
                "Seconds since the endpoint process started.",
                time.time() - self.started,
            ),
        ]
        for name, help_, value in gauges:
            text += f"# HELP {name} {help_}\n# TYPE {name} gauge\n{name} {value:.3f}\n"
        return text


def parse_prometheus(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by metric name from the text format (the subset `render` writes)."""
    import re

    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+(\S+)$", line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        value = float(m.group(4).replace("+Inf", "inf"))
        out.setdefault(m.group(1), []).append((labels, value))
    return out


def summarize(samples: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, Any]:
    """Per-route requests, errors, mean duration and rate, from parsed Prometheus samples."""
    up = next((v for _, v in samples.get("edge_ocr_endpoint_up_seconds", [])), 0.0)
    routes: dict[str, dict[str, float]] = {}
    for labels, v in samples.get("edge_ocr_endpoint_requests_total", []):
        r = routes.setdefault(labels["route"], {"requests": 0.0, "errors": 0.0, "seconds_sum": 0.0})
        r["requests"] += v
    for labels, v in samples.get("edge_ocr_endpoint_errors_total", []):
        routes.setdefault(labels["route"], {"requests": 0.0, "errors": 0.0, "seconds_sum": 0.0})[
            "errors"
        ] += v
    for labels, v in samples.get("edge_ocr_endpoint_request_seconds_sum", []):
        if labels["route"] in routes:
            routes[labels["route"]]["seconds_sum"] += v
    table = {
        route: {
            "requests": int(r["requests"]),
            "errors": int(r["errors"]),
            "mean_ms": round(1000 * r["seconds_sum"] / r["requests"], 2) if r["requests"] else 0.0,
            "per_second": round(r["requests"] / up, 4) if up else 0.0,
        }
        for route, r in sorted(routes.items())
    }

    def total(name: str) -> float:
        return sum(v for _, v in samples.get(name, []))

    return {
        "source": "local",
        "uptime_s": round(up, 1),
        "routes": table,
        "cold_starts": int(total("edge_ocr_endpoint_cold_starts_total")),
        "memory_used_mb": round(total("edge_ocr_endpoint_memory_used_bytes") / (1024 * 1024), 1),
        "ocr_busy": int(total("edge_ocr_endpoint_ocr_busy_total")),
        "cache": {
            labels["result"]: int(v) for labels, v in samples.get("edge_ocr_endpoint_ocr_cache_total", [])
        },
    }


def emit_emf(record: RequestRecord, function_name: str = "") -> None:
    """One request's figures as one CloudWatch embedded-metric-format record (Powertools), written
    to stdout where Lambda's log capture hands it to CloudWatch; dimensions: service, route."""
    from aws_lambda_powertools.metrics import Metrics, MetricUnit

    metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
    metrics.add_dimension(name="route", value=record.route)
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1 if record.status >= 500 else 0)
    metrics.add_metric(
        name="ClientErrors", unit=MetricUnit.Count, value=1 if 400 <= record.status < 500 else 0
    )
    metrics.add_metric(name="Duration", unit=MetricUnit.Milliseconds, value=round(record.seconds * 1000, 3))
    metrics.add_metric(name="MemoryUsed", unit=MetricUnit.Megabytes, value=round(memory_used_mb(), 1))
    if record.cold_start:
        metrics.add_metric(name="ColdStart", unit=MetricUnit.Count, value=1)
    if function_name:
        metrics.add_metadata(key="function", value=function_name)
    metrics.flush_metrics()
