"""Retention: delete old results (and the images the agent stored) by age, count and size."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_ocr.store.db import transaction
from edge_ocr.store.events import log_event


@dataclass(frozen=True)
class RetentionReport:
    results_deleted: int = 0
    images_deleted: int = 0
    bytes_freed: int = 0


def _delete_results(conn: sqlite3.Connection, result_ids: Sequence[int]) -> tuple[int, list[str]]:
    """Delete results with their verdicts, corrections, fields and captures. Returns (count, stored images)."""
    if not result_ids:
        return 0, []
    images: list[str] = []
    for start in range(0, len(result_ids), 500):
        chunk = list(result_ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        cap_ids = [r[0] for r in conn.execute(f"SELECT capture_id FROM results WHERE id IN ({marks})", chunk)]
        conn.execute(f"DELETE FROM verdicts WHERE result_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM corrections WHERE result_id IN ({marks})", chunk)
        # a line job outlives its result: it keeps its verdict, loses only the link
        conn.execute(f"UPDATE line_jobs SET result_id = NULL WHERE result_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM result_fields WHERE result_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM field_corrections WHERE result_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM results WHERE id IN ({marks})", chunk)
        if cap_ids:
            cmarks = ",".join("?" * len(cap_ids))
            images += [
                r[0]
                for r in conn.execute(
                    f"SELECT stored_image FROM captures WHERE id IN ({cmarks}) AND stored_image IS NOT NULL",
                    cap_ids,
                )
            ]
            # keep the files rows (they remember content already read); only drop the link
            conn.execute(f"UPDATE files SET capture_id = NULL WHERE capture_id IN ({cmarks})", cap_ids)
            conn.execute(f"UPDATE line_jobs SET capture_id = NULL WHERE capture_id IN ({cmarks})", cap_ids)
            conn.execute(
                f"DELETE FROM captures WHERE id IN ({cmarks}) AND id NOT IN (SELECT capture_id FROM results)",
                cap_ids,
            )
    return len(result_ids), images


def _delete_line_jobs(conn: sqlite3.Connection, cutoff: str) -> int:
    """Line jobs finished before `cutoff` whose messages the broker has all acknowledged."""
    old = "SELECT id FROM line_jobs WHERE state = 'done' AND finished_at < ?"
    pending = "SELECT job_id FROM line_messages WHERE acked_at IS NULL AND job_id IS NOT NULL"
    conn.execute(
        f"DELETE FROM line_messages WHERE job_id IN ({old}) AND job_id NOT IN ({pending})", (cutoff,)
    )
    cur = conn.execute(f"DELETE FROM line_jobs WHERE id IN ({old}) AND id NOT IN ({pending})", (cutoff,))
    return int(cur.rowcount)


def apply_retention(
    conn: sqlite3.Connection,
    *,
    owned_images_dir: Path,
    max_age_days: float | None = None,
    max_rows: int | None = None,
    max_images_mb: float | None = None,
    protect_unsynced: bool = False,
    now_iso: str | None = None,
) -> RetentionReport:
    """Delete rows older than `max_age_days` or beyond the newest `max_rows`, and the oldest stored
    images beyond `max_images_mb`. Only images under `owned_images_dir` (those the agent saved) are
    ever deleted. With `protect_unsynced`, results whose outbox rows are not acknowledged are kept."""
    from datetime import datetime, timedelta, timezone

    guard = (
        " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.kind = 'result' AND o.ref_id = r.id "
        "AND o.acked_at IS NULL)"
        if protect_unsynced
        else ""
    )
    doomed: set[int] = set()
    if max_age_days is not None:
        now = datetime.fromisoformat(now_iso.rstrip("Z")) if now_iso else datetime.now(timezone.utc)
        cutoff = (now.replace(tzinfo=None) - timedelta(days=max_age_days)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        doomed |= {
            r[0] for r in conn.execute(f"SELECT r.id FROM results r WHERE r.created_at < ?{guard}", (cutoff,))
        }
    if max_rows is not None:
        doomed |= {
            r[0]
            for r in conn.execute(
                f"SELECT r.id FROM results r WHERE r.id NOT IN "
                f"(SELECT id FROM results ORDER BY id DESC LIMIT ?){guard}",
                (max_rows,),
            )
        }
    owned = owned_images_dir.resolve()
    images: list[str] = []
    with transaction(conn):
        n, images = _delete_results(conn, sorted(doomed))
        if n:
            log_event(conn, "retention.rows", f"retention deleted {n} result(s)", data={"results": n})
        if max_age_days is not None:
            _delete_line_jobs(conn, cutoff)
    freed = 0
    n_images = 0
    for img in images:
        freed_one = _unlink_owned(Path(img), owned)
        if freed_one is not None:
            freed += freed_one
            n_images += 1
    if max_images_mb is not None and owned.is_dir():
        files = sorted(
            (p for p in owned.rglob("*") if p.is_file() and not p.is_symlink()),
            key=lambda p: p.stat().st_mtime,
        )
        total = sum(p.stat().st_size for p in files)
        limit = max_images_mb * 1024 * 1024
        gone: list[str] = []
        for p in files:
            if total <= limit:
                break
            size = p.stat().st_size
            p.unlink(missing_ok=True)
            total -= size
            freed += size
            n_images += 1
            gone.append(str(p))
        if gone:
            with transaction(conn):
                for start in range(0, len(gone), 500):
                    chunk = gone[start : start + 500]
                    conn.execute(
                        "UPDATE captures SET stored_image = NULL, stored_image_raw = NULL "
                        f"WHERE stored_image IN ({','.join('?' * len(chunk))})",
                        chunk,
                    )
                log_event(conn, "retention.images", f"retention deleted {len(gone)} stored image(s)")
    return RetentionReport(results_deleted=n, images_deleted=n_images, bytes_freed=freed)


def _unlink_owned(path: Path, owned: Path) -> int | None:
    try:
        resolved = path.resolve()
        if owned not in resolved.parents:
            return None
        size = resolved.stat().st_size
        resolved.unlink()
        return size
    except OSError:
        return None
