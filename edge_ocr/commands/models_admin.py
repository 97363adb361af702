"""`edge-ocr models-admin verify|activate|deactivate|rollback`: model updates on a running appliance.

The build (`edge-ocr models build`) writes the manifest atomically and keeps the previous one as
`manifest.prev.json`. These commands change only the manifest, always the same way: check every
file's sha256 first, write a temporary file, rename it over `manifest.json`, keep the old one as
`manifest.prev.json`. So `rollback` twice is a no-op and a half-written manifest never exists.
The agent reads the manifest when its workers start: restart it to pick up a change.

`add_commands(subparsers)` lets `edge-ocr models` host these too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from edge_ocr.errors import ModelError
from edge_ocr.ocr.modelstore import MANIFEST_NAME, MANIFEST_SCHEMA, ModelStore, sha256_tree

PREV_NAME = "manifest.prev.json"


def broken_files(root: Path, entry: dict[str, Any]) -> list[str]:
    out = []
    for role, f in sorted(entry.get("files", {}).items()):
        p = root / f["path"]
        if not p.exists():
            out.append(f"{role}: {p} is missing")
        elif sha256_tree(p) != f.get("sha256"):
            out.append(f"{role}: {p} does not match its sha256")
    return out


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def replace_manifest(root: Path, data: dict[str, Any]) -> None:
    """Install `data` as the manifest, keeping the current one as manifest.prev.json."""
    if data.get("schema") != MANIFEST_SCHEMA:
        raise ModelError(f"refusing to write a manifest with schema {data.get('schema')!r}")
    current = root / MANIFEST_NAME
    if current.is_file():
        _write_atomic(root / PREV_NAME, json.loads(current.read_text(encoding="utf-8")))
    _write_atomic(current, data)


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
    replace_manifest(store.root, data)
    return entry


def rollback(root: Path) -> dict[str, Any]:
    """Swap manifest.json and manifest.prev.json after checking every file the previous one names."""
    root = Path(root)
    prev_path = root / PREV_NAME
    if not prev_path.is_file():
        raise ModelError(f"no previous manifest ({prev_path}) to roll back to")
    prev = json.loads(prev_path.read_text(encoding="utf-8"))
    broken = [
        f"{sid} {b}"
        for sid, e in prev.get("sets", {}).items()
        if e.get("active")
        for b in broken_files(root, e)
    ]
    if broken:
        raise ModelError("cannot roll back, files of the previous models changed since: " + "; ".join(broken))
    replace_manifest(root, prev)
    return prev


def verify(root: Path) -> list[tuple[str, bool, list[str]]]:
    store = ModelStore(root)
    return [(s.set_id, s.active, broken_files(store.root, s.raw)) for s in store.sets()]


# -- CLI ----------------------------------------------------------------------------------------------


def add_commands(sub: argparse._SubParsersAction) -> None:
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
    add_commands(ssub)


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
