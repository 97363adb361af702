"""Fixtures for the operations tests: a small but real models directory, configs, a local HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edge_ocr.ocr.modelstore import sha256_tree


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not extra, f"test leaked threads: {[t.name for t in extra]}"


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """A models directory in the build's manifest format: one active onnx/fp32 set whose files are small
    stand-ins with their real sha256 (doctor checks hashes, it does not load the models)."""
    root = tmp_path / "models"
    files = {}
    for role, name in (("det", "det.onnx"), ("rec", "rec.onnx"), ("cls", "cls.onnx"), ("dict", "keys.txt")):
        p = root / "onnx" / "fp32" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"{role} weights".encode() * 100)
        files[role] = {
            "path": p.relative_to(root).as_posix(),
            "sha256": sha256_tree(p),
            "size": p.stat().st_size,
        }
    manifest = {
        "schema": 1,
        "built_at": "2026-01-01T00:00:00Z",
        "sets": {
            "onnx/fp32": {
                "engine": "onnx",
                "variant": "fp32",
                "target": "x86",
                "files": files,
                "accuracy": {"checked": True, "ref_line_agreement": 1.0},
                "active": True,
                "reason": "",
            }
        },
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    def write(body: str = "", *, db: Path | None = None, engine: str = "fake") -> Path:
        db = db or tmp_path / "state" / "edge-ocr.db"
        cfg = tmp_path / "edge-ocr.toml"
        (tmp_path / "device.secret").write_text("s" * 32)  # for tests with a [sync] section
        cfg.write_text(
            f'[agent]\ndb = "{db}"\ndata_dir = "{tmp_path / "state"}"\n[engine]\nname = "{engine}"\n' + body
        )
        return cfg

    return write


class _Health(BaseHTTPRequestHandler):
    skew_s = 0.0
    status = 200

    def do_GET(self) -> None:
        import time

        body = b'{"status": "ok"}'
        self.send_response_only(self.status if self.path == "/v1/health" else 404)
        self.send_header("Date", formatdate(time.time() + self.skew_s, usegmt=True))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[Callable[..., str]]:
    """Start GET /v1/health on 127.0.0.1:0 with a chosen clock skew; returns its base URL."""
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(skew_s: float = 0.0, status: int = 200) -> str:
        handler = type("Health", (_Health,), {"skew_s": skew_s, "status": status})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        t = threading.Thread(target=srv.serve_forever, name="health-server", daemon=True)
        t.start()
        servers.append((srv, t))
        return f"http://127.0.0.1:{srv.server_address[1]}"

    try:
        yield start
    finally:
        for srv, t in servers:
            srv.shutdown()
            srv.server_close()
            t.join(5)


@pytest.fixture
def closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
