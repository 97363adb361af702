"""`edge-ocr run | watch | status | results | export`: the agent and its store."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from edge_ocr.config import AfterSuccess, Config, FolderSourceConfig, default_db_path, load_config
from edge_ocr.errors import ConfigError
from edge_ocr.store.db import damaged_error, open_connection

logger = logging.getLogger(__name__)


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        type=Path,
        default=None,
        help="results database (default: $EDGE_OCR_DB or the per-user data directory)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the agent (folder and camera sources) from a config file",
        description="Run the always-on agent: watch the configured folders and cameras, OCR what arrives "
        "in worker processes, store results and verdicts. SIGTERM/SIGINT finish in-flight work first. "
        "See docs/CONFIG.md.",
    )
    p.add_argument("--config", type=Path, default=None, help="TOML config (default: $EDGE_OCR_CONFIG)")
    _add_db(p)
    p.add_argument("--once", action="store_true", help="process what is there, then exit (no watching)")
    p.set_defaults(func=run_agent)

    p = sub.add_parser(
        "watch",
        help="watch a folder and OCR every image that lands in it (no config needed)",
        description="A shortcut for `run` with one folder source and default settings.",
    )
    p.add_argument("folder", type=Path, help="folder to watch (recursively)")
    p.add_argument("--config", type=Path, default=None, help="optional TOML config for everything else")
    _add_db(p)
    p.add_argument("--engine", default=None, help="inference engine (default: auto)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    p.add_argument("--recipe", default=None, help="recipe (from --config) to check labels against")
    p.add_argument(
        "--after", choices=[a.value for a in AfterSuccess], default=None, help="after success (default: keep)"
    )
    p.add_argument("--archive-dir", type=Path, default=None, help="where --after archive moves files")
    p.add_argument("--polling", action="store_true", help="poll instead of inotify (network shares)")
    p.add_argument("--once", action="store_true", help="process what is there, then exit")
    p.set_defaults(func=run_watch)

    p = sub.add_parser("status", help="is the agent running; heartbeat, queue, file counts, engine")
    _add_db(p)
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=run_status)

    p = sub.add_parser(
        "results",
        help="list stored results (search, filters; --json as in `ocr --json`)",
        description="List stored results, oldest first. --json prints one object per result in the "
        "`edge-ocr ocr --json` contract with `image` the source file, plus result_id, capture_id, verdict "
        "and review_state.",
    )
    _add_db(p)
    p.add_argument(
        "--search", default=None, help="full-text search over recognised and corrected text and fields' text"
    )
    p.add_argument("--since", default=None, help="only newer results: 30m, 2h, 7d or an ISO date/time")
    p.add_argument("--verdict", choices=("pass", "fail", "unreadable", "none"), default=None)
    p.add_argument("--limit", type=int, default=None, help="at most N results (the newest N)")
    _add_field_filter(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON Lines")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")
    p.set_defaults(func=run_results)

    p = sub.add_parser(
        "export",
        help="export results as CSV, JSON Lines or PPOCRLabel training data",
        description="Export stored results. ppocrlabel writes Label.txt, images/, rec_gt.txt and crop_img/ "
        "into --out (PaddleOCR fine-tuning format), using reviewers' corrections.",
    )
    _add_db(p)
    p.add_argument("--format", choices=("csv", "jsonl", "ppocrlabel"), required=True)
    p.add_argument("--out", type=Path, default=None, help="file (csv/jsonl; default stdout) or folder")
    p.add_argument("--since", default=None, help="only newer results: 30m, 2h, 7d or an ISO date/time")
    p.add_argument("--verdict", choices=("pass", "fail", "unreadable", "none"), default=None)
    p.add_argument(
        "--reviewed",
        action="store_true",
        help="only accepted or corrected results (default: all but rejected)",
    )
    _add_field_filter(p)
    p.set_defaults(func=run_export)


def _add_field_filter(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--field",
        dest="field_filters",
        action="append",
        default=[],
        metavar="NAME OP VALUE",
        help="only results whose receipt field matches, e.g. total>=100, date<2018-04-01, company~ikano "
        "(~: words in the text); repeat to combine",
    )


def _field_filters(args: argparse.Namespace) -> list:
    from edge_ocr.store.fields import FieldFilter

    try:
        return [FieldFilter.parse(text) for text in args.field_filters]
    except ValueError as exc:
        raise ConfigError(f"--field: {exc}") from None


@contextlib.contextmanager
def reading_store(db: Path) -> Iterator[None]:
    """A damaged page met while reading becomes one line with doctor's fix, never a traceback."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise damaged_error(db, exc) from None


