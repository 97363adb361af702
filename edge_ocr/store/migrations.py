"""Numbered, transactional schema migrations, recorded in `schema_migrations`.

Rules: never edit a released migration; add a new one. Each runs in one transaction, after a
backup of the database file (see `store.db.open_store`). Times are ISO-8601 UTC text
("2026-11-24T22:00:00.123Z"), which sorts and compares correctly.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    """A schema step: `sql` (a script) and/or `apply` (Python using `conn.execute` only, never
    `executescript`, which would commit). Both run inside the migration's one transaction."""

    version: int
    name: str
    sql: str = ""
    apply: Callable[[sqlite3.Connection], None] | None = None


_M001_INITIAL = """
        -- every file a folder source has seen: the per-file state machine
        CREATE TABLE files (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,                -- e.g. "folder:/srv/in"
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime REAL,
            state TEXT NOT NULL CHECK (state IN ('seen','processing','done','failed','quarantined')),
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            first_seen_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            done_at TEXT,
            capture_id INTEGER REFERENCES captures(id),
            duplicate_of INTEGER REFERENCES files(id),  -- same content already processed
            UNIQUE (path, sha256)
        );
        CREATE INDEX files_state ON files(state);
        CREATE INDEX files_sha256 ON files(sha256);

        -- one image (or one page of a file, or one camera record) that was read
        CREATE TABLE captures (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,                -- "folder:/srv/in", "camera:line1", "cli", "demo"
            source_path TEXT,                    -- the file it came from, when it came from a file
            page INTEGER NOT NULL DEFAULT 1,
            sha256 TEXT,
            size INTEGER,
            width INTEGER,
            height INTEGER,
            captured_at TEXT NOT NULL,
            stored_image TEXT,                   -- path of the kept copy, if any
            station TEXT,
            recipe TEXT
        );
        CREATE INDEX captures_captured_at ON captures(captured_at);
        CREATE INDEX captures_source ON captures(source);

        -- what OCR read from a capture
        CREATE TABLE results (
            id INTEGER PRIMARY KEY,
            capture_id INTEGER NOT NULL REFERENCES captures(id),
            created_at TEXT NOT NULL,
            engine TEXT NOT NULL,
            model TEXT NOT NULL,
            model_versions TEXT,                 -- JSON: runtime library versions
            text TEXT NOT NULL,                  -- recognised lines joined by \n
            corrected_text TEXT,                 -- the text after reviewers' corrections
            confidence REAL NOT NULL,
            n_lines INTEGER NOT NULL,
            lines TEXT NOT NULL,                 -- JSON list of {text, confidence, box, raw_text?}
            timings TEXT,                        -- JSON {det, cls, rec, total} ms
            recipe TEXT,
            verdict TEXT CHECK (verdict IN ('pass','fail','unreadable')),  -- latest verdict
            review_state TEXT NOT NULL DEFAULT 'unreviewed'
                CHECK (review_state IN ('unreviewed','accepted','rejected','corrected')),
            reviewed_at TEXT,
            reviewed_by TEXT
        );
        CREATE INDEX results_created_at ON results(created_at);
        CREATE INDEX results_capture ON results(capture_id);
        CREATE INDEX results_verdict ON results(verdict, created_at);
        CREATE INDEX results_review ON results(review_state, created_at);
        CREATE INDEX results_confidence ON results(confidence);
        CREATE INDEX results_recipe ON results(recipe, created_at);

        CREATE TABLE verdicts (
            id INTEGER PRIMARY KEY,
            result_id INTEGER NOT NULL REFERENCES results(id),
            created_at TEXT NOT NULL,
            recipe TEXT,
            status TEXT NOT NULL CHECK (status IN ('pass','fail','unreadable')),
            reasons TEXT NOT NULL,               -- JSON list of strings
            fields TEXT NOT NULL                 -- JSON {name: value}
        );
        CREATE INDEX verdicts_result ON verdicts(result_id);

        CREATE TABLE corrections (
            id INTEGER PRIMARY KEY,
            result_id INTEGER NOT NULL REFERENCES results(id),
            line_index INTEGER NOT NULL,
            before TEXT NOT NULL,
            after TEXT NOT NULL,
            at TEXT NOT NULL,
            by TEXT NOT NULL
        );
        CREATE INDEX corrections_result ON corrections(result_id);

        -- audit trail and operational events
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            level TEXT NOT NULL,
            kind TEXT NOT NULL,                  -- e.g. file.quarantined, result.accepted, agent.started
            message TEXT NOT NULL,
            subject TEXT,                        -- e.g. "result:42" or a path
            actor TEXT,
            data TEXT                            -- JSON
        );
        CREATE INDEX events_at ON events(at);
        CREATE INDEX events_kind ON events(kind, at);

        -- the running agent's heartbeat (one row per agent; usually one)
        CREATE TABLE agent_status (
            agent_id TEXT PRIMARY KEY,
            pid INTEGER,
            host TEXT,
            started_at TEXT,
            heartbeat_at TEXT,
            state TEXT,                          -- starting, running, stopping, stopped
            queue_depth INTEGER,
            engine TEXT,
            model TEXT,
            version TEXT,
            details TEXT                         -- JSON
        );

        -- transactional outbox: written in the same transaction as the record it ships
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,                  -- result, correction, verdict, review
            ref_id INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            payload TEXT NOT NULL,               -- JSON
            batch_id TEXT,                       -- set when cut into a batch
            acked_at TEXT
        );
        CREATE INDEX outbox_pending ON outbox(batch_id, id);

        CREATE TABLE sync_batches (
            batch_id TEXT PRIMARY KEY,           -- client-generated, kept across retries
            created_at TEXT NOT NULL,
            n_records INTEGER NOT NULL,
            content_sha256 TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending','acked')),
            attempts INTEGER NOT NULL DEFAULT 0,
            last_attempt_at TEXT,
            last_error TEXT,
            acked_at TEXT
        );
        CREATE INDEX sync_batches_state ON sync_batches(state, created_at);

        CREATE TABLE sync_state (
            key TEXT PRIMARY KEY,
            value TEXT
        );

        -- full-text search over recognised and corrected text
        CREATE VIRTUAL TABLE results_fts USING fts5(
            text, corrected_text, content='results', content_rowid='id', tokenize='unicode61'
        );
        CREATE TRIGGER results_fts_ai AFTER INSERT ON results BEGIN
            INSERT INTO results_fts(rowid, text, corrected_text) VALUES (new.id, new.text, new.corrected_text);
        END;
        CREATE TRIGGER results_fts_ad AFTER DELETE ON results BEGIN
            INSERT INTO results_fts(results_fts, rowid, text, corrected_text)
                VALUES ('delete', old.id, old.text, old.corrected_text);
        END;
        CREATE TRIGGER results_fts_au AFTER UPDATE OF text, corrected_text ON results BEGIN
            INSERT INTO results_fts(results_fts, rowid, text, corrected_text)
                VALUES ('delete', old.id, old.text, old.corrected_text);
            INSERT INTO results_fts(rowid, text, corrected_text) VALUES (new.id, new.text, new.corrected_text);
        END;
"""


