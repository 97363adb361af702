"""Review-side SQL, the listing: paging, filters and full-text search over results.

No Qt here: the GUI's models are thin views over these functions, and the tests call them on a
real temporary database. Reads take any connection (the GUI keeps a read-only one). Reviewer
actions (load one result, correct a line, accept/reject) are in `store.corrections`; the
dashboard's aggregates in `store.dashboard`.

Paging comes in two kinds, both returning at most `limit` rows and never the whole table:

* `fetch_page(offset=...)`: jump anywhere (a scrollbar dragged to the end); the offset walks an
  index of ids only, and the row data is read for the page's ids alone.
* `fetch_page_after(after=...)`: keyset paging from the last row of the previous page, for
  sequential scrolling and streaming export; cost independent of the position.
"""

from __future__ import annotations

import enum
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

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