# -- run / watch ----------------------------------------------------------------------------------


def _with_db(cfg: Config, db: Path | None) -> Config:
    return replace(cfg, agent=replace(cfg.agent, db=db)) if db is not None else cfg


def run_agent(args: argparse.Namespace) -> int:
    cfg = _with_db(load_config(args.config), args.db)
    from edge_ocr.agent.serve import serve

    return serve(cfg, args.once, args.config.parent if args.config else None)


def run_watch(args: argparse.Namespace) -> int:
    cfg = _with_db(load_config(args.config), args.db)
    if args.engine:
        cfg = replace(cfg, engine=replace(cfg.engine, name=args.engine))
    if args.workers is not None:
        cfg = replace(cfg, agent=replace(cfg.agent, workers=args.workers))
    if args.recipe is not None and args.recipe not in cfg.recipes:
        raise ConfigError(f"--recipe {args.recipe!r} is not defined in the config")
    folder = FolderSourceConfig(
        path=args.folder.expanduser(),
        polling=args.polling,
        after=AfterSuccess(args.after) if args.after else AfterSuccess.KEEP,
        archive_dir=args.archive_dir,
        recipe=args.recipe,
    )
    cfg = replace(cfg, folders=(folder,), cameras=())
    from edge_ocr.agent.serve import serve

    return serve(cfg, args.once)


# -- status ------------------------------------------------------------------------------------------


def _age_seconds(iso: str | None) -> float | None:
    if not iso:
        return None
    then = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - then).total_seconds()


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def agent_running(status: dict) -> bool:
    """A fresh heartbeat (within three periods) from an agent that has not said it stopped; on this host
    the process must also exist."""
    if status.get("state") == "stopped":
        return False
    age = _age_seconds(status.get("heartbeat_at"))
    period = float(status.get("details", {}).get("heartbeat_s", 5.0))
    if age is None or age > 3 * period + 1:
        return False
    if status.get("host") == socket.gethostname():
        return _pid_alive(status.get("pid"))
    return True


def run_status(args: argparse.Namespace) -> int:
    from edge_ocr.store.agents import read_agent_status, read_lock_wait
    from edge_ocr.store.files import file_state_counts
    from edge_ocr.store.outbox import sync_summary
    from edge_ocr.store.query import status_counts

    db = args.db or default_db_path()
    conn = open_connection(db, readonly=True)
    try:
        with reading_store(db):
            agents = read_agent_status(conn)
            files = file_state_counts(conn)
            counts = status_counts(conn)
            sync = sync_summary(conn)
    finally:
        conn.close()
    agent = agents[0] if agents else {}
    lock_wait = read_lock_wait(db)
    if lock_wait is not None and not (
        lock_wait.get("host") == socket.gethostname() and _pid_alive(lock_wait.get("pid"))
    ):
        lock_wait = None  # left by an agent that is gone
    running = bool(agent) and (agent_running(agent) or lock_wait is not None)
    report = {
        "db": str(db),
        "running": running,
        "state": agent.get("state") if agent else None,
        "pid": agent.get("pid"),
        "host": agent.get("host"),
        "heartbeat_at": agent.get("heartbeat_at"),
        "heartbeat_age_s": round(_age_seconds(agent.get("heartbeat_at")) or 0.0, 1) if agent else None,
        "queue_depth": agent.get("queue_depth"),
        "engine": agent.get("engine"),
        "model": agent.get("model"),
        "files": files,
        **counts,
        "sync": sync,
        "waiting_for_lock": lock_wait,
    }
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0 if running else 1
    print(f"database:   {db}")
    if agent:
        state = "running" if running else f"not running (last state: {agent.get('state')})"
        print(f"agent:      {state}, pid {agent.get('pid')} on {agent.get('host')}")
        print(f"heartbeat:  {report['heartbeat_age_s']} s ago ({agent.get('heartbeat_at')})")
        print(f"queue:      {agent.get('queue_depth')}")
        print(f"engine:     {agent.get('engine')} / {agent.get('model')}")
        if lock_wait is not None:
            print(
                f"database:   locked by another process; the agent has waited {lock_wait.get('waited_s')} s "
                f"(since {lock_wait.get('since')}) and goes on when it is released"
            )
    else:
        print("agent:      never ran on this database")
    print("files:      " + ", ".join(f"{k} {v}" for k, v in files.items()))
    pending = sync["queued_records"] + sync["pending_batch_records"]
    sync_line = f"{pending} record(s) to send in {sync['pending_batches']} batch(es), {sync['acked_records']} acknowledged"
    if sync.get("last_success_at"):
        sync_line += f"; last success {sync['last_success_at']}"
    if sync.get("last_error"):
        sync_line += f"; last error {sync['last_error']} ({sync.get('last_error_at')})"
    print(f"sync:       {sync_line}")
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(counts["verdicts"].items())) or "-"
    print(
        f"results:    {counts['results']} (verdicts: {verdicts}); last at {counts['last_result_at'] or '-'}"
    )
    return 0 if running else 1


