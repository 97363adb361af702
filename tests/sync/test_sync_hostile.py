"""Hostile input against the endpoint (issue 13, items 8-11), through uvicorn on 127.0.0.1 with
the local storage and with S3 + DynamoDB on moto: malformed signed bodies, busy OCR, replays
after a restart, and `--create-resources` outside us-east-1."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from test_sync_endpoint import batch_body, png_bytes

from edge_ocr.errors import ConfigError
from edge_ocr_sync.auth import sign_headers

EXE = str(Path(sys.executable).with_name("edge-ocr"))
DIGITS = "9" * 5000


def _batch(records: str) -> bytes:
    return (
        '{"schema":1,"device_id":"line1-cam1","batch_id":"hostile-0001","records":' + records + "}"
    ).encode()


MALFORMED = [
    # item 8: RecursionError, ValueError and TypeError were 500s with a plain-text body
    ("/v1/batches", b"[" * 100_000),
    ("/v1/batches", gzip.compress(b"[" * 100_000)),
    ("/v1/batches", _batch('[{"kind":"result","payload":' + "[" * 100_000 + "}]")),
    ("/v1/batches", _batch('[{"kind":"result","payload":{"n":' + DIGITS + "}}]")),
    ("/v1/batches", _batch('[{"kind":"result","payload":NaN}]')),
    ("/v1/batches", _batch('[{"kind":' + "[" * 500 + "]" * 500 + ',"payload":1}]')),
    ("/v1/batches", _batch('"not a list"')),
    ("/v1/uploads", b"[" * 100_000),
    (
        "/v1/uploads",
        ('{"sha256":"' + "0" * 64 + '","size":' + DIGITS + ',"content_type":"image/png"}').encode(),
    ),
    ("/v1/uploads", json.dumps({"sha256": "0" * 64, "size": 10, "content_type": ["image/png"]}).encode()),
    (
        "/v1/uploads",
        json.dumps({"sha256": "0" * 64, "size": 10, "content_type": {"a": "image/png"}}).encode(),
    ),
    ("/v1/uploads", json.dumps({"sha256": ["0" * 64], "size": 10, "content_type": "image/png"}).encode()),
    ("/v1/uploads", json.dumps({"sha256": "0" * 64, "size": "10", "content_type": "image/png"}).encode()),
    ("/v1/uploads", json.dumps({"sha256": "0" * 64, "size": True, "content_type": "image/png"}).encode()),
    ("/v1/ocr", b"[" * 100_000),
    ("/v1/ocr", ('{"image":' + DIGITS + "}").encode()),
    ("/v1/ocr", json.dumps({"image": ["aGVsbG8="]}).encode()),
    ("/v1/ocr", json.dumps({"image": "aGVsbG8=", "name": {"x": 1}}).encode()),
    ("/v1/ocr", b'{"image": "\xff\xfe"}'),
]


@pytest.mark.parametrize(("path", "body"), MALFORMED, ids=lambda v: v if isinstance(v, str) else None)
def test_malformed_signed_bodies_get_a_4xx_json_error_and_store_nothing(post, backend, path, body):
    objects, items = backend.objects(), backend.batch_items()
    r = post(path, body)
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["status"] == "error" and doc["error"] and len(doc["error"]) < 1000
    assert DIGITS[:100] not in doc["error"]  # the value is not echoed
    assert (backend.objects(), backend.batch_items()) == (objects, items)
    assert post("/v1/health", method="GET", sign=False).status_code == 200  # still up


def test_schema_errors_say_where(post):
    r = post("/v1/uploads", json.dumps({"sha256": "0" * 64, "size": 10, "content_type": ["x"]}).encode())
    assert r.status_code == 400
    assert "$.content_type" in r.json()["error"] and "image/png" in r.json()["error"]
    r = post("/v1/batches", _batch('[{"kind":"result","payload":{"n":' + DIGITS + "}}]"))
    assert "integer of 5000 digits" in r.json()["error"]


# --- issue 21 item 8: schema 1.0 and time stamps out of range ------------------------------------


def _batch_with(schema="1", batch_created='"2026-01-01T00:00:00.000Z"', record_created=None, payload="{}"):
    rec = '{"kind":"result","payload":' + payload
    if record_created is not None:
        rec += ',"created_at":' + record_created
    return (
        '{"schema":'
        + schema
        + ',"device_id":"line1-cam1","batch_id":"stamps-'
        + uuid.uuid4().hex[:12]
        + '","created_at":'
        + batch_created
        + ',"records":['
        + rec
        + "}]}"
    ).encode()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (_batch_with(schema="1.0"), "unsupported batch schema version 1.0"),
        (_batch_with(schema="true"), "unsupported batch schema version True"),
        (
            _batch_with(batch_created='"9999-12-31T23:59:59Z"'),
            "$.created_at: 9999-12-31T23:59:59Z is out of range",
        ),
        (
            _batch_with(record_created='"1970-01-01T00:00:00Z"'),
            "$.records[0].created_at: 1970-01-01T00:00:00Z is out of range",
        ),
        (
            _batch_with(record_created='"2026-13-45T00:00:00Z"'),
            "$.records[0].created_at: '2026-13-45T00:00:00Z' is not an ISO 8601",
        ),
        (
            _batch_with(payload='{"created_at":"3000-01-01T00:00:00Z"}'),
            "$.records[0].payload.created_at: 3000-01-01T00:00:00Z is out of range",
        ),
    ],
    ids=[
        "schema-1.0",
        "schema-true",
        "batch-far-future",
        "record-epoch",
        "record-month-13",
        "payload-year-3000",
    ],
)
def test_batches_with_schema_1_0_or_times_out_of_range_are_a_400_naming_why(post, backend, body, says):
    objects = backend.objects()
    r = post("/v1/batches", body)
    assert r.status_code == 400, r.text
    assert says in r.json()["error"]
    assert backend.objects() == objects


def test_times_a_little_ahead_of_the_endpoint_clock_are_accepted(post):
    import time

    ahead = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 3600))
    r = post("/v1/batches", _batch_with(batch_created=f'"{ahead}"', record_created=f'"{ahead}"'))
    assert r.status_code == 200, r.text


# --- item 9: --create-resources in any region ----------------------------------------------------


def test_create_resources_outside_us_east_1(moto_server, tmp_path):
    import boto3
    from conftest import aws_env

    from edge_ocr_sync.endpoint.aws_storage import create_resources

    for region in ("eu-central-1", "us-east-1", "ap-southeast-2"):
        s3 = boto3.client("s3", endpoint_url=moto_server, region_name=region)
        ddb = boto3.client("dynamodb", endpoint_url=moto_server, region_name=region)
        name = f"edge-ocr-{region}-{uuid.uuid4().hex[:8]}"
        with _env(aws_env(moto_server, tmp_path, region)):
            create_resources(name, name, s3=s3, dynamodb=ddb)
            create_resources(name, name, s3=s3, dynamodb=ddb)  # again: nothing to do
        location = s3.get_bucket_location(Bucket=name)["LocationConstraint"]
        assert location == (None if region == "us-east-1" else region)
        assert ddb.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE"


def test_create_resources_failure_is_one_line_not_a_traceback(moto_server, tmp_path):
    import boto3
    from botocore.config import Config

    from edge_ocr_sync.endpoint.aws_storage import create_resources

    once = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2)
    nowhere = "http://127.0.0.1:9"  # nothing listens on the discard port
    s3 = boto3.client("s3", endpoint_url=nowhere, region_name="eu-west-1", config=once)
    ddb = boto3.client("dynamodb", endpoint_url=nowhere, region_name="eu-west-1", config=once)
    with (
        _env(aws_env_for(moto_server, tmp_path, "eu-west-1")),
        pytest.raises(ConfigError, match="cannot create bucket 'b-1' in eu-west-1"),
    ):
        create_resources("b-1", "t", s3=s3, dynamodb=ddb)


def aws_env_for(moto_server, tmp_path, region):
    from conftest import aws_env

    return aws_env(moto_server, tmp_path, region)


@contextlib.contextmanager
def _env(values: dict[str, str]):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _serve(env: dict[str, str], *args: str) -> tuple[subprocess.Popen, str]:
    """`edge-ocr endpoint serve --host 127.0.0.1 --port 0 ...` as a user runs it; its URL once
    uvicorn says it is up (raises with the output if the process ends first)."""
    proc = subprocess.Popen(
        [EXE, "endpoint", "serve", "--host", "127.0.0.1", "--port", "0", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
        if m:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            return proc, m.group(1)
    proc.wait(10)
    raise AssertionError(f"endpoint serve exited {proc.returncode}:\n" + "".join(lines))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EDGE_OCR_"))}
    env["HOME"] = str(tmp_path / "home")
    env["XDG_DATA_HOME"] = str(tmp_path / "home" / "data")
    env["EDGE_OCR_OCR_ENGINE"] = "fake"
    return env


def test_cli_serve_create_resources_in_eu_central_1_against_moto(moto_server, tmp_path, device_id):
    import boto3

    name = f"edge-ocr-cli-{uuid.uuid4().hex[:8]}"
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({device_id: "x" * 32}))
    env = _clean_env(tmp_path)
    env.update(aws_env_for(moto_server, tmp_path, "eu-central-1"))
    env.update(
        {"EDGE_OCR_BUCKET": name, "EDGE_OCR_TABLE": name, "EDGE_OCR_DEVICE_SECRETS_FILE": str(secrets)}
    )
    proc, url = _serve(env, "--create-resources")
    try:
        assert httpx.get(url + "/v1/health").json()["storage"] == "aws"
    finally:
        _stop(proc)
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="eu-central-1")
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-central-1"


# --- item 10: bounded /v1/ocr work ----------------------------------------------------------------


class GatedPipelines:
    """Fake-engine pipelines whose run() waits at a gate: how many are inside, and a way to let
    them through; decodes are counted by what reached run()."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.inside = 0
        self.entered = threading.Condition()

    def factory(self, engine: str):
        from edge_ocr.ocr.reader import open_pipeline

        inner = open_pipeline("fake")
        outer = self

        class Gated:
            engine = inner.engine
            model_id = inner.model_id

            def run(self, image):
                with outer.entered:
                    outer.inside += 1
                    outer.entered.notify_all()
                try:
                    assert outer.gate.wait(30), "the test never opened the gate"
                    return inner.run(image)
                finally:
                    with outer.entered:
                        outer.inside -= 1

        return Gated()

    def wait_inside(self, n: int) -> None:
        with self.entered:
            assert self.entered.wait_for(lambda: self.inside >= n, timeout=30), self.inside


