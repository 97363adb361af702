"""Request signing: HMAC-SHA256 with a per-device secret over method, path, timestamp and body digest.

Headers: `X-EdgeOCR-Device`, `X-EdgeOCR-Timestamp` (Unix seconds), `X-EdgeOCR-Nonce` (random,
fresh for every request, so two requests in the same second differ) and `X-EdgeOCR-Signature`
(hex). The string to sign is::

    EDGEOCR-HMAC-SHA256\\n<METHOD>\\n<path>\\n<timestamp>\\n<nonce>\\n<device id>\\n<sha256 hex of the body>

The endpoint accepts a timestamp within `WINDOW_S` of its clock and each (device, nonce) once:
a replay inside the window is rejected, and one outside it fails the window. Secrets are never
logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

ALGORITHM = "EDGEOCR-HMAC-SHA256"
H_DEVICE = "x-edgeocr-device"
H_TIMESTAMP = "x-edgeocr-timestamp"
H_SIGNATURE = "x-edgeocr-signature"
H_NONCE = "x-edgeocr-nonce"
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
WINDOW_S = 300


def string_to_sign(method: str, path: str, timestamp: str, nonce: str, device_id: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((ALGORITHM, method.upper(), path, timestamp, nonce, device_id, digest)).encode()


def signature(
    secret: bytes, method: str, path: str, timestamp: str, nonce: str, device_id: str, body: bytes
) -> str:
    msg = string_to_sign(method, path, timestamp, nonce, device_id, body)
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def sign_headers(
    secret: bytes, device_id: str, method: str, path: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    ts = str(int(time.time() if now is None else now))
    nonce = secrets.token_urlsafe(16)
    return {
        H_DEVICE: device_id,
        H_TIMESTAMP: ts,
        H_NONCE: nonce,
        H_SIGNATURE: signature(secret, method, path, ts, nonce, device_id, body),
    }


@dataclass(frozen=True)
class Verified:
    device_id: str
    timestamp: int
    nonce: str


class AuthFailure(Exception):
    """The request is not signed correctly; the message says why (never a secret)."""


def verify_signature(
    headers: dict[str, str],
    method: str,
    path: str,
    body: bytes,
    lookup_secret,
    now: float | None = None,
    window_s: int = WINDOW_S,
) -> Verified:
    """Check the signature headers (lower-case keys). `lookup_secret(device_id) -> bytes | None`.
    Raises AuthFailure. Replay is checked by the caller with the returned nonce."""
    device = headers.get(H_DEVICE, "")
    ts = headers.get(H_TIMESTAMP, "")
    nonce = headers.get(H_NONCE, "")
    sig = headers.get(H_SIGNATURE, "")
    if not device or not ts or not sig or not nonce:
        raise AuthFailure(f"missing signature headers ({H_DEVICE}, {H_TIMESTAMP}, {H_NONCE}, {H_SIGNATURE})")
    if not NONCE_RE.match(nonce):
        raise AuthFailure("nonce must be 16-64 URL-safe characters")
    try:
        ts_int = int(ts)
    except ValueError:
        raise AuthFailure("timestamp must be Unix seconds") from None
    now = time.time() if now is None else now
    if abs(now - ts_int) > window_s:
        raise AuthFailure(f"timestamp outside the {window_s} s window; check the device clock")
    secret = lookup_secret(device)
    if not secret:
        raise AuthFailure("unknown device or bad signature")
    expected = signature(secret, method, path, ts, nonce, device, body)
    if not hmac.compare_digest(expected, sig.lower()):
        raise AuthFailure("unknown device or bad signature")
    return Verified(device, ts_int, nonce)
