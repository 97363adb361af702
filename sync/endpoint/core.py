"""The endpoint's logic, free of any web framework: `EndpointCore.handle` maps a request
(method, path, headers, body) to a `Reply`; `on_s3_records` handles S3 object-created events.

Every route but `GET /v1/health` needs a valid signature (`sync.auth`); a request that fails
authentication or validation changes nothing in storage.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from edge_ocr.errors import EdgeOcrError, InputError
from sync.auth import AuthFailure, verify_signature
from sync.endpoint.settings import EndpointSettings
from sync.endpoint.storage import NonceStore
from sync.payload import SCHEMA_VERSION

logger = logging.getLogger(__name__)

BATCH_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
IMAGE_TYPES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/tiff": ".tif",
    "image/bmp": ".bmp",
    "image/webp": ".webp",
    "image/gif": ".gif",
}
IMAGE_PREFIX = "images/"
RESULT_SUFFIX = ".ocr.json"


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def json_bytes(self) -> bytes:
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"status": "error", "error": message, "timestamp": time.time()}, headers or {})


def ocr_contract(result) -> dict[str, Any]:
    """The seed's cloud OCR answer: `{"status", "data": {"text", "confidence", "boxes"}, "timestamp"}`."""
    return {
        "status": "success",
        "data": {
            "text": result.text,
            "confidence": round(result.confidence, 6),
            "boxes": [line.to_dict() for line in result.lines],
        },
        "timestamp": time.time(),
    }


class OcrRunner:
    """One lazily opened pipeline, used by one request at a time."""

    def __init__(self, engine: str, factory: Callable[[str], Any] | None = None) -> None:
        self.engine = engine
        self._factory = factory
        self._pipeline = None
        self._lock = threading.Lock()

    def run(self, image_bytes: bytes, name: str):
        from edge_ocr.ocr.imageio import decode_bytes

        image = decode_bytes(image_bytes, name=name)  # InputError for non-images / oversize
        with self._lock:
            if self._pipeline is None:
                if self._factory is not None:
                    self._pipeline = self._factory(self.engine)
                else:
                    from edge_ocr.ocr.reader import open_pipeline

                    self._pipeline = open_pipeline(self.engine, "fp32")
            return self._pipeline.run(image)


