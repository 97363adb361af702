"""Verdict outputs: a webhook on a real local HTTP server (port 0) with retry, and JSON lines."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_ocr.agent.outputs import JsonlSink, WebhookSink


class _Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fail_first = 2
        self.received: list[dict] = []
        self.got = threading.Event()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: _Receiver = self.server  # type: ignore[assignment]
        if server.fail_first > 0:
            server.fail_first -= 1
            self.send_response(503)
        else:
            server.received.append(json.loads(body))
            server.got.set()
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_webhook_retries_until_delivered(receiver: _Receiver) -> None:
    sink = WebhookSink(f"http://127.0.0.1:{receiver.server_address[1]}/v", retries=3, backoff=0.01)
    try:
        sink.emit({"verdict_id": 1, "verdict": "pass"})
        assert receiver.got.wait(10)
    finally:
        sink.close()
    assert receiver.received == [{"verdict_id": 1, "verdict": "pass"}]
    assert sink.delivered == 1 and sink.failed == 0


def test_webhook_gives_up_and_keeps_going(receiver: _Receiver) -> None:
    receiver.fail_first = 100
    sink = WebhookSink(f"http://127.0.0.1:{receiver.server_address[1]}/v", retries=1, backoff=0.01)
    sink.emit({"verdict_id": 1})
    sink.close()
    assert sink.failed == 1 and receiver.received == []


def test_jsonl_file(tmp_path: Path) -> None:
    sink = JsonlSink(str(tmp_path / "out" / "v.jsonl"))
    sink.emit({"b": 1, "a": "é"})
    sink.close()
    assert (tmp_path / "out" / "v.jsonl").read_text(encoding="utf-8") == '{"a": "é", "b": 1}\n'
