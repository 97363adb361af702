"""The endpoint cannot be starved (issue 21 item 7): `edge-ocr endpoint serve` started as a user
starts it (a real process on 127.0.0.1 port 0, under a lowered file limit), against real slow
sockets: headers dribbled by more clients than the file limit allows, a body dribbled past its
deadline, connections over the limit, and the log counted in lines."""

from __future__ import annotations

import contextlib
import logging
import re
import resource
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_sync_hostile import EXE, _clean_env, _stop

FILE_LIMIT = 512


class Served:
    """A running `edge-ocr endpoint serve`: its URL, port and every line it has written."""

    def __init__(self, proc: subprocess.Popen, url: str, lines: list[str]) -> None:
        self.proc, self.url, self.lines = proc, url, lines
        self.port = int(url.rsplit(":", 1)[1])

    def log_bytes(self) -> int:
        return sum(len(line) for line in self.lines)


@contextlib.contextmanager
def serve(tmp_path: Path, *args: str, file_limit: int = FILE_LIMIT):
    def lower_file_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (file_limit, file_limit))

    proc = subprocess.Popen(
        [EXE, "endpoint", "serve", "--host", "127.0.0.1", "--port", "0", *args],
        env=_clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lower_file_limit,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    url = None
    for line in proc.stdout:
        lines.append(line)
        m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
        if m:
            url = m.group(1)
            break
    if url is None:
        proc.wait(10)
        raise AssertionError(f"endpoint serve exited {proc.returncode}:\n" + "".join(lines))
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        yield Served(proc, url, lines)
    finally:
        _stop(proc)
        reader.join(10)


def _slow_client(port: int, first: bytes) -> socket.socket | None:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(first)
        return sock
    except OSError:  # refused or reset: the server is shedding, as it should
        return None


def _closed_by_server(sock: socket.socket, within_s: float) -> bytes | None:
    """What the server wrote before closing the connection, or None if it is still open after
    `within_s` seconds (a generous bound, not a latency figure)."""
    sock.settimeout(within_s)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data
    except TimeoutError:
        return None


def test_slow_header_clients_over_the_file_limit_do_not_starve_health(tmp_path):
    """1,100 sockets dribbling headers (twice the file limit) while
    /v1/health is asked: it answers, the server never meets EMFILE and its log stays a few lines.
    Before: /v1/health timed out and "Too many open files" tracebacks filled the log."""
    with serve(tmp_path) as served:
        socks = []
        try:
            for _ in range(1100):
                sock = _slow_client(served.port, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
                if sock is not None:
                    socks.append(sock)
            for sock in socks:  # one more header line each, as a slowloris client does
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Slow: 1\r\n")
            answer = httpx.get(served.url + "/v1/health", timeout=10)
            assert answer.status_code == 200 and answer.json()["status"] == "ok"
            assert served.proc.poll() is None
        finally:
            for sock in socks:
                sock.close()
    log = "".join(served.lines)
    assert "Too many open files" not in log and "Traceback" not in log
    warnings = [line for line in served.lines if "WARNING" in line or "ERROR" in line]
    assert len(warnings) < 20, "".join(warnings[:20])
    assert len(served.lines) < 60, log[-3000:]


def test_headers_dribbled_past_the_deadline_get_408_and_are_closed(tmp_path):
    with serve(tmp_path, "--header-timeout", "1") as served:
        sock = _slow_client(served.port, b"GET /v1/health HTTP/1.1\r\n")
        assert sock is not None
        stop = threading.Event()

        def dribble() -> None:  # a byte every 0.2 s keeps uvicorn's own keep-alive timer reset
            while not stop.wait(0.2):
                try:
                    sock.sendall(b"X")
                except OSError:
                    return

        t = threading.Thread(target=dribble, daemon=True)
        t.start()
        try:
            written = _closed_by_server(sock, within_s=20)
        finally:
            stop.set()
            t.join(5)
            sock.close()
        assert written is not None, "a client dribbling headers kept its connection"
        assert written.startswith(b"HTTP/1.1 408 ")
        # an idle connection that never sends a byte is closed too
        idle = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        try:
            assert _closed_by_server(idle, within_s=20) is not None
        finally:
            idle.close()
        assert httpx.get(served.url + "/v1/health", timeout=10).status_code == 200
    assert any("request headers not complete within 1s" in line for line in served.lines)


def test_a_body_dribbled_past_its_deadline_is_cut_off(tmp_path):
    with serve(tmp_path, "--body-timeout", "1") as served:
        head = (
            b"POST /v1/batches HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 100000\r\n\r\n{"
        )
        sock = _slow_client(served.port, head)
        assert sock is not None
        stop = threading.Event()

        def dribble() -> None:
            while not stop.wait(0.2):
                try:
                    sock.sendall(b" ")
                except OSError:
                    return

        t = threading.Thread(target=dribble, daemon=True)
        t.start()
        try:
            assert _closed_by_server(sock, within_s=20) is not None, "a dribbled body kept its connection"
        finally:
            stop.set()
            t.join(5)
            sock.close()
        assert httpx.get(served.url + "/v1/health", timeout=10).status_code == 200
    assert any("request body not complete within 1s" in line for line in served.lines)


def test_the_connection_limit_sheds_idle_clients_first_then_refuses_with_503(tmp_path):
    with serve(tmp_path, "--max-connections", "5", "--body-timeout", "300") as served:
        # five clients that have not finished their headers: a health check still gets through,
        # the one that waited longest is closed for it
        waiting = [_slow_client(served.port, b"GET /v1/health HTTP/1.1\r\n") for _ in range(5)]
        assert all(waiting)
        time.sleep(0.5)  # the five are accepted before the health check (no timing is asserted)
        assert httpx.get(served.url + "/v1/health", timeout=10).status_code == 200
        assert _closed_by_server(waiting[0], within_s=10) is not None
        for sock in waiting:
            sock.close()
        # five clients in the middle of sending a body are busy, not idle: the sixth gets a 503
        head = b"POST /v1/batches HTTP/1.1\r\nHost: x\r\ncontent-length: 1000\r\nexpect: 100-continue\r\n\r\n"
        busy = [_slow_client(served.port, head) for _ in range(5)]
        assert all(busy)
        for sock in busy:  # the app is reading each body: the server said "100 Continue"
            sock.settimeout(10)
            assert sock.recv(64).startswith(b"HTTP/1.1 100 ")
            sock.sendall(b"{")
        try:
            answer = httpx.get(served.url + "/v1/health", timeout=10)
            assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
            assert "too many connections" in answer.json()["error"]
        finally:
            for sock in busy:
                sock.close()
        deadline = time.monotonic() + 10
        while httpx.get(served.url + "/v1/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the limit did not free up after the clients left"
            time.sleep(0.05)


def test_the_connection_limit_stays_below_the_file_limit(tmp_path):
    """`--max-connections` past what `ulimit -n` allows is lowered, and said so."""
    with serve(tmp_path, "--max-connections", "100000", file_limit=FILE_LIMIT) as served:
        assert httpx.get(served.url + "/v1/health", timeout=10).status_code == 200
    said = [line for line in served.lines if "--max-connections 100000" in line]
    assert said and re.search(r"serving at most (\d+)", said[0])
    assert int(re.search(r"serving at most (\d+)", said[0]).group(1)) < FILE_LIMIT


def test_serve_says_which_data_folder_it_uses(tmp_path):
    """Issue 21 item 8: the data folder is printed at start (the log level hid it)."""
    data = tmp_path / "endpoint data"
    with serve(tmp_path, "--data-dir", str(data)) as served:
        pass
    assert any(f"data folder {data}" in line for line in served.lines), "".join(served.lines)


@pytest.fixture
def log_file(tmp_path, cli_logging):
    from edge_ocr.ops.logsetup import configure_logging

    path = tmp_path / "edge-ocr.log"
    configure_logging(level=logging.INFO, log_file=path)
    return path


def test_a_repeated_error_is_logged_once_per_interval_with_a_count(log_file, monkeypatch):
    from edge_ocr.ops import logsetup

    clock = [1000.0]
    monkeypatch.setattr(logsetup.time, "monotonic", lambda: clock[0])
    log = logging.getLogger("edge_ocr_sync.endpoint.flood")
    for _ in range(10_000):
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            log.exception("socket.accept() out of system resource")
    log.info("an info line %d", 1)
    log.info("an info line %d", 1)
    clock[0] += 11
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        log.exception("socket.accept() out of system resource")
    text = log_file.read_text()
    assert text.count("socket.accept() out of system resource") == 2
    assert text.count("Traceback") == 2
    assert "[9999 more like this in the last 11s not logged]" in text
    assert text.count("an info line 1") == 2


# --- large images: their memory goes back after each one ----------------------------------------


def test_a_large_image_is_read_in_a_process_that_ends_with_it(post, endpoint):
    """Through the real server: a 16 MP image (the default threshold) is decoded and read in a
    process of its own, with the same answer as in the server's own process; a small one is read
    in the server's process. The memory figures are in docs/BENCHMARKS.md."""
    import multiprocessing

    from test_sync_endpoint import png_bytes

    from edge_ocr_sync.endpoint.ocr_runner import OcrRunner

    runner = endpoint.core.ocr
    small = post("/v1/ocr", png_bytes(), headers={"content-type": "image/png"})
    assert small.status_code == 200 and runner.isolated_runs == 0
    large_png = png_bytes(4000, 4000)
    large = post("/v1/ocr", large_png, headers={"content-type": "image/png"})
    assert large.status_code == 200, large.text
    assert runner.isolated_runs == 1
    assert not multiprocessing.active_children()
    in_process = OcrRunner("fake").run(large_png, "<upload>")
    assert large.json()["data"]["text"] == in_process.text and in_process.text


def test_a_broken_large_image_is_still_a_400_naming_why(post, endpoint):
    from test_sync_endpoint import png_bytes

    truncated = png_bytes(4000, 4000)[:-200]
    answer = post("/v1/ocr", truncated, headers={"content-type": "image/png"})
    assert answer.status_code == 400 and "corrupt or truncated" in answer.json()["error"]
    assert endpoint.core.ocr.isolated_runs == 1


def test_the_threshold_is_a_setting():
    from edge_ocr.errors import ConfigError
    from edge_ocr_sync.endpoint.settings import EndpointSettings

    assert EndpointSettings.from_env({}).ocr_isolate_mp == 16
    assert EndpointSettings.from_env({"EDGE_OCR_OCR_ISOLATE_MP": "0"}).ocr_isolate_mp == 0
    with pytest.raises(ConfigError, match="EDGE_OCR_OCR_ISOLATE_MP"):
        EndpointSettings.from_env({"EDGE_OCR_OCR_ISOLATE_MP": "lots"})
