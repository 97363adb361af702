"""Fleet-wide queries: every stored batch's records also land as JSON Lines under
`results/dt=YYYY-MM-DD/device=ID/<batch id>-<content hash>.jsonl` (one row per record: device_id,
batch_id, seq, kind, ref_id, created_at, payload), so a whole fleet can be queried with SQL: on
AWS by Athena over the Glue table the template declares (`results`, partitioned by `dt`), locally
by DuckDB over the same layout in the data folder (`edge-ocr endpoint query`), with the same SQL.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from edge_ocr.errors import ConfigError

PREFIX = "results/"
DAY_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})")

# The questions a quality engineer asks, as run by Athena and by `edge-ocr endpoint query`
# (docs/DEPLOY.md shows them; the tests run them on the local storage).
QUERIES = {
    "read rate per line per day": """
SELECT dt, device_id, payload.station AS station, count(*) AS results,
       round(avg(CASE WHEN payload.text <> '' AND payload.confidence >= 0.8 THEN 1.0 ELSE 0.0 END), 3)
         AS read_rate
FROM results
WHERE kind = 'result'
GROUP BY dt, device_id, payload.station
ORDER BY dt, device_id
""".strip(),
    "failed verdicts by recipe": """
SELECT payload.recipe AS recipe, count(*) AS failed
FROM results
WHERE kind = 'verdict' AND payload.status = 'fail'
GROUP BY payload.recipe
ORDER BY failed DESC, recipe
""".strip(),
    "a lot code across devices": """
SELECT device_id, dt, payload.result_id AS result_id, payload.fields['lot'].value AS lot
FROM results
WHERE kind = 'verdict' AND payload.fields['lot'].value = 'L2311A'
ORDER BY device_id, dt
""".strip(),
}


def day_of(value: Any) -> str | None:
    """The YYYY-MM-DD a record's ISO time stamp starts with, if it is a real date."""
    if not isinstance(value, str):
        return None
    m = DAY_RE.match(value)
    if not m:
        return None
    try:
        date.fromisoformat(m.group(1))
    except ValueError:
        return None
    return m.group(1)


def record_objects(
    device: str, batch_id: str, sha: str, records: list[dict[str, Any]], now: float
) -> dict[str, bytes]:
    """The JSON Lines objects of one batch, by key: one per day its records were made on (the
    record's created_at, else its payload's, else the day it arrived)."""
    today = datetime.fromtimestamp(now, tz=timezone.utc).date().isoformat()
    by_day: dict[str, list[str]] = {}
    for rec in records:
        payload = rec.get("payload")
        created = rec.get("created_at")
        day = (
            day_of(created)
            or (day_of(payload.get("created_at")) if isinstance(payload, dict) else None)
            or today
        )
        row = {
            "device_id": device,
            "batch_id": batch_id,
            "seq": rec.get("seq"),
            "kind": rec["kind"],
            "ref_id": rec.get("ref_id"),
            "created_at": created,
            "payload": payload,
        }
        by_day.setdefault(day, []).append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    return {
        f"{PREFIX}dt={day}/device={device}/{batch_id}-{sha[:16]}.jsonl": ("\n".join(lines) + "\n").encode(
            "utf-8"
        )
        for day, lines in sorted(by_day.items())
    }


def query_local(objects_dir: Path, sql: str) -> tuple[list[str], list[tuple]]:
    """Run SQL over the local layout with DuckDB; the table is `results` (with `dt` from the path)."""
    try:
        import duckdb
    except ImportError as exc:
        raise ConfigError(
            "local fleet queries need DuckDB: pip install duckdb (or 'edge-ocr[cloud]')"
        ) from exc
    files = sorted((objects_dir / "results").glob("dt=*/device=*/*.jsonl"))
    if not files:
        raise ConfigError(f"no fleet records under {objects_dir / 'results'} yet: sync some batches first")
    con = duckdb.connect(":memory:")
    try:
        pattern = str(objects_dir / "results" / "dt=*" / "device=*" / "*.jsonl").replace("'", "''")
        con.execute(
            "CREATE VIEW results AS SELECT * EXCLUDE (device) FROM read_json("
            f"'{pattern}', format = 'newline_delimited', hive_partitioning = true, "
            "hive_types_autocast = false, union_by_name = true, sample_size = -1)"
        )
        cur = con.execute(sql)
        columns = [d[0] for d in cur.description or []]
        return columns, cur.fetchall()
    except duckdb.Error as exc:
        raise ConfigError(f"query failed: {exc}") from None
    finally:
        con.close()