# Datasette and sqlite-utils find a table's FTS index by the declaration `content="results"` or
# `content=[results]` (datasette.utils.detect_fts, sqlite_utils Table.detect_fts); migration 1
# wrote `content='results'`, which neither recognises, so Datasette's search box was ignored.
# Same columns, tokenizer, rowid and triggers; the index is rebuilt from `results`.
_M002_FTS_FOR_DATASETTE = """
        DROP TRIGGER results_fts_ai;
        DROP TRIGGER results_fts_ad;
        DROP TRIGGER results_fts_au;
        DROP TABLE results_fts;
        CREATE VIRTUAL TABLE results_fts USING fts5(
            text, corrected_text, content="results", content_rowid="id", tokenize="unicode61"
        );
        INSERT INTO results_fts(results_fts) VALUES ('rebuild');
        CREATE TRIGGER results_fts_ai AFTER INSERT ON results BEGIN
            INSERT INTO results_fts(rowid, text, corrected_text) VALUES (new.id, new.text, new.corrected_text);
        END;
        CREATE TRIGGER results_fts_ad AFTER DELETE ON results BEGIN
            INSERT INTO results_fts(results_fts, rowid, text, corrected_text)
                VALUES ('delete', old.id, old.text, old.corrected_text);
        END;
        CREATE TRIGGER results_fts_au AFTER UPDATE OF text, corrected_text ON results BEGIN
            INSERT INTO results_fts(results_fts, rowid, text, corrected_text)
                VALUES ('delete', old.id, old.text, old.corrected_text);
            INSERT INTO results_fts(rowid, text, corrected_text) VALUES (new.id, new.text, new.corrected_text);
        END;
"""


