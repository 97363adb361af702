"""Endpoint settings from the environment (the same variables locally and on Lambda).

With `EDGE_OCR_BUCKET` and `EDGE_OCR_TABLE` set, storage is S3 + DynamoDB through boto3: the
standard AWS variables (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL_S3`,
`AWS_ENDPOINT_URL_DYNAMODB`) choose where, so the same code runs against AWS or any compatible
service. With neither set, storage is local: a data folder (`EDGE_OCR_ENDPOINT_DIR`, default the
per-user data folder's `endpoint/`) holding the objects and an SQLite index.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edge_ocr.errors import ConfigError

logger = logging.getLogger(__name__)

ENV_BUCKET = "EDGE_OCR_BUCKET"
ENV_TABLE = "EDGE_OCR_TABLE"
ENV_DATA_DIR = "EDGE_OCR_ENDPOINT_DIR"
ENV_SECRETS_FILE = "EDGE_OCR_DEVICE_SECRETS_FILE"
ENV_SECRETS_JSON = "EDGE_OCR_DEVICE_SECRETS"
ENV_SECRETS_SSM = "EDGE_OCR_DEVICE_SECRETS_SSM"
ENV_OCR_ENGINE = "EDGE_OCR_OCR_ENGINE"
ENV_OCR_MODELS = "EDGE_OCR_OCR_MODELS"
ENV_OCR_MAX_IN_FLIGHT = "EDGE_OCR_OCR_MAX_IN_FLIGHT"
ENV_OCR_MAX_QUEUED = "EDGE_OCR_OCR_MAX_QUEUED"
ENV_OCR_QUEUE_WAIT_S = "EDGE_OCR_OCR_QUEUE_WAIT_S"
ENV_OCR_ISOLATE_MP = "EDGE_OCR_OCR_ISOLATE_MP"
LOCAL_SECRETS_NAME = "device-secrets.json"

MB = 1024 * 1024


def default_data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("edge-ocr", appauthor=False)) / "endpoint"


@dataclass(frozen=True)
class EndpointSettings:
    """`storage` is "local" (a data folder + SQLite) unless a bucket and table are named ("aws")."""

    storage: str = "local"
    data_dir: Path | None = None
    bucket: str = ""
    table: str = ""
    ocr_engine: str = "onnx"
    ocr_models: str | None = None  # the model family; None: the models folder's default
    # /v1/ocr: images decoded and read at once (each holds its pixels), requests allowed to wait
    # for one of those slots, and how long they wait; beyond that: 503 with Retry-After
    ocr_max_in_flight: int = 1
    ocr_max_queued: int = 4
    ocr_queue_wait_s: float = 10.0
    # images of at least this many megapixels are decoded and read in a process of their own that
    # ends with the request, so their memory goes back to the system (0: never; Lambda: never)
    ocr_isolate_mp: int = 16
    busy_retry_after_s: int = 2
    max_body_bytes: int = 6 * MB  # Lambda's synchronous payload limit
    max_batch_json_bytes: int = 64 * MB  # after gunzip
    max_batch_records: int = 10_000
    max_upload_bytes: int = 50 * MB
    upload_url_expiry_s: int = 900
    nonce_ttl_s: int = 900

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, data_dir: Path | None = None
    ) -> EndpointSettings:
        env = os.environ if env is None else env
        if env.get("EDGE_OCR_NONCE_STORE"):
            raise ConfigError(
                "EDGE_OCR_NONCE_STORE is no longer used: nonces are kept where the batch index is "
                "(DynamoDB, or SQLite in the data folder); unset it"
            )
        bucket = env.get(ENV_BUCKET, "")
        table = env.get(ENV_TABLE, "")
        if bool(bucket) != bool(table):
            raise ConfigError(
                f"set both {ENV_BUCKET} and {ENV_TABLE} (S3 bucket and DynamoDB table), or neither "
                "for local storage in a data folder"
            )
        common = {
            "ocr_engine": env.get(ENV_OCR_ENGINE, "onnx"),
            "ocr_models": env.get(ENV_OCR_MODELS) or None,
            "ocr_max_in_flight": _env_int(env, ENV_OCR_MAX_IN_FLIGHT, cls.ocr_max_in_flight, 1, 64),
            "ocr_max_queued": _env_int(env, ENV_OCR_MAX_QUEUED, cls.ocr_max_queued, 0, 1024),
            "ocr_queue_wait_s": _env_float(env, ENV_OCR_QUEUE_WAIT_S, cls.ocr_queue_wait_s, 0.0, 600.0),
            "ocr_isolate_mp": _env_int(env, ENV_OCR_ISOLATE_MP, cls.ocr_isolate_mp, 0, 1000),
        }
        if bucket:
            if data_dir is not None:
                raise ConfigError(f"--data-dir is for local storage; unset {ENV_BUCKET} and {ENV_TABLE}")
            return cls(storage="aws", bucket=bucket, table=table, **common)
        if data_dir is None:
            data_dir = Path(env[ENV_DATA_DIR]).expanduser() if env.get(ENV_DATA_DIR) else default_data_dir()
        return cls(storage="local", data_dir=data_dir, **common)


def _env_int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number from {lo} to {hi}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be from {lo} to {hi}, got {value}")
    return value


def _env_float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds from {lo:g} to {hi:g}, got {raw!r}") from None
    if not lo <= value <= hi:  # NaN fails this too
        raise ConfigError(f"{name} must be from {lo:g} to {hi:g} seconds, got {raw}")
    return value


class DeviceSecrets:
    """Device id -> secret. From a file, the file is read again when it changes, so a device
    added with `edge-ocr endpoint add-device` is accepted without a restart. Never logs a secret."""

    def __init__(self, secrets: Mapping[str, bytes] | None = None, *, path: Path | None = None) -> None:
        self._secrets = dict(secrets or {})
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        if path is not None:
            self._reload()

    def __len__(self) -> int:
        return len(self._secrets)

    def get(self, device_id: str) -> bytes | None:
        if self.path is not None:
            try:
                self._reload()
            except ConfigError as exc:  # a bad edit: keep the secrets read before
                logger.error("%s; still using the secrets read before", exc)
        return self._secrets.get(device_id)

    def _reload(self) -> None:
        assert self.path is not None
        try:
            st = self.path.stat()
        except FileNotFoundError:
            stamp = None
        except OSError as exc:
            raise ConfigError(f"cannot read device secrets file {self.path}: {exc.strerror or exc}") from exc
        else:
            stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp == self._stamp and (stamp is not None or not self._secrets):
                return
            if stamp is None:
                self._secrets, self._stamp = {}, None
                return
            try:
                raw = self.path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read device secrets file {self.path}: {exc.strerror or exc}"
                ) from exc
            self._secrets = parse_secrets(raw, str(self.path))
            self._stamp = stamp
            logger.info("loaded secrets for %d device(s) from %s", len(self._secrets), self.path)


def parse_secrets(raw: str, source: str) -> dict[str, bytes]:
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError(f"device secrets in {source} are not a JSON object") from None
    if not isinstance(doc, dict) or not all(isinstance(v, str) and v for v in doc.values()):
        raise ConfigError(f"device secrets in {source} must be a JSON object {{device_id: secret}}")
    return {str(k): v.encode("utf-8") for k, v in doc.items()}


def load_device_secrets(
    env: Mapping[str, str] | None = None, ssm_client=None, *, local_dir: Path | None = None
) -> DeviceSecrets:
    """Device secrets from (first found) a JSON file, an SSM SecureString parameter or a JSON
    environment variable; with none of these and local storage, `<data dir>/device-secrets.json`
    (which may not exist yet: then no device is accepted until one is added)."""
    env = os.environ if env is None else env
    if env.get(ENV_SECRETS_FILE):
        path = Path(env[ENV_SECRETS_FILE])
        if not path.is_file():
            raise ConfigError(f"cannot read device secrets file {path}: no such file ({ENV_SECRETS_FILE})")
        return DeviceSecrets(path=path)
    if env.get(ENV_SECRETS_SSM):
        if ssm_client is None:  # pragma: no cover - AWS only
            import boto3

            ssm_client = boto3.client("ssm")
        resp = ssm_client.get_parameter(Name=env[ENV_SECRETS_SSM], WithDecryption=True)
        doc = parse_secrets(resp["Parameter"]["Value"], f"SSM parameter {env[ENV_SECRETS_SSM]}")
        logger.info("loaded secrets for %d device(s) from SSM %s", len(doc), env[ENV_SECRETS_SSM])
        return DeviceSecrets(doc)
    if env.get(ENV_SECRETS_JSON):
        return DeviceSecrets(parse_secrets(env[ENV_SECRETS_JSON], ENV_SECRETS_JSON))
    if local_dir is not None:
        path = local_dir / LOCAL_SECRETS_NAME
        secrets = DeviceSecrets(path=path)
        if not len(secrets):
            logger.warning(
                "no devices yet: add one with `edge-ocr endpoint add-device DEVICE_ID` (writes %s)", path
            )
        return secrets
    raise ConfigError(
        f"no device secrets: set {ENV_SECRETS_FILE} (a JSON file {{device_id: secret}}), "
        f"{ENV_SECRETS_SSM} or {ENV_SECRETS_JSON}"
    )


def add_device(path: Path, device_id: str) -> str:
    """Add a device with a fresh secret to a secrets file (made 0600); return the secret."""
    import secrets as _secrets

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", device_id):
        raise ConfigError(
            "a device id is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    doc: dict[str, str] = {}
    if path.exists():
        doc = {k: v.decode() for k, v in parse_secrets(path.read_text(encoding="utf-8"), str(path)).items()}
    if device_id in doc:
        raise ConfigError(f"device {device_id} is already in {path}; remove it there to replace its secret")
    secret = _secrets.token_urlsafe(32)
    doc[device_id] = secret
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return secret
