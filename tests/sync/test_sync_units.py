"""Signing, backoff, circuit breaker, config validation, layering, outbox edge cases."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from edge_ocr.errors import ConfigError
from edge_ocr_sync.auth import AuthFailure, sign_headers, verify_signature
from edge_ocr_sync.backoff import Backoff, CircuitBreaker, CircuitState, parse_retry_after
from edge_ocr_sync.config import SyncConfig

REPO = Path(__file__).resolve().parents[2]
SECRET = b"0123456789abcdef0123456789abcdef"


def test_signature_round_trip_and_tampering():
    h = sign_headers(SECRET, "dev1", "POST", "/v1/batches", b"body", now=1_000_000)
    v = verify_signature(h, "POST", "/v1/batches", b"body", {"dev1": SECRET}.get, now=1_000_100)
    assert v.device_id == "dev1" and v.timestamp == 1_000_000
    for method, path, body in (
        ("PUT", "/v1/batches", b"body"),
        ("POST", "/v1/ocr", b"body"),
        ("POST", "/v1/batches", b"bodY"),
    ):
        with pytest.raises(AuthFailure):
            verify_signature(h, method, path, body, {"dev1": SECRET}.get, now=1_000_100)
    with pytest.raises(AuthFailure, match="window"):
        verify_signature(h, "POST", "/v1/batches", b"body", {"dev1": SECRET}.get, now=1_000_301)
    assert sign_headers(SECRET, "dev1", "POST", "/", b"", now=1)["x-edgeocr-nonce"] != h["x-edgeocr-nonce"]


def test_backoff_grows_with_jitter_and_honours_retry_after():
    b = Backoff(base_s=1.0, max_s=30.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    assert all(0.5 <= d <= 30.0 for d in delays)
    assert max(delays[4:]) > max(delays[:2])
    assert b.next_delay(retry_after_s=120) == 120
    b.reset()
    assert b.next_delay() <= 1.0
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None


def test_circuit_opens_after_repeated_failures_and_half_opens():
    now = [0.0]
    cb = CircuitBreaker(failure_threshold=3, open_s=10, clock=lambda: now[0])
    for _ in range(2):
        cb.record_failure()
    assert cb.state is CircuitState.CLOSED
    cb.record_failure()
    assert cb.state is CircuitState.OPEN and not cb.allow()
    now[0] = 10.0
    assert cb.state is CircuitState.HALF_OPEN and cb.allow()
    cb.record_failure()  # the trial failed: open again
    assert cb.state is CircuitState.OPEN
    now[0] = 20.0
    cb.record_success()
    assert cb.state is CircuitState.CLOSED


def test_config_validation(tmp_path):
    base = {"endpoint_url": "https://sync.example.com", "device_id": "line1", "secret_file": "device.secret"}
    cfg = SyncConfig.from_dict(base, base_dir=tmp_path)
    assert cfg.secret_file == tmp_path / "device.secret"
    assert cfg.batch_max_records == 500 and cfg.batch_max_age_s == 5.0 and cfg.verify_tls
    for bad, msg in (
        ({"secret": "x"}, "unknown key"),
        ({"endpoint_url": "ftp://x"}, "http"),
        ({"device_id": "a b"}, "device_id"),
        ({"batch_max_records": 0}, "batch_max_records"),
        ({"verify_tls": "no"}, "verify_tls"),
        ({"backoff_base_s": -1}, "backoff_base_s"),
    ):
        with pytest.raises(ConfigError, match=msg):
            SyncConfig.from_dict({**base, **bad}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="secret_file"):
        SyncConfig.from_dict({k: v for k, v in base.items() if k != "secret_file"})


def test_secret_errors_never_show_the_secret(tmp_path):
    short = tmp_path / "s"
    short.write_text("tiny-secret")
    cfg = SyncConfig.from_dict({"endpoint_url": "https://x", "device_id": "d", "secret_file": str(short)})
    with pytest.raises(ConfigError) as exc:
        cfg.load_secret()
    assert "tiny-secret" not in str(exc.value)
    assert "tiny-secret" not in repr(cfg)


def test_no_secret_in_the_results_database(endpoint, store_path, enqueue_results, make_config, device_secret):
    from edge_ocr_sync.service import SyncService

    enqueue_results(store_path, 20)
    service = SyncService(make_config(endpoint.url), store_path)
    try:
        service.run_once(flush=True)
    finally:
        service.close()
    raw = store_path.read_bytes() + (
        store_path.with_name(store_path.name + "-wal").read_bytes()
        if store_path.with_name(store_path.name + "-wal").exists()
        else b""
    )
    assert device_secret not in raw


def test_ack_requires_our_hash_and_is_idempotent(store_path, enqueue_results):
    from edge_ocr.store import outbox
    from edge_ocr.store.db import open_connection
    from edge_ocr_sync.payload import make_serializer

    enqueue_results(store_path, 3)
    conn = open_connection(store_path)
    try:
        b = outbox.cut_batch(conn, make_serializer("d"), force=True)
        with pytest.raises(ValueError):
            outbox.ack_batch(conn, b.batch_id, "0" * 64)
        assert outbox.ack_batch(conn, b.batch_id, b.content_sha256) == 3
        assert outbox.ack_batch(conn, b.batch_id, b.content_sha256) == 0
        assert outbox.pending_batches(conn) == []
        assert conn.execute("SELECT body FROM sync_batches").fetchone()[0] is None
    finally:
        conn.close()


def test_enqueue_outside_a_transaction_is_refused(store_path):
    from edge_ocr.store.db import open_connection
    from edge_ocr.store.outbox import enqueue

    conn = open_connection(store_path)
    try:
        with pytest.raises(RuntimeError):
            enqueue(conn, "result", 1, {})
    finally:
        conn.close()


def test_the_endpoint_imports_without_the_agent_only_packages():
    """The Lambda package ships no sqlite-utils, watchdog or boto3-free extras: the endpoint must not need them."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('sqlite_utils', 'watchdog', 'pypdfium2', 'psutil', 'httpx', 'uvicorn'):\n"
        "    sys.modules[name] = None\n"
        "import edge_ocr_sync.endpoint.lambda_handler, edge_ocr_sync.endpoint.core, edge_ocr_sync.endpoint.app, edge_ocr_sync.endpoint.storage,"
        " edge_ocr_sync.endpoint.local_storage, edge_ocr_sync.endpoint.aws_storage\n"
        "import edge_ocr.ocr.reader, edge_ocr.ocr.imageio\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
