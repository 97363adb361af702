"""Writing `<models_dir>/manifest.json` (the format `edge_ocr.ocr.modelstore` reads, schema 1).

The manifest is written to a temporary file and renamed over the old one; the old one is kept
as ``manifest.prev.json`` so a bad build can be rolled back (`rollback`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from edge_ocr.errors import ModelError
from edge_ocr.ocr.modelstore import MANIFEST_NAME, MANIFEST_SCHEMA, sha256_tree

logger = logging.getLogger(__name__)

PREV_NAME = "manifest.prev.json"


def json_hash(obj: Any) -> str:
    """The sha256 of a JSON-able document (keys sorted): the ids of recipes and references."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def empty_manifest() -> dict[str, Any]:
    return {"schema": MANIFEST_SCHEMA, "built_at": utc_now(), "sets": {}}


def read_manifest(models_dir: Path) -> dict[str, Any]:
    """The current manifest, or an empty one when there is none (or it cannot be read)."""
    path = Path(models_dir) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return empty_manifest()
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable manifest %s (%s); the build will recreate it", path, exc)
        return empty_manifest()
    if data.get("schema") != MANIFEST_SCHEMA or not isinstance(data.get("sets"), dict):
        logger.warning("ignoring manifest %s with schema %r", path, data.get("schema"))
        return empty_manifest()
    return data


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False, sort_keys=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_manifest(models_dir: Path, data: dict[str, Any]) -> Path:
    """Replace the manifest atomically, keeping the previous one as manifest.prev.json."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / MANIFEST_NAME
    if data.get("schema") != MANIFEST_SCHEMA:
        raise ModelError(f"refusing to write a manifest with schema {data.get('schema')!r}")
    if path.is_file():
        old = path.read_bytes()
        if old == (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode():
            return path  # unchanged: keep manifest.prev.json as the real previous version
        tmp_prev = models_dir / f".{PREV_NAME}.tmp"
        shutil.copyfile(path, tmp_prev)
        os.replace(tmp_prev, models_dir / PREV_NAME)
    _write_json_atomic(path, data)
    return path


def rollback(models_dir: Path) -> Path:
    """Make manifest.prev.json the manifest again (the files it names must still be there)."""
    models_dir = Path(models_dir)
    prev = models_dir / PREV_NAME
    if not prev.is_file():
        raise ModelError(f"no previous manifest in {models_dir} to roll back to")
    data = json.loads(prev.read_text(encoding="utf-8"))
    for set_id, entry in data.get("sets", {}).items():
        for role, f in entry.get("files", {}).items():
            p = models_dir / f["path"]
            if not p.exists() or sha256_tree(p) != f["sha256"]:
                raise ModelError(f"cannot roll back: {p} ({set_id} {role}) is missing or changed since")
    _write_json_atomic(models_dir / MANIFEST_NAME, data)
    return models_dir / MANIFEST_NAME


def file_record(models_dir: Path, path: Path, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Path (relative to the models dir), sha256 (`sha256_tree` for folders) and size of one artifact."""
    size = (
        path.stat().st_size
        if path.is_file()
        else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    )
    rec: dict[str, Any] = {
        "path": path.relative_to(models_dir).as_posix(),
        "sha256": sha256_tree(path),
        "size": size,
    }
    if source is not None:
        rec["source"] = source
    return rec


def files_intact(models_dir: Path, entry: dict[str, Any]) -> bool:
    """True when every file the set entry names exists with its recorded sha256."""
    try:
        for f in entry["files"].values():
            p = Path(models_dir) / f["path"]
            if not p.exists() or sha256_tree(p) != f["sha256"]:
                return False
    except (KeyError, TypeError, OSError):
        return False
    return True
