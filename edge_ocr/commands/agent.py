"""`edge-ocr run | watch | status | results | export`: the agent and its store."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from edge_ocr.config import (
    AfterSuccess,
    Config,
    FolderSourceConfig,
    FolderTrigger,
    default_db_path,
    load_config,
    parse_line_table,
    validate,
)
from edge_ocr.errors import ConfigError, StoreError
from edge_ocr.store.db import open_connection, reading_damaged

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
    line = p.add_argument_group("the production line (docs/LINE.md)")
    line.add_argument(
        "--mqtt", metavar="URL", default=None, help="publish results to this broker: mqtt://HOST:PORT"
    )
    line.add_argument("--opcua", metavar="URL", default=None, help="serve OPC UA here: opc.tcp://HOST:PORT")
    line.add_argument("--modbus", metavar="HOST:PORT", default=None, help="serve Modbus TCP here")
    line.add_argument(
        "--station", default=None, help="the station's name in topics and nodes (default: host name)"
    )
    line.add_argument(
        "--triggered",
        action="store_true",
        help="read the folder only on line triggers (the newest file not read yet), not every file as it lands",
    )
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
        trigger=FolderTrigger.LINE if args.triggered else FolderTrigger.ARRIVAL,
    )
    cfg = with_line_flags(replace(cfg, folders=(folder,), cameras=()), args)
    from edge_ocr.agent.serve import serve

    return serve(cfg, args.once)


def with_line_flags(cfg: Config, args: argparse.Namespace) -> Config:
    """`watch --mqtt/--opcua/--modbus/--station` on top of the config's [line], validated like it."""
    line: dict[str, object] = {}
    if args.station:
        line["station"] = args.station
    if args.mqtt:
        line["mqtt"] = {"url": args.mqtt}
    if args.opcua:
        line["opcua"] = {"endpoint": args.opcua}
    if args.modbus:
        host, sep, port = args.modbus.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"--modbus {args.modbus!r}: expected HOST:PORT")
        line["modbus"] = {"host": host or "127.0.0.1", "port": int(port)}
    if not line and not args.triggered:
        return cfg
    built = parse_line_table(line)
    merged = replace(
        cfg.line,
        station=built.station or cfg.line.station,
        mqtt=built.mqtt or cfg.line.mqtt,
        opcua=built.opcua or cfg.line.opcua,
        modbus=built.modbus or cfg.line.modbus,
    )
    out = replace(cfg, line=merged)
    validate(out)
    return out


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
    from edge_ocr.store import line as line_store
    from edge_ocr.store.agentlock import read_holder
    from edge_ocr.store.agents import read_agent_status, read_lock_wait
    from edge_ocr.store.files import file_state_counts
    from edge_ocr.store.query import status_counts
    from edge_ocr.store.sync_state import sync_summary

    db = args.db or default_db_path()
    holder = read_holder(db)  # the agent holding the database's lock, whatever its heartbeat says
    try:
        conn = open_connection(db, readonly=True)
    except StoreError as exc:
        if holder is None:
            raise
        return _status_from_note(db, holder, exc, args.json)  # an agent runs: say what it says
    try:
        with reading_damaged(db):
            agents = read_agent_status(conn)
            files = file_state_counts(conn)
            counts = status_counts(conn)
            sync = sync_summary(conn)
            line_jobs = line_store.job_counts(conn)
            line_unsent = line_store.count_unacked(conn)
    finally:
        conn.close()
    agent = agents[0] if agents else {}
    lock_wait = read_lock_wait(db)
    if lock_wait is not None and not (
        lock_wait.get("host") == socket.gethostname() and _pid_alive(lock_wait.get("pid"))
    ):
        lock_wait = None  # left by an agent that is gone
    running = holder is not None or (bool(agent) and (agent_running(agent) or lock_wait is not None))
    problems = (holder or {}).get("problems") or (agent.get("details") or {}).get("problems") or []
    healthy = running and not problems
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
        "agent_lock": holder,
        "healthy": healthy,
        "problems": problems,
        "line": {
            **(agent.get("details", {}).get("line") or {}),
            "jobs": line_jobs,
            "unsent_messages": line_unsent,
        },
    }
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0 if healthy else 1
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
    elif holder is not None:
        print(
            f"agent:      running, pid {holder.get('pid')} on {holder.get('host')} (since {holder.get('since')})"
        )
    else:
        print("agent:      never ran on this database")
    _print_problems(problems)
    print("files:      " + ", ".join(f"{k} {v}" for k, v in files.items()))
    pending = sync["queued_records"] + sync["pending_batch_records"]
    sync_line = f"{pending} record(s) to send in {sync['pending_batches']} batch(es), {sync['acked_records']} acknowledged"
    if sync.get("last_success_at"):
        sync_line += f"; last success {sync['last_success_at']}"
    if sync.get("last_error"):
        sync_line += f"; last error {sync['last_error']} ({sync.get('last_error_at')})"
    print(f"sync:       {sync_line}")
    _print_line(report["line"], running)
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(counts["verdicts"].items())) or "-"
    print(
        f"results:    {counts['results']} (verdicts: {verdicts}); last at {counts['last_result_at'] or '-'}"
    )
    return 0 if healthy else 1