def _ocr_endpoint(endpoint, max_in_flight: int, max_queued: int, wait_s: float) -> GatedPipelines:
    from edge_ocr_sync.endpoint.ocr_runner import OcrRunner

    gated = GatedPipelines()
    endpoint.core.ocr = OcrRunner(
        "fake", gated.factory, max_in_flight=max_in_flight, max_queued=max_queued, wait_s=wait_s
    )
    return gated


def _label(i: int) -> bytes:
    return png_bytes(160 + i, 48)


@pytest.mark.parametrize("limit", [1, 2])
def test_ocr_work_in_flight_is_bounded_and_the_rest_get_503_with_retry_after(post, endpoint, limit):
    gated = _ocr_endpoint(endpoint, max_in_flight=limit, max_queued=0, wait_s=0)
    cached = _label(99)
    assert post("/v1/ocr", cached, headers={"content-type": "image/png"}).headers["x-edgeocr-cache"] == "miss"
    gated.gate.clear()
    answers: dict[int, httpx.Response] = {}

    def send(i: int) -> None:
        answers[i] = post("/v1/ocr", _label(i), headers={"content-type": "image/png"})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(limit)]
    for t in threads:
        t.start()
    try:
        gated.wait_inside(limit)  # every slot is taken, inside the engine
        busy = post("/v1/ocr", _label(50), headers={"content-type": "image/png"})
        assert busy.status_code == 503, busy.text
        assert int(busy.headers["retry-after"]) >= 1
        assert busy.json()["status"] == "error" and "busy" in busy.json()["error"]
        # not decoded before a slot is free: garbage is refused as busy, not as a bad image
        garbage = post("/v1/ocr", b"not an image at all", headers={"content-type": "image/png"})
        assert garbage.status_code == 503
        # a cached image needs no slot
        hit = post("/v1/ocr", cached, headers={"content-type": "image/png"})
        assert hit.status_code == 200 and hit.headers["x-edgeocr-cache"] == "hit"
        assert gated.inside == limit
    finally:
        gated.gate.set()
        for t in threads:
            t.join(30)
    assert [answers[i].status_code for i in range(limit)] == [200] * limit
    after = post("/v1/ocr", _label(51), headers={"content-type": "image/png"})
    assert after.status_code == 200  # the slots were given back


