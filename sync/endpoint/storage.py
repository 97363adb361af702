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

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from edge_ocr.errors import ConfigError

logger = logging.getLogger(__name__)

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


# --- local: a data folder and SQLite -------------------------------------------------------------

_MIGRATIONS = (
    # 1: the batch index and the replay nonces
    """
    CREATE TABLE items (pk TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE nonces (key TEXT PRIMARY KEY, expires_at REAL NOT NULL) WITHOUT ROWID;
    CREATE INDEX nonces_expiry ON nonces (expires_at);
    """,
)


class LocalStorage:
    """Objects as files under `<root>/objects/`, the index and nonces in `<root>/index.sqlite3`."""

    kind = "local"

    def __init__(self, root: Path, *, clock=time.time) -> None:
        self.root = Path(root)
        self.objects_dir = self.root / "objects"
        self.clock = clock
        try:
            self.objects_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the endpoint's data folder {self.root}: {exc.strerror or exc}; "
                "pass --data-dir or set EDGE_OCR_ENDPOINT_DIR to a writable folder"
            ) from exc
        self.db_path = self.root / "index.sqlite3"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()
        self._upload_key = self._load_upload_key()
        self._nonce_writes = 0

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            for n, sql in enumerate(_MIGRATIONS[version:], start=version + 1):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in filter(str.strip, sql.split(";")):
                        self._db.execute(stmt)
                    self._db.execute(f"PRAGMA user_version = {n}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    def _load_upload_key(self) -> bytes:
        """The secret that signs this endpoint's upload URLs (made on first start, kept 0600)."""
        path = self.root / "upload-url.key"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_urlsafe(32).encode())
        return path.read_bytes().strip()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- objects
    def _path(self, key: str) -> Path:
        return self.objects_dir / check_key(key)

    def put_object(self, key: str, body: bytes, content_type: str, encoding: str | None = None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def get_object(self, key: str, max_bytes: int) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > max_bytes:
                    raise ValueError(f"object {key} is {size} bytes, over the {max_bytes} limit")
                return f.read(max_bytes + 1)
        except (FileNotFoundError, IsADirectoryError):
            raise MissingObject(key) from None

    def delete_object(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def object_exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str) -> Iterator[str]:
        for key, _ in self.list_objects(prefix):
            yield key

    def list_objects(self, prefix: str, start_after: str = "") -> Iterator[tuple[str, float]]:
        if any(part in (".", "..") for part in prefix.split("/")) or prefix.startswith("/"):
            raise ValueError(f"invalid key prefix {prefix[:80]!r}")
        # walk only the folder the prefix names, then order by key as S3 does
        base = self.objects_dir / prefix.rsplit("/", 1)[0] if "/" in prefix else self.objects_dir
        found = []
        for path in base.rglob("*") if base.is_dir() else ():
            if path.name.startswith("."):
                continue
            key = path.relative_to(self.objects_dir).as_posix()
            if key.startswith(prefix) and key > start_after and path.is_file():
                found.append((key, path))
        for key, path in sorted(found):
            try:
                yield key, path.stat().st_mtime
            except FileNotFoundError:
                continue

    def presign_put(self, key: str, content_type: str, expires_s: int, base_url: str) -> str:
        expires = int(self.clock()) + expires_s
        query = urlencode(
            {
                "content_type": content_type,
                "expires": str(expires),
                "signature": self.upload_signature(key, content_type, expires),
            }
        )
        return f"{base_url.rstrip('/')}{LOCAL_OBJECTS_ROUTE}{quote(check_key(key))}?{query}"

    def upload_signature(self, key: str, content_type: str, expires: int) -> str:
        msg = f"PUT\n{key}\n{content_type}\n{expires}".encode()
        return hmac.new(self._upload_key, msg, hashlib.sha256).hexdigest()

    # --- index
    def get_item(self, pk: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT doc FROM items WHERE pk = ?", (pk,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put_item_if_absent(self, item: dict[str, Any]) -> bool:
        doc = json.dumps(item, separators=(",", ":"), sort_keys=True)
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO items (pk, doc) VALUES (?, ?)", (item["pk"], doc))
        return cur.rowcount == 1

    def put_item(self, item: dict[str, Any]) -> None:
        doc = json.dumps(item, separators=(",", ":"), sort_keys=True)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO items (pk, doc) VALUES (?, ?)", (item["pk"], doc))

    def delete_prefix(self, prefix: str) -> int:
        n = 0
        for key, _ in list(self.list_objects(prefix)):
            self._path(key).unlink(missing_ok=True)
            n += 1
        # drop the folders left empty
        base = self.objects_dir / prefix.rstrip("/") if prefix.endswith("/") else None
        if base is not None and base.is_dir():
            for d in sorted(
                (p for p in base.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            ):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                base.rmdir()
        return n

    def delete_items(self, pk_prefix: str) -> int:
        with self._lock:
            n = self._db.execute(
                "DELETE FROM items WHERE substr(pk, 1, ?) = ?", (len(pk_prefix), pk_prefix)
            ).rowcount
            if pk_prefix.startswith("nonce#"):
                key = pk_prefix[len("nonce#") :]
                n += self._db.execute(
                    "DELETE FROM nonces WHERE substr(key, 1, ?) = ?", (len(key), key)
                ).rowcount
        return n

    def items(self, prefix: str = "") -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT doc FROM items WHERE substr(pk, 1, ?) = ? ORDER BY pk", (len(prefix), prefix)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def remember_nonce(self, key: str, ttl_s: int) -> bool:
        now = self.clock()
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO nonces (key, expires_at) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE nonces.expires_at < ?",
                (key, now + ttl_s, now),
            )
            fresh = cur.rowcount == 1
            self._nonce_writes += 1
            if self._nonce_writes % 1000 == 0:
                self._db.execute("DELETE FROM nonces WHERE expires_at < ?", (now,))
        return fresh

    def nonce_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM nonces").fetchone()[0]


# --- AWS: S3 and DynamoDB ------------------------------------------------------------------------


def _boto_config(service: str):
    from botocore.config import Config

    kwargs: dict[str, Any] = {"retries": {"max_attempts": 3, "mode": "standard"}}
    if service == "s3":
        custom = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        kwargs["signature_version"] = "s3v4"
        kwargs["s3"] = {"addressing_style": "path" if custom else "virtual"}
    return Config(**kwargs)


def _region() -> str | None:
    # botocore reads AWS_DEFAULT_REGION; Lambda and most tools also set AWS_REGION
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


class AwsStorage:
    """S3 bucket + DynamoDB table through boto3 clients (thread-safe, created once)."""

    kind = "aws"

    def __init__(self, bucket: str, table: str, *, s3=None, dynamodb=None) -> None:
        import boto3

        self.bucket = bucket
        self.table = table
        self.s3 = s3 or boto3.client("s3", region_name=_region(), config=_boto_config("s3"))
        self.ddb = dynamodb or boto3.client(
            "dynamodb", region_name=_region(), config=_boto_config("dynamodb")
        )

    def close(self) -> None:
        pass

    # --- S3
    def put_object(self, key: str, body: bytes, content_type: str, encoding: str | None = None) -> None:
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ContentType": content_type,
        }
        if encoding:
            kwargs["ContentEncoding"] = encoding
        self.s3.put_object(**kwargs)

    def get_object(self, key: str, max_bytes: int) -> bytes:
        from botocore.exceptions import ClientError

        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise MissingObject(key) from None
            raise
        if obj.get("ContentLength", 0) > max_bytes:
            raise ValueError(f"object {key} is {obj['ContentLength']} bytes, over the {max_bytes} limit")
        return obj["Body"].read(max_bytes + 1)

    def delete_object(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def object_exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list_keys(self, prefix: str) -> Iterator[str]:
        for key, _ in self.list_objects(prefix):
            yield key

    def list_objects(self, prefix: str, start_after: str = "") -> Iterator[tuple[str, float]]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        for page in self.s3.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                yield obj["Key"], obj["LastModified"].timestamp()

    def presign_put(self, key: str, content_type: str, expires_s: int, base_url: str) -> str:
        return self.s3.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type},
            ExpiresIn=expires_s,
            HttpMethod="PUT",
        )

    # --- DynamoDB
    def get_item(self, pk: str) -> dict[str, Any] | None:
        resp = self.ddb.get_item(TableName=self.table, Key={"pk": {"S": pk}}, ConsistentRead=True)
        item = resp.get("Item")
        return None if item is None else {k: _from_attr(v) for k, v in item.items()}

    def put_item_if_absent(self, item: dict[str, Any]) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.ddb.put_item(
                TableName=self.table,
                Item={k: _to_attr(v) for k, v in item.items()},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def put_item(self, item: dict[str, Any]) -> None:
        self.ddb.put_item(TableName=self.table, Item={k: _to_attr(v) for k, v in item.items()})

    def delete_prefix(self, prefix: str) -> int:
        """Every version and delete marker under `prefix` (the template's bucket is versioned)."""
        n = 0
        batch: list[dict[str, str]] = []

        def flush() -> None:
            if batch:
                self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": list(batch), "Quiet": True})
                batch.clear()

        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                entry = {"Key": v["Key"]}
                if v.get("VersionId") and v["VersionId"] != "null":
                    entry["VersionId"] = v["VersionId"]
                batch.append(entry)
                n += 1 if v in page.get("Versions", []) else 0
                if len(batch) == 1000:
                    flush()
        flush()
        return n

    def delete_items(self, pk_prefix: str) -> int:
        n = 0
        for page in self.ddb.get_paginator("scan").paginate(
            TableName=self.table,
            ProjectionExpression="pk",
            FilterExpression="begins_with(pk, :p)",
            ExpressionAttributeValues={":p": {"S": pk_prefix}},
            ConsistentRead=True,
        ):
            for item in page.get("Items", []):
                self.ddb.delete_item(TableName=self.table, Key={"pk": item["pk"]})
                n += 1
        return n

    def remember_nonce(self, key: str, ttl_s: int) -> bool:
        """Shared by every Lambda instance and local process: a conditional put with a TTL."""
        from botocore.exceptions import ClientError

        now = int(time.time())
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item={"pk": {"S": f"nonce#{key}"}, TTL_ATTRIBUTE: {"N": str(now + ttl_s)}},
                # an expired nonce that DynamoDB has not yet deleted may be reused
                ConditionExpression=f"attribute_not_exists(pk) OR {TTL_ATTRIBUTE} < :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _to_attr(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"BOOL": v}
    if isinstance(v, (int, float)):
        return {"N": str(v)}
    return {"S": str(v)}


def _from_attr(v: dict[str, Any]) -> Any:
    if "S" in v:
        return v["S"]
    if "N" in v:
        n = v["N"]
        return int(n) if n.lstrip("-").isdigit() else float(n)
    if "BOOL" in v:
        return v["BOOL"]
    return v


def create_resources(bucket: str, table: str, *, s3=None, dynamodb=None) -> None:
    """Create the bucket and table if missing (local S3/DynamoDB and tests; CloudFormation on AWS).
    Raises ConfigError, naming what failed, when the service refuses."""
    from botocore.exceptions import BotoCoreError, ClientError

    st = AwsStorage(bucket, table, s3=s3, dynamodb=dynamodb)
    region = st.s3.meta.region_name or "us-east-1"
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":  # S3 wants the region named for every region but us-east-1
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        st.s3.create_bucket(**kwargs)
    except ClientError as exc:
        if _error_code(exc) not in ("BucketAlreadyOwnedByYou",):
            raise ConfigError(
                f"cannot create bucket {bucket!r} in {region}: {exc}; check the name, the region "
                "(AWS_REGION) and the credentials"
            ) from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot create bucket {bucket!r} in {region}: {exc}") from None
    try:
        st.ddb.create_table(
            TableName=table,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        st.ddb.get_waiter("table_exists").wait(
            TableName=table, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50}
        )
        st.ddb.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )
    except ClientError as exc:
        if _error_code(exc) != "ResourceInUseException":
            raise ConfigError(f"cannot create table {table!r} in {region}: {exc}") from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot create table {table!r} in {region}: {exc}") from None
    logger.info("bucket %s and table %s are ready in %s", bucket, table, region)
