"""The real sync client and service against the real endpoint (uvicorn + moto)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from edge_ocr.store.db import open_connection
from edge_ocr.store.sync_state import sync_status
from edge_ocr_sync.service import SyncService


def acked_counts(db_path) -> tuple[int, int]:
    conn = open_connection(db_path)
    try:
        return conn.execute("SELECT count(*), count(acked_at) FROM outbox").fetchone()
    finally:
        conn.close()


def stored_records(backend) -> list[int]:
    """Every record seq stored, over all batches (duplicates would show twice)."""
    import gzip

    seqs: list[int] = []
    for key in backend.objects():
        if key.startswith("batches/"):
            doc = json.loads(gzip.decompress(backend.read(key)))
            seqs.extend(r["seq"] for r in doc["records"])
    return seqs


def test_queued_results_are_sent_and_acked(endpoint, backend, store_path, enqueue_results, make_config):
    enqueue_results(store_path, 1200)
    service = SyncService(make_config(endpoint.url), store_path)
    try:
        report = service.run_once(flush=True)
    finally:
        service.close()
    assert report.batches_cut == 3 and report.batches_acked == 3 and report.records_acked == 1200
    assert report.drained and report.failures == 0
    assert acked_counts(store_path) == (1200, 1200)
    assert sorted(stored_records(backend)) == list(range(1, 1201))
    assert len(backend.batch_items()) == 3
    conn = open_connection(store_path)
    status = sync_status(conn)
    conn.close()
    assert status["pending_records"] == 0 and status["acked_records"] == 1200
    assert status["circuit"] == "closed" and status["last_success_at"]


def test_batches_are_cut_by_count_and_age(store_path, enqueue_results, make_config):
    from edge_ocr.store import outbox
    from edge_ocr_sync.payload import make_serializer

    enqueue_results(store_path, 1100)
    conn = open_connection(store_path)
    ser = make_serializer("line1-cam1")
    try:
        a = outbox.cut_batch(conn, ser, max_records=500, max_age_s=3600)
        b = outbox.cut_batch(conn, ser, max_records=500, max_age_s=3600)
        assert a.n_records == b.n_records == 500
        assert outbox.cut_batch(conn, ser, max_records=500, max_age_s=3600) is None  # 100 left, young
        c = outbox.cut_batch(conn, ser, max_records=500, max_age_s=0)
        assert c.n_records == 100
        assert outbox.unbatched_count(conn) == 0
        assert len({a.batch_id, b.batch_id, c.batch_id}) == 3
    finally:
        conn.close()


def test_repeated_sends_store_one_batch_and_retries_keep_the_batch_id(
    endpoint, backend, store_path, enqueue_results, make_config
):
    """A crash after sending but before the ack was recorded: the restart resends the same
    batch id and bytes, and the endpoint answers duplicate."""
    from edge_ocr.store import outbox

    enqueue_results(store_path, 10)
    config = make_config(endpoint.url)
    service = SyncService(config, store_path)
    conn = open_connection(store_path)
    try:
        batch = outbox.cut_batch(conn, service._serialize, max_records=500, max_age_s=0)
        answer = service._open()[1].post_batch(batch.body)  # sent; then the process "dies"
        assert answer.status == 200 and answer.body["status"] == "stored"
        service.close()
        restarted = SyncService(config, store_path)
        report = restarted.run_once(flush=True)
        restarted.close()
    finally:
        conn.close()
    assert report.batches_acked == 1 and report.duplicates == 1 and report.records_acked == 10
    assert [i["batch_id"] for i in backend.batch_items()] == [batch.batch_id]
    assert sorted(stored_records(backend)) == list(range(1, 11))


def test_conflicting_reuse_is_409_and_the_rows_are_sent_again_under_a_new_id(
    endpoint, backend, store_path, enqueue_results, make_config
):
    from edge_ocr.store import outbox
    from edge_ocr_sync.payload import encode_document

    enqueue_results(store_path, 5)
    config = make_config(endpoint.url)
    service = SyncService(config, store_path)
    conn = open_connection(store_path)
    try:
        batch = outbox.cut_batch(conn, service._serialize, max_records=500, max_age_s=0)
        # someone else's content under our batch id
        other, _ = encode_document(
            {
                "schema": 1,
                "device_id": config.device_id,
                "batch_id": batch.batch_id,
                "records": [{"seq": 99, "kind": "result", "ref_id": 99, "payload": {}}],
            }
        )
        assert service._open()[1].post_batch(other).status == 200
        report = service.run_once(flush=False)
        assert report.conflicts == 1 and report.records_acked == 0
        report = service.run_once(flush=True)
        assert report.records_acked == 5 and report.drained
    finally:
        service.close()
        conn.close()
    assert sorted(stored_records(backend)) == [1, 2, 3, 4, 5, 99]


def test_injected_503s_with_retry_after_then_success(
    endpoint, backend, store_path, enqueue_results, make_config
):
    enqueue_results(store_path, 700)
    endpoint.faults.fail_next(2, 503, {"Retry-After": "1"})
    stop = threading.Event()
    service = SyncService(make_config(endpoint.url, circuit_failures=5), store_path, stop)
    first = service.run_once(flush=True)
    assert first.failures == 1 and first.retry_in_s > 0.9  # Retry-After honoured
    assert "503" in first.last_error
    conn = open_connection(store_path)
    assert sync_status(conn)["last_error"].startswith("endpoint answered 503")
    conn.close()
    t0 = time.monotonic()
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while acked_counts(store_path)[1] < 700 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - t0 > 0.9
    assert acked_counts(store_path) == (700, 700)
    assert sorted(stored_records(backend)) == list(range(1, 701))


def test_connection_dropped_after_commit_ends_as_a_duplicate(
    endpoint, drop_proxy, backend, store_path, enqueue_results, make_config
):
    enqueue_results(store_path, 1000)
    drop_proxy.drops = 1
    service = SyncService(make_config(drop_proxy.url), store_path)
    try:
        first = service.run_once(flush=True)
        assert first.failures == 1 and "unreachable" in first.last_error
        assert drop_proxy.dropped == 1
        assert len(backend.batch_items()) == 1  # the server stored it, the client never heard
        time.sleep(0.06)  # past the backoff
        second = service.run_once(flush=True)
    finally:
        service.close()
    assert second.duplicates == 1 and second.records_acked == 1000
    assert acked_counts(store_path) == (1000, 1000)
    assert sorted(stored_records(backend)) == list(range(1, 1001))  # one copy of each
    assert len(backend.batch_items()) == 2


def test_endpoint_down_for_a_while_then_back(endpoint, backend, store_path, enqueue_results, make_config):
    enqueue_results(store_path, 600)
    endpoint.server.stop()
    stop = threading.Event()
    service = SyncService(make_config(endpoint.url, circuit_failures=3, circuit_open_s=0.3), store_path, stop)
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        opened = False
        while time.monotonic() < deadline and not opened:
            conn = open_connection(store_path)
            status = sync_status(conn)
            conn.close()
            opened = status["circuit"] == "open"
            time.sleep(0.02)
        assert opened, status
        assert "unreachable" in status["last_error"]
        assert status["pending_records"] == 600
        enqueue_results(store_path, 400, start=601)  # the line keeps producing while offline
        endpoint.restart()
        deadline = time.monotonic() + 20
        while acked_counts(store_path)[1] < 1000 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert acked_counts(store_path) == (1000, 1000)
    assert sorted(stored_records(backend)) == list(range(1, 1001))
    conn = open_connection(store_path)
    status = sync_status(conn)
    conn.close()
    assert status["circuit"] == "closed" and status["pending_records"] == 0


def test_wrong_secret_is_refused_and_nothing_is_acked(
    endpoint, backend, store_path, enqueue_results, make_config, tmp_path
):
    enqueue_results(store_path, 10)
    bad = tmp_path / "bad.secret"
    bad.write_text("this-is-not-the-device-secret")
    bad.chmod(0o600)
    service = SyncService(make_config(endpoint.url, secret_file=str(bad)), store_path)
    try:
        report = service.run_once(flush=True)
    finally:
        service.close()
    assert report.failures == 1 and "401" in report.last_error
    assert "not-the-device-secret" not in report.last_error
    assert acked_counts(store_path) == (10, 0)
    assert backend.state() == ([], [], 0)


def test_images_are_uploaded_through_presigned_urls(endpoint, backend, store_path, make_config, tmp_path):
    from test_sync_endpoint import png_bytes

    from edge_ocr.store.outbox import enqueue

    img = tmp_path / "cap.png"
    img.write_bytes(png_bytes())
    conn = open_connection(store_path)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO captures (id, source, captured_at, stored_image) VALUES (1, 'cli', '2026-01-01T00:00:00.000Z', ?)",
        (str(img),),
    )
    conn.execute(
        "INSERT INTO results (id, capture_id, created_at, engine, model, text, confidence, n_lines, lines) "
        "VALUES (1, 1, '2026-01-01T00:00:00.000Z', 'fake', 'fake/none', 'X', 0.9, 1, '[]')"
    )
    enqueue(conn, "result", 1, {"result_id": 1})
    conn.execute("COMMIT")
    conn.close()
    service = SyncService(make_config(endpoint.url, upload_images=True), store_path)
    try:
        report = service.run_once(flush=True)
        again = service.run_once(flush=True)
    finally:
        service.close()
    assert report.images_uploaded == 1 and again.images_uploaded == 0
    images = [k for k in backend.objects() if k.startswith("images/") and not k.endswith(".ocr.json")]
    assert len(images) == 1 and images[0].endswith(".png")
    assert backend.read(images[0]) == img.read_bytes()


def test_ten_thousand_offline_results_drain_completely(
    endpoint, backend, store_path, enqueue_results, make_config
):
    enqueue_results(store_path, 10_000)
    endpoint.server.stop()
    config = make_config(endpoint.url)
    offline = SyncService(config, store_path)
    report = offline.run_once(flush=True)
    offline.close()
    assert report.failures == 1 and report.records_acked == 0
    endpoint.restart()
    service = SyncService(config, store_path)
    t0 = time.perf_counter()
    try:
        while True:
            time.sleep(max(0.0, report.retry_in_s or 0.0))
            report = service.run_once(flush=True)
            if report.drained or time.perf_counter() - t0 > 60:
                break
    finally:
        service.close()
    elapsed = time.perf_counter() - t0
    assert report.drained, report
    assert acked_counts(store_path) == (10_000, 10_000)
    seqs = stored_records(backend)
    assert len(seqs) == 10_000 and len(set(seqs)) == 10_000  # every one, none twice
    fleet = [
        json.loads(line)["seq"]
        for key in backend.objects()
        if key.startswith("results/")
        for line in backend.read(key).decode().splitlines()
    ]
    assert sorted(fleet) == list(range(1, 10_001))  # and once each in the fleet layout
    assert len(backend.batch_items()) == 20
    print(f"\ndrained 10000 records in {elapsed:.2f} s ({10_000 / elapsed:.0f} records/s)")
    assert elapsed < 30


def main(argv: list[str]) -> int:
    """`edge-ocr` as `edge_ocr.cli.main` runs it, with only the subcommands `sync` contributes
    (so these tests do not depend on the other plugins being importable)."""
    import argparse

    from edge_ocr.errors import EdgeOcrError
    from edge_ocr_sync.cli import register

    parser = argparse.ArgumentParser(prog="edge-ocr")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgeOcrError as exc:
        return exc.exit_code


def test_sync_commands_are_registered_through_the_entry_point():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="edge_ocr.commands") if e.name == "sync"]
    assert ep.value == "edge_ocr_sync.cli:register"
    import argparse

    parser = argparse.ArgumentParser(prog="edge-ocr")
    ep.load()(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["endpoint", "serve", "--host", "127.0.0.1", "--port", "0"])
    assert args.port == 0 and callable(args.func)
    assert parser.parse_args(["sync", "--once"]).once


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_cli_sync_once(
    cli_logging, endpoint, backend, store_path, enqueue_results, secret_file, tmp_path, capsys, fmt
):
    enqueue_results(store_path, 42)
    cfg = tmp_path / "edge-ocr.toml"
    cfg.write_text(
        f'[sync]\nendpoint_url = "{endpoint.url}"\ndevice_id = "line1-cam1"\nsecret_file = "{secret_file}"\n'
    )
    argv = ["sync", "--once", "--db", str(store_path), "--config", str(cfg)] + (
        ["--json"] if fmt == "json" else []
    )
    assert main(argv) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        assert json.loads(out)["records_acked"] == 42
    else:
        assert "acked 42 records" in out
    assert acked_counts(store_path) == (42, 42)


def test_cli_sync_once_reports_every_pass(
    cli_logging, endpoint, backend, store_path, enqueue_results, secret_file, tmp_path, capsys
):
    """Issue 21 item 8: 987 records at 5 per batch and 100 batches per pass take two passes; the
    line totals both ("acked 987 records in 198 batches"), not only the last."""
    enqueue_results(store_path, 987)
    cfg = tmp_path / "edge-ocr.toml"
    cfg.write_text(
        f'[sync]\nendpoint_url = "{endpoint.url}"\ndevice_id = "line1-cam1"\nsecret_file = "{secret_file}"\n'
        "batch_max_records = 5\nmax_batches_per_pass = 100\n"
    )
    argv = ["sync", "--once", "--db", str(store_path), "--config", str(cfg)]
    assert main(argv) == 0
    assert "acked 987 records in 198 batches (0 duplicates)" in capsys.readouterr().out
    assert acked_counts(store_path) == (987, 987)


def test_cli_sync_once_fails_with_exit_code_when_offline(
    cli_logging, store_path, enqueue_results, secret_file, tmp_path
):
    enqueue_results(store_path, 3)
    cfg = tmp_path / "edge-ocr.toml"
    cfg.write_text(
        f'[sync]\nendpoint_url = "http://127.0.0.1:9"\ndevice_id = "line1-cam1"\nsecret_file = "{secret_file}"\n'
        "connect_timeout_s = 1\n"
    )
    assert main(["sync", "--once", "--db", str(store_path), "--config", str(cfg)]) == 7
    assert acked_counts(store_path) == (3, 0)


def test_every_endpoint_command_is_documented():
    import argparse

    from test_sync_packaging import REPO

    from edge_ocr_sync.cli import register

    parser = argparse.ArgumentParser(prog="edge-ocr")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    endpoint = sub.choices["endpoint"]
    actions = next(a for a in endpoint._actions if isinstance(a, argparse._SubParsersAction)).choices
    deploy = (REPO / "docs" / "DEPLOY.md").read_text()
    missing = [name for name in actions if f"edge-ocr endpoint {name}" not in deploy]
    assert not missing, f"docs/DEPLOY.md does not show: {missing}"