def test_a_queued_ocr_request_waits_for_a_slot(post, endpoint):
    gated = _ocr_endpoint(endpoint, max_in_flight=1, max_queued=1, wait_s=30)
    gated.gate.clear()
    answers: dict[int, httpx.Response] = {}

    def send(i: int) -> None:
        answers[i] = post("/v1/ocr", _label(i), headers={"content-type": "image/png"})

    first = threading.Thread(target=send, args=(1,))
    first.start()
    gated.wait_inside(1)
    second = threading.Thread(target=send, args=(2,))  # waits in the queue (1 place)
    second.start()
    try:
        runner = endpoint.core.ocr
        for _ in range(3000):  # until the second request is admitted and waiting (a deadline, not a timing)
            if runner.waiting == 1:
                break
            second.join(0.01)
        assert runner.waiting == 1
        third = post("/v1/ocr", _label(3), headers={"content-type": "image/png"})
        assert third.status_code == 503 and third.headers["retry-after"]
        assert gated.inside == 1  # the queued one holds no decoded image
    finally:
        gated.gate.set()
        first.join(30)
        second.join(30)
    assert answers[1].status_code == answers[2].status_code == 200


def test_ocr_limits_are_settings(monkeypatch):
    from edge_ocr_sync.endpoint.settings import EndpointSettings

    env = {
        "EDGE_OCR_OCR_MAX_IN_FLIGHT": "3",
        "EDGE_OCR_OCR_MAX_QUEUED": "0",
        "EDGE_OCR_OCR_QUEUE_WAIT_S": "2.5",
    }
    s = EndpointSettings.from_env(env, data_dir=Path("/tmp/x"))
    assert (s.ocr_max_in_flight, s.ocr_max_queued, s.ocr_queue_wait_s) == (3, 0, 2.5)
    for name, bad in [
        ("EDGE_OCR_OCR_MAX_IN_FLIGHT", "0"),
        ("EDGE_OCR_OCR_MAX_IN_FLIGHT", "many"),
        ("EDGE_OCR_OCR_QUEUE_WAIT_S", "nan"),
        ("EDGE_OCR_OCR_QUEUE_WAIT_S", "-1"),
        ("EDGE_OCR_OCR_MAX_QUEUED", "100000"),
    ]:
        with pytest.raises(ConfigError, match=name):
            EndpointSettings.from_env({name: bad}, data_dir=Path("/tmp/x"))