# Two names that show the same (`bad\xff.png` with an undecodable byte, and a file literally named
# with the four characters `\xff`) had the same `source_path`, so an export paired one file's text
# with the other's image. The exact bytes of each name are kept beside the display form; readers
# open the bytes. Names without a backslash display as they are; the others are recovered from
# `files.path` (which always kept the exact name) when that is unambiguous, else left NULL (the
# display form, as before).
_M003_EXACT_NAMES = """
        ALTER TABLE captures ADD COLUMN source_path_raw BLOB;   -- the exact bytes of source_path
        ALTER TABLE captures ADD COLUMN stored_image_raw BLOB;  -- the exact bytes of stored_image
        UPDATE captures SET source_path_raw = CAST(source_path AS BLOB)
            WHERE source_path IS NOT NULL AND instr(source_path, '\\') = 0;
        UPDATE captures SET stored_image_raw = CAST(stored_image AS BLOB)
            WHERE stored_image IS NOT NULL AND instr(stored_image, '\\') = 0;
"""


def _shown(name: str | bytes) -> str:
    raw = bytes(name) if isinstance(name, (bytes, memoryview)) else os.fsencode(name)
    return raw.decode("utf-8", "backslashreplace")


def _recover_exact_names(conn: sqlite3.Connection) -> None:
    rows = conn.execute(
        "SELECT id, sha256, source_path FROM captures WHERE source_path_raw IS NULL AND source_path IS NOT NULL"
    ).fetchall()
    for capture_id, sha, shown in rows:
        names = {
            bytes(p) if isinstance(p, bytes) else p.encode("utf-8", "surrogateescape")
            for (p,) in conn.execute("SELECT path FROM files WHERE sha256 = ?", (sha,))
            if _shown(p) == shown
        }
        if len(names) != 1:
            continue  # ambiguous: the display form stays what readers open
        (raw,) = names
        conn.execute(
            "UPDATE captures SET source_path_raw = ?, "
            "stored_image_raw = CASE WHEN stored_image = source_path THEN ? ELSE stored_image_raw END "
            "WHERE id = ?",
            (raw, raw, capture_id),
        )


# Versions 10-19 belong to sync (issue 5).
_M010_SYNC_BODIES_UPLOADS = """
        -- the exact gzip body of a cut batch, so every retry sends the same bytes; NULL once acked
        ALTER TABLE sync_batches ADD COLUMN body BLOB;
        CREATE INDEX outbox_unacked ON outbox(acked_at, id);

        -- images sent to the endpoint through presigned S3 PUT URLs
        CREATE TABLE sync_uploads (
            capture_id INTEGER PRIMARY KEY REFERENCES captures(id),
            sha256 TEXT NOT NULL,
            object_key TEXT,
            state TEXT NOT NULL CHECK (state IN ('pending','uploaded','skipped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX sync_uploads_state ON sync_uploads(state);
"""


