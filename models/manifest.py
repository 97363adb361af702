"""The one writer of `<models_dir>/manifest.json` (the format `edge_ocr.ocr.modelstore` reads,
schema 1), for the build and `edge-ocr models-admin` alike.

Every change is written to a temporary file, fsynced and renamed over the manifest, so a
half-written manifest never exists; the one it replaces is kept as ``manifest.prev.json``
(`PREV_MANIFEST_NAME`), so a bad build or activation can be rolled back (`rollback`, a swap:
rolling back twice returns to where it started).
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
from edge_ocr.ocr.modelstore import MANIFEST_NAME, MANIFEST_SCHEMA, PREV_MANIFEST_NAME, sha256_tree

logger = logging.getLogger(__name__)


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
    """Replace the manifest atomically, keeping the previous one as manifest.prev.json (an
    unchanged manifest is not rewritten, so manifest.prev.json stays the real previous version)."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / MANIFEST_NAME
    if data.get("schema") != MANIFEST_SCHEMA:
        raise ModelError(f"refusing to write a manifest with schema {data.get('schema')!r}")
    if path.is_file():
        old = path.read_bytes()
        if old == (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode():
            return path
        tmp_prev = models_dir / f".{PREV_MANIFEST_NAME}.tmp"
        shutil.copyfile(path, tmp_prev)
        os.replace(tmp_prev, models_dir / PREV_MANIFEST_NAME)
    _write_json_atomic(path, data)
    return path


def rollback(models_dir: Path) -> dict[str, Any]:
    """Make manifest.prev.json the manifest again, the current one becoming the previous (a swap).
    Refused when a file the previous manifest names is missing or changed since: the manifest
    would describe files that are not there."""
    models_dir = Path(models_dir)
    prev = models_dir / PREV_MANIFEST_NAME
    if not prev.is_file():
        raise ModelError(f"no previous manifest ({prev}) to roll back to")
    try:
        data = json.loads(prev.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot roll back: {prev} is unreadable ({exc})") from exc
    broken = [
        f"{set_id} {b}"
        for set_id, entry in data.get("sets", {}).items()
        for b in broken_files(models_dir, entry)
    ]
    if broken:
        raise ModelError("cannot roll back, files of the previous models changed since: " + "; ".join(broken))
    write_manifest(models_dir, data)
    return data


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


def broken_files(models_dir: Path, entry: dict[str, Any]) -> list[str]:
    """What is wrong with the files a set entry names (missing, or not its recorded sha256)."""
    out = []
    try:
        recorded = sorted(entry["files"].items())
    except (KeyError, TypeError, AttributeError):
        return ["its entry names no files"]
    for role, f in recorded:
        if not isinstance(f, dict) or not isinstance(f.get("path"), str):
            out.append(f"{role}: no path recorded")
            continue
        p = Path(models_dir) / f["path"]
        try:
            if not p.exists():
                out.append(f"{role}: {p} is missing")
            elif sha256_tree(p) != f.get("sha256"):
                out.append(f"{role}: {p} does not match its sha256")
        except OSError as exc:
            out.append(f"{role}: {p} cannot be read ({exc.strerror or exc})")
    return out


def files_intact(models_dir: Path, entry: dict[str, Any]) -> bool:
    """True when every file the set entry names exists with its recorded sha256."""
    return not broken_files(models_dir, entry)
