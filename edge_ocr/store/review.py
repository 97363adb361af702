"""Review-side SQL: paging, filters, full-text search, dashboard aggregates and reviewer actions.

No Qt here: the GUI's models are thin views over these functions, and the tests call them on a
real temporary database. Reads take any connection (the GUI keeps a read-only one); every write
runs in one `BEGIN IMMEDIATE` transaction together with its audit event and outbox row.

Paging comes in two kinds, both returning at most `limit` rows and never the whole table:

* `fetch_page(offset=...)`: jump anywhere (a scrollbar dragged to the end); the offset walks an
  index of ids only, and the row data is read for the page's ids alone.
* `fetch_page_after(after=...)`: keyset paging from the last row of the previous page, for
  sequential scrolling and streaming export; cost independent of the position.
"""

from __future__ import annotations

import enum
import json
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from edge_ocr.store.db import utcnow
from edge_ocr.store.events import log_event
from edge_ocr.store.outbox import enqueue
from edge_ocr.types import TextLine

VERDICTS = ("pass", "fail", "unreadable")
REVIEW_STATES = ("unreviewed", "accepted", "rejected", "corrected")
PAGE_SIZE = 200

# Shifts by hour of the stored (UTC) time: name, first hour, last hour + 1 (wrapping past midnight).
SHIFTS: tuple[tuple[str, int, int], ...] = (("early", 6, 14), ("late", 14, 22), ("night", 22, 6))


class ReviewError(ValueError):
    """A reviewer action that cannot be applied (unknown result, line out of range, bad state)."""


class SortColumn(str, enum.Enum):
    ID = "id"
    CREATED_AT = "created_at"
    SOURCE = "source"
    RECIPE = "recipe"
    TEXT = "text"
    CONFIDENCE = "confidence"
    VERDICT = "verdict"
    REVIEW_STATE = "review_state"


_SORT_SQL = {
    SortColumn.ID: "r.id",
    SortColumn.CREATED_AT: "r.created_at",
    SortColumn.SOURCE: "c.source",
    SortColumn.RECIPE: "r.recipe",
    SortColumn.TEXT: "COALESCE(r.corrected_text, r.text)",
    SortColumn.CONFIDENCE: "r.confidence",
    SortColumn.VERDICT: "r.verdict",
    SortColumn.REVIEW_STATE: "r.review_state",
}
# NOT NULL columns with an index: keyset paging is exact and cheap on them.
KEYSET_COLUMNS = frozenset({SortColumn.ID, SortColumn.CREATED_AT, SortColumn.CONFIDENCE})


@dataclass(frozen=True)
class Sort:
    column: SortColumn = SortColumn.CREATED_AT
    descending: bool = True


@dataclass(frozen=True)
class ResultFilter:
    """Which results to show. Empty tuples and None mean "any"."""

    verdicts: tuple[str, ...] = ()
    review_states: tuple[str, ...] = ()
    min_confidence: float | None = None
    max_confidence: float | None = None
    since: str | None = None  # ISO-8601 UTC, inclusive
    until: str | None = None  # ISO-8601 UTC, exclusive
    sources: tuple[str, ...] = ()
    recipes: tuple[str, ...] = ()
    search: str = ""  # words matched (as prefixes) in recognised and corrected text

    def __post_init__(self) -> None:
        bad = [v for v in self.verdicts if v not in VERDICTS]
        bad += [s for s in self.review_states if s not in REVIEW_STATES]
        if bad:
            raise ValueError(f"unknown verdict or review state: {', '.join(bad)}")


@dataclass(frozen=True)
class ResultRow:
    """One row of the results table."""

    id: int
    created_at: str
    source: str
    recipe: str | None
    text: str  # corrected text when there is one, else the recognised text
    confidence: float
    verdict: str | None
    review_state: str
    n_lines: int

    def sort_value(self, column: SortColumn) -> Any:
        return getattr(self, column.value)


@dataclass(frozen=True)
class Correction:
    line_index: int
    before: str
    after: str
    at: str
    by: str


