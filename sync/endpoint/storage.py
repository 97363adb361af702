"""Where the endpoint keeps things: payloads and images (objects under keys), the batch index and
the replay nonces. One interface, `Storage`, two implementations:

- `LocalStorage`: a data folder (objects as files) and SQLite (index and nonces), for one
  on-premises box with no cloud at all; presigned uploads are HMAC-signed URLs to the endpoint's
  own `PUT /v1/objects/<key>`.
- `AwsStorage`: an S3 bucket and a DynamoDB table (one table, `pk`), on AWS or any compatible
  service chosen by the standard AWS variables.

Both keep nonces persistently, so a replay is refused after the endpoint restarts too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Protocol

TTL_ATTRIBUTE = "expires_at"
LOCAL_OBJECTS_ROUTE = "/v1/objects/"
# object keys we write: batches/<device>/<batch>/<sha>.json.gz, images/<device>/<sha>.png(.ocr.json), ...
KEY_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._=-]*(/[A-Za-z0-9_-][A-Za-z0-9._=-]*)*$")


class MissingObject(LookupError):
    """No object under that key."""


class StorageUnavailable(Exception):
    """The storage service failed (not the request's fault): the endpoint answers 503."""


class Storage(Protocol):
    kind: str  # "local" or "aws"

    def put_object(self, key: str, body: bytes, content_type: str, encoding: str | None = None) -> None: ...

    def get_object(self, key: str, max_bytes: int) -> bytes:
        """The object's bytes; MissingObject if absent, ValueError if over `max_bytes`."""

    def delete_object(self, key: str) -> None: ...

    def object_exists(self, key: str) -> bool: ...

    def list_keys(self, prefix: str) -> Iterator[str]: ...

    def list_objects(self, prefix: str, start_after: str = "") -> Iterator[tuple[str, float]]:
        """(key, last modified as Unix time) under `prefix`, in key order, after `start_after`."""

    def presign_put(self, key: str, content_type: str, expires_s: int, base_url: str) -> str:
        """A URL a device PUTs the object to, without our signature (`base_url`: this endpoint's)."""

    def get_item(self, pk: str) -> dict[str, Any] | None: ...

    def put_item_if_absent(self, item: dict[str, Any]) -> bool:
        """Store an index item (with `pk`); False if one with that `pk` exists."""

    def put_item(self, item: dict[str, Any]) -> None:
        """Store an index item (with `pk`), replacing any (bookkeeping such as a reprocess cursor)."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix` (every version, where the store keeps versions);
        the number of objects deleted."""

    def delete_items(self, pk_prefix: str) -> int:
        """Delete the index items (and nonces) whose `pk` starts with `pk_prefix`; how many."""

    def remember_nonce(self, key: str, ttl_s: int) -> bool:
        """Record a nonce for `ttl_s`; False if it is already there and not expired (a replay)."""

    def close(self) -> None: ...


def check_key(key: str) -> str:
    if len(key) > 512 or not KEY_RE.match(key) or any(p in (".", "..") for p in key.split("/")):
        raise ValueError(f"invalid object key {key[:80]!r}")
    return key
