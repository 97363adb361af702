"""Subcommands contributed to `edge-ocr` (entry point `sync = "edge_ocr_sync.cli:register"`):

- `edge-ocr sync [--once] [--db PATH] [--config PATH]`: run the sync service (or one pass).
- `edge-ocr endpoint serve --host 127.0.0.1 --port N`: the endpoint as a local HTTP service, on
  local storage (a data folder + SQLite) unless an S3 bucket and DynamoDB table are configured.
- `edge-ocr endpoint add-device DEVICE_ID`: a new device secret for the local endpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from edge_ocr.errors import ConfigError, SyncError

logger = logging.getLogger(__name__)

ENV_CONFIG = "EDGE_OCR_CONFIG"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sync",
        help="send queued results to the sync endpoint",
        description="Send the outbox to the sync endpoint: batches are signed, retried with backoff "
        "and marked synced only when the endpoint acknowledges them.",
    )
    p.add_argument("--once", action="store_true", help="one pass: send everything queued, then exit")
    p.add_argument(
        "--db", type=Path, default=None, help="results database (default: $EDGE_OCR_DB or per-user)"
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"config file with a [sync] section (default: ${ENV_CONFIG})",
    )
    p.add_argument("--json", action="store_true", help="print the report of --once as JSON")
    p.set_defaults(func=run_sync)

    e = subparsers.add_parser("endpoint", help="the sync endpoint (cloud side) as a local HTTP service")
    esub = e.add_subparsers(dest="endpoint_command", metavar="ACTION")
    esub.required = True
    s = esub.add_parser(
        "serve",
        help="serve the endpoint with uvicorn",
        description="Serve POST /v1/batches, /v1/uploads, /v1/ocr, GET /v1/health and /v1/openapi.json. "
        "With no settings, storage is local: a data folder (--data-dir, $EDGE_OCR_ENDPOINT_DIR or the "
        "per-user data folder's endpoint/) with the payloads, images and an SQLite index, and device "
        "secrets in its device-secrets.json (see `edge-ocr endpoint add-device`). With EDGE_OCR_BUCKET "
        "and EDGE_OCR_TABLE, storage is S3 + DynamoDB, chosen by the standard AWS variables "
        "(AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION, credentials) and device secrets "
        "come from EDGE_OCR_DEVICE_SECRETS_FILE. See docs/DEPLOY.md.",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")
    s.add_argument("--data-dir", type=Path, default=None, help="local storage folder (local storage only)")
    s.add_argument(
        "--header-timeout",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="a request's headers must arrive within S seconds, else 408 and the connection is closed "
        "(default: 10)",
    )
    s.add_argument(
        "--body-timeout",
        type=_positive_float,
        default=60.0,
        metavar="S",
        help="a request's body must arrive within S seconds of its headers, else the connection is "
        "closed (default: 60; raise it for large uploads over slow links)",
    )
    s.add_argument(
        "--max-connections",
        type=int,
        default=None,
        metavar="N",
        help="open connections at most (default: 1000, and always below the file limit, ulimit -n); "
        "past it the connection waiting longest for a request is closed, or the new one gets a 503",
    )
    s.add_argument(
        "--create-resources",
        action="store_true",
        help="S3 + DynamoDB only: create the bucket (in AWS_REGION) and table if missing",
    )
    s.set_defaults(func=run_endpoint_serve)
    st = esub.add_parser(
        "stats",
        help="requests, errors, duration, cold starts and memory per route",
        description="Print the endpoint's figures: from a running local endpoint (its GET /v1/metrics, "
        "the Prometheus text format) or, with --cloudwatch, the CloudWatch metrics the Lambda function "
        "writes (namespace EdgeOCR, through boto3 and the standard AWS variables) over the last --hours.",
    )
    st.add_argument(
        "--url", default="http://127.0.0.1:8080", help="local endpoint (default: http://127.0.0.1:8080)"
    )
    st.add_argument("--cloudwatch", action="store_true", help="read CloudWatch instead of a local endpoint")
    st.add_argument(
        "--function", default=None, help="with --cloudwatch: the function name, for its throttles"
    )
    st.add_argument("--hours", type=float, default=1.0, help="with --cloudwatch: the window (default: 1)")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(func=run_endpoint_stats)
    r = esub.add_parser(
        "reprocess",
        help="read stored images again with the active model set",
        description="Read again the stored images (under images/) whose result was made by another "
        "model set, or that have none, and store the new result beside each, in batches; resumable "
        "(the position is kept in the index: run it again to go on) and idempotent (images whose "
        "result has the active model set are left alone). Storage as for `endpoint serve`. On AWS the "
        "template's schedule does the same in bounded batches.",
    )
    r.add_argument("--prefix", default="images/", help="only keys under this prefix (default: images/)")
    r.add_argument(
        "--since",
        default=None,
        help="only images stored at or after this time (YYYY-MM-DD, ISO date-time or Unix seconds)",
    )
    r.add_argument(
        "--model", default=None, metavar="FAMILY", help="model family to read with (default: the endpoint's)"
    )
    r.add_argument("--batch", type=int, default=50, help="images read per batch (default: 50)")
    r.add_argument(
        "--max-batches", type=int, default=0, help="stop after this many batches (default: until done)"
    )
    r.add_argument("--data-dir", type=Path, default=None, help="local storage folder (as for serve)")
    r.add_argument("--json", action="store_true", help="print the totals as JSON")
    r.set_defaults(func=run_endpoint_reprocess)
    q = esub.add_parser(
        "query",
        help="SQL over the fleet's records (local storage, DuckDB)",
        description="Run SQL over the synced records in the local data folder's fleet layout "
        "(results/dt=YYYY-MM-DD/device=ID/*.jsonl) with DuckDB: the table is `results` (device_id, "
        "batch_id, seq, kind, ref_id, created_at, payload, dt), as Athena sees it on AWS. "
        "`--example NAME` runs one of the documented queries (docs/DEPLOY.md).",
    )
    q.add_argument("sql", nargs="?", default=None, help="the query")
    q.add_argument(
        "--example",
        default=None,
        help="a documented query: " + "; ".join(("read-rate", "failed-verdicts", "lot")),
    )
    q.add_argument("--data-dir", type=Path, default=None, help="local storage folder (as for serve)")
    q.add_argument("--json", action="store_true", help="rows as JSON objects")
    q.set_defaults(func=run_endpoint_query)
    d = esub.add_parser(
        "delete-device",
        help="delete everything stored for one device (erasure)",
        description="Delete one device's images and their results, its batches, its records in the "
        "fleet layout, its batch index entries and nonces, and the cached results of images no other "
        "device has (every S3 object version). Storage as for `endpoint serve`. Its secret stays: "
        "remove it from the secrets file to stop the device sending again.",
    )
    d.add_argument("device_id")
    d.add_argument("--yes", action="store_true", help="do it (without --yes: say what would go)")
    d.add_argument("--data-dir", type=Path, default=None, help="local storage folder (as for serve)")
    d.set_defaults(func=run_endpoint_delete_device)
    x = esub.add_parser(
        "expire",
        help="delete images and payloads older than N days (local storage's lifecycle)",
        description="Delete images (with their OCR results) older than --images-days and batch "
        "payloads and fleet records older than --payloads-days. On AWS the bucket's lifecycle rules "
        "do this (template parameters ImagesRetentionDays, PayloadsRetentionDays).",
    )
    x.add_argument("--images-days", type=float, required=True)
    x.add_argument("--payloads-days", type=float, required=True)
    x.add_argument("--data-dir", type=Path, default=None, help="local storage folder (as for serve)")
    x.set_defaults(func=run_endpoint_expire)
    a = esub.add_parser(
        "add-device",
        help="add a device and print its new secret (local endpoint)",
        description="Add a device to the local endpoint's device-secrets.json with a fresh secret and "
        "print the secret once, for the device's secret_file. A running endpoint accepts it at once.",
    )
    a.add_argument("device_id", help="the device's id, as in its [sync] device_id")
    a.add_argument("--data-dir", type=Path, default=None, help="local storage folder (as for serve)")
    a.set_defaults(func=run_endpoint_add_device)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600 seconds, got {text}")
    return value


def _config_path(args: argparse.Namespace) -> Path:
    path = args.config or (Path(os.environ[ENV_CONFIG]) if os.environ.get(ENV_CONFIG) else None)
    if path is None:
        raise ConfigError(
            f"no config: pass --config PATH or set {ENV_CONFIG} (a TOML file with a [sync] section)"
        )
    return path


def run_sync(args: argparse.Namespace) -> int:
    from edge_ocr_sync.config import load_sync_config
    from edge_ocr_sync.service import SyncService

    config = load_sync_config(_config_path(args))
    if not config.enabled:
        print("sync is disabled in the config ([sync] enabled = false)", file=sys.stderr)
        return 0
    stop = threading.Event()
    service = SyncService(config, args.db, stop)
    if not args.once:
        _stop_on_signals(stop)
        service.run()
        return 0
    try:
        last = report = service.run_once(flush=True)
        while not last.failures and not last.drained and (last.batches_acked or last.conflicts):
            last = service.run_once(flush=True)
            report = report.then(last)
    finally:
        service.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(
            f"acked {report.records_acked} records in {report.batches_acked} batches "
            f"({report.duplicates} duplicates); pending: {report.pending_batches} batches, "
            f"{report.queued_records} queued records; circuit {report.circuit}"
        )
    if report.failures or report.rejected:
        raise SyncError(f"sync incomplete: {report.last_error}")
    return 0


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum, frame):
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def run_endpoint_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as exc:
        raise ConfigError("the endpoint needs the cloud extra: pip install 'edge-ocr[cloud]'") from exc
    from edge_ocr_sync.endpoint.app import create_app
    from edge_ocr_sync.endpoint.aws_storage import create_resources
    from edge_ocr_sync.endpoint.core import build_core
    from edge_ocr_sync.endpoint.settings import EndpointSettings

    settings = EndpointSettings.from_env(data_dir=args.data_dir)
    if args.create_resources:
        if settings.storage != "aws":
            raise ConfigError(
                "--create-resources makes an S3 bucket and DynamoDB table: set EDGE_OCR_BUCKET and "
                "EDGE_OCR_TABLE (local storage needs no resources)"
            )
        create_resources(settings.bucket, settings.table)
    from edge_ocr.ops.logsetup import rate_limit_handlers
    from edge_ocr_sync.endpoint.server import BACKLOG, ServerLimits, connection_limit, guarded_protocol

    try:
        max_connections = connection_limit(args.max_connections)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.max_connections is not None and max_connections < args.max_connections:
        print(
            f"--max-connections {args.max_connections} is over what the file limit (ulimit -n) "
            f"allows: serving at most {max_connections}",
            file=sys.stderr,
        )
    limits = ServerLimits(args.header_timeout, args.body_timeout, max_connections)
    core = build_core(settings)
    where = (
        f"local, data folder {settings.data_dir}"
        if settings.storage == "local"
        else f"S3 bucket {settings.bucket}, DynamoDB table {settings.table}"
    )
    print(f"endpoint storage: {where}", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        create_app(core),
        host=args.host,
        port=args.port,
        http=guarded_protocol(limits),
        backlog=BACKLOG,
        log_level="info",
        access_log=True,
    )
    # uvicorn's log handlers exist once its Config is made: repeated lines are counted, not written
    rate_limit_handlers("uvicorn", "uvicorn.access", "")
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn raises the captured SIGINT again once it has shut down
        pass
    finally:
        core.close()
    return 0


def run_endpoint_add_device(args: argparse.Namespace) -> int:
    from edge_ocr_sync.endpoint.settings import (
        ENV_SECRETS_FILE,
        LOCAL_SECRETS_NAME,
        EndpointSettings,
        add_device,
    )

    env_file = os.environ.get(ENV_SECRETS_FILE)
    if env_file:
        path = Path(env_file)
    else:
        settings = EndpointSettings.from_env(data_dir=args.data_dir)
        if settings.storage != "local":
            raise ConfigError(
                f"with S3 + DynamoDB the device secrets come from {ENV_SECRETS_FILE} or SSM; "
                "set the file to add devices to"
            )
        assert settings.data_dir is not None
        path = settings.data_dir / LOCAL_SECRETS_NAME
    secret = add_device(path, args.device_id)
    print(secret)
    print(
        f"added {args.device_id} to {path}; put the secret above in the device's secret_file (chmod 600)",
        file=sys.stderr,
    )
    return 0


def _parse_since(text: str | None) -> float | None:
    if text is None:
        return None
    from datetime import datetime, timezone

    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since {text!r}: give YYYY-MM-DD, an ISO date-time or Unix seconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def run_endpoint_reprocess(args: argparse.Namespace) -> int:
    import dataclasses

    from edge_ocr_sync.endpoint.core import build_core
    from edge_ocr_sync.endpoint.reprocess import reprocess
    from edge_ocr_sync.endpoint.settings import EndpointSettings

    if args.batch < 1 or args.max_batches < 0:
        raise ConfigError("--batch must be at least 1 and --max-batches at least 0")
    since = _parse_since(args.since)
    settings = EndpointSettings.from_env(data_dir=args.data_dir)
    if args.model:
        settings = dataclasses.replace(settings, ocr_models=args.model)
    core = build_core(settings, secrets={})
    totals = {"reprocessed": 0, "up_to_date": 0, "skipped_older": 0, "failed": 0, "batches": 0}
    try:
        while True:
            try:
                report = reprocess(core, prefix=args.prefix, since=since, max_images=args.batch)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            totals["batches"] += 1
            for k in ("reprocessed", "up_to_date", "skipped_older", "failed"):
                totals[k] += getattr(report, k)
            if not args.json:
                print(
                    f"batch {totals['batches']}: read {report.reprocessed}, up to date {report.up_to_date}, "
                    f"failed {report.failed}" + ("" if report.done else f"; next after {report.cursor}"),
                    file=sys.stderr,
                )
            if report.done or (args.max_batches and totals["batches"] >= args.max_batches):
                break
    finally:
        core.close()
    totals.update({"model": report.model, "done": report.done})
    if args.json:
        print(json.dumps(totals, indent=2))
    else:
        state = "done" if report.done else "stopped; run again to go on"
        print(
            f"reprocessed {totals['reprocessed']} images with {report.model} ({totals['up_to_date']} up to "
            f"date, {totals['failed']} failed); {state}"
        )
    return 0


def run_endpoint_stats(args: argparse.Namespace) -> int:
    if args.cloudwatch:
        from edge_ocr_sync.endpoint.cloudwatch import read_stats

        if not 0 < args.hours <= 24 * 15:
            raise ConfigError(
                "--hours must be more than 0 and at most 360 (CloudWatch keeps 1-minute data 15 days)"
            )
        stats = read_stats(hours=args.hours, function_name=args.function)
    else:
        import httpx

        from edge_ocr_sync.endpoint.metrics import parse_prometheus, summarize

        url = args.url.rstrip("/") + "/v1/metrics"
        try:
            resp = httpx.get(url, timeout=10)
        except httpx.HTTPError as exc:
            raise SyncError(
                f"cannot read {url}: {exc}; is `edge-ocr endpoint serve` running there?"
            ) from None
        if resp.status_code != 200:
            raise SyncError(f"{url} answered {resp.status_code}")
        stats = summarize(parse_prometheus(resp.text))
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    window = f"last {args.hours:g} h" if args.cloudwatch else f"up {stats['uptime_s']:.0f} s"
    print(f"endpoint stats ({stats['source']}, {window})")
    print(f"{'route':<18} {'requests':>9} {'per s':>8} {'errors':>7} {'mean ms':>9}")
    for route, r in stats["routes"].items():
        print(f"{route:<18} {r['requests']:>9} {r['per_second']:>8.3f} {r['errors']:>7} {r['mean_ms']:>9.1f}")
    extra = [f"cold starts {stats['cold_starts']}", f"memory used {stats['memory_used_mb']:.0f} MB"]
    if "throttles" in stats:
        extra.append(f"throttles {stats['throttles']}")
    if "ocr_busy" in stats:
        extra.append(f"OCR busy {stats['ocr_busy']}")
    print("; ".join(extra))
    return 0


def _admin_core(args: argparse.Namespace):
    from edge_ocr_sync.endpoint.core import build_core
    from edge_ocr_sync.endpoint.settings import EndpointSettings

    return build_core(EndpointSettings.from_env(data_dir=args.data_dir), secrets={})


def run_endpoint_delete_device(args: argparse.Namespace) -> int:
    from edge_ocr_sync.endpoint.erasure import erase_device
    from edge_ocr_sync.endpoint.layout import DEVICE_ID_RE, IMAGE_PREFIX

    if not DEVICE_ID_RE.match(args.device_id):
        raise ConfigError(f"not a device id: {args.device_id!r}")
    core = _admin_core(args)
    try:
        if not args.yes:
            images = sum(1 for _ in core.storage.list_keys(f"{IMAGE_PREFIX}{args.device_id}/"))
            batches = sum(1 for _ in core.storage.list_keys(f"batches/{args.device_id}/"))
            print(
                f"would delete {images} image objects and {batches} batches of {args.device_id}, its fleet "
                "records, index entries, nonces and unshared cached results; run again with --yes"
            )
            return 0
        counts = erase_device(core, args.device_id)
    finally:
        core.close()
    print(f"deleted {args.device_id}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0


def run_endpoint_expire(args: argparse.Namespace) -> int:
    import math

    from edge_ocr_sync.endpoint.erasure import expire

    for name in ("images_days", "payloads_days"):
        v = getattr(args, name)
        if not (math.isfinite(v) and v >= 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be a number of days, at least 1")
    core = _admin_core(args)
    try:
        counts = expire(core, images_days=args.images_days, payloads_days=args.payloads_days)
    finally:
        core.close()
    print("expired: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0


EXAMPLES = {
    "read-rate": "read rate per line per day",
    "failed-verdicts": "failed verdicts by recipe",
    "lot": "a lot code across devices",
}


def run_endpoint_query(args: argparse.Namespace) -> int:
    from edge_ocr_sync.endpoint.fleet import QUERIES, query_local
    from edge_ocr_sync.endpoint.settings import EndpointSettings

    if (args.sql is None) == (args.example is None):
        raise ConfigError("give the SQL or --example NAME (" + ", ".join(EXAMPLES) + ")")
    if args.example is not None and args.example not in EXAMPLES:
        raise ConfigError(f"--example must be one of {', '.join(EXAMPLES)}")
    sql = args.sql if args.sql is not None else QUERIES[EXAMPLES[args.example]]
    settings = EndpointSettings.from_env(data_dir=args.data_dir)
    if settings.storage != "local":
        raise ConfigError(
            "on AWS, query the Glue table `results` with Athena (docs/DEPLOY.md); this runs locally"
        )
    assert settings.data_dir is not None
    columns, rows = query_local(settings.data_dir / "objects", sql)
    if args.json:
        print(json.dumps([dict(zip(columns, r)) for r in rows], indent=2, default=str))
        return 0
    print("\t".join(columns))
    for r in rows:
        print("\t".join("" if v is None else str(v) for v in r))
    return 0
