"""Metrics: the exposition format, the loopback server, and that they are off unless asked for."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest

from edge_ocr.errors import ConfigError
from edge_ocr.ops import metrics


def test_counter_and_histogram_exposition() -> None:
    reg = metrics.Registry()
    c = reg.add(metrics.Counter("t_total", "A counter.", ("kind",)))
    h = reg.add(metrics.Histogram("t_seconds", "A histogram.", (), buckets=(0.1, 1.0)))
    c.inc(kind='a"b')
    c.inc(2, kind='a"b')
    for v in (0.05, 0.5, 3.0):
        h.observe(v)
    text = reg.render()
    assert text.splitlines() == [
        "# HELP t_total A counter.",
        "# TYPE t_total counter",
        't_total{kind="a\\"b"} 3',
        "# HELP t_seconds A histogram.",
        "# TYPE t_seconds histogram",
        't_seconds_bucket{le="0.1"} 1',
        't_seconds_bucket{le="1"} 2',
        't_seconds_bucket{le="+Inf"} 3',
        "t_seconds_sum 3.55",
        "t_seconds_count 3",
    ]
    with pytest.raises(ValueError):
        c.inc(kind="x", other="y")
    with pytest.raises(ValueError):
        c.inc(-1, kind="x")


def test_record_hooks_count_jobs_results_verdicts_and_sync() -> None:
    import time

    before = metrics.CAPTURES.value(source="folder", outcome="done")
    item = SimpleNamespace(seen_at=time.monotonic() - 0.2)
    metrics.record_job(item, SimpleNamespace(elapsed_ms=40.0))
    metrics.record_job(item, SimpleNamespace(error="x", bad_input=True, vanished=False))
    assert metrics.CAPTURES.value(source="folder", outcome="done") == before + 1
    assert metrics.CAPTURES.value(source="folder", outcome="bad_input") >= 1
    assert metrics.CAPTURE_SECONDS.count(source="folder") >= 1
    page = SimpleNamespace(
        capture=SimpleNamespace(source="camera:belt"), verdict=SimpleNamespace(status="fail", recipe="caps")
    )
    v0 = metrics.VERDICTS.value(recipe="caps", verdict="fail")
    metrics.record_outcomes([page])
    assert metrics.VERDICTS.value(recipe="caps", verdict="fail") == v0 + 1
    assert metrics.observe_sync("/v1/batches", lambda: SimpleNamespace(status_code=503)).status_code == 503
    assert metrics.SYNC_REQUESTS.value(route="/v1/batches", outcome="5xx") >= 1

    def down() -> None:
        raise httpx.ConnectError("refused")

    with pytest.raises(httpx.ConnectError):
        metrics.observe_sync("/v1/health", down)
    assert metrics.SYNC_REQUESTS.value(route="/v1/health", outcome="unreachable") >= 1


def test_off_by_default() -> None:
    with metrics.serve_from_env({}) as server:
        assert server is None


def test_served_on_loopback_only() -> None:
    with metrics.serve_from_env({metrics.ENV_PORT: "0"}) as server:
        assert server is not None and server.host == "127.0.0.1"
        resp = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(
            "text/plain; version=0.0.4"
        )
        for name in (
            "edge_ocr_captures_total",
            "edge_ocr_ocr_seconds",
            "edge_ocr_verdicts_total",
            "edge_ocr_sync_seconds",
        ):
            assert f"# TYPE {name} " in resp.text
        assert httpx.get(f"http://127.0.0.1:{server.port}/other", timeout=5).status_code == 404
    with pytest.raises(ConfigError, match="loopback"):
        metrics.MetricsServer(0, host="0.0.0.0")
    with pytest.raises(ConfigError, match="not a port"), metrics.serve_from_env({metrics.ENV_PORT: "http"}):
        pass