# --- item 11: replays after a restart -------------------------------------------------------------


def test_a_replay_is_refused_after_the_endpoint_restarts(post, endpoint, backend, device_id, device_secret):
    body, _ = batch_body(device_id, "replay-after-restart")
    h = sign_headers(device_secret, device_id, "POST", "/v1/batches", body)
    assert post("/v1/batches", body, sign=False, headers=h).json()["status"] == "stored"
    endpoint.restart(fresh_core=True)  # a new process: nothing kept in memory
    before = (backend.objects(), backend.batch_items())
    r = post("/v1/batches", body, sign=False, headers=h)
    assert r.status_code == 401 and "replayed" in r.json()["error"]
    assert (backend.objects(), backend.batch_items()) == before
    assert post("/v1/batches", body).json()["status"] == "duplicate"  # signed afresh: fine


def test_local_nonces_expire_and_are_kept_in_sqlite(tmp_path):
    from edge_ocr_sync.endpoint.local_storage import LocalStorage

    now = [1000.0]
    st = LocalStorage(tmp_path / "d", clock=lambda: now[0])
    try:
        assert st.remember_nonce("dev#abc", 60)
        assert not st.remember_nonce("dev#abc", 60)
        now[0] += 61
        assert st.remember_nonce(
            "dev#abc", 60
        )  # expired: may be used again (the signature window is shorter)
    finally:
        st.close()
    again = LocalStorage(tmp_path / "d", clock=lambda: now[0])
    try:
        assert not again.remember_nonce("dev#abc", 60)
        assert again.nonce_count() == 1
    finally:
        again.close()


# --- issue 17 item 1: the README's line, no cloud, no environment ---------------------------------


