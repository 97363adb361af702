"""The endpoint's logic, free of any web framework: `EndpointCore.handle` maps a request
(method, path, query, headers, body) to a `Reply`; `on_s3_records` handles S3 object-created
events.

Every route but `GET /v1/health` and `GET /v1/openapi.json` needs a valid signature
(`edge_ocr_sync.auth`); a request that fails authentication or validation changes nothing in storage.
Bodies are checked against the OpenAPI document's schemas (`edge_ocr_sync.endpoint.schema`); whatever a
client sends gets a JSON answer, a 4xx when the request is at fault.

Beside it, by job: `ocr_runner` (the bounded OCR it reads with), `layout` (the object key layout),
`fleet` (fleet records), and over it `reprocess` (scheduled reprocessing) and `erasure` (device
erasure and expiry), which take a core.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import hmac
import json
import logging
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, unquote_plus

from edge_ocr.errors import EdgeOcrError, InputError
from edge_ocr.fields import FieldKind, extract_fields
from edge_ocr.types import OcrResult, TextLine
from edge_ocr_sync.auth import AuthFailure, verify_signature
from edge_ocr_sync.endpoint.fleet import record_objects
from edge_ocr_sync.endpoint.layout import CACHE_PREFIX, IMAGE_PREFIX, IMAGE_TYPES, RESULT_SUFFIX
from edge_ocr_sync.endpoint.metrics import (
    PROMETHEUS_CONTENT_TYPE,
    EndpointMetrics,
    RequestRecord,
    route_label,
)
from edge_ocr_sync.endpoint.ocr_runner import OcrBusy, OcrRunner, ocr_contract
from edge_ocr_sync.endpoint.schema import BodyError, check_times, openapi_bytes, parse_json, validate
from edge_ocr_sync.endpoint.settings import EndpointSettings
from edge_ocr_sync.endpoint.storage import LOCAL_OBJECTS_ROUTE, MissingObject, Storage, StorageUnavailable
from edge_ocr_sync.payload import SCHEMA_VERSION

logger = logging.getLogger(__name__)

BATCH_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
H_CACHE = "x-edgeocr-cache"
H_FIELDS = "x-edgeocr-fields"  # a raw image body asks for fields with this header (JSON bodies: "fields")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any] | bytes  # bytes: already-encoded JSON
    headers: dict[str, str] = field(default_factory=dict)

    def json_bytes(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"status": "error", "error": message, "timestamp": time.time()}, headers or {})


class EndpointCore:
    def __init__(
        self,
        settings: EndpointSettings,
        storage: Storage,
        secrets,
        ocr: OcrRunner | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`secrets`: anything with `.get(device_id) -> bytes | None` (a dict, DeviceSecrets)."""
        self.settings = settings
        self.storage = storage
        self.secrets = secrets
        self.ocr = ocr or OcrRunner(
            settings.ocr_engine,
            models=settings.ocr_models,
            max_in_flight=settings.ocr_max_in_flight,
            max_queued=settings.ocr_max_queued,
            wait_s=settings.ocr_queue_wait_s,
            isolate_pixels=settings.ocr_isolate_mp * 1_000_000,
        )
        self.clock = clock
        self.metrics = EndpointMetrics()
        #: called with each request's figures (the Lambda handler writes them as EMF records)
        self.on_request: Callable[[RequestRecord], None] | None = None
        self._routes: dict[tuple[str, str], Callable[..., Reply]] = {
            ("POST", "/v1/batches"): self._post_batch,
            ("POST", "/v1/uploads"): self._post_upload,
            ("POST", "/v1/ocr"): self._post_ocr,
        }

    def close(self) -> None:
        self.storage.close()

    # --- HTTP -----------------------------------------------------------------------------------
    def body_limit(self, method: str, path: str) -> int:
        """The largest body the HTTP layer should read for this request."""
        if self.storage.kind == "local" and method.upper() == "PUT" and path.startswith(LOCAL_OBJECTS_ROUTE):
            return self.settings.max_upload_bytes
        return self.settings.max_body_bytes

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes, query: str = "") -> Reply:
        """Serve one request. `headers` with lower-case names."""
        started = time.perf_counter()
        reply = self._handle(method.upper(), path, headers, body, query)
        self.record(route_label(path), reply.status, time.perf_counter() - started)
        return reply

    def record(self, route: str, status: int, seconds: float) -> None:
        rec = self.metrics.observe(route, status, seconds)
        if self.on_request is not None:
            try:
                self.on_request(rec)
            except Exception:  # figures must never fail a request
                logger.exception("recording the request's metrics failed")

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes, query: str) -> Reply:
        try:
            return self._dispatch(method, path, headers, body, query)
        except HttpError as exc:
            if exc.status >= 500:
                logger.error("%s %s: %s", method, path, exc.message)
            else:
                logger.info("%s %s -> %d: %s", method, path, exc.status, exc.message)
            return error_reply(exc.status, exc.message, exc.headers)
        except Exception as exc:
            if _is_storage_failure(exc):
                logger.error("%s %s: storage failed: %s", method, path, exc)
                return error_reply(
                    503,
                    "storage is unavailable; nothing was stored, retry later",
                    {"retry-after": str(self.settings.busy_retry_after_s)},
                )
            logger.exception("%s %s failed", method, path)
            return error_reply(500, "internal error; the endpoint's log has the details")

    def _dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes, query: str) -> Reply:
        if path == "/v1/health":
            if method != "GET":
                raise HttpError(405, "use GET /v1/health", {"allow": "GET"})
            return Reply(
                200,
                {
                    "status": "ok",
                    "schema": SCHEMA_VERSION,
                    "time": self.clock(),
                    "storage": self.storage.kind,
                },
            )
        if path == "/v1/metrics":
            if method != "GET":
                raise HttpError(405, "use GET /v1/metrics", {"allow": "GET"})
            return Reply(200, self.metrics.render().encode(), {"content-type": PROMETHEUS_CONTENT_TYPE})
        if path == "/v1/openapi.json":
            if method != "GET":
                raise HttpError(405, "use GET /v1/openapi.json", {"allow": "GET"})
            return Reply(200, openapi_bytes())
        if path.startswith(LOCAL_OBJECTS_ROUTE) and self.storage.kind == "local":
            if method != "PUT":
                raise HttpError(405, "upload URLs take PUT", {"allow": "PUT"})
            return self._put_object(path, query, headers, body)
        route = self._routes.get((method, path))
        if route is None:
            if any(p == path for _, p in self._routes):
                raise HttpError(405, f"use POST {path}", {"allow": "POST"})
            raise HttpError(404, f"no route {method} {path}; see GET /v1/openapi.json")
        if len(body) > self.settings.max_body_bytes:
            raise HttpError(
                413,
                f"request body is {len(body)} bytes, over the {self.settings.max_body_bytes} byte limit; "
                "send large images through POST /v1/uploads",
            )
        device = self._authenticate(method, path, headers, body)
        try:
            return route(device, headers, body)
        except BodyError as exc:
            raise HttpError(exc.status, exc.message) from None

    def _authenticate(self, method: str, path: str, headers: dict[str, str], body: bytes) -> str:
        try:
            v = verify_signature(headers, method, path, body, self.secrets.get, now=self.clock())
        except AuthFailure as exc:
            raise HttpError(401, f"authentication failed: {exc}") from None
        if not self.storage.remember_nonce(f"{v.device_id}#{v.nonce}", self.settings.nonce_ttl_s):
            raise HttpError(401, "authentication failed: replayed request (sign each request afresh)")
        return v.device_id

    # --- batches --------------------------------------------------------------------------------
    def _post_batch(self, device: str, headers: dict[str, str], body: bytes) -> Reply:
        raw = self._gunzip(body) if body[:2] == b"\x1f\x8b" else body
        doc = parse_json(raw)
        if not isinstance(doc, dict):
            raise HttpError(400, "a batch must be a JSON object")
        schema = doc.get("schema")
        if type(schema) is not int or schema != SCHEMA_VERSION:  # 1.0 and true equal 1 in Python
            raise HttpError(
                400,
                f"unsupported batch schema version {schema!r:.40}; this endpoint accepts {SCHEMA_VERSION} "
                "(a JSON integer)",
            )
        records = doc.get("records")
        if isinstance(records, list) and len(records) > self.settings.max_batch_records:
            raise HttpError(413, f"{len(records)} records, over the {self.settings.max_batch_records} limit")
        validate(doc, "Batch", "batch")
        check_times(doc, self.clock())
        if doc["device_id"] != device:
            raise HttpError(400, "batch device_id does not match the signing device")
        batch_id = doc["batch_id"]
        sha = hashlib.sha256(raw).hexdigest()
        pk = f"batch#{device}#{batch_id}"
        existing = self.storage.get_item(pk)
        if existing is not None:
            return self._repeat(existing, batch_id, sha)
        key = f"batches/{device}/{batch_id}/{sha}.json.gz"
        stored_body = body if body[:2] == b"\x1f\x8b" else gzip.compress(raw, mtime=0)
        self.storage.put_object(key, stored_body, "application/json", encoding="gzip")
        # the fleet layout (results/dt=.../device=.../), written before the index entry so that a
        # retry after a crash writes the same objects again
        fleet = record_objects(device, batch_id, sha, records, self.clock())
        for fkey, lines in fleet.items():
            self.storage.put_object(fkey, lines, "application/x-ndjson")
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
                for stale in (key, *fleet):
                    self.storage.delete_object(stale)
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
        meta = validate(parse_json(body), "UploadRequest", "upload request")
        sha, ctype, size = meta["sha256"], meta["content_type"], meta["size"]
        if size > self.settings.max_upload_bytes:
            raise HttpError(
                413, f"image is {size} bytes, over the {self.settings.max_upload_bytes} byte limit"
            )
        key = f"{IMAGE_PREFIX}{device}/{sha}{IMAGE_TYPES[ctype]}"
        if self.storage.object_exists(key):
            return Reply(200, {"status": "exists", "key": key})
        url = self.storage.presign_put(key, ctype, self.settings.upload_url_expiry_s, _base_url(headers))
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

    def _put_object(self, path: str, query: str, headers: dict[str, str], body: bytes) -> Reply:
        """Local storage: the target of the URLs `presign_put` made (signed by the query)."""
        key = unquote(path[len(LOCAL_OBJECTS_ROUTE) :])
        q = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items() if len(v) == 1}
        ctype, expires, sig = q.get("content_type", ""), q.get("expires", ""), q.get("signature", "")
        if not (ctype and expires.isdigit() and len(expires) <= 12 and sig):
            raise HttpError(403, "not a valid upload URL; ask POST /v1/uploads for one")
        expected = self.storage.upload_signature(key, ctype, int(expires))  # type: ignore[attr-defined]
        if not hmac.compare_digest(expected, sig.lower()) or not key.startswith(IMAGE_PREFIX):
            raise HttpError(403, "upload URL signature does not match; ask POST /v1/uploads for a new one")
        if int(expires) < self.clock():
            raise HttpError(403, "upload URL expired; ask POST /v1/uploads for a new one")
        if headers.get("content-type", "").split(";")[0].strip().lower() != ctype:
            raise HttpError(403, f"send the Content-Type the upload URL was made for ({ctype})")
        if len(body) > self.settings.max_upload_bytes:
            raise HttpError(413, f"image is over the {self.settings.max_upload_bytes} byte limit")
        if hashlib.sha256(body).hexdigest() != key.rsplit("/", 1)[-1].split(".")[0]:
            raise HttpError(400, "the body's sha256 is not the one the upload URL was made for")
        self.storage.put_object(key, body, ctype)
        status = self.on_object_created(key, body)
        return Reply(200, {"status": "stored", "key": key, "ocr": status})

    # --- cloud OCR ------------------------------------------------------------------------------
    def _post_ocr(self, device: str, headers: dict[str, str], body: bytes) -> Reply:
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            doc = validate(parse_json(body), "OcrRequest", "OCR request")
            try:
                image = base64.b64decode(doc["image"], validate=True)
            except (binascii.Error, ValueError):
                raise HttpError(400, '"image" is not valid base64') from None
            name = str(doc.get("name") or "<upload>")[:200]
            fields = doc.get("fields")
        else:
            image = body
            name = "<upload>"
            fields = headers.get(H_FIELDS) or None
        if fields is not None and fields not in {k.value for k in FieldKind}:
            known = ", ".join(k.value for k in FieldKind)
            raise HttpError(400, f"unknown kind of fields {str(fields)[:40]!r} (known: {known})")
        if not image:
            raise HttpError(400, "no image in the request body")
        cached = self._cached(image)
        if cached is not None:
            self.metrics.cache.inc(result="hit")
            return Reply(200, _with_fields({**cached, "timestamp": time.time()}, fields), {H_CACHE: "hit"})
        try:
            doc = ocr_contract(self.ocr.run(image, name))
        except OcrBusy:
            self.metrics.ocr_busy.inc()
            raise HttpError(
                503,
                "OCR is busy: every slot is taken; retry after the given seconds",
                {"retry-after": str(self.settings.busy_retry_after_s)},
            ) from None
        except InputError as exc:
            raise HttpError(415 if "not an image" in str(exc) else 400, str(exc)) from None
        except EdgeOcrError as exc:
            raise HttpError(503, f"OCR unavailable: {exc}", {"retry-after": "30"}) from None
        self._cache(image, doc)
        self.metrics.cache.inc(result="miss")
        return Reply(200, _with_fields(doc, fields), {H_CACHE: "miss"})

    # --- the result cache -----------------------------------------------------------------------
    def _cache_key(self, image: bytes) -> str:
        model = re.sub(r"[^A-Za-z0-9._=-]+", "-", self.ocr.model_set_id())
        return f"{CACHE_PREFIX}{model}/{hashlib.sha256(image).hexdigest()}.json"

    def _cached(self, image: bytes) -> dict[str, Any] | None:
        """The stored answer for these image bytes and this model set, if any."""
        try:
            key = self._cache_key(image)
            raw = self.storage.get_object(key, 64 * 1024 * 1024)
        except MissingObject:
            return None
        except EdgeOcrError:  # no model: the OCR call says so
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            logger.warning("result cache entry %s is damaged; reading the image again", key)
            return None
        return doc if isinstance(doc, dict) and doc.get("status") == "success" else None

    def _cache(self, image: bytes, doc: dict[str, Any]) -> None:
        body = {k: v for k, v in doc.items() if k != "timestamp"}
        self.storage.put_object(
            self._cache_key(image), json.dumps(body, ensure_ascii=False).encode("utf-8"), "application/json"
        )

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
            try:
                data = self.storage.get_object(key, self.settings.max_upload_bytes)
            except (MissingObject, ValueError) as exc:
                data, error = None, str(exc)
            if data is None:
                status = self._store_result(
                    key, {"status": "error", "error": error, "timestamp": time.time()}
                )
            else:
                status = self.on_object_created(key, data)
            out.append({"key": key, "result_key": key + RESULT_SUFFIX, "status": status})
        return out

    def on_object_created(self, key: str, data: bytes) -> str:
        """OCR an image just stored under `key` (an S3 event, or a local upload) and store the
        result beside it; answered from the result cache when these bytes were read before."""
        cached = self._cached(data)
        if cached is not None:
            doc = {**cached, "timestamp": time.time(), "cache": "hit"}
        else:
            try:
                doc = ocr_contract(self.ocr.run(data, key, block=True))
                self._cache(data, doc)
                doc["cache"] = "miss"
            except (InputError, ValueError) as exc:
                doc = {"status": "error", "error": str(exc), "timestamp": time.time()}
        doc["model"] = self.ocr.model_set_id()  # what made it: reprocessing compares this
        return self._store_result(key, doc)

    def _store_result(self, key: str, doc: dict[str, Any]) -> str:
        doc["key"] = key
        self.storage.put_object(
            key + RESULT_SUFFIX, json.dumps(doc, ensure_ascii=False).encode("utf-8"), "application/json"
        )
        logger.info("OCR of %s: %s", key, doc["status"])
        return doc["status"]


