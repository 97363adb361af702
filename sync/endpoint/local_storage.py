"""LocalStorage: objects as files in a data folder, the batch index and replay nonces in SQLite, for one
on-premises box with no cloud at all; presigned uploads are HMAC-signed URLs to the endpoint's own
`PUT /v1/objects/<key>`."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from edge_ocr.errors import ConfigError
from edge_ocr_sync.endpoint.storage import LOCAL_OBJECTS_ROUTE, MissingObject, check_key

logger = logging.getLogger(__name__)

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