class EndpointCore:
    def __init__(
        self,
        settings: EndpointSettings,
        storage,
        secrets: dict[str, bytes],
        nonces: NonceStore,
        ocr: OcrRunner | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.secrets = secrets
        self.nonces = nonces
        self.ocr = ocr or OcrRunner(settings.ocr_engine)
        self.clock = clock
        self._routes: dict[tuple[str, str], Callable[..., Reply]] = {
            ("POST", "/v1/batches"): self._post_batch,
            ("POST", "/v1/uploads"): self._post_upload,
            ("POST", "/v1/ocr"): self._post_ocr,
        }

    # --- HTTP -----------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Serve one request. `headers` with lower-case names."""
        method = method.upper()
        try:
            if path == "/v1/health":
                if method != "GET":
                    raise HttpError(405, "use GET /v1/health", {"allow": "GET"})
                return Reply(200, {"status": "ok", "schema": SCHEMA_VERSION, "time": self.clock()})
            route = self._routes.get((method, path))
            if route is None:
                if any(p == path for _, p in self._routes):
                    raise HttpError(405, f"use POST {path}", {"allow": "POST"})
                raise HttpError(404, f"no route {method} {path}; see GET /v1/health")
            if len(body) > self.settings.max_body_bytes:
                raise HttpError(
                    413,
                    f"request body is {len(body)} bytes, over the {self.settings.max_body_bytes} byte limit; "
                    "send large images through POST /v1/uploads",
                )
            device = self._authenticate(method, path, headers, body)
            return route(device, headers, body)
        except HttpError as exc:
            if exc.status >= 500:
                logger.error("%s %s: %s", method, path, exc.message)
            else:
                logger.info("%s %s -> %d: %s", method, path, exc.status, exc.message)
            return error_reply(exc.status, exc.message, exc.headers)

    def _authenticate(self, method: str, path: str, headers: dict[str, str], body: bytes) -> str:
        try:
            v = verify_signature(headers, method, path, body, self.secrets.get, now=self.clock())
        except AuthFailure as exc:
            raise HttpError(401, f"authentication failed: {exc}") from None
        if not self.nonces.remember(f"{v.device_id}#{v.nonce}", self.settings.nonce_ttl_s):
            raise HttpError(401, "authentication failed: replayed request (sign each request afresh)")
        return v.device_id

    # --- batches --------------------------------------------------------------------------------
    def _post_batch(self, device: str, headers: dict[str, str], body: bytes) -> Reply:
        raw = self._gunzip(body) if body[:2] == b"\x1f\x8b" else body
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(400, f"malformed JSON batch: {exc}") from None
        if not isinstance(doc, dict):
            raise HttpError(400, "a batch must be a JSON object")
        if doc.get("schema") != SCHEMA_VERSION:
            raise HttpError(
                400,
                f"unsupported batch schema version {doc.get('schema')!r}; this endpoint accepts {SCHEMA_VERSION}",
            )
        if doc.get("device_id") != device:
            raise HttpError(400, "batch device_id does not match the signing device")
        batch_id = doc.get("batch_id")
        if not isinstance(batch_id, str) or not BATCH_ID_RE.match(batch_id):
            raise HttpError(400, "batch_id must be 8-64 letters, digits, '-' or '_'")
        records = doc.get("records")
        if not isinstance(records, list) or not records:
            raise HttpError(400, "records must be a non-empty list")
        if len(records) > self.settings.max_batch_records:
            raise HttpError(413, f"{len(records)} records, over the {self.settings.max_batch_records} limit")
        for i, rec in enumerate(records):
            if not isinstance(rec, dict) or not isinstance(rec.get("kind"), str) or "payload" not in rec:
                raise HttpError(400, f"record {i} must be an object with kind and payload")
        sha = hashlib.sha256(raw).hexdigest()
        pk = f"batch#{device}#{batch_id}"
        existing = self.storage.get_item(pk)
        if existing is not None:
            return self._repeat(existing, batch_id, sha)
        key = f"batches/{device}/{batch_id}/{sha}.json.gz"
        stored_body = body if body[:2] == b"\x1f\x8b" else gzip.compress(raw, mtime=0)
        self.storage.put_object(key, stored_body, "application/json", encoding="gzip")
        item = {
            "pk": pk,
            "batch_id": batch_id,
            "device_id": device,
            "content_sha256": sha,
            "n_records": len(records),
            "object_key": key,
            "stored_at": int(self.clock()),
        }
        if not self.storage.put_item_if_absent(item):  # a concurrent request won
            existing = self.storage.get_item(pk) or {}
            if existing.get("content_sha256") != sha:
                self.storage.delete_object(key)
            return self._repeat(existing, batch_id, sha)
        logger.info("stored batch %s from %s: %d records", batch_id, device, len(records))
        return Reply(
            200,
            {"status": "stored", "batch_id": batch_id, "content_sha256": sha, "n_records": len(records)},
        )

    def _repeat(self, existing: dict[str, Any], batch_id: str, sha: str) -> Reply:
        if existing.get("content_sha256") == sha:
            return Reply(
                200,
                {
                    "status": "duplicate",
                    "batch_id": batch_id,
                    "content_sha256": sha,
                    "n_records": existing.get("n_records"),
                },
            )
        raise HttpError(
            409, f"batch {batch_id} was already stored with different content; use a new batch id"
        )

    def _gunzip(self, body: bytes) -> bytes:
        limit = self.settings.max_batch_json_bytes
        d = zlib.decompressobj(wbits=31)
        try:
            out = d.decompress(body, limit + 1)
        except zlib.error as exc:
            raise HttpError(400, f"batch body is not valid gzip: {exc}") from None
        if len(out) > limit or d.unconsumed_tail:
            raise HttpError(413, f"batch is over {limit} bytes uncompressed")
        if not d.eof:
            raise HttpError(400, "batch body is truncated gzip")
        return out

    # --- uploads --------------------------------------------------------------------------------
    def _post_upload(self, device: str, headers: dict[str, str], body: bytes) -> Reply:
        meta = _json_object(body)
        sha = meta.get("sha256")
        ctype = meta.get("content_type")
        size = meta.get("size")
        if not isinstance(sha, str) or not SHA256_RE.match(sha):
            raise HttpError(400, "sha256 must be 64 lower-case hex digits")
        if ctype not in IMAGE_TYPES:
            raise HttpError(400, f"content_type must be one of {', '.join(sorted(IMAGE_TYPES))}")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise HttpError(400, "size must be a positive number of bytes")
        if size > self.settings.max_upload_bytes:
            raise HttpError(
                413, f"image is {size} bytes, over the {self.settings.max_upload_bytes} byte limit"
            )
        key = f"{IMAGE_PREFIX}{device}/{sha}{IMAGE_TYPES[ctype]}"
        if self.storage.object_exists(key):
            return Reply(200, {"status": "exists", "key": key})
        url = self.storage.presign_put(key, ctype, self.settings.upload_url_expiry_s)
        return Reply(
            200,
            {
                "status": "upload",
                "key": key,
                "method": "PUT",
                "url": url,
                "headers": {"Content-Type": ctype},
                "expires_in": self.settings.upload_url_expiry_s,
            },
        )

    # --- cloud OCR ------------------------------------------------------------------------------
    def _post_ocr(self, device: str, headers: dict[str, str], body: bytes) -> Reply:
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            doc = _json_object(body)
            b64 = doc.get("image")
            if not isinstance(b64, str) or not b64:
                raise HttpError(400, 'JSON body must hold "image": base64 image bytes')
            try:
                image = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                raise HttpError(400, '"image" is not valid base64') from None
            name = str(doc.get("name") or "<upload>")[:200]
        else:
            image = body
            name = "<upload>"
        if not image:
            raise HttpError(400, "no image in the request body")
        try:
            result = self.ocr.run(image, name)
        except InputError as exc:
            raise HttpError(415 if "not an image" in str(exc) else 400, str(exc)) from None
        except EdgeOcrError as exc:
            raise HttpError(503, f"OCR unavailable: {exc}") from None
        return Reply(200, ocr_contract(result))

    # --- S3 events ------------------------------------------------------------------------------
    def on_s3_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """OCR each image created under `images/` and store the result beside it as `<key>.ocr.json`."""
        out = []
        for rec in records:
            if rec.get("eventSource") != "aws:s3" or not str(rec.get("eventName", "")).startswith(
                "ObjectCreated"
            ):
                continue
            key = unquote_plus(rec["s3"]["object"]["key"])
            if not key.startswith(IMAGE_PREFIX) or key.endswith(RESULT_SUFFIX):
                out.append({"key": key, "status": "ignored"})
                continue
            result_key = key + RESULT_SUFFIX
            try:
                data = self.storage.get_object(key, self.settings.max_upload_bytes)
                doc = ocr_contract(self.ocr.run(data, key))
            except (InputError, ValueError) as exc:
                doc = {"status": "error", "error": str(exc), "timestamp": time.time()}
            doc["key"] = key
            self.storage.put_object(
                result_key, json.dumps(doc, ensure_ascii=False).encode("utf-8"), "application/json"
            )
            logger.info("OCR of s3 object %s: %s", key, doc["status"])
            out.append({"key": key, "result_key": result_key, "status": doc["status"]})
        return out


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpError(400, f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise HttpError(400, "the body must be a JSON object")
    return doc


def build_core(
    settings: EndpointSettings | None = None, *, secrets: dict[str, bytes] | None = None
) -> EndpointCore:
    """A core from the environment: AWS storage, device secrets, the configured nonce store."""
    from sync.endpoint.settings import load_device_secrets
    from sync.endpoint.storage import AwsStorage, DynamoNonceStore, MemoryNonceStore

    settings = settings or EndpointSettings.from_env()
    storage = AwsStorage(settings.bucket, settings.table)
    nonces = DynamoNonceStore(storage) if settings.nonce_store == "dynamodb" else MemoryNonceStore()
    return EndpointCore(settings, storage, secrets if secrets is not None else load_device_secrets(), nonces)
