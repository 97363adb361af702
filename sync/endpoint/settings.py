"""Endpoint settings from the environment (the same variables locally and on Lambda).

Storage is boto3's: the standard AWS variables (`AWS_REGION`, credentials,
`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_DYNAMODB`) choose where S3 and DynamoDB are, so the
same code runs against AWS or a local S3/DynamoDB.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from edge_ocr.errors import ConfigError

logger = logging.getLogger(__name__)

ENV_BUCKET = "EDGE_OCR_BUCKET"
ENV_TABLE = "EDGE_OCR_TABLE"
ENV_SECRETS_FILE = "EDGE_OCR_DEVICE_SECRETS_FILE"
ENV_SECRETS_JSON = "EDGE_OCR_DEVICE_SECRETS"
ENV_SECRETS_SSM = "EDGE_OCR_DEVICE_SECRETS_SSM"
ENV_NONCE_STORE = "EDGE_OCR_NONCE_STORE"
ENV_OCR_ENGINE = "EDGE_OCR_OCR_ENGINE"

MB = 1024 * 1024


@dataclass(frozen=True)
class EndpointSettings:
    bucket: str
    table: str
    nonce_store: str = "memory"  # memory (one local process) or dynamodb (Lambda: shared)
    ocr_engine: str = "onnx"
    max_body_bytes: int = 6 * MB  # Lambda's synchronous payload limit
    max_batch_json_bytes: int = 64 * MB  # after gunzip
    max_batch_records: int = 10_000
    max_upload_bytes: int = 50 * MB
    upload_url_expiry_s: int = 900
    nonce_ttl_s: int = 900

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> EndpointSettings:
        env = os.environ if env is None else env
        bucket = env.get(ENV_BUCKET, "")
        table = env.get(ENV_TABLE, "")
        if not bucket or not table:
            raise ConfigError(f"set {ENV_BUCKET} and {ENV_TABLE} (the S3 bucket and DynamoDB table)")
        default_nonce = "dynamodb" if env.get("AWS_LAMBDA_FUNCTION_NAME") else "memory"
        nonce = env.get(ENV_NONCE_STORE, default_nonce)
        if nonce not in ("memory", "dynamodb"):
            raise ConfigError(f"{ENV_NONCE_STORE} must be memory or dynamodb, got {nonce!r}")
        return cls(bucket=bucket, table=table, nonce_store=nonce, ocr_engine=env.get(ENV_OCR_ENGINE, "onnx"))


def load_device_secrets(env: dict[str, str] | None = None, ssm_client=None) -> dict[str, bytes]:
    """Device id -> secret, from (first found) a JSON file, an SSM SecureString parameter or a
    JSON environment variable. Never logs a secret."""
    env = os.environ if env is None else env
    raw: str | None = None
    source = ""
    if env.get(ENV_SECRETS_FILE):
        path = Path(env[ENV_SECRETS_FILE])
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read device secrets file {path}: {exc.strerror or exc}") from exc
        source = str(path)
    elif env.get(ENV_SECRETS_SSM):
        if ssm_client is None:  # pragma: no cover - AWS only
            import boto3

            ssm_client = boto3.client("ssm")
        resp = ssm_client.get_parameter(Name=env[ENV_SECRETS_SSM], WithDecryption=True)
        raw = resp["Parameter"]["Value"]
        source = f"SSM parameter {env[ENV_SECRETS_SSM]}"
    elif env.get(ENV_SECRETS_JSON):
        raw = env[ENV_SECRETS_JSON]
        source = ENV_SECRETS_JSON
    if raw is None:
        raise ConfigError(
            f"no device secrets: set {ENV_SECRETS_FILE} (a JSON file {{device_id: secret}}), "
            f"{ENV_SECRETS_SSM} or {ENV_SECRETS_JSON}"
        )
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError(f"device secrets in {source} are not a JSON object") from None
    if not isinstance(doc, dict) or not all(isinstance(v, str) and v for v in doc.values()):
        raise ConfigError(f"device secrets in {source} must be a JSON object {{device_id: secret}}")
    logger.info("loaded secrets for %d device(s) from %s", len(doc), source)
    return {str(k): v.encode("utf-8") for k, v in doc.items()}