def test_readme_serve_line_runs_on_local_storage_with_no_settings(
    tmp_path, store_path, enqueue_results, make_config
):
    """`edge-ocr endpoint serve --host 127.0.0.1 --port 8080` (here port 0) with no AWS or edge-ocr
    variables: local storage in the per-user data folder; a device added with `add-device`; the
    sync client drains to it; a restart keeps the batches and refuses replays."""
    from edge_ocr_sync.service import SyncService

    env = _clean_env(tmp_path)
    data = Path(env["XDG_DATA_HOME"]) / "edge-ocr" / "endpoint"
    added = subprocess.run(
        [EXE, "endpoint", "add-device", "line1-cam1"], env=env, capture_output=True, text=True, check=True
    )
    secret = added.stdout.strip()
    assert len(secret) >= 32 and str(data) in added.stderr
    assert os.stat(data / "device-secrets.json").st_mode & 0o077 == 0
    secret_file = tmp_path / "device.secret"
    secret_file.write_text(secret)
    secret_file.chmod(0o600)
    enqueue_results(store_path, 1200)
    proc, url = _serve(env)
    try:
        health = httpx.get(url + "/v1/health").json()
        assert health["storage"] == "local"
        service = SyncService(make_config(url, secret_file=str(secret_file)), store_path)
        try:
            report = service.run_once(flush=True)
        finally:
            service.close()
        assert report.records_acked == 1200 and report.drained
        body, _ = batch_body("line1-cam1", "cli-replay-0001")
        h = sign_headers(secret.encode(), "line1-cam1", "POST", "/v1/batches", body)
        assert httpx.post(url + "/v1/batches", content=body, headers=h).status_code == 200
    finally:
        _stop(proc)
    assert proc.returncode == 0
    batches = sorted((data / "objects" / "batches" / "line1-cam1").rglob("*.json.gz"))
    assert len(batches) == 4
    proc, url = _serve(env)
    try:
        replay = httpx.post(url + "/v1/batches", content=body, headers=h)
        assert replay.status_code == 401 and "replayed" in replay.json()["error"]
    finally:
        _stop(proc)


def test_settings_choose_the_storage():
    from edge_ocr_sync.endpoint.settings import EndpointSettings

    local = EndpointSettings.from_env({}, data_dir=None)
    assert local.storage == "local" and local.data_dir is not None
    assert EndpointSettings.from_env({"EDGE_OCR_ENDPOINT_DIR": "/srv/ep"}).data_dir == Path("/srv/ep")
    aws = EndpointSettings.from_env({"EDGE_OCR_BUCKET": "b", "EDGE_OCR_TABLE": "t"})
    assert (aws.storage, aws.bucket, aws.table) == ("aws", "b", "t")
    with pytest.raises(ConfigError, match="both"):
        EndpointSettings.from_env({"EDGE_OCR_BUCKET": "b"})
    with pytest.raises(ConfigError, match="no longer used"):
        EndpointSettings.from_env({"EDGE_OCR_NONCE_STORE": "memory"})
    assert dataclasses.replace(local, ocr_max_in_flight=2).ocr_max_in_flight == 2


def test_object_keys_cannot_leave_the_data_folder(tmp_path):
    from edge_ocr_sync.endpoint.local_storage import LocalStorage

    st = LocalStorage(tmp_path / "d")
    try:
        for key in ("../x", "images/../../x", "/etc/passwd", "images//x", "images/./x", "a\\b", ""):
            with pytest.raises(ValueError, match="invalid object key"):
                st.put_object(key, b"x", "text/plain")
        st.put_object("images/dev/ab.png", b"x", "image/png")
        assert list(st.list_keys("images/")) == ["images/dev/ab.png"]
    finally:
        st.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_local_upload_urls_are_signed_and_expire(post, endpoint, backend, device_id):
    if backend.kind != "local":
        pytest.skip("presigned URLs to the endpoint itself are the local storage's")
    data = png_bytes()
    sha = hashlib.sha256(data).hexdigest()
    doc = post(
        "/v1/uploads", json.dumps({"sha256": sha, "size": len(data), "content_type": "image/png"}).encode()
    ).json()
    url = doc["url"]
    assert (
        httpx.put(url.replace("signature=", "signature=0"), content=data, headers=doc["headers"]).status_code
        == 403
    )
    assert httpx.put(url, content=data, headers={"Content-Type": "image/jpeg"}).status_code == 403
    assert httpx.put(url, content=data + b"x", headers=doc["headers"]).status_code == 400
    assert httpx.put(url.split("?")[0], content=data, headers=doc["headers"]).status_code == 403
    assert backend.objects() == []
    endpoint.core.clock = lambda: 10**10  # far past the expiry
    assert httpx.put(url, content=data, headers=doc["headers"]).status_code == 403
    assert backend.objects() == []


def test_storage_down_is_a_503_json_answer_with_retry_after(post, endpoint, backend, device_id):
    if backend.kind != "aws":
        pytest.skip("the S3 + DynamoDB storage taken away under the endpoint")
    backend.aws.ddb.delete_table(TableName=backend.aws.table)
    body, _ = batch_body(device_id, "storage-down-0001")
    r = post("/v1/batches", body)
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
    assert r.json()["status"] == "error" and "storage" in r.json()["error"]
    assert post("/v1/health", method="GET", sign=False).status_code == 200