def _print_problems(problems: list[dict]) -> None:
    for p in problems:
        print(f"health:     UNHEALTHY: {p.get('kind')}: {p.get('message')} (since {p.get('since')})")


def _status_from_note(db: Path, holder: dict, error: StoreError, as_json: bool) -> int:
    """An agent holds the database's lock but the database cannot be read (deleted under it, on
    a full disk): what the agent's note beside it says."""
    problems = holder.get("problems") or []
    if as_json:
        report = {
            "db": str(db),
            "running": True,
            "state": holder.get("state"),
            "pid": holder.get("pid"),
            "host": holder.get("host"),
            "agent_lock": holder,
            "healthy": False,
            "problems": problems,
            "database_error": str(error),
        }
        print(json.dumps(report, ensure_ascii=False))
        return 1
    print(f"database:   {db}: {error}")
    print(
        f"agent:      running ({holder.get('state')}), pid {holder.get('pid')} on {holder.get('host')} "
        f"(since {holder.get('since')})"
    )
    _print_problems(problems)
    return 1


def _print_line(line: dict, running: bool) -> None:
    """The production line's part of `status`: state, recipe, queue, each channel, the counters."""
    jobs = line.get("jobs", {})
    if "state" not in line and not any(jobs.values()):
        return
    done = ", ".join(f"{k} {v}" for k, v in sorted(jobs.items()) if k != "queued") or "none"
    if "state" in line and running:
        print(
            f"line:       {line['state']}, recipe {line.get('recipe') or '-'}, {line.get('queued', 0)} of "
            f"{line.get('max_queued')} trigger(s) queued; jobs: {done}"
        )
        counters = line.get("counters", {})
        print(
            f"            triggers {counters.get('triggers', 0)} taken, {counters.get('busy', 0)} busy, "
            f"{counters.get('refused', 0)} refused, {counters.get('bad_requests', 0)} bad"
        )
        for ch in line.get("channels", []):
            detail = f" ({ch['detail']})" if ch.get("detail") else ""
            print(f"            {ch['name']:<7} {ch['state']:<11} {ch['endpoint']}{detail}")
    else:
        print(f"line:       jobs: {done}")
    if line.get("unsent_messages"):
        print(f"            {line['unsent_messages']} MQTT message(s) wait for the broker")


# -- results / export ----------------------------------------------------------------------------------


def run_results(args: argparse.Namespace) -> int:
    from edge_ocr.store.export import write_csv, write_jsonl
    from edge_ocr.store.query import iter_results, parse_since

    db = args.db or default_db_path()
    conn = open_connection(db, readonly=True)
    try:
        with reading_damaged(db):
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
        with reading_damaged(db):
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