def _with_fields(doc: dict[str, Any], kind: str | None) -> dict[str, Any]:
    """The answer with `data.fields` and `data.fields_missing` when asked for, read from the answer's
    own boxes (so a cached reading gets fields without reading the image again)."""
    if kind is None:
        return doc
    lines = tuple(TextLine.from_dict(b) for b in doc["data"]["boxes"])
    result = OcrResult(lines=lines, image_size=(0, 0), engine="endpoint", model="endpoint")
    return {**doc, "data": {**doc["data"], **extract_fields(kind, result).contract()}}


def _base_url(headers: dict[str, str]) -> str:
    proto = headers.get("x-forwarded-proto", "http").split(",")[0].strip() or "http"
    host = headers.get("host", "127.0.0.1")
    return f"{proto}://{host}"


def _is_storage_failure(exc: Exception) -> bool:
    """The storage's own failure (the local index's SQLite errors, AWS's), not the request's."""
    if isinstance(exc, (StorageUnavailable, OSError)):
        return True
    return type(exc).__module__.startswith(("sqlite3", "botocore", "boto3", "s3transfer"))


def build_core(settings: EndpointSettings | None = None, *, secrets=None) -> EndpointCore:
    """A core from the settings (default: the environment): local or AWS storage, device secrets."""
    from edge_ocr_sync.endpoint.aws_storage import AwsStorage
    from edge_ocr_sync.endpoint.local_storage import LocalStorage
    from edge_ocr_sync.endpoint.settings import load_device_secrets

    settings = settings or EndpointSettings.from_env()
    if settings.storage == "aws":
        storage: Storage = AwsStorage(settings.bucket, settings.table)
        local_dir = None
    else:
        assert settings.data_dir is not None
        storage = LocalStorage(settings.data_dir)
        local_dir = settings.data_dir
    if secrets is None:
        secrets = load_device_secrets(local_dir=local_dir)
    return EndpointCore(settings, storage, secrets)
