"""Fixtures: a moto server (S3 + DynamoDB) on port 0, the endpoint under uvicorn on port 0 on
either storage (`backend`: local data folder + SQLite, or S3 + DynamoDB on moto; tests that take
`endpoint` or `backend` run against both), a flaky TCP proxy for dropped connections, a temp
results store and a device config."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

DEVICE_ID = "line1-cam1"
DEVICE_SECRET = "s3cr3t-for-line1-cam1-0123456789abcdef"


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        yield url
    finally:
        # empty moto's backends while Python still runs: S3 keys left for interpreter shutdown
        # print "Exception ignored in FakeKey.__del__" tracebacks after the test summary
        httpx.post(f"{url}/moto-api/reset", timeout=30)
        gc.collect()
        server.stop()


@dataclass
class Aws:
    url: str
    bucket: str
    table: str
    s3: object
    ddb: object

    def objects(self) -> list[str]:
        resp = self.s3.list_objects_v2(Bucket=self.bucket)
        return sorted(o["Key"] for o in resp.get("Contents", []))

    def items(self, include_nonces: bool = False) -> list[dict]:
        items = self.ddb.scan(TableName=self.table)["Items"]
        return [i for i in items if include_nonces or not i["pk"]["S"].startswith("nonce#")]

    def batch_items(self) -> list[dict]:
        return [i for i in self.items() if i["pk"]["S"].startswith("batch#")]


def aws_env(moto_server: str, tmp_path: Path, region: str = "us-east-1") -> dict[str, str]:
    """The environment that points boto3 at the moto server, with no real credentials."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL_S3": moto_server,
        "AWS_ENDPOINT_URL_DYNAMODB": moto_server,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "EDGE_OCR_OCR_ENGINE": "fake",
    }


@pytest.fixture
def aws(moto_server, monkeypatch, tmp_path) -> Aws:
    """A fresh bucket and table on the moto server, and the environment pointing at them."""
    import boto3

    from edge_ocr_sync.endpoint.aws_storage import create_resources

    env = aws_env(moto_server, tmp_path)
    suffix = uuid.uuid4().hex[:10]
    bucket, table = f"edge-ocr-test-{suffix}", f"edge-ocr-test-{suffix}"
    secrets = tmp_path / "device-secrets.json"
    secrets.write_text(json.dumps({DEVICE_ID: DEVICE_SECRET}))
    env.update(
        {"EDGE_OCR_BUCKET": bucket, "EDGE_OCR_TABLE": table, "EDGE_OCR_DEVICE_SECRETS_FILE": str(secrets)}
    )
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    ddb = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1")
    create_resources(bucket, table, s3=s3, dynamodb=ddb)
    return Aws(moto_server, bucket, table, s3, ddb)


class Backend:
    """What the endpoint stored, read around it: objects by key, batch index items, nonces."""

    kind: str

    def objects(self) -> list[str]:
        raise NotImplementedError

    def read(self, key: str) -> bytes:
        raise NotImplementedError

    def batch_items(self) -> list[dict]:
        """Index items of batches as plain dicts (pk, batch_id, content_sha256, ...)."""
        raise NotImplementedError

    def nonce_count(self) -> int:
        raise NotImplementedError

    def state(self) -> tuple:
        return (self.objects(), self.batch_items(), self.nonce_count())


class AwsBackend(Backend):
    kind = "aws"

    def __init__(self, aws: Aws) -> None:
        self.aws = aws

    def objects(self) -> list[str]:
        return self.aws.objects()

    def read(self, key: str) -> bytes:
        return self.aws.s3.get_object(Bucket=self.aws.bucket, Key=key)["Body"].read()

    def batch_items(self) -> list[dict]:
        from edge_ocr_sync.endpoint.aws_storage import _from_attr

        items = [{k: _from_attr(v) for k, v in i.items()} for i in self.aws.batch_items()]
        return sorted(items, key=lambda i: i["pk"])

    def nonce_count(self) -> int:
        return len(self.aws.items(include_nonces=True)) - len(self.aws.items())