# -- results / export ----------------------------------------------------------------------------------


def run_results(args: argparse.Namespace) -> int:
    from edge_ocr.store.export import write_csv, write_jsonl
    from edge_ocr.store.query import iter_results, parse_since

    db = args.db or default_db_path()
    conn = open_connection(db, readonly=True)
    try:
        with reading_store(db):
            since = parse_since(args.since) if args.since else None
            rows = list(
                iter_results(
                    conn,
                    search=args.search,
                    since=since,
                    verdict=args.verdict,
                    limit=args.limit,
                    newest_first=True,
                    field_filters=_field_filters(args),
                )
            )
            rows.reverse()
            out = sys.stdout
            if args.json:
                write_jsonl(rows, out)
            elif args.csv:
                write_csv(rows, out)
            else:
                for r in rows:
                    text = (r.corrected_text if r.corrected_text is not None else r.text).replace("\n", " | ")
                    page = f" p{r.page}" if r.page > 1 else ""
                    print(
                        f"#{r.result_id:<6} {r.created_at}  {r.verdict or '-':<10} {r.review_state:<10} "
                        f"{r.confidence:.2f}  {r.image}{page}\n        {text}"
                    )
                    if r.fields is not None:
                        shown = [f"{n}: {f.value or f.text}" for n, f in r.fields.items() if f is not None]
                        print("        " + " | ".join(shown or ["no fields found"]))
    finally:
        conn.close()
    return 0


def run_export(args: argparse.Namespace) -> int:
    from edge_ocr.store.export import write_csv, write_jsonl, write_ppocrlabel
    from edge_ocr.store.query import iter_results, parse_since

    db = args.db or default_db_path()
    conn = open_connection(db, readonly=True)
    try:
        with reading_store(db):
            since = parse_since(args.since) if args.since else None
            states = ("accepted", "corrected") if args.reviewed else ("unreviewed", "accepted", "corrected")
            rows = iter_results(
                conn,
                since=since,
                verdict=args.verdict,
                review_states=states,
                field_filters=_field_filters(args),
            )
            if args.format == "ppocrlabel":
                if args.out is None:
                    raise ConfigError("--format ppocrlabel needs --out FOLDER")
                report = write_ppocrlabel(conn, rows, args.out)
                print(
                    f"exported {report.images} image(s), {report.crops} line crop(s) to {args.out}"
                    + (f"; {report.skipped} skipped (image gone)" if report.skipped else ""),
                    file=sys.stderr,
                )
                return 0
            writer = write_csv if args.format == "csv" else write_jsonl
            if args.out is None:
                n = writer(rows, sys.stdout)
            else:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("w", encoding="utf-8", newline="" if args.format == "csv" else None) as fh:
                    n = writer(rows, fh)
            print(f"exported {n} result(s)", file=sys.stderr)
    finally:
        conn.close()
    return 0