# Versions 20-29 belong to the production line (issue 20).
_M020_LINE = """
        -- every job the line knows: a trigger taken (its id answered to the PLC before it is read),
        -- or a read the station made on its own; exactly one result each
        CREATE TABLE line_jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,    -- the job id every channel reports, never reused
            origin TEXT NOT NULL,                    -- opcua, mqtt, modbus, http, continuous
            source TEXT,                             -- the source that read it
            recipe TEXT,
            meas_id TEXT NOT NULL DEFAULT '',        -- the client's own run and part identifiers
            part_id TEXT NOT NULL DEFAULT '',
            requested_at TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('queued', 'done')),
            finished_at TEXT,
            verdict TEXT CHECK (verdict IN ('pass', 'fail', 'no-read', 'error')),
            capture_id INTEGER REFERENCES captures(id),
            result_id INTEGER REFERENCES results(id),
            error TEXT
        );
        CREATE INDEX line_jobs_state ON line_jobs(state, id);

        -- MQTT messages the broker has not acknowledged yet (written with the result they announce,
        -- sent in id order, kept across restarts and broker outages)
        CREATE TABLE line_messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id INTEGER REFERENCES line_jobs(id),
            topic TEXT NOT NULL,
            payload TEXT NOT NULL,
            qos INTEGER NOT NULL CHECK (qos IN (0, 1, 2)),
            retain INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            acked_at TEXT
        );
        CREATE INDEX line_messages_unacked ON line_messages(acked_at, id);
"""


# Versions 30-39 belong to field extraction (issue 25).
_M030_RESULT_FIELDS = """
        -- the kind of fields read from a result's page ("receipt"), NULL when none were asked for
        ALTER TABLE results ADD COLUMN fields_kind TEXT;

        -- one row per field of a result that had fields read (found or not)
        CREATE TABLE result_fields (
            id INTEGER PRIMARY KEY,
            result_id INTEGER NOT NULL REFERENCES results(id),
            name TEXT NOT NULL,                  -- company, date, address, total
            text TEXT,                           -- as printed (after a reviewer's correction); NULL: not found
            value TEXT,                          -- normalised: ISO date, decimal amount
            amount REAL,                         -- the value as a number, for amounts (range search)
            currency TEXT,
            confidence REAL,
            boxes TEXT NOT NULL DEFAULT '[]',    -- JSON list of the quads of the lines it came from
            missing TEXT,                        -- why it is NULL
            raw_text TEXT,                       -- the extractor's text, once a reviewer changed it
            corrected_at TEXT,
            corrected_by TEXT,
            UNIQUE (result_id, name)
        );
        CREATE INDEX result_fields_value ON result_fields(name, value);
        CREATE INDEX result_fields_amount ON result_fields(name, amount);

        CREATE TABLE field_corrections (
            id INTEGER PRIMARY KEY,
            result_id INTEGER NOT NULL REFERENCES results(id),
            name TEXT NOT NULL,
            before TEXT,
            after TEXT NOT NULL,
            at TEXT NOT NULL,
            by TEXT NOT NULL
        );
        CREATE INDEX field_corrections_result ON field_corrections(result_id);

        -- full-text search over field text (a corrected field is found by its new text)
        CREATE VIRTUAL TABLE result_fields_fts USING fts5(
            text, content="result_fields", content_rowid="id", tokenize="unicode61"
        );
        CREATE TRIGGER result_fields_fts_ai AFTER INSERT ON result_fields BEGIN
            INSERT INTO result_fields_fts(rowid, text) VALUES (new.id, new.text);
        END;
        CREATE TRIGGER result_fields_fts_ad AFTER DELETE ON result_fields BEGIN
            INSERT INTO result_fields_fts(result_fields_fts, rowid, text) VALUES ('delete', old.id, old.text);
        END;
        CREATE TRIGGER result_fields_fts_au AFTER UPDATE OF text ON result_fields BEGIN
            INSERT INTO result_fields_fts(result_fields_fts, rowid, text) VALUES ('delete', old.id, old.text);
            INSERT INTO result_fields_fts(rowid, text) VALUES (new.id, new.text);
        END;
"""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", sql=_M001_INITIAL),
    Migration(2, "results_fts declared as Datasette and sqlite-utils detect it", sql=_M002_FTS_FOR_DATASETTE),
    Migration(
        3, "the exact bytes of source and image names", sql=_M003_EXACT_NAMES, apply=_recover_exact_names
    ),
    Migration(10, "sync batch bodies and image uploads", sql=_M010_SYNC_BODIES_UPLOADS),
    Migration(20, "line jobs and the MQTT messages announcing them", sql=_M020_LINE),
    Migration(
        30, "fields read from results (receipts): values, boxes, corrections, search", sql=_M030_RESULT_FIELDS
    ),
)

LATEST_VERSION = max(m.version for m in MIGRATIONS)
