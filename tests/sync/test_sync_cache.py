"""The result cache (issue 17 item 3): the same image bytes with the same model set are read once;
`/v1/ocr` and S3 upload events reuse the stored result and say so; another model set reads again."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest
from test_sync_endpoint import png_bytes
from test_sync_lambda import Context, s3_event

from edge_ocr_sync.endpoint.ocr_runner import OcrRunner


class Counting:
    """Fake-engine pipelines that count the images they read, under a model id of our choosing."""

    def __init__(self, model_id: str | None = None) -> None:
        self.runs = 0
        self.model_id = model_id
        self._lock = threading.Lock()

    def factory(self, engine: str):
        from edge_ocr.ocr.reader import open_pipeline

        inner = open_pipeline("fake")
        outer = self

        class Pipeline:
            engine = inner.engine
            model_id = outer.model_id or inner.model_id

            def run(self, image):
                with outer._lock:
                    outer.runs += 1
                return inner.run(image)

        return Pipeline()


def _runner(counting: Counting) -> OcrRunner:
    return OcrRunner("fake", counting.factory, max_in_flight=1, max_queued=4, wait_s=30)


def test_a_repeated_image_is_read_once_and_the_answer_says_so(post, endpoint, backend):
    counting = Counting()
    endpoint.core.ocr = _runner(counting)
    image = png_bytes(200, 60)
    first = post("/v1/ocr", image, headers={"content-type": "image/png"})
    assert first.status_code == 200 and first.headers["x-edgeocr-cache"] == "miss"
    again = post("/v1/ocr", image, headers={"content-type": "image/png"})
    assert again.status_code == 200 and again.headers["x-edgeocr-cache"] == "hit"
    assert again.json()["data"] == first.json()["data"]
    assert set(again.json()) == {"status", "data", "timestamp"}  # the seed's contract, unchanged
    assert counting.runs == 1
    # the same bytes sent as base64 JSON are the same image
    import base64

    as_json = post("/v1/ocr", json.dumps({"image": base64.b64encode(image).decode()}).encode())
    assert as_json.headers["x-edgeocr-cache"] == "hit" and counting.runs == 1
    other = post("/v1/ocr", png_bytes(210, 60), headers={"content-type": "image/png"})
    assert other.headers["x-edgeocr-cache"] == "miss" and counting.runs == 2
    cached = [k for k in backend.objects() if k.startswith("cache/")]
    assert len(cached) == 2
    assert any(k.endswith(hashlib.sha256(image).hexdigest() + ".json") for k in cached)


def test_another_model_set_reads_the_image_again(post, endpoint):
    image = png_bytes(220, 60)
    endpoint.core.ocr = _runner(Counting())
    assert post("/v1/ocr", image, headers={"content-type": "image/png"}).headers["x-edgeocr-cache"] == "miss"
    newer = Counting(model_id="ppocrv6-small/onnx/fp32")
    endpoint.core.ocr = _runner(newer)
    r = post("/v1/ocr", image, headers={"content-type": "image/png"})
    assert r.headers["x-edgeocr-cache"] == "miss" and newer.runs == 1
    assert post("/v1/ocr", image, headers={"content-type": "image/png"}).headers["x-edgeocr-cache"] == "hit"
    assert newer.runs == 1


def test_non_images_are_not_cached(post, endpoint, backend):
    counting = Counting()
    endpoint.core.ocr = _runner(counting)
    for _ in range(2):
        assert post("/v1/ocr", b"not an image", headers={"content-type": "image/png"}).status_code == 415
    assert [k for k in backend.objects() if k.startswith("cache/")] == []


@pytest.fixture
def handler(aws, monkeypatch):
    from edge_ocr_sync.endpoint import lambda_handler

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "edge-ocr-endpoint")
    lambda_handler.reset()
    yield lambda_handler
    lambda_handler.reset()


def test_s3_events_reuse_the_cached_result(handler, aws, device_id):
    counting = Counting()
    handler.get_core().ocr = _runner(counting)
    data = png_bytes(230, 60)
    sha = hashlib.sha256(data).hexdigest()
    keys = [f"images/{device_id}/{sha}.png", f"images/line2-cam1/{sha}.png"]  # two devices, same label
    for key in keys:
        aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=data, ContentType="image/png")
    out = [handler.handler(s3_event(aws.bucket, key, len(data)), Context())["results"][0] for key in keys]
    assert [o["status"] for o in out] == ["success", "success"]
    docs = [
        json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=k + ".ocr.json")["Body"].read()) for k in keys
    ]
    assert [d["cache"] for d in docs] == ["miss", "hit"]
    assert docs[0]["data"] == docs[1]["data"] and counting.runs == 1
