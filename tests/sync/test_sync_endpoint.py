"""The endpoint under uvicorn on 127.0.0.1 (port 0) with moto for S3 and DynamoDB."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from edge_ocr_sync.auth import sign_headers
from edge_ocr_sync.payload import encode_document


def png_bytes(w: int = 160, h: int = 48) -> bytes:
    img = np.full((h, w, 3), 255, np.uint8)
    img[15:30, 10:120] = 0
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def batch_body(device_id: str, batch_id: str, n: int = 3, text: str = "LOT") -> tuple[bytes, str]:
    records = [
        {
            "seq": i,
            "kind": "result",
            "ref_id": i,
            "created_at": "2026-01-01T00:00:00.000Z",
            "payload": {"t": text},
        }
        for i in range(1, n + 1)
    ]
    return encode_document(
        {
            "schema": 1,
            "device_id": device_id,
            "batch_id": batch_id,
            "created_at": "2026-01-01T00:00:01.000Z",
            "records": records,
        }
    )


def test_health_needs_no_signature(post):
    r = post("/v1/health", method="GET", sign=False)
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_batch_is_stored_once_and_repeats_are_duplicates(post, backend, device_id):
    body, sha = batch_body(device_id, "batch-0001")
    first = post("/v1/batches", body)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "status": "stored",
        "batch_id": "batch-0001",
        "content_sha256": sha,
        "n_records": 3,
    }
    for _ in range(3):
        again = post("/v1/batches", body)
        assert again.status_code == 200
        assert again.json()["status"] == "duplicate"
    assert backend.objects() == [
        f"batches/{device_id}/batch-0001/{sha}.json.gz",
        f"results/dt=2026-01-01/device={device_id}/batch-0001-{sha[:16]}.jsonl",  # the fleet layout
    ]
    assert len(backend.batch_items()) == 1
    stored = backend.read(backend.objects()[0])
    assert hashlib.sha256(gzip.decompress(stored)).hexdigest() == sha


def test_conflicting_reuse_of_a_batch_id_is_409_and_changes_nothing(post, backend, device_id):
    body, sha = batch_body(device_id, "batch-0002")
    assert post("/v1/batches", body).status_code == 200
    other, _ = batch_body(device_id, "batch-0002", text="DIFFERENT")
    r = post("/v1/batches", other)
    assert r.status_code == 409
    assert "different content" in r.json()["error"]
    assert backend.objects() == [
        f"batches/{device_id}/batch-0002/{sha}.json.gz",
        f"results/dt=2026-01-01/device={device_id}/batch-0002-{sha[:16]}.jsonl",
    ]
    assert [i["content_sha256"] for i in backend.batch_items()] == [sha]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "malformed JSON"),
        (gzip.compress(b"[1, 2"), 400, "malformed JSON"),
        (b"\x1f\x8b\x08\x00garbage", 400, "gzip"),
        (json.dumps({"schema": 99}).encode(), 400, "schema version 99"),
        (json.dumps([1, 2]).encode(), 400, "JSON object"),
        (
            json.dumps({"schema": 1, "device_id": "line1-cam1", "batch_id": "b", "records": []}).encode(),
            400,
            "batch_id",
        ),
        (
            json.dumps(
                {
                    "schema": 1,
                    "device_id": "other",
                    "batch_id": "batch-0003",
                    "records": [{"kind": "result", "payload": {}}],
                }
            ).encode(),
            400,
            "device_id",
        ),
        (
            json.dumps(
                {"schema": 1, "device_id": "line1-cam1", "batch_id": "batch-0003", "records": []}
            ).encode(),
            400,
            "non-empty",
        ),
    ],
)
def test_bad_batches_get_4xx_and_nothing_is_stored(post, backend, body, status, message):
    r = post("/v1/batches", body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert backend.objects() == []
    assert backend.batch_items() == []


def test_oversize_body_is_413(post, backend):
    r = post("/v1/batches", b"x" * (6 * 1024 * 1024 + 1))
    assert r.status_code == 413
    assert "limit" in r.json()["error"]
    assert backend.objects() == []


def test_gzip_bomb_is_refused(post, backend, device_id):
    raw = b'{"schema":1,"pad":"' + b"a" * (65 * 1024 * 1024) + b'"}'
    r = post("/v1/batches", gzip.compress(raw, compresslevel=1))
    assert r.status_code == 413
    assert backend.objects() == []


@pytest.mark.parametrize(
    "case", ["missing", "wrong", "stale", "future", "unknown_device", "tampered", "replayed"]
)
def test_bad_signatures_get_401_and_nothing_is_written(
    post, backend, endpoint, device_id, device_secret, case
):
    body, _ = batch_body(device_id, "batch-0100")
    if case == "replayed":
        h = sign_headers(device_secret, device_id, "POST", "/v1/batches", body)
        assert post("/v1/batches", body, sign=False, headers=h).status_code == 200
        before = backend.state()
        r = post("/v1/batches", body, sign=False, headers=h)
        assert r.status_code == 401
        assert "replayed" in r.json()["error"]
        assert backend.state() == before
        return
    if case == "missing":
        r = post("/v1/batches", body, sign=False)
    elif case == "wrong":
        r = post("/v1/batches", body, secret=b"not-the-secret-of-this-device")
    elif case == "stale":
        r = post("/v1/batches", body, now=time.time() - 301)
    elif case == "future":
        r = post("/v1/batches", body, now=time.time() + 301)
    elif case == "unknown_device":
        h = sign_headers(device_secret, "intruder", "POST", "/v1/batches", body)
        r = post("/v1/batches", body, sign=False, headers=h)
    else:  # signed for another body
        h = sign_headers(device_secret, device_id, "POST", "/v1/batches", body + b" ")
        r = post("/v1/batches", body, sign=False, headers=h)
    assert r.status_code == 401, r.text
    assert r.json()["error"].startswith("authentication failed")
    assert backend.objects() == []
    assert backend.nonce_count() == 0


def test_signature_covers_the_path(post, backend, device_id, device_secret):
    body, _ = batch_body(device_id, "batch-0101")
    h = sign_headers(device_secret, device_id, "POST", "/v1/uploads", body)
    assert post("/v1/batches", body, sign=False, headers=h).status_code == 401
    assert backend.objects() == []


def test_upload_gives_a_presigned_put_url_that_works(post, backend, device_id):
    data = png_bytes()
    sha = hashlib.sha256(data).hexdigest()
    meta = {"sha256": sha, "size": len(data), "content_type": "image/png"}
    r = post("/v1/uploads", json.dumps(meta).encode())
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == "upload" and doc["method"] == "PUT"
    assert doc["key"] == f"images/{device_id}/{sha}.png"
    assert backend.objects() == []  # presigning writes nothing
    put = httpx.put(doc["url"], content=data, headers=doc["headers"])
    assert put.status_code == 200
    assert [k for k in backend.objects() if not k.startswith("cache/")][0] == doc["key"]
    assert backend.read(doc["key"]) == data
    if backend.kind == "local":  # a local upload is read at once, as the S3 event does on AWS
        assert put.json() == {"status": "stored", "key": doc["key"], "ocr": "success"}
        result = json.loads(backend.read(doc["key"] + ".ocr.json"))
        assert result["status"] == "success" and result["data"]["text"]
    again = post("/v1/uploads", json.dumps(meta).encode())
    assert again.json() == {"status": "exists", "key": doc["key"]}


@pytest.mark.parametrize(
    ("meta", "status"),
    [
        ({"sha256": "00", "size": 10, "content_type": "image/png"}, 400),
        ({"sha256": "0" * 64, "size": 10, "content_type": "text/html"}, 400),
        ({"sha256": "0" * 64, "size": 10**10, "content_type": "image/png"}, 413),
        ({"sha256": "0" * 64, "size": -1, "content_type": "image/png"}, 400),
    ],
)
def test_bad_upload_requests(post, backend, meta, status):
    r = post("/v1/uploads", json.dumps(meta).encode())
    assert r.status_code == status
    assert r.json()["status"] == "error"


def test_cloud_ocr_base64_and_binary(post):
    data = png_bytes()
    r = post("/v1/ocr", json.dumps({"image": base64.b64encode(data).decode()}).encode())
    assert r.status_code == 200, r.text
    doc = r.json()
    assert set(doc) == {"status", "data", "timestamp"}
    assert doc["status"] == "success"
    assert set(doc["data"]) == {"text", "confidence", "boxes"}
    assert doc["data"]["text"]
    binary = post("/v1/ocr", data, headers={"content-type": "image/png"})
    assert binary.status_code == 200
    assert binary.json()["data"]["text"] == doc["data"]["text"]


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b"%PDF-1.4 not an image", "application/octet-stream", 415),
        (b"hello", "application/octet-stream", 415),
        (b"\x89PNG\r\n\x1a\n truncated", "image/png", 400),
        (b'{"image": "***"}', "application/json", 400),
        (b'{"image": 1', "application/json", 400),
        (b"", "application/octet-stream", 400),
    ],
)
def test_cloud_ocr_refuses_non_images(post, body, ctype, status):
    r = post("/v1/ocr", body, headers={"content-type": ctype})
    assert r.status_code == status, r.text
    assert r.json()["status"] == "error" and r.json()["error"]


def test_unknown_route_and_wrong_method(post):
    assert post("/v1/nothing", b"").status_code == 404
    assert post("/v1/batches", method="GET").status_code == 405


def _receipt_png() -> tuple[bytes, dict]:
    import cv2

    from edge_ocr.synth.receipt import generate_receipt

    receipt = generate_receipt(np.random.default_rng([1000, 4]))
    ok, buf = cv2.imencode(".png", receipt.image)
    assert ok
    return buf.tobytes(), receipt.values


def test_cloud_ocr_reads_fields_when_asked(post):
    """`fields` in a JSON body or the X-EdgeOCR-Fields header: data.fields read from the answer's
    boxes (the endpoint here reads with the fake engine: every field is there or null with a reason),
    also when the answer comes from the result cache; not asked, the answer is unchanged."""
    data, _ = _receipt_png()
    body = json.dumps({"image": base64.b64encode(data).decode(), "fields": "receipt"}).encode()
    r = post("/v1/ocr", body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert set(doc["data"]["fields"]) == {"company", "date", "address", "total"}
    for name, f in doc["data"]["fields"].items():
        assert (f is None) == (name in doc["data"]["fields_missing"])
    cached = post("/v1/ocr", data, headers={"content-type": "image/png", "x-edgeocr-fields": "receipt"})
    assert cached.headers["x-edgeocr-cache"] == "hit"
    assert cached.json()["data"]["fields"] == doc["data"]["fields"]
    plain = post("/v1/ocr", data, headers={"content-type": "image/png"})
    assert "fields" not in plain.json()["data"]
    bad = post(
        "/v1/ocr", json.dumps({"image": base64.b64encode(data).decode(), "fields": "passport"}).encode()
    )
    assert bad.status_code == 400
    assert (
        post("/v1/ocr", data, headers={"content-type": "image/png", "x-edgeocr-fields": "x"}).status_code
        == 400
    )


def test_fields_come_from_the_answers_boxes():
    """The endpoint's fields are the extractor's over the answer's boxes (as a cached answer has them)."""
    from edge_ocr.synth.receipt import generate_receipt
    from edge_ocr.types import TextLine
    from edge_ocr_sync.endpoint.core import _with_fields

    _, values = _receipt_png()

    receipt = generate_receipt(np.random.default_rng([1000, 4]))
    boxes = [TextLine(line.text, 0.95, line.box).to_dict() for line in receipt.lines]
    doc = {"status": "success", "data": {"text": "", "confidence": 0.95, "boxes": boxes}, "timestamp": 0.0}
    out = _with_fields(doc, "receipt")
    assert out["data"]["fields"]["total"]["value"] == values["total"]
    assert out["data"]["fields"]["date"]["value"] == values["date"]
    assert "fields" not in doc["data"] and _with_fields(doc, None) is doc


