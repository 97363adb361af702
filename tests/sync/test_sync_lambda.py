"""The Lambda handler called in-process with real API Gateway v2 (HTTP API) and S3 event shapes."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid

import pytest
from test_sync_endpoint import batch_body, png_bytes

from edge_ocr_sync.auth import sign_headers
from edge_ocr_sync.endpoint import lambda_handler


@pytest.fixture
def handler(aws, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "edge-ocr-endpoint")  # as on Lambda: DynamoDB nonces
    lambda_handler.reset()
    yield lambda_handler.handler
    lambda_handler.reset()


class Context:
    function_name = "edge-ocr-endpoint"
    aws_request_id = "req-1"
    memory_limit_in_mb = 2048

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def http_event(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> dict:
    """An API Gateway HTTP API payload 2.0 event, as the $default stage sends it."""
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "accept": "*/*",
            "content-length": str(len(body)),
            "host": "abc123xyz.execute-api.us-east-1.amazonaws.com",
            "user-agent": "python-httpx/0.28.1",
            "x-amzn-trace-id": "Root=1-67891233-abcdef012345678912345678",
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            **(headers or {}),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123xyz",
            "domainName": "abc123xyz.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123xyz",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "python-httpx/0.28.1",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": base64.b64encode(body).decode() if body else None,
        "isBase64Encoded": bool(body),
    }


def s3_event(bucket: str, key: str, size: int) -> dict:
    from urllib.parse import quote_plus

    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-24T22:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:AROAEXAMPLE:edge-ocr-endpoint"},
                "requestParameters": {"sourceIPAddress": "203.0.113.7"},
                "responseElements": {
                    "x-amz-request-id": "C3D13FE58DE4C810",
                    "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "ImagePng",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                        "sequencer": "0055AED6DCD90281E5",
                    },
                },
            }
        ]
    }


def signed(method, path, body, device_id, device_secret, extra=None):
    h = {"content-type": "application/json", **sign_headers(device_secret, device_id, method, path, body)}
    h.update(extra or {})
    return http_event(method, path, body, h)


def test_health(handler):
    resp = handler(http_event("GET", "/v1/health"), Context())
    assert resp["statusCode"] == 200
    assert json.loads(resp["body"])["status"] == "ok"


def test_batches_through_api_gateway_are_idempotent_and_replays_refused(
    handler, aws, device_id, device_secret
):
    body, sha = batch_body(device_id, "lambda-batch-1")
    event = signed("POST", "/v1/batches", body, device_id, device_secret)
    first = handler(event, Context())
    assert first["statusCode"] == 200, first
    assert json.loads(first["body"])["status"] == "stored"
    assert len(aws.items(include_nonces=True)) == 2  # the batch and its request's nonce (TTL)
    nonce = [i for i in aws.items(include_nonces=True) if i["pk"]["S"].startswith("nonce#")][0]
    assert int(nonce["expires_at"]["N"]) > time.time()
    before = (aws.objects(), aws.items(include_nonces=True))
    replay = handler(event, Context())
    assert replay["statusCode"] == 401 and "replayed" in replay["body"]
    assert (aws.objects(), aws.items(include_nonces=True)) == before
    again = handler(signed("POST", "/v1/batches", body, device_id, device_secret), Context())
    assert json.loads(again["body"])["status"] == "duplicate"
    assert aws.objects() == [
        f"batches/{device_id}/lambda-batch-1/{sha}.json.gz",
        f"results/dt=2026-01-01/device={device_id}/lambda-batch-1-{sha[:16]}.jsonl",
    ]
    other, _ = batch_body(device_id, "lambda-batch-1", text="OTHER")
    assert (
        handler(signed("POST", "/v1/batches", other, device_id, device_secret), Context())["statusCode"]
        == 409
    )


def test_unsigned_and_badly_signed_events_write_nothing(handler, aws, device_id, device_secret):
    body, _ = batch_body(device_id, "lambda-batch-2")
    assert handler(http_event("POST", "/v1/batches", body), Context())["statusCode"] == 401
    bad = signed("POST", "/v1/batches", body, device_id, b"wrong-secret-wrong-secret")
    assert handler(bad, Context())["statusCode"] == 401
    stale = http_event(
        "POST",
        "/v1/batches",
        body,
        sign_headers(device_secret, device_id, "POST", "/v1/batches", body, now=time.time() - 600),
    )
    assert handler(stale, Context())["statusCode"] == 401
    assert aws.objects() == [] and aws.items(include_nonces=True) == []


def test_cloud_ocr_through_api_gateway(handler, device_id, device_secret):
    data = png_bytes()
    resp = handler(
        signed("POST", "/v1/ocr", data, device_id, device_secret, {"content-type": "image/png"}), Context()
    )
    assert resp["statusCode"] == 200, resp
    doc = json.loads(resp["body"])
    assert doc["status"] == "success" and set(doc["data"]) == {"text", "confidence", "boxes"}
    bad = handler(
        signed("POST", "/v1/ocr", b"not an image", device_id, device_secret, {"content-type": "image/png"}),
        Context(),
    )
    assert bad["statusCode"] == 415


def test_s3_upload_event_runs_cloud_ocr_and_stores_the_result_beside_the_image(handler, aws, device_id):
    data = png_bytes()
    key = f"images/{device_id}/{hashlib.sha256(data).hexdigest()}.png"
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=data, ContentType="image/png")
    out = handler(s3_event(aws.bucket, key, len(data)), Context())
    assert out["results"] == [{"key": key, "result_key": key + ".ocr.json", "status": "success"}]
    doc = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=key + ".ocr.json")["Body"].read())
    assert doc["status"] == "success" and doc["data"]["text"] and doc["key"] == key
    # the result object itself does not trigger another OCR
    again = handler(s3_event(aws.bucket, key + ".ocr.json", 10), Context())
    assert again["results"] == [{"key": key + ".ocr.json", "status": "ignored"}]


def test_s3_event_with_an_encoded_key_and_a_non_image(handler, aws, device_id):
    key = f"images/{device_id}/a label (1).png"
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=b"<html>not an image</html>")
    out = handler(s3_event(aws.bucket, key, 25), Context())
    assert out["results"][0]["status"] == "error"
    doc = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=key + ".ocr.json")["Body"].read())
    assert "not an image" in doc["error"]
