"""Checks of what the station reaches over the network: cameras, the sync endpoint, the clock."""

from __future__ import annotations

import logging
import os
import socket
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

from edge_ocr.config import Config
from edge_ocr.ops.doctor.findings import DoctorOptions, Finding, Status, ok

logger = logging.getLogger(__name__)

MAX_CLOCK_SKEW_S = 30.0  # signed sync requests and "not expired" checks need a right clock
HEALTH_PATH = "/v1/health"


def _tcp_reachable(host: str, port: int, timeout: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def check_cameras(cfg: Config, opts: DoctorOptions) -> list[Finding]:
    out = []
    for cam in cfg.cameras:
        name = f"camera {cam.name}"
        if cam.device is not None:
            dev = Path(f"/dev/video{cam.device}")
            if not dev.exists():
                present = sorted(str(p) for p in Path("/dev").glob("video*"))
                out.append(
                    Finding(
                        "cameras",
                        Status.FAIL,
                        f"{name}: {dev} does not exist (present: {', '.join(present) or 'none'})",
                        "plug the camera in (check `dmesg | tail`), or set device to one that exists",
                    )
                )
            elif not os.access(dev, os.R_OK | os.W_OK):
                out.append(
                    Finding(
                        "cameras",
                        Status.FAIL,
                        f"{name}: {dev} is not accessible to this user",
                        "add the agent's user to the video group: usermod -aG video edge-ocr",
                    )
                )
            else:
                out.append(ok("cameras", f"{name}: {dev} accessible"))
        elif cam.file is not None:
            if cam.file.is_file():
                out.append(ok("cameras", f"{name}: video file {cam.file} present"))
            else:
                out.append(
                    Finding(
                        "cameras", Status.FAIL, f"{name}: video file {cam.file} not found", "fix its path"
                    )
                )
        elif cam.url is not None:
            parts = urlsplit(cam.url)
            port = parts.port or {"rtsp": 554, "http": 80, "https": 443}.get(parts.scheme, 554)
            if not parts.hostname:
                out.append(Finding("cameras", Status.FAIL, f"{name}: {cam.url} has no host", "fix its url"))
                continue
            why = _tcp_reachable(parts.hostname, port, opts.timeout)
            if why is None:
                out.append(ok("cameras", f"{name}: {parts.hostname}:{port} reachable"))
            else:
                out.append(
                    Finding(
                        "cameras",
                        Status.FAIL,
                        f"{name}: {parts.hostname}:{port} unreachable ({why})",
                        "check the camera's power, network cable and address",
                    )
                )
    return out


# -- endpoint and clock ---------------------------------------------------------------------------


def endpoint_url(cfg: Config, opts: DoctorOptions) -> str | None:
    if opts.endpoint:
        return opts.endpoint
    url = cfg.sync.get("endpoint_url") if isinstance(cfg.sync, dict) else None
    return url if isinstance(url, str) and url else None


def check_endpoint(cfg: Config, opts: DoctorOptions) -> list[Finding]:
    import httpx

    out: list[Finding] = []
    url = endpoint_url(cfg, opts)
    if cfg.outputs.webhook:
        parts = urlsplit(cfg.outputs.webhook)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        why = _tcp_reachable(parts.hostname or "", port, opts.timeout)
        if why is None:
            out.append(ok("endpoint", f"webhook {parts.hostname}:{port} reachable"))
        else:
            out.append(
                Finding(
                    "endpoint",
                    Status.WARN,
                    f"webhook {cfg.outputs.webhook} unreachable ({why}); verdicts queue up and are retried",
                    "start the receiving service or fix [outputs] webhook",
                )
            )
    if url is None:
        out.append(Finding("endpoint", Status.INFO, "no sync endpoint configured ([sync] endpoint_url)"))
        return out
    health = url.rstrip("/") + HEALTH_PATH
    sent = time.time()
    try:
        resp = httpx.get(health, timeout=opts.timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        out.append(
            Finding(
                "endpoint",
                Status.FAIL,
                f"{health} unreachable: {type(exc).__name__}: {exc}",
                "check the network and DNS (curl -sS " + health + "), that the endpoint is deployed "
                "(docs/DEPLOY.md), and [sync] endpoint_url; results wait in the outbox meanwhile",
            )
        )
        return out
    received = time.time()
    if resp.status_code != 200:
        out.append(
            Finding(
                "endpoint",
                Status.FAIL,
                f"{health} answered HTTP {resp.status_code}",
                "check the endpoint's logs; a 404 usually means endpoint_url lacks the API stage prefix",
            )
        )
    else:
        out.append(ok("endpoint", f"{health} answered 200 in {(received - sent) * 1000:.0f} ms"))
    out.extend(_clock_skew(resp.headers.get("date"), (sent + received) / 2))
    return out


def _clock_skew(date_header: str | None, local: float) -> list[Finding]:
    if not date_header:
        return [Finding("clock", Status.INFO, "the endpoint sent no Date header; clock skew not measured")]
    try:
        server = parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return [Finding("clock", Status.INFO, f"unreadable Date header {date_header!r}")]
    skew = local - server
    msg = f"local clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the endpoint"
    if abs(skew) > MAX_CLOCK_SKEW_S:
        return [
            Finding(
                "clock",
                Status.FAIL,
                msg + " (signed requests are refused, dates on labels are judged wrongly)",
                "enable time sync: timedatectl set-ntp true (or install chrony/systemd-timesyncd)",
            )
        ]
    return [ok("clock", msg + " (Date has 1 s resolution)")]