def test_batch_with_receipt_fields_is_stored(post, backend, device_id):
    """A result record carrying fields is accepted and stored as sent (batch object and fleet
    records); fields of the wrong shape are a 400 and nothing is stored."""
    from edge_ocr.fields import extract_receipt
    from edge_ocr.types import TextLine

    lines = (
        TextLine("GOLDEN TRADING SDN BHD", 0.9, ((0, 0), (200, 0), (200, 20), (0, 20))),
        TextLine("DATE: 05/03/2018", 0.9, ((0, 40), (150, 40), (150, 60), (0, 60))),
        TextLine("TOTAL 12.50", 0.9, ((0, 80), (120, 80), (120, 100), (0, 100))),
    )
    fields = extract_receipt(lines)
    payload = {"result_id": 1, "text": "x", "fields_kind": "receipt", **fields.contract()}
    doc = {
        "schema": 1,
        "device_id": device_id,
        "batch_id": "batch-fields-1",
        "records": [{"seq": 1, "kind": "result", "ref_id": 1, "payload": payload}],
    }
    body, _ = encode_document(doc)
    r = post("/v1/batches", body, headers={"content-encoding": "gzip"})
    assert r.status_code == 200, r.text
    fleet = [k for k in backend.objects() if k.startswith("results/")]
    (row,) = [json.loads(line) for k in fleet for line in backend.read(k).decode().splitlines()]
    assert row["payload"]["fields"] == fields.to_dict()
    bad = json.loads(json.dumps(doc))
    bad["batch_id"] = "batch-fields-2"
    bad["records"][0]["payload"]["fields"]["total"] = {"text": 5}
    before = backend.objects()
    body, _ = encode_document(bad)
    r = post("/v1/batches", body, headers={"content-encoding": "gzip"})
    assert r.status_code == 400, r.text
    assert backend.objects() == before
