"""Data protection: erase everything stored for one device, and expire old images and payloads
(the local storage's lifecycle rules)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from edge_ocr_sync.endpoint.layout import (
    CACHE_PREFIX,
    DEVICE_ID_RE,
    IMAGE_PREFIX,
    RESULT_SUFFIX,
    RESULTS_PREFIX,
)

if TYPE_CHECKING:
    from edge_ocr_sync.endpoint.core import EndpointCore

logger = logging.getLogger(__name__)


def erase_device(core: EndpointCore, device_id: str) -> dict[str, int]:
    """Delete everything stored for one device (an erasure request): its images and their
    results, its batches, its records in the fleet layout, its batch index entries and nonces,
    and the cached results of images no other device has. Idempotent."""
    if not DEVICE_ID_RE.match(device_id):
        raise ValueError(f"not a device id: {device_id[:80]!r}")
    mine = {_sha_of(k) for k in core.storage.list_keys(f"{IMAGE_PREFIX}{device_id}/")} - {None}
    others = {
        _sha_of(k)
        for k in core.storage.list_keys(IMAGE_PREFIX)
        if not k.startswith(f"{IMAGE_PREFIX}{device_id}/")
    }
    counts = {
        "images": core.storage.delete_prefix(f"{IMAGE_PREFIX}{device_id}/"),
        "batches": core.storage.delete_prefix(f"batches/{device_id}/"),
        "records": 0,
        "cache": 0,
    }
    for key in list(core.storage.list_keys(RESULTS_PREFIX)):
        if f"/device={device_id}/" in key:
            counts["records"] += core.storage.delete_prefix(key)
    for key in list(core.storage.list_keys(CACHE_PREFIX)):
        sha = key.rsplit("/", 1)[-1].split(".")[0]
        if sha in mine and sha not in others:
            counts["cache"] += core.storage.delete_prefix(key)
    counts["index"] = core.storage.delete_items(f"batch#{device_id}#")
    counts["nonces"] = core.storage.delete_items(f"nonce#{device_id}#")
    logger.info("erased device %s: %s", device_id, counts)
    return counts


def expire(
    core: EndpointCore, *, images_days: float, payloads_days: float, now: float | None = None
) -> dict[str, int]:
    """Delete images (with their results) and payloads (batches, fleet records) older than the
    given days: the local storage's lifecycle rules (S3 applies the template's own)."""
    now = core.clock() if now is None else now
    counts = {}
    for name, prefix, days in (
        ("images", IMAGE_PREFIX, images_days),
        ("batches", "batches/", payloads_days),
        ("records", RESULTS_PREFIX, payloads_days),
    ):
        cutoff = now - days * 86400
        old = [key for key, modified in core.storage.list_objects(prefix) if modified < cutoff]
        counts[name] = sum(core.storage.delete_prefix(key) for key in old)
    logger.info("expired: %s", counts)
    return counts


def _sha_of(key: str) -> str | None:
    if key.endswith(RESULT_SUFFIX):
        return None
    return key.rsplit("/", 1)[-1].split(".")[0]