@dataclass(frozen=True)
class ResultDetail:
    """Everything the review page shows for one result."""

    id: int
    capture_id: int
    created_at: str
    source: str
    source_path: str | None
    image_path: str | None
    width: int | None
    height: int | None
    recipe: str | None
    engine: str
    model: str
    text: str
    corrected_text: str | None
    confidence: float
    lines: tuple[TextLine, ...]
    verdict: str | None
    verdict_reasons: tuple[str, ...]
    review_state: str
    reviewed_at: str | None
    reviewed_by: str | None
    corrections: tuple[Correction, ...]


@dataclass(frozen=True)
class VerdictOutcome:
    """What re-running a recipe's rules gave; written as a new `verdicts` row."""

    status: str
    reasons: tuple[str, ...] = ()
    fields: dict[str, str] = field(default_factory=dict)


Evaluator = Callable[[str | None, Sequence[TextLine]], VerdictOutcome | None]


# ---------------------------------------------------------------------------------------------
# filters and search


_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(search: str) -> str:
    """User words to a safe FTS5 query: every word must match, as a prefix, in either column."""
    words = _WORD.findall(search)
    return " ".join(f'"{w}"*' for w in words)


def _where(flt: ResultFilter, *, for_count: bool = False) -> tuple[str, list[Any], bool]:
    """SQL condition, its parameters, and whether it needs `captures c`."""
    clauses: list[str] = []
    params: list[Any] = []
    needs_capture = False
    if flt.verdicts:
        clauses.append(f"r.verdict IN ({','.join('?' * len(flt.verdicts))})")
        params += flt.verdicts
    if flt.review_states:
        clauses.append(f"r.review_state IN ({','.join('?' * len(flt.review_states))})")
        params += flt.review_states
    if flt.min_confidence is not None:
        clauses.append("r.confidence >= ?")
        params.append(float(flt.min_confidence))
    if flt.max_confidence is not None:
        clauses.append("r.confidence <= ?")
        params.append(float(flt.max_confidence))
    if flt.since:
        clauses.append("r.created_at >= ?")
        params.append(flt.since)
    if flt.until:
        clauses.append("r.created_at < ?")
        params.append(flt.until)
    if flt.recipes:
        clauses.append(f"r.recipe IN ({','.join('?' * len(flt.recipes))})")
        params += flt.recipes
    if flt.sources:
        clauses.append(f"c.source IN ({','.join('?' * len(flt.sources))})")
        params += flt.sources
        needs_capture = True
    query = fts_query(flt.search) if flt.search else ""
    if flt.search and not query:
        clauses.append("0")  # nothing searchable typed (only punctuation): no match
    elif query:
        # "+r.id" keeps SQLite walking the sort order's index and probing the match list, so a
        # page of a common word costs a few ms; counting drives from the match list instead.
        ident = "r.id" if for_count else "+r.id"
        clauses.append(f"{ident} IN (SELECT rowid FROM results_fts WHERE results_fts MATCH ?)")
        params.append(query)
    return (" AND ".join(clauses) or "1"), params, needs_capture


def _order(sort: Sort) -> str:
    direction = "DESC" if sort.descending else "ASC"
    expr = _SORT_SQL[sort.column]
    if sort.column is SortColumn.ID:
        return f"r.id {direction}"
    return f"{expr} {direction}, r.id {direction}"


def _from(needs_capture: bool) -> str:
    return "results r JOIN captures c ON c.id = r.capture_id" if needs_capture else "results r"


_ROW_SELECT = (
    "SELECT r.id, r.created_at, c.source, r.recipe, COALESCE(r.corrected_text, r.text), r.confidence, "
    "r.verdict, r.review_state, r.n_lines FROM results r JOIN captures c ON c.id = r.capture_id"
)


def _rows_by_ids(conn: sqlite3.Connection, ids: Sequence[int]) -> list[ResultRow]:
    if not ids:
        return []
    found = {
        row[0]: ResultRow(*row)
        for row in conn.execute(f"{_ROW_SELECT} WHERE r.id IN ({','.join('?' * len(ids))})", list(ids))
    }
    return [found[i] for i in ids if i in found]


