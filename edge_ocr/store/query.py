"""Reading results back for the CLI: listing, full-text search, filters, the output contract."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from edge_ocr.errors import ConfigError
from edge_ocr.fields import ReceiptFields
from edge_ocr.store.fields import FIELDS_JSON_SQL, FieldFilter, fields_from_json

VERDICTS = ("pass", "fail", "unreadable", "none")
REVIEW_STATES = ("unreviewed", "accepted", "rejected", "corrected")


@dataclass(frozen=True)
class ResultRow:
    result_id: int
    capture_id: int
    created_at: str
    source: str
    source_path: str | None
    stored_image: str | None
    page: int
    engine: str
    model: str
    text: str
    corrected_text: str | None
    confidence: float
    lines: list[dict[str, Any]]
    timings: dict[str, float]
    recipe: str | None
    verdict: str | None
    review_state: str
    station: str | None
    source_path_raw: bytes | None = None  # the exact bytes of source_path's name
    stored_image_raw: bytes | None = None  # the exact bytes of stored_image's name
    fields: ReceiptFields | None = None  # when the page's fields were read (a recipe's `extract`)

    @property
    def image(self) -> str:
        return self.source_path or self.stored_image or ""

    def image_files(self) -> list[Path]:
        """Where the page's image may be, best first (the kept copy, then the source), each by the
        exact bytes of its name when the store has them."""
        return [
            p
            for p in (
                exact_path(self.stored_image_raw, self.stored_image),
                exact_path(self.source_path_raw, self.source_path),
            )
            if p is not None
        ]

    def to_contract(self) -> dict[str, Any]:
        """The `edge-ocr ocr --json` contract, plus the store's ids, verdict and review state."""
        ts = datetime.strptime(self.created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        out: dict[str, Any] = {
            "image": self.image,
            "status": "success",
            "data": {
                "text": self.text,
                "confidence": round(self.confidence, 6),
                "lines": self.lines,
            },
            "timestamp": ts.timestamp(),
            "engine": self.engine,
            "model": self.model,
            "timings_ms": self.timings,
            "result_id": self.result_id,
            "capture_id": self.capture_id,
            "verdict": self.verdict,
            "review_state": self.review_state,
        }
        if self.fields is not None:
            out["data"].update(self.fields.contract())
        if self.page > 1:
            out["page"] = self.page
        if self.corrected_text is not None:
            out["corrected_text"] = self.corrected_text
        return out


def exact_path(raw: bytes | None, shown: str | None) -> Path | None:
    """A file named in the store: by the exact bytes of its name when kept (two names that show the
    same never meet), else by its display form (stores from before migration 3)."""
    if raw is not None:
        return Path(os.fsdecode(bytes(raw)))
    return Path(shown) if shown else None


def parse_since(text: str, now: datetime | None = None) -> str:
    """`30m`, `2h`, `7d`, an ISO date or date-time (local time unless it has a zone) -> store time."""
    now = now or datetime.now(timezone.utc)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
        when = now - timedelta(**{unit: float(m.group(1))})
    else:
        try:
            when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"--since {text!r}: use a duration (30m, 2h, 7d) or an ISO date (2026-03-01T08:00)"
            ) from None
        if when.tzinfo is None:
            when = when.astimezone()
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _fts_query(text: str) -> str:
    """Each word as a quoted prefix term, so user input never breaks FTS5 syntax."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    if not words:
        raise ConfigError(f"--search {text!r}: nothing to search for")
    return " ".join('"' + w.replace('"', '""') + '"*' for w in words)


_SELECT = (
    """
SELECT r.id, r.capture_id, r.created_at, c.source, c.source_path, c.stored_image, c.page, r.engine, r.model,
       r.text, r.corrected_text, r.confidence, r.lines, r.timings, r.recipe, r.verdict, r.review_state, c.station,
       c.source_path_raw, c.stored_image_raw,
       r.fields_kind, CASE WHEN r.fields_kind IS NULL THEN NULL ELSE """
    + FIELDS_JSON_SQL
    + """ END
