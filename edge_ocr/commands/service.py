"""`edge-ocr service install|uninstall|status`: the agent as a per-user systemd service."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_ocr.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "service",
        help="install, remove or query the agent as a per-user systemd service",
        description="Manage ~/.config/systemd/user/edge-ocr.service (honours XDG_CONFIG_HOME). "
        "For a system-wide, hardened service under its own user use packaging/install.sh.",
    )
    ssub = p.add_subparsers(dest="service_command", metavar="{install,uninstall,status}")
    ssub.required = True

    i = ssub.add_parser("install", help="validate the config, write the unit, enable and start it")
    i.add_argument("--config", type=Path, required=True, help="the agent's TOML config (validated first)")
    i.add_argument("--no-start", action="store_true", help="enable but do not start it now")
    i.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the agent, e.g. EDGE_OCR_MODELS_DIR=/opt/models (repeatable)",
    )
    i.set_defaults(func=run_install)

    u = ssub.add_parser("uninstall", help="stop, disable and remove the unit (data stays)")
    u.set_defaults(func=run_uninstall)

    s = ssub.add_parser("status", help="is the unit installed, enabled and active")
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.set_defaults(func=run_service_status)


def _print_report(report) -> None:  # type: ignore[no-untyped-def]
    for step in report.steps:
        print(f"done: {step}")
    for w in report.warnings:
        print(f"note: {w}", file=sys.stderr)


def run_install(args: argparse.Namespace) -> int:
    from edge_ocr.ops.systemd import install

    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    _print_report(install(args.config, env=env, start=not args.no_start))
    return 0


def run_uninstall(args: argparse.Namespace) -> int:
    from edge_ocr.ops.systemd import uninstall

    _print_report(uninstall())
    return 0


def run_service_status(args: argparse.Namespace) -> int:
    from edge_ocr.ops.systemd import unit_state

    state = unit_state()
    if args.json:
        print(json.dumps(state))
    else:
        print(f"unit:      {state['unit']} ({'installed' if state['installed'] else 'not installed'})")
        print(f"enabled:   {state['enabled'] or '-'}")
        print(f"active:    {state['active'] or '-'}")
        if state["installed"]:
            print("agent:     edge-ocr status   (heartbeat, queue and counts from the database)")
    return 0 if state["installed"] and state["active"] in (None, "active") else 3