def fetch_page(
    conn: sqlite3.Connection,
    flt: ResultFilter = ResultFilter(),
    sort: Sort = Sort(),
    *,
    offset: int = 0,
    limit: int = PAGE_SIZE,
) -> list[ResultRow]:
    """Rows `offset .. offset+limit` of the filtered, sorted results."""
    where, params, needs_capture = _where(flt)
    needs_capture = needs_capture or sort.column is SortColumn.SOURCE
    ids = [
        r[0]
        for r in conn.execute(
            f"SELECT r.id FROM {_from(needs_capture)} WHERE {where} ORDER BY {_order(sort)} LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
    ]
    return _rows_by_ids(conn, ids)


def _after_clause(sort: Sort, after: ResultRow) -> tuple[str, list[Any]]:
    if sort.column not in KEYSET_COLUMNS:
        raise ValueError(f"keyset paging needs one of {sorted(c.value for c in KEYSET_COLUMNS)}")
    op = "<" if sort.descending else ">"
    if sort.column is SortColumn.ID:
        return f"r.id {op} ?", [after.id]
    return f"({_SORT_SQL[sort.column]}, r.id) {op} (?, ?)", [after.sort_value(sort.column), after.id]


def fetch_page_after(
    conn: sqlite3.Connection,
    flt: ResultFilter = ResultFilter(),
    sort: Sort = Sort(),
    *,
    after: ResultRow | None = None,
    limit: int = PAGE_SIZE,
) -> list[ResultRow]:
    """The `limit` rows that follow `after` in this order (keyset paging; only for KEYSET_COLUMNS)."""
    if after is None:
        return fetch_page(conn, flt, sort, offset=0, limit=limit)
    where, params, needs_capture = _where(flt)
    clause, extra = _after_clause(sort, after)
    ids = [
        r[0]
        for r in conn.execute(
            f"SELECT r.id FROM {_from(needs_capture)} WHERE {where} AND {clause} ORDER BY {_order(sort)} LIMIT ?",
            [*params, *extra, int(limit)],
        )
    ]
    return _rows_by_ids(conn, ids)


def iter_result_ids(
    conn: sqlite3.Connection, flt: ResultFilter = ResultFilter(), *, chunk: int = 500
) -> Iterator[list[int]]:
    """The ids of every filtered result, oldest first, in chunks of `chunk` (keyset paging; for
    export, which reads the rows it writes through `edge_ocr.store.query.results_by_id`)."""
    where, params, needs_capture = _where(flt)
    last = 0
    while True:
        ids = [
            r[0]
            for r in conn.execute(
                f"SELECT r.id FROM {_from(needs_capture)} WHERE {where} AND r.id > ? ORDER BY r.id LIMIT ?",
                [*params, last, int(chunk)],
            )
        ]
        if ids:
            yield ids
        if len(ids) < chunk:
            return
        last = ids[-1]


def count_results(conn: sqlite3.Connection, flt: ResultFilter = ResultFilter()) -> int:
    query = fts_query(flt.search) if flt.search else ""
    if query and flt == ResultFilter(search=flt.search):
        (n,) = conn.execute("SELECT count(*) FROM results_fts WHERE results_fts MATCH ?", (query,)).fetchone()
        return int(n)
    where, params, needs_capture = _where(flt, for_count=True)
    (n,) = conn.execute(f"SELECT count(*) FROM {_from(needs_capture)} WHERE {where}", params).fetchone()
    return int(n)


def row_position(conn: sqlite3.Connection, flt: ResultFilter, sort: Sort, result_id: int) -> int | None:
    """The 0-based row of `result_id` in this filter and order, or None when it is not in it."""
    where, params, needs_capture = _where(flt)
    needs_capture = needs_capture or sort.column is SortColumn.SOURCE
    rows = _rows_by_ids(conn, [result_id])
    if not rows:
        return None
    inside = conn.execute(
        f"SELECT 1 FROM {_from(needs_capture)} WHERE {where} AND r.id = ?", [*params, result_id]
    ).fetchone()
    if inside is None:
        return None
    row = rows[0]
    op = ">" if sort.descending else "<"  # what comes before a row in this order
    if sort.column is SortColumn.ID:
        before, extra = f"r.id {op} ?", [row.id]
    else:
        value = row.sort_value(sort.column)
        expr = _SORT_SQL[sort.column]
        if value is None:  # NULLs sort first ascending, last descending
            before = (
                f"({expr} IS NOT NULL OR r.id {op} ?)"
                if sort.descending
                else f"({expr} IS NULL AND r.id {op} ?)"
            )
            extra = [row.id]
        else:
            null_first = "" if sort.descending else f"{expr} IS NULL OR "
            before = f"({null_first}{expr} {op} ? OR ({expr} = ? AND r.id {op} ?))"
            extra = [value, value, row.id]
    (n,) = conn.execute(
        f"SELECT count(*) FROM {_from(needs_capture)} WHERE {where} AND {before}", [*params, *extra]
    ).fetchone()
    return int(n)


def next_unreviewed(
    conn: sqlite3.Connection, flt: ResultFilter, sort: Sort, after_id: int | None
) -> int | None:
    """The id of the next unreviewed result after `after_id` in this order, wrapping to the start;
    None when every filtered result has been reviewed."""
    states = flt.review_states
    if states and "unreviewed" not in states:
        return None
    unreviewed = ResultFilter(**{**flt.__dict__, "review_states": ("unreviewed",)})
    if after_id is not None and sort.column in KEYSET_COLUMNS:
        current = _rows_by_ids(conn, [after_id])
        if current:
            page = fetch_page_after(conn, unreviewed, sort, after=current[0], limit=1)
            if page:
                return page[0].id
    elif after_id is not None:
        pos = row_position(conn, ResultFilter(**{**flt.__dict__}), sort, after_id)
        if pos is not None:
            # rows after it in the full filter, then keep the first unreviewed one
            for offset in range(pos + 1, pos + 1 + 50 * PAGE_SIZE, PAGE_SIZE):
                page = fetch_page(conn, flt, sort, offset=offset, limit=PAGE_SIZE)
                hit = next((r.id for r in page if r.review_state == "unreviewed"), None)
                if hit is not None:
                    return hit
                if len(page) < PAGE_SIZE:
                    break
    first = fetch_page(conn, unreviewed, sort, offset=0, limit=1)
    return first[0].id if first else None


@dataclass(frozen=True)
class FilterChoices:
    sources: tuple[str, ...]
    recipes: tuple[str, ...]


def filter_choices(conn: sqlite3.Connection) -> FilterChoices:
    """Distinct sources and recipes (index scans; cheap on large stores)."""
    sources = tuple(r[0] for r in conn.execute("SELECT DISTINCT source FROM captures ORDER BY source"))
    recipes = tuple(
        r[0]
        for r in conn.execute("SELECT DISTINCT recipe FROM results WHERE recipe IS NOT NULL ORDER BY recipe")
    )
    return FilterChoices(sources, recipes)


def data_version(conn: sqlite3.Connection) -> int:
    """Changes whenever another connection commits to the database (cheap to poll)."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


# ---------------------------------------------------------------------------------------------
# one result


def load_result(conn: sqlite3.Connection, result_id: int) -> ResultDetail:
    row = conn.execute(
        "SELECT r.id, r.capture_id, r.created_at, c.source, c.source_path, c.stored_image, c.width, c.height, "
        "r.recipe, r.engine, r.model, r.text, r.corrected_text, r.confidence, r.lines, r.verdict, "
        "r.review_state, r.reviewed_at, r.reviewed_by "
        "FROM results r JOIN captures c ON c.id = r.capture_id WHERE r.id = ?",
        (result_id,),
    ).fetchone()
    if row is None:
        raise ReviewError(f"no result {result_id}")
    reasons_row = conn.execute(
        "SELECT reasons FROM verdicts WHERE result_id = ? ORDER BY id DESC LIMIT 1", (result_id,)
    ).fetchone()
    reasons = tuple(json.loads(reasons_row[0])) if reasons_row else ()
    corrections = tuple(
        Correction(*r)
        for r in conn.execute(
            "SELECT line_index, before, after, at, by FROM corrections WHERE result_id = ? ORDER BY id",
            (result_id,),
        )
    )
    lines = tuple(TextLine.from_dict(d) for d in json.loads(row[14] or "[]"))
    return ResultDetail(
        id=row[0],
        capture_id=row[1],
        created_at=row[2],
        source=row[3],
        source_path=row[4],
        image_path=row[5] or row[4],
        width=row[6],
        height=row[7],
        recipe=row[8],
        engine=row[9],
        model=row[10],
        text=row[11],
        corrected_text=row[12],
        confidence=row[13],
        lines=lines,
        verdict=row[15],
        verdict_reasons=reasons,
        review_state=row[16],
        reviewed_at=row[17],
        reviewed_by=row[18],
        corrections=corrections,
    )


# ---------------------------------------------------------------------------------------------
# reviewer actions (each one transaction: change + audit event + outbox row)


def _write(conn: sqlite3.Connection, work: Callable[[], Any]) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = work()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return out


def correct_line(
    conn: sqlite3.Connection,
    result_id: int,
    line_index: int,
    new_text: str,
    *,
    by: str,
    evaluate: Evaluator | None = None,
) -> ResultDetail:
    """Store a reviewer's correction of one line: the corrections row (before/after, who, when),
    the result's corrected text and lines (the original reading kept as `raw_text`), review state
    `corrected`, a new verdict from `evaluate` (the recipe's rules) when given, an audit event and
    an outbox row, all in one transaction. Returns the updated result."""
    new_text = new_text.strip()

    def work() -> None:
        row = conn.execute("SELECT lines, recipe, verdict FROM results WHERE id = ?", (result_id,)).fetchone()
        if row is None:
            raise ReviewError(f"no result {result_id}")
        lines = json.loads(row[0] or "[]")
        if not 0 <= line_index < len(lines):
            raise ReviewError(f"result {result_id} has no line {line_index}")
        before = lines[line_index]["text"]
        if before == new_text:
            return
        lines[line_index].setdefault("raw_text", before)
        lines[line_index]["text"] = new_text
        corrected = "\n".join(line["text"] for line in lines)
        at = utcnow()
        cur = conn.execute(
            "INSERT INTO corrections (result_id, line_index, before, after, at, by) VALUES (?, ?, ?, ?, ?, ?)",
            (result_id, line_index, before, new_text, at, by),
        )
        correction_id = int(cur.lastrowid)
        verdict = row[2]
        outcome = evaluate(row[1], [TextLine.from_dict(d) for d in lines]) if evaluate else None
        if outcome is not None:
            verdict = outcome.status
            conn.execute(
                "INSERT INTO verdicts (result_id, created_at, recipe, status, reasons, fields) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    result_id,
                    at,
                    row[1],
                    outcome.status,
                    json.dumps(list(outcome.reasons), ensure_ascii=False),
                    json.dumps(outcome.fields, ensure_ascii=False),
                ),
            )
        conn.execute(
            "UPDATE results SET corrected_text = ?, lines = ?, verdict = ?, review_state = 'corrected', "
            "reviewed_at = ?, reviewed_by = ? WHERE id = ?",
            (corrected, json.dumps(lines, ensure_ascii=False), verdict, at, by, result_id),
        )
        log_event(
            conn,
            "result.corrected",
            f"line {line_index} of result {result_id} corrected by {by}",
            subject=f"result:{result_id}",
            actor=by,
            data={"line_index": line_index, "before": before, "after": new_text, "verdict": verdict},
        )
        enqueue(
            conn,
            "correction",
            correction_id,
            {
                "result_id": result_id,
                "line_index": line_index,
                "before": before,
                "after": new_text,
                "at": at,
                "by": by,
                "verdict": verdict,
            },
        )

    _write(conn, work)
    return load_result(conn, result_id)


def set_review_state(conn: sqlite3.Connection, result_id: int, state: str, *, by: str) -> ResultDetail:
    """Accept or reject a result. Accepting a corrected result keeps it `corrected` (it was
    reviewed, and its text differs from the reading); the acceptance is still audited and queued."""
    if state not in ("accepted", "rejected"):
        raise ReviewError(f"a reviewer can accept or reject, not {state!r}")

    def work() -> None:
        row = conn.execute("SELECT review_state FROM results WHERE id = ?", (result_id,)).fetchone()
        if row is None:
            raise ReviewError(f"no result {result_id}")
        new_state = "corrected" if state == "accepted" and row[0] == "corrected" else state
        at = utcnow()
        conn.execute(
            "UPDATE results SET review_state = ?, reviewed_at = ?, reviewed_by = ? WHERE id = ?",
            (new_state, at, by, result_id),
        )
        kind = "result.accepted" if state == "accepted" else "result.rejected"
        log_event(conn, kind, f"result {result_id} {state} by {by}", subject=f"result:{result_id}", actor=by)
        enqueue(
            conn,
            "review",
            result_id,
            {"result_id": result_id, "action": state, "review_state": new_state, "at": at, "by": by},
        )

    _write(conn, work)
    return load_result(conn, result_id)


# ---------------------------------------------------------------------------------------------
# dashboard


@dataclass(frozen=True)
class VerdictCounts:
    passed: int = 0
    failed: int = 0
    unreadable: int = 0
    none: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.unreadable + self.none


@dataclass(frozen=True)
class AgentStatus:
    agent_id: str
    state: str | None
    heartbeat_at: str | None
    heartbeat_age_s: float | None
    queue_depth: int | None
    engine: str | None
    model: str | None
    version: str | None
    host: str | None
    pid: int | None
    model_versions: dict[str, Any]


@dataclass(frozen=True)
class SyncStatus:
    pending_batches: int
    pending_records: int  # outbox rows not yet acknowledged
    last_success: str | None
    last_error: str | None
    last_error_at: str | None


@dataclass(frozen=True)
class Dashboard:
    window_start: str
    window_end: str
    throughput: tuple[tuple[str, int], ...]  # (hour "YYYY-MM-DDTHH", results) over the window
    total: int
    readable: int  # results with a verdict other than unreadable and at least one line
    per_recipe: tuple[tuple[str, VerdictCounts], ...]
    per_shift: tuple[tuple[str, VerdictCounts], ...]
    agents: tuple[AgentStatus, ...]
    sync: SyncStatus

    @property
    def read_rate(self) -> float | None:
        return self.readable / self.total if self.total else None


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _counts(pairs: dict[str | None, int]) -> VerdictCounts:
    return VerdictCounts(
        passed=pairs.get("pass", 0),
        failed=pairs.get("fail", 0),
        unreadable=pairs.get("unreadable", 0),
        none=pairs.get(None, 0),
    )


def _shift_case() -> str:
    parts = []
    for name, start, end in SHIFTS:
        hour = "CAST(substr(created_at, 12, 2) AS INTEGER)"
        if start < end:
            parts.append(f"WHEN {hour} >= {start} AND {hour} < {end} THEN '{name}'")
        else:
            parts.append(f"WHEN {hour} >= {start} OR {hour} < {end} THEN '{name}'")
    return "CASE " + " ".join(parts) + " END"


def agent_statuses(conn: sqlite3.Connection, *, now: datetime | None = None) -> tuple[AgentStatus, ...]:
    now = now or datetime.now(timezone.utc)
    out = []
    for row in conn.execute(
        "SELECT agent_id, state, heartbeat_at, queue_depth, engine, model, version, host, pid, details "
        "FROM agent_status ORDER BY heartbeat_at DESC"
    ):
        age = (now - _parse_time(row[2])).total_seconds() if row[2] else None
        try:
            details = json.loads(row[9]) if row[9] else {}
        except ValueError:
            details = {}
        versions = details.get("model_versions", details) if isinstance(details, dict) else {}
        out.append(
            AgentStatus(
                agent_id=row[0],
                state=row[1],
                heartbeat_at=row[2],
                heartbeat_age_s=age,
                queue_depth=row[3],
                engine=row[4],
                model=row[5],
                version=row[6],
                host=row[7],
                pid=row[8],
                model_versions=versions if isinstance(versions, dict) else {},
            )
        )
    return tuple(out)


def sync_status(conn: sqlite3.Connection) -> SyncStatus:
    """Read straight from the sync tables (the GUI does not import the sync package)."""
    (pending_batches,) = conn.execute("SELECT count(*) FROM sync_batches WHERE state = 'pending'").fetchone()
    (pending_records,) = conn.execute("SELECT count(*) FROM outbox WHERE acked_at IS NULL").fetchone()
    (last_success,) = conn.execute("SELECT max(acked_at) FROM sync_batches WHERE state = 'acked'").fetchone()
    err = conn.execute(
        "SELECT last_error, last_attempt_at FROM sync_batches WHERE last_error IS NOT NULL "
        "ORDER BY last_attempt_at DESC LIMIT 1"
    ).fetchone()
    state = dict(conn.execute("SELECT key, value FROM sync_state").fetchall())
    last_success = state.get("last_success_at") or last_success
    last_error = state.get("last_error") or (err[0] if err else None)
    last_error_at = state.get("last_error_at") or (err[1] if err else None)
    return SyncStatus(int(pending_batches), int(pending_records), last_success, last_error, last_error_at)


def dashboard(conn: sqlite3.Connection, *, hours: int = 24, now: datetime | None = None) -> Dashboard:
    """Aggregates for the dashboard over the last `hours` (ending at the newest result when the
    store has nothing recent, so a demo or an idle line still shows its last day)."""
    now = now or datetime.now(timezone.utc)
    (newest,) = conn.execute("SELECT max(created_at) FROM results").fetchone()
    end = now
    if newest is not None and _parse_time(newest) < now - timedelta(hours=hours):
        end = _parse_time(newest) + timedelta(seconds=1)
    end = end.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    since, until = _iso(start), _iso(end)
    per_hour = dict(
        conn.execute(
            "SELECT substr(created_at, 1, 13) AS h, count(*) FROM results "
            "WHERE created_at >= ? AND created_at < ? GROUP BY h",
            (since, until),
        ).fetchall()
    )
    throughput = tuple(
        (
            (start + timedelta(hours=i)).strftime("%Y-%m-%dT%H"),
            int(per_hour.get((start + timedelta(hours=i)).strftime("%Y-%m-%dT%H"), 0)),
        )
        for i in range(hours)
    )
    (total, readable) = conn.execute(
        "SELECT count(*), coalesce(sum(verdict IS NOT 'unreadable' AND n_lines > 0), 0) FROM results "
        "WHERE created_at >= ? AND created_at < ?",
        (since, until),
    ).fetchone()
    recipe_rows: dict[str, dict[str | None, int]] = {}
    for recipe, verdict, n in conn.execute(
        "SELECT coalesce(recipe, '(none)'), verdict, count(*) FROM results "
        "WHERE created_at >= ? AND created_at < ? GROUP BY 1, 2",
        (since, until),
    ):
        recipe_rows.setdefault(recipe, {})[verdict] = int(n)
    shift_rows: dict[str, dict[str | None, int]] = {name: {} for name, _, _ in SHIFTS}
    for shift, verdict, n in conn.execute(
        f"SELECT {_shift_case()} AS shift, verdict, count(*) FROM results "
        "WHERE created_at >= ? AND created_at < ? GROUP BY 1, 2",
        (since, until),
    ):
        shift_rows.setdefault(shift, {})[verdict] = int(n)
    return Dashboard(
        window_start=since,
        window_end=until,
        throughput=throughput,
        total=int(total),
        readable=int(readable),
        per_recipe=tuple((k, _counts(v)) for k, v in sorted(recipe_rows.items())),
        per_shift=tuple((k, _counts(v)) for k, v in shift_rows.items()),
        agents=agent_statuses(conn, now=now),
        sync=sync_status(conn),
    )
