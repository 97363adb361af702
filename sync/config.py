"""The `[sync]` section of the agent's config, validated once. Unknown keys are errors.

The device secret is never part of the config: `secret_file` names a file that holds it
(readable by the agent only), read when the service starts and kept in memory only.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge_ocr.errors import ConfigError

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MIN_SECRET_BYTES = 16


@dataclass(frozen=True)
class SyncConfig:
    endpoint_url: str
    device_id: str
    secret_file: Path
    enabled: bool = True
    batch_max_records: int = 500
    batch_max_age_s: float = 5.0
    upload_images: bool = False
    verify_tls: bool = True
    ca_file: Path | None = None
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 30.0
    poll_interval_s: float = 1.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    circuit_failures: int = 5
    circuit_open_s: float = 30.0
    max_batches_per_pass: int = 100

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, base_dir: Path | None = None) -> SyncConfig:
        """Validate the `[sync]` table. Relative paths are taken from `base_dir` (the config file's folder)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(
                f"[sync]: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        for key in ("endpoint_url", "device_id", "secret_file"):
            if not raw.get(key):
                raise ConfigError(f"[sync]: {key} is required")
        if "secret" in raw or "device_secret" in raw:  # pragma: no cover - caught as unknown above
            raise ConfigError("[sync]: put the device secret in a file and name it with secret_file")
        values: dict[str, Any] = dict(raw)

        def path(v: Any) -> Path:
            p = Path(str(v)).expanduser()
            return p if p.is_absolute() or base_dir is None else base_dir / p

        values["secret_file"] = path(raw["secret_file"])
        if raw.get("ca_file"):
            values["ca_file"] = path(raw["ca_file"])
        for key, typ in (
            ("batch_max_records", int),
            ("circuit_failures", int),
            ("max_batches_per_pass", int),
        ):
            if key in raw and (not isinstance(raw[key], int) or isinstance(raw[key], bool) or raw[key] < 1):
                raise ConfigError(f"[sync]: {key} must be a positive {typ.__name__}, got {raw[key]!r}")
        for key in (
            "batch_max_age_s",
            "connect_timeout_s",
            "request_timeout_s",
            "poll_interval_s",
            "backoff_base_s",
            "backoff_max_s",
            "circuit_open_s",
        ):
            if key in raw:
                v = raw[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                    raise ConfigError(f"[sync]: {key} must be a positive number of seconds, got {v!r}")
                values[key] = float(v)
        for key in ("enabled", "upload_images", "verify_tls"):
            if key in raw and not isinstance(raw[key], bool):
                raise ConfigError(f"[sync]: {key} must be true or false, got {raw[key]!r}")
        cfg = cls(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        parts = urlsplit(self.endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"[sync]: endpoint_url must be an http(s) URL, got {self.endpoint_url!r}")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            # allowed for on-premises endpoints, but say so: requests are signed, not encrypted
            pass
        if not DEVICE_ID_RE.match(self.device_id):
            raise ConfigError(
                f"[sync]: device_id {self.device_id!r} must be 1-64 letters, digits, '.', '_' or '-'"
            )
        if self.backoff_max_s < self.backoff_base_s:
            raise ConfigError("[sync]: backoff_max_s must be at least backoff_base_s")

    def load_secret(self) -> bytes:
        """Read the device secret from `secret_file`. Raises ConfigError that never shows the secret."""
        try:
            st = self.secret_file.stat()
            data = self.secret_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(
                f"[sync]: cannot read the device secret file {self.secret_file}: {exc.strerror or exc}; "
                "create it with the secret the endpoint holds for this device (chmod 600)"
            ) from exc
        if len(data) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"[sync]: the device secret in {self.secret_file} is shorter than {MIN_SECRET_BYTES} bytes"
            )
        if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            import logging

            logging.getLogger(__name__).warning(
                "device secret file %s is readable by others; chmod 600 it", self.secret_file
            )
        return data


def load_sync_config(path: Path) -> SyncConfig:
    """Read the `[sync]` table of a TOML config file."""
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:
        import tomli as tomllib
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    section = doc.get("sync")
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: no [sync] section; see docs/DEPLOY.md")
    return SyncConfig.from_dict(section, base_dir=path.parent)
