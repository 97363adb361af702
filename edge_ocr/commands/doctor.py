"""`edge-ocr doctor`: check this installation; every problem comes with the fix to apply."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from edge_ocr.config import Config, load_config
from edge_ocr.errors import ConfigError
from edge_ocr.ops.doctor import CHECK_NAMES, DoctorOptions, Finding, Status, run_checks, worst

_MARK = {Status.OK: " ok ", Status.INFO: "info", Status.WARN: "WARN", Status.FAIL: "FAIL"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check CPU, engines, models, database, disk, folders, cameras, endpoint and clock",
        description="Check this installation against a config and print each problem with its fix. "
        "Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed, "
        "2 when the config itself is invalid. Nothing is changed.",
    )
    p.add_argument("--config", type=Path, default=None, help="TOML config (default: $EDGE_OCR_CONFIG)")
    p.add_argument("--db", type=Path, default=None, help="results database (default: from the config)")
    p.add_argument("--models-dir", type=Path, default=None, help="models (default: from the config)")
    p.add_argument("--endpoint", default=None, help="sync endpoint URL (default: [sync] endpoint_url)")
    p.add_argument(
        "--only", nargs="+", choices=CHECK_NAMES, default=None, metavar="CHECK", help=", ".join(CHECK_NAMES)
    )
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per network probe (default: 3)")
    p.add_argument("--thorough", action="store_true", help="full PRAGMA integrity_check (slow on big stores)")
    p.add_argument("--json", action="store_true", help="one JSON object: findings and the worst status")
    p.set_defaults(func=run_doctor)


def _load(args: argparse.Namespace) -> tuple[Config, Finding]:
    """The config and the `config` finding: the same validation as `edge-ocr run` (load_config,
    then check_runnable), so the service's pre-start check never passes a config `run` refuses."""
    from edge_ocr.agent.preflight import check_runnable

    fix = "fix the file (docs/CONFIG.md); the agent refuses to start with it"
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        cfg = load_config(None, env={})  # go on with defaults so the other checks still say something
        return _overrides(args, cfg), Finding("config", Status.FAIL, str(exc), fix)
    try:
        check_runnable(cfg, base_dir=args.config.parent if args.config else Path.cwd())
    except ConfigError as exc:  # parsed: the other checks use it as it is
        where = f"{args.config}: " if args.config else ""
        return _overrides(args, cfg), Finding("config", Status.FAIL, f"{where}{exc}", fix)
    where = args.config or "defaults and EDGE_OCR_* variables"
    return _overrides(args, cfg), Finding("config", Status.OK, f"{where}: valid")


def _overrides(args: argparse.Namespace, cfg: Config) -> Config:
    if args.db is not None:
        cfg = replace(cfg, agent=replace(cfg.agent, db=args.db))
    if args.models_dir is not None:
        cfg = replace(cfg, engine=replace(cfg.engine, models_dir=args.models_dir))
    return cfg


def run_doctor(args: argparse.Namespace) -> int:
    cfg, config_finding = _load(args)
    only = set(args.only) if args.only else None
    opts = DoctorOptions(endpoint=args.endpoint, timeout=args.timeout, thorough=args.thorough)
    findings = [config_finding] if only is None or "config" in only else []
    findings += run_checks(cfg, opts, only=None if only is None else only - {"config"})
    status = worst(findings)
    if args.json:
        print(
            json.dumps(
                {"status": status.value, "findings": [f.as_dict() for f in findings]}, ensure_ascii=False
            )
        )
    else:
        for f in findings:
            print(f"[{_MARK[f.status]}] {f.check:9} {f.message}")
            if f.fix and f.status is not Status.OK:
                print(f"{'':17}fix: {f.fix}")
        problems = sum(f.status in (Status.WARN, Status.FAIL) for f in findings)
        print(f"\n{problems} problem(s)" if problems else "\nall checks passed", file=sys.stderr)
    if config_finding.status is Status.FAIL:
        return 2
    return 1 if status is Status.FAIL else 0
