"""The device's HTTP client for the endpoint: every request signed, TLS verified by default."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from edge_ocr.ops.metrics import observe_sync
from edge_ocr_sync.auth import sign_headers
from edge_ocr_sync.config import SyncConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: str | None

    @property
    def error(self) -> str:
        return str(self.body.get("error") or self.body.get("status") or f"HTTP {self.status}")


class EndpointClient:
    def __init__(
        self, config: SyncConfig, secret: bytes, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.config = config
        self._secret = secret
        base = config.endpoint_url.rstrip("/")
        self._prefix = urlsplit(base).path
        verify: Any = str(config.ca_file) if config.verify_tls and config.ca_file else config.verify_tls
        timeout = httpx.Timeout(config.request_timeout_s, connect=config.connect_timeout_s)
        self._http = httpx.Client(base_url=base, verify=verify, timeout=timeout, transport=transport)
        # presigned S3 URLs go elsewhere, unsigned by us, with the same TLS policy
        self._plain = httpx.Client(verify=verify, timeout=timeout)

    def __repr__(self) -> str:  # never show the secret
        return f"EndpointClient({self.config.endpoint_url!r}, device={self.config.device_id!r})"

    def close(self) -> None:
        self._http.close()
        self._plain.close()

    def request(
        self, method: str, route: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Answer:
        """Send a signed request; raises httpx.TransportError when the endpoint cannot be reached."""
        path = self._prefix + route
        h = dict(headers or {})
        h.update(sign_headers(self._secret, self.config.device_id, method, path, body))
        resp = observe_sync(route, self._http.request, method, route, content=body, headers=h)
        try:
            doc = resp.json()
            if not isinstance(doc, dict):
                doc = {"body": doc}
        except (json.JSONDecodeError, UnicodeDecodeError):
            doc = {"error": resp.text[:200] or resp.reason_phrase}
        return Answer(resp.status_code, doc, resp.headers.get("retry-after"))

    def post_batch(self, body: bytes) -> Answer:
        return self.request(
            "POST", "/v1/batches", body, {"content-type": "application/json", "x-edgeocr-encoding": "gzip"}
        )

    def request_upload(self, sha256: str, size: int, content_type: str) -> Answer:
        body = json.dumps({"sha256": sha256, "size": size, "content_type": content_type}).encode()
        return self.request("POST", "/v1/uploads", body, {"content-type": "application/json"})

    def put_presigned(self, url: str, data: bytes, headers: dict[str, str]) -> int:
        return self._plain.put(url, content=data, headers=headers).status_code

    def health(self) -> Answer:
        return self.request("GET", "/v1/health")
