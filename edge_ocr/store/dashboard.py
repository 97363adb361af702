"""The dashboard's aggregates: verdict counts per hour and shift, read rate, agents' heartbeats
and the sync outbox. Read-only."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from edge_ocr.store.review import SHIFTS

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
    #: the production line's state as the agent last reported it (vision state, recipe, queue,
    #: channels with their state, counters); empty when it has no line channel
    line: dict[str, Any] = field(default_factory=dict)


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
        if not isinstance(details, dict):
            details = {}
        line = details.get("line") if isinstance(details.get("line"), dict) else {}
        versions = details.get("model_versions", {k: v for k, v in details.items() if k != "line"})
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
                line=line,
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