class LocalBackend(Backend):
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def objects(self) -> list[str]:
        base = self.root / "objects"
        if not base.exists():
            return []
        return sorted(
            p.relative_to(base).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def read(self, key: str) -> bytes:
        return (self.root / "objects" / key).read_bytes()

    def _query(self, sql: str) -> list[tuple]:
        import sqlite3

        db = self.root / "index.sqlite3"
        if not db.exists():
            return []
        conn = sqlite3.connect(db)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def batch_items(self) -> list[dict]:
        return [
            json.loads(r[0]) for r in self._query("SELECT doc FROM items WHERE pk LIKE 'batch#%' ORDER BY pk")
        ]

    def nonce_count(self) -> int:
        rows = self._query("SELECT count(*) FROM nonces")
        return rows[0][0] if rows else 0


@pytest.fixture(params=["local", "aws"])
def backend(request, monkeypatch, tmp_path) -> Backend:
    """The endpoint's storage, one test run each: local (data folder + SQLite, with the device
    secrets in the folder's device-secrets.json and no AWS settings at all) and S3 + DynamoDB on moto."""
    if request.param == "aws":
        return AwsBackend(request.getfixturevalue("aws"))
    for name in list(os.environ):
        if name.startswith(("AWS_", "EDGE_OCR_")):
            monkeypatch.delenv(name)
    root = tmp_path / "endpoint-data"
    root.mkdir()
    (root / "device-secrets.json").write_text(json.dumps({DEVICE_ID: DEVICE_SECRET}))
    monkeypatch.setenv("EDGE_OCR_ENDPOINT_DIR", str(root))
    monkeypatch.setenv("EDGE_OCR_OCR_ENGINE", "fake")
    return LocalBackend(root)


def _free_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class UvicornThread:
    """An ASGI app under uvicorn in a thread, on a socket we bound (port 0 or a given port)."""

    def __init__(self, app, port: int = 0) -> None:
        import uvicorn

        self.sock = _free_socket(port)
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
        assert not self.thread.is_alive(), "uvicorn thread did not stop"


class Faults:
    """ASGI wrapper that answers the next requests with injected statuses (e.g. 503 + Retry-After)."""

    def __init__(self, app) -> None:
        self.app = app
        self.queue: list[tuple[int, dict[str, str]]] = []
        self.requests = 0
        self._lock = threading.Lock()

    def fail_next(self, n: int, status: int = 503, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self.queue.extend([(status, headers or {})] * n)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            with self._lock:
                self.requests += 1
                fault = self.queue.pop(0) if self.queue else None
            if fault is not None:
                status, headers = fault
                body = json.dumps({"status": "error", "error": "injected"}).encode()
                hdrs = [(b"content-type", b"application/json")] + [
                    (k.lower().encode(), v.encode()) for k, v in headers.items()
                ]
                await send({"type": "http.response.start", "status": status, "headers": hdrs})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


@dataclass
class Endpoint:
    url: str
    core: object
    faults: Faults
    server: UvicornThread

    def restart(self, fresh_core: bool = False) -> None:
        """Start the server again on the same port; `fresh_core`: as a new process would, with
        the core (storage, secrets, nonces) built again from the environment."""
        port = self.server.port
        if self.server.thread.is_alive():
            self.server.stop()
        if fresh_core:
            from edge_ocr_sync.endpoint.app import create_app
            from edge_ocr_sync.endpoint.core import build_core

            self.core.close()
            self.core = build_core()
            self.faults.app = create_app(self.core)
        self.server = UvicornThread(self.faults, port=port).start()


@pytest.fixture
def endpoint(backend):
    from edge_ocr_sync.endpoint.app import create_app
    from edge_ocr_sync.endpoint.core import build_core

    core = build_core()
    faults = Faults(create_app(core))
    server = UvicornThread(faults).start()
    ep = Endpoint(server.url, core, faults, server)
    try:
        yield ep
    finally:
        if ep.server.thread.is_alive():
            ep.server.stop()
        ep.core.close()


class DropProxy:
    """A TCP proxy that, while `drops` > 0, forwards a request but closes the client's connection as
    soon as the server starts answering: the server committed, the client never hears."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.drops = 0
        self.dropped = 0
        self.listener = _free_socket()
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for src, dst, is_reply in ((client, upstream, False), (upstream, client, True)):
                t = threading.Thread(
                    target=self._pump, args=(src, dst, is_reply, client, upstream), daemon=True
                )
                t.start()
                self._threads.append(t)

    def _pump(self, src, dst, is_reply, client, upstream) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if is_reply:
                    with self._lock:
                        drop = self.drops > 0
                        if drop:
                            self.drops -= 1
                            self.dropped += 1
                    if drop:
                        break
                dst.sendall(data)
        except OSError:
            pass
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._stop.set()
        self._accept.join(5)
        self.listener.close()
        for t in self._threads:
            t.join(5)


@pytest.fixture
def drop_proxy(endpoint):
    proxy = DropProxy(endpoint.server.port)
    try:
        yield proxy
    finally:
        proxy.close()


def assert_conforms(method: str, path: str, resp) -> None:
    """The answer is what the OpenAPI document says this operation answers with this status
    (undocumented paths and methods, such as the 404 and 405 tests, are skipped)."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    from edge_ocr_sync.endpoint.schema import openapi_document

    doc = openapi_document()
    template = "/v1/objects/{key}" if path.startswith("/v1/objects/") else path
    op = doc["paths"].get(template, {}).get(method.lower())
    if op is None:
        return
    spec = op["responses"].get(str(resp.status_code))
    assert spec is not None, (
        f"{method} {path} answered {resp.status_code}, which the OpenAPI document does not list"
    )
    if "$ref" in spec:
        spec = doc["components"]["responses"][spec["$ref"].rsplit("/", 1)[-1]]
    assert resp.headers["content-type"] == "application/json"
    schema = spec["content"]["application/json"]["schema"]
    registry = Registry().with_resource(
        "urn:doc", Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    if "$ref" in schema:
        schema = {"$ref": "urn:doc" + schema["$ref"]}
    errors = list(Draft202012Validator(schema, registry=registry).iter_errors(resp.json()))
    assert not errors, f"{method} {path} {resp.status_code}: {errors[0].message}"


@pytest.fixture
def post(endpoint, device_id, device_secret):
    """Signed POST/GET against the running endpoint; `sign=False` or `headers=` to misbehave."""
    import httpx

    from edge_ocr_sync.auth import sign_headers

    client = httpx.Client(base_url=endpoint.url, timeout=10)

    def send(path: str, body: bytes = b"", *, method="POST", sign=True, headers=None, secret=None, now=None):
        h = {"content-type": "application/json"}
        if sign:
            h.update(sign_headers(secret or device_secret, device_id, method, path, body, now=now))
        h.update(headers or {})
        resp = client.request(method, path, content=body, headers=h)
        assert_conforms(method, path, resp)
        return resp

    yield send
    client.close()


@pytest.fixture
def store_path(tmp_path) -> Path:
    from edge_ocr.store.db import open_connection

    path = tmp_path / "edge-ocr.db"
    open_connection(path).close()
    return path


def _enqueue_results(db_path: Path, n: int, start: int = 1) -> None:
    """Queue `n` result rows in one transaction, as the agent does."""
    from edge_ocr.store.db import open_connection
    from edge_ocr.store.outbox import enqueue

    conn = open_connection(db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for i in range(start, start + n):
            enqueue(
                conn,
                "result",
                i,
                {"result_id": i, "text": f"LOT {i:06d}\nEXP 2027-01", "confidence": 0.97, "engine": "fake"},
            )
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.fixture
def cli_logging():
    """`edge_ocr.cli.main` installs log handlers on the (captured) stderr: remove them afterwards."""
    yield
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_edge_ocr", False):
            root.removeHandler(h)
            h.close()


@pytest.fixture
def enqueue_results():
    return _enqueue_results


@pytest.fixture
def device_id() -> str:
    return DEVICE_ID


@pytest.fixture
def device_secret() -> bytes:
    return DEVICE_SECRET.encode()


@pytest.fixture
def secret_file(tmp_path) -> Path:
    p = tmp_path / "device.secret"
    p.write_text(DEVICE_SECRET + "\n")
    os.chmod(p, 0o600)
    return p


@pytest.fixture
def make_config(secret_file):
    from edge_ocr_sync.config import SyncConfig

    def make(url: str, **overrides) -> SyncConfig:
        raw = {
            "endpoint_url": url,
            "device_id": DEVICE_ID,
            "secret_file": str(secret_file),
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
            "circuit_failures": 3,
            "circuit_open_s": 0.3,
            "poll_interval_s": 0.05,
            "batch_max_age_s": 0.01,
            "request_timeout_s": 10,
        }
        raw.update(overrides)
        return SyncConfig.from_dict(raw)

    return make
