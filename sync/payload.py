"""Batch bodies: gzip JSON with a schema version, the device id and a client-generated batch id.

The content hash is the sha256 of the uncompressed JSON bytes; the body is produced once when the
batch is cut and stored, so every retry sends identical bytes and the endpoint can tell a
duplicate (same id, same hash) from a conflict (same id, different hash).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_ocr.store.outbox import OutboxRow

SCHEMA_VERSION = 1
CONTENT_TYPE = "application/json"


def record_dict(row: OutboxRow) -> dict[str, Any]:
    return {
        "seq": row.id,
        "kind": row.kind,
        "ref_id": row.ref_id,
        "created_at": row.created_at,
        "payload": row.payload,
    }


def encode_document(doc: dict[str, Any]) -> tuple[bytes, str]:
    raw = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return gzip.compress(raw, compresslevel=6, mtime=0), hashlib.sha256(raw).hexdigest()


def make_serializer(device_id: str):
    def serialize(rows: list[OutboxRow], batch_id: str, created_at: str) -> tuple[bytes, str]:
        return encode_document(
            {
                "schema": SCHEMA_VERSION,
                "device_id": device_id,
                "batch_id": batch_id,
                "created_at": created_at,
                "records": [record_dict(r) for r in rows],
            }
        )

    return serialize