FROM results r JOIN captures c ON c.id = r.capture_id
"""
)


def iter_results(
    conn: sqlite3.Connection,
    *,
    search: str | None = None,
    since: str | None = None,
    verdict: str | None = None,
    review_states: tuple[str, ...] | None = None,
    limit: int | None = None,
    newest_first: bool = False,
    field_filters: Sequence[FieldFilter] = (),
) -> Iterator[ResultRow]:
    """Stored results, oldest first (or newest). `search` matches words in the recognised and
    corrected text and in the fields' text; `field_filters` (`total>=100`) compare field values."""
    where: list[str] = []
    params: list[Any] = []
    if search:
        query = _fts_query(search)
        where.append(
            "(r.id IN (SELECT rowid FROM results_fts WHERE results_fts MATCH ?) OR r.id IN (SELECT result_id "
            "FROM result_fields WHERE id IN (SELECT rowid FROM result_fields_fts WHERE result_fields_fts MATCH ?)))"
        )
        params += [query, query]
    for flt in field_filters:
        clause, extra = flt.sql()
        where.append(clause)
        params += extra
    if since:
        where.append("r.created_at >= ?")
        params.append(since)
    if verdict:
        if verdict not in VERDICTS:
            raise ConfigError(f"--verdict {verdict!r}: use one of {', '.join(VERDICTS)}")
        if verdict == "none":
            where.append("r.verdict IS NULL")
        else:
            where.append("r.verdict = ?")
            params.append(verdict)
    if review_states:
        where.append(f"r.review_state IN ({','.join('?' * len(review_states))})")
        params.extend(review_states)
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY r.id DESC" if newest_first else " ORDER BY r.id"
    if limit:
        sql += " LIMIT ?"
        params.append(limit)
    for row in conn.execute(sql, params):
        yield _result_row(row)


def results_by_id(conn: sqlite3.Connection, ids: Sequence[int]) -> list[ResultRow]:
    """The given results, in the order given (ids that do not exist are left out)."""
    if not ids:
        return []
    sql = _SELECT + f" WHERE r.id IN ({','.join('?' * len(ids))})"
    found = {row[0]: _result_row(row) for row in conn.execute(sql, list(ids))}
    return [found[i] for i in ids if i in found]


def _result_row(row: Sequence[Any]) -> ResultRow:
    return ResultRow(
        result_id=row[0],
        capture_id=row[1],
        created_at=row[2],
        source=row[3],
        source_path=row[4],
        stored_image=row[5],
        page=row[6],
        engine=row[7],
        model=row[8],
        text=row[9],
        corrected_text=row[10],
        confidence=row[11],
        lines=json.loads(row[12]),
        timings=json.loads(row[13] or "{}"),
        recipe=row[14],
        verdict=row[15],
        review_state=row[16],
        station=row[17],
        source_path_raw=row[18],
        stored_image_raw=row[19],
        fields=fields_from_json(row[20], row[21]),
    )


def line_corrections(conn: sqlite3.Connection, result_id: int) -> dict[int, str]:
    """The latest reviewer correction per line index."""
    out: dict[int, str] = {}
    for idx, after in conn.execute(
        "SELECT line_index, after FROM corrections WHERE result_id = ? ORDER BY id", (result_id,)
    ):
        out[int(idx)] = after
    return out


def status_counts(conn: sqlite3.Connection) -> dict[str, Any]:
    results = conn.execute("SELECT count(*) FROM results").fetchone()[0]
    verdicts = dict(
        conn.execute("SELECT COALESCE(verdict, 'none'), count(*) FROM results GROUP BY 1").fetchall()
    )
    last = conn.execute("SELECT MAX(created_at) FROM results").fetchone()[0]
    return {"results": results, "verdicts": verdicts, "last_result_at": last}


def results_per_source_path(conn: sqlite3.Connection) -> dict[str, int]:
    """How many results each source path has (one per page read: a file read twice shows 2 per page)."""
    return dict(
        conn.execute(
            "SELECT c.source_path, count(*) FROM results r JOIN captures c ON c.id = r.capture_id GROUP BY 1"
        ).fetchall()
    )
