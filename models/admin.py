"""`edge-ocr models-admin verify|activate|deactivate|rollback`: model updates on a running appliance.

These commands change only the manifest, through the same writer as `edge-ocr models build`
(`edge_ocr_models.manifest`): every file's sha256 is checked first, the new manifest is written to
a temporary file and renamed over `manifest.json`, and the old one is kept as `manifest.prev.json`.
So a half-written manifest never exists, and `rollback` swaps the two (twice: back where it
started). The agent reads the manifest when its workers start: restart it to pick up a change.

Registered by `edge_ocr_models.cli.register` (the `edge_ocr.commands` entry point); it needs none of
the build's extras, so a device without them has it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edge_ocr.errors import ModelError
from edge_ocr.ocr.modelstore import ModelStore
from edge_ocr_models.manifest import broken_files, rollback, write_manifest


def set_active(root: Path, set_id: str, active: bool, *, force: bool = False) -> dict[str, Any]:
    store = ModelStore(root)
    data = store.manifest()
    entry = data.get("sets", {}).get(set_id)
    if entry is None:
        raise ModelError(
            f"no model set {set_id!r} in {store.manifest_path} (have: {', '.join(data.get('sets', {}))})"
        )
    if active:
        broken = broken_files(store.root, entry)
        if broken:
            raise ModelError(
                f"{set_id} cannot be activated: {'; '.join(broken)}; rebuild it (edge-ocr models build --force)"
            )
        if not (entry.get("accuracy") or {}).get("checked") and not force:
            raise ModelError(
                f"{set_id} was never checked against the reference ({entry.get('reason') or 'no accuracy record'}); "
                "run `edge-ocr models build` on this machine, or pass --force to activate it unchecked"
            )
        entry["reason"] = "activated by hand" + (" without an accuracy check" if force else "")
    else:
        entry["reason"] = "deactivated by hand"
    entry["active"] = active
    write_manifest(store.root, data)
    return entry


def verify(root: Path) -> list[tuple[str, bool, list[str]]]:
    store = ModelStore(root)
    return [(s.set_id, s.active, broken_files(store.root, s.raw)) for s in store.sets()]


# -- CLI ----------------------------------------------------------------------------------------------


def _add_commands(sub: argparse._SubParsersAction) -> None:
    def models_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--models-dir", type=Path, default=None, help="default: $EDGE_OCR_MODELS_DIR or the user data dir"
        )

    p = sub.add_parser("verify", help="check every model file against its sha256 in the manifest")
    models_dir(p)
    p.set_defaults(func=_run_verify)
    p = sub.add_parser("activate", help="activate a built set (its files are verified first)")
    p.add_argument("set_id", metavar="SET", help="e.g. onnx/int8")
    p.add_argument("--force", action="store_true", help="activate even without an accuracy record")
    models_dir(p)
    p.set_defaults(func=_run_activate, active=True)
    p = sub.add_parser("deactivate", help="stop using a set (auto then picks another)")
    p.add_argument("set_id", metavar="SET")
    models_dir(p)
    p.set_defaults(func=_run_activate, active=False, force=False)
    p = sub.add_parser("rollback", help="go back to the previous manifest (after a build or an activation)")
    models_dir(p)
    p.set_defaults(func=_run_rollback)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models-admin",
        help="verify, activate, deactivate or roll back model sets (atomic manifest changes)",
        description=__doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else None,
    )
    ssub = p.add_subparsers(dest="models_admin_command", metavar="{verify,activate,deactivate,rollback}")
    ssub.required = True
    _add_commands(ssub)


def _root(args: argparse.Namespace) -> Path:
    return ModelStore(args.models_dir).root


def _run_verify(args: argparse.Namespace) -> int:
    bad = 0
    for set_id, active, broken in verify(_root(args)):
        state = "active" if active else "inactive"
        print(f"{set_id:16} {state:8} {'ok' if not broken else 'BROKEN: ' + '; '.join(broken)}")
        bad += bool(broken)
    return 1 if bad else 0


def _run_activate(args: argparse.Namespace) -> int:
    set_active(_root(args), args.set_id, args.active, force=args.force)
    print(
        f"{args.set_id} {'activated' if args.active else 'deactivated'}; restart the agent to use the change",
        file=sys.stderr,
    )
    return 0


def _run_rollback(args: argparse.Namespace) -> int:
    prev = rollback(_root(args))
    active = ", ".join(sid for sid, e in prev.get("sets", {}).items() if e.get("active")) or "none"
    print(f"rolled back; active sets now: {active}. Restart the agent to use them.", file=sys.stderr)
    return 0
