"""Build every model set into a models directory: fetch, verify, convert, check, record.

``build(models_dir)`` is idempotent: a set whose recipe (sources, tool versions, conversion
settings) is unchanged and whose files still have their recorded sha256 is kept as it is, and
its accuracy is not re-measured; a second run with everything in place takes seconds.

Each set is built in ``<models_dir>/.staging/`` and moved into place only when complete; the
manifest is rewritten once at the end (atomically, the old one kept as manifest.prev.json).
A fetch or hash failure stops the build before anything is moved or written. The accuracy checks
and their judging are in models/checks.py; this module is the build loop.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from edge_ocr.errors import EdgeOcrError, ModelError
from edge_ocr.ocr.modelstore import default_models_dir
from edge_ocr_models import verify as verify_mod
from edge_ocr_models.calibration import CalibrationData, CalibrationSpec
from edge_ocr_models.catalogue import Catalogue, Family, MemberRef, load_catalogue
from edge_ocr_models.checks import check_sets, reference_id
from edge_ocr_models.convert import (
    ALL_SETS,
    PADDLE_DERIVED_REWRITES,
    ROLES,
    SET_SPECS,
    SetSpec,
    build_lite_set,
    build_onnx_fp32_set,
    build_onnx_int8_set,
    build_paddle_set,
    lite_rewrites,
    spec_for,
)
from edge_ocr_models.fetch import FetchedFamily, fetch_family
from edge_ocr_models.manifest import (
    file_record,
    files_intact,
    json_hash,
    read_manifest,
    utc_now,
    write_manifest,
)
from edge_ocr_models.onnx_int8 import QuantSettings
from edge_ocr_models.rewrite import rewrite_settings
from edge_ocr_models.x2paddle import (
    CONVERT_VERSION,
    TOOL_REQUIREMENTS,
    DerivedSetError,
    convert_family,
    derived_recipe,
)

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

#: bump when a change in the conversion code should rebuild existing sets
RECIPE_VERSION = 2
STAGING_DIR = ".staging"
LOCK_NAME = ".build.lock"
TOOL_PACKAGES = ("paddlelite", "paddlepaddle", "onnx", "onnxruntime", "paddleocr", "rapidocr", "numpy")
ONNX_INT8_SETTINGS = {
    "det": QuantSettings(calibrate_method="MinMax"),
    "rec": QuantSettings(calibrate_method="MinMax"),
}


def _quiet(_msg: str) -> None:
    pass


def tool_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in TOOL_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _tools_for(spec: SetSpec, tools: dict[str, str | None]) -> dict[str, Any]:
    keys = {
        "paddle": ("paddlepaddle",),
        "onnx": ("onnx", "onnxruntime") if spec.variant != "fp32" else ("onnxruntime",),
        "lite": ("paddlelite", "paddlepaddle"),
    }[spec.engine]
    out: dict[str, Any] = {k: tools.get(k) for k in keys}
    if spec.derived:  # onnx_fix runs here (onnx, onnxruntime); X2Paddle in its tool environment
        out.update({k: tools.get(k) for k in ("onnx", "onnxruntime")})
        out["x2paddle_env"] = list(TOOL_REQUIREMENTS)
    return out


def _members_of(family: Family, spec: SetSpec) -> dict[str, list[MemberRef]]:
    if spec.engine == "onnx" or spec.derived:
        roles = {role: [family.onnx[role]] for role in ROLES}
    else:
        roles = {role: [family.paddle[role].model, family.paddle[role].params] for role in ROLES}
    roles["dict"] = [family.dict_ref]
    if spec.engine == "onnx" or spec.derived:
        for role, ref in family.config.items():
            roles[f"config.{role}"] = [ref]
    return roles


def _settings_for(spec: SetSpec, calibration: CalibrationSpec) -> dict[str, Any]:
    derived = {"derived_from_onnx": {"convert_version": CONVERT_VERSION}} if spec.derived else {}
    if spec.engine == "lite":
        return {
            "rewrites": list(lite_rewrites(spec.variant, spec.target, spec.derived)),
            "target": spec.target,
            "variant": spec.variant,
            **derived,
            **({"rewrite_settings": rewrite_settings()} if spec.derived else {}),
        }
    if derived:
        return {**derived, "rewrites": list(PADDLE_DERIVED_REWRITES)}
    if spec.engine == "onnx" and spec.variant == "int8":
        return {
            "calibration": calibration.as_dict(),
            "quantization": {r: s.as_dict() for r, s in ONNX_INT8_SETTINGS.items()},
        }
    return {}


def recipe_of(
    cat: Catalogue, family: Family, spec: SetSpec, tools: dict[str, str | None], calibration: CalibrationSpec
) -> dict[str, Any]:
    """Everything the set's files depend on; its hash decides whether the set must be rebuilt."""
    members = _members_of(family, spec)
    return {
        "recipe_version": RECIPE_VERSION,
        "set": spec.set_id,
        "family": family.family_id,
        "members": {role: {str(r): cat.member_sha256(r) for r in refs} for role, refs in members.items()},
        "tools": _tools_for(spec, tools),
        "settings": _settings_for(spec, calibration),
    }


def _file_source(cat: Catalogue, refs: Iterable[MemberRef]) -> dict[str, Any]:
    out = []
    for r in refs:
        src = cat.source(r.source_id)
        out.append(
            {
                "source": src.source_id,
                "member": r.member,
                "member_sha256": cat.member_sha256(r),
                "archive_sha256": src.sha256,
            }
        )
    return out[0] if len(out) == 1 else {"members": out}


def _build_one(
    cat: Catalogue,
    fetched: FetchedFamily,
    spec: SetSpec,
    models_dir: Path,
    calibration: CalibrationData,
) -> dict[str, Any]:
    """Build one set into staging, move it into place; returns its manifest entry (no accuracy)."""
    staging_root = models_dir / STAGING_DIR
    stage = staging_root / spec.folder
    work = staging_root / "work" / spec.folder
    final = models_dir / spec.folder
    shutil.rmtree(stage, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    stage.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        if spec.engine == "paddle":
            info = build_paddle_set(fetched, spec, stage)
        elif spec.engine == "onnx" and spec.variant == "fp32":
            info = build_onnx_fp32_set(fetched, spec, stage)
        elif spec.engine == "onnx":
            info = build_onnx_int8_set(fetched, spec, stage, calibration, ONNX_INT8_SETTINGS)
        else:
            info = build_lite_set(fetched, spec, stage, work)
        # move into place: old folder aside, new one in, old one removed
        final.parent.mkdir(parents=True, exist_ok=True)
        old = staging_root / "old" / spec.folder
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            old.parent.mkdir(parents=True, exist_ok=True)
            os.replace(final, old)
        os.replace(stage, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - t0
    members = _members_of(fetched.family, spec)
    files = {
        role: file_record(models_dir, final / spec.file_name(role), _file_source(cat, members[role]))
        for role in (*ROLES, "dict")
    }
    return {
        "model_config": model_config(fetched),
        "engine": spec.engine,
        "variant": spec.variant,
        "target": spec.target,
        "family": fetched.family.family_id,
        "files": files,
        "source": {
            "family": fetched.family.family_id,
            "catalogue": {
                sid: cat.source(sid).describe()
                for sid in sorted({r.source_id for refs in members.values() for r in refs})
            },
        },
        **info,
        "built_at": utc_now(),
        "build_seconds": round(seconds, 2),
    }


def model_config(fetched: FetchedFamily) -> dict[str, Any]:
    """The pipeline settings the family's own inference.yml files give ({} when it has none)."""
    if not fetched.config:
        return {}
    import yaml

    from edge_ocr.ocr.pipeline.model_config import parse_inference_yml

    try:
        docs = {
            role: yaml.safe_load(path.read_text(encoding="utf-8")) for role, path in fetched.config.items()
        }
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"cannot read the {fetched.family.family_id} inference.yml: {exc}") from exc
    return parse_inference_yml(docs.get("det") or {}, docs.get("rec") or {})


def _onnx_sha256(cat: Catalogue, fetched: FetchedFamily) -> dict[str, str]:
    """The pinned sha256 of each role's ONNX file: what a converted program is keyed and recorded by."""
    return {role: cat.member_sha256(fetched.family.onnx[role]) for role in fetched.onnx}


def _derive_paddle(
    cat: Catalogue, fetched: FetchedFamily, root: Path, progress: Progress, *, force: bool = False
) -> tuple[FetchedFamily | None, str]:
    """The family's ONNX files converted into Paddle programs (cached), or None and why not."""
    fam = fetched.family
    try:
        programs = convert_family(
            root,
            fam.family_id,
            dict(fetched.onnx),
            _onnx_sha256(cat, fetched),
            progress,
            force=force,
        )
    except DerivedSetError as exc:
        return None, str(exc)
    except Exception as exc:  # a crash in the conversion leaves the converted sets out, nothing else
        logger.exception("converting %s into Paddle programs failed", fam.family_id)
        return None, f"converting the ONNX files into Paddle programs failed: {type(exc).__name__}: {exc}"
    return dataclasses.replace(fetched, paddle=programs), ""


def _derived_failed(
    manifest: dict[str, Any], summary: dict[str, Any], set_id: str, why: str, progress: Progress
) -> None:
    """Record a converted set that could not be built: inactive with its reason, not a build error."""
    reason = f"not built: {why}"
    manifest.setdefault("skipped", {})[set_id] = reason
    summary["sets"][set_id] = {"status": "failed", "error": why, "active": False, "reason": reason}
    progress(f"{set_id} not built (the build goes on): {why}")
    logger.warning("%s not built: %s", set_id, why)


def default_family(cat: Catalogue, sets: dict[str, dict[str, Any]]) -> str:
    """The catalogue's default family once one of its x86 sets passed its check, else the first
    family that has an active set (so an install whose new family failed keeps reading)."""
    order = [cat.default_family, *(f for f in cat.families if f != cat.default_family)]
    for fid in order:
        if any(
            e.get("active") and e.get("target", "x86") == "x86" and spec_for(sid).family == fid
            for sid, e in sets.items()
            if sid in SET_SPECS
        ):
            return fid
    return cat.default_family


def unbuildable_here(specs: Iterable[SetSpec]) -> dict[str, str]:
    """The requested sets this environment cannot build, each with its reason: the Lite sets (x86
    and ARM) need Paddle Lite's converter, whose wheel exists for CPython 3.10 on x86-64 only."""
    from edge_ocr.ocr.engines.lite import LiteEngine

    lite = [s.set_id for s in specs if s.engine == "lite"]
    reason = LiteEngine.unavailable_reason() if lite else None
    return dict.fromkeys(lite, f"not built here: {reason}") if reason else {}


def _record_skipped(manifest: dict[str, Any], built: list[SetSpec], skipped: dict[str, str]) -> None:
    """Keep the manifest's record of the sets the last builds skipped, and why."""
    record = {k: v for k, v in manifest.get("skipped", {}).items() if k not in {s.set_id for s in built}}
    record.update(skipped)
    if record:
        manifest["skipped"] = record
    else:
        manifest.pop("skipped", None)


@contextmanager
def _build_lock(root: Path, progress: Progress) -> Iterator[None]:
    """One build at a time per models directory (a second one waits)."""
    import fcntl

    with (root / LOCK_NAME).open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"another build is running in {root}; waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(
    models_dir: Path | None = None,
    *,
    force: bool = False,
    variants: Iterable[str] | None = None,
    progress: Progress | None = None,
    check: bool = True,
    catalogue_path: Path | None = None,
    family: str | None = None,
    check_spec: verify_mod.CheckSpec | None = None,
    calibration_spec: CalibrationSpec | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Build the requested sets (all by default) into `models_dir`; returns a summary.

    ``variants`` are set ids (``"onnx/int8"``, ``"lite/fp32@arm"`` ...). ``force`` rebuilds even
    unchanged sets (and re-downloads a cached wheel whose hash is wrong). ``check=False`` skips
    the accuracy check (sets without a recorded check are then inactive).
    """
    progress = progress or _quiet
    root = Path(models_dir) if models_dir is not None else default_models_dir()
    root.mkdir(parents=True, exist_ok=True)
    with _build_lock(root, progress):
        return _build_locked(
            root,
            force=force,
            variants=variants,
            progress=progress,
            check=check,
            catalogue_path=catalogue_path,
            family=family,
            check_spec=check_spec,
            calibration_spec=calibration_spec,
            threads=threads,
        )


def _build_locked(
    root: Path,
    *,
    force: bool,
    variants: Iterable[str] | None,
    progress: Progress,
    check: bool,
    catalogue_path: Path | None,
    family: str | None,
    check_spec: verify_mod.CheckSpec | None,
    calibration_spec: CalibrationSpec | None,
    threads: int | None,
) -> dict[str, Any]:
    t_start = time.perf_counter()
    cat = load_catalogue(catalogue_path)
    if variants:
        set_ids = list(dict.fromkeys(variants))
    else:
        set_ids = [
            s for s in ALL_SETS if family is None or spec_for(s).family == cat.family(family).family_id
        ]
    specs = [spec_for(s) for s in set_ids]
    check_spec = check_spec or verify_mod.CheckSpec()
    calibration_spec = calibration_spec or CalibrationSpec()
    tools = tool_versions()
    manifest = read_manifest(root)
    before = json.dumps(manifest, sort_keys=True)
    sets: dict[str, dict[str, Any]] = manifest["sets"]
    skipped = unbuildable_here(specs)
    specs = [s for s in specs if s.set_id not in skipped]
    _record_skipped(manifest, specs, skipped)

    recipes = {s.set_id: recipe_of(cat, cat.family(s.family), s, tools, calibration_spec) for s in specs}
    todo = [
        s
        for s in specs
        if force
        or s.set_id not in sets
        or sets[s.set_id].get("recipe") != json_hash(recipes[s.set_id])
        or not files_intact(root, sets[s.set_id])
    ]
    summary: dict[str, Any] = {"models_dir": str(root), "sets": {}, "timings": {}}
    for set_id, why in skipped.items():
        summary["sets"][set_id] = {"status": "skipped", "reason": why}
    for why in dict.fromkeys(skipped.values()):
        progress(f"skipping {', '.join(s for s, w in skipped.items() if w == why)}: {why}")
    for s in specs:
        if s not in todo:
            summary["sets"][s.set_id] = {"status": "kept"}

    failures: dict[str, str] = {}
    families = list(dict.fromkeys(s.family for s in specs))
    calibration = CalibrationData(calibration_spec)
    for fid in families:
        fam = cat.family(fid)
        fam_todo = [s for s in todo if s.family == fid]
        if not fam_todo:
            continue
        t0 = time.perf_counter()
        progress(f"fetching and verifying the {fid} sources")
        fetched = fetch_family(cat, fam, root, force=force, progress=progress)  # raises before anything moves
        summary["timings"][f"fetch {fid}"] = round(time.perf_counter() - t0, 2)
        derived, derived_error = None, ""
        if any(s.derived for s in fam_todo):
            t0 = time.perf_counter()
            derived, derived_error = _derive_paddle(cat, fetched, root, progress, force=force)
            summary["timings"][f"convert {fid}"] = round(time.perf_counter() - t0, 2)
        for s in fam_todo:
            if s.derived and derived is None:
                _derived_failed(manifest, summary, s.set_id, derived_error, progress)
                continue
            progress(f"building {s.set_id}")
            try:
                entry = _build_one(cat, derived if s.derived else fetched, s, root, calibration)
            except EdgeOcrError as exc:
                if s.derived:  # a converted set that fails stays out, the build goes on
                    _derived_failed(manifest, summary, s.set_id, str(exc), progress)
                    continue
                failures[s.set_id] = str(exc)
                summary["sets"][s.set_id] = {"status": "failed", "error": str(exc)}
                logger.error("building %s failed: %s", s.set_id, exc)
                continue
            entry["tools"] = dict(tools)
            if s.derived:  # how the Paddle programs were made from the ONNX files (x2paddle.py)
                entry["converted_from_onnx"] = derived_recipe(root, fid, _onnx_sha256(cat, fetched))
            entry["recipe"] = json_hash(recipes[s.set_id])
            entry["recipe_detail"] = recipes[s.set_id]
            sets[s.set_id] = entry
            summary["sets"][s.set_id] = {"status": "built", "seconds": entry["build_seconds"]}
            summary["timings"][s.set_id] = entry["build_seconds"]
        shutil.rmtree(root / STAGING_DIR, ignore_errors=True)
    if check:
        summary["timings"]["check"] = {}
        for fid in families:
            fam = cat.family(fid)
            built_ids = [s.set_id for s in specs if s.set_id in sets and s.family == fid]
            summary["timings"]["check"].update(
                check_sets(
                    root, sets, built_ids, check_spec, fam, reference_id(cat, fam, tools), progress, threads
                )
            )
    else:
        for s in specs:
            if s.set_id in sets and "active" not in sets[s.set_id]:
                sets[s.set_id]["active"] = False
                sets[s.set_id]["reason"] = "accuracy not checked (built with check disabled)"
    manifest["default_family"] = default_family(cat, sets)
    if json.dumps(manifest, sort_keys=True) != before:
        manifest["built_at"] = utc_now()
        manifest["tools"] = tools
        write_manifest(root, manifest)
        progress(f"wrote {root / 'manifest.json'}")
    for set_id, entry in sets.items():
        if set_id in summary["sets"] and set_id not in skipped:
            summary["sets"][set_id].update(active=entry.get("active"), reason=entry.get("reason", ""))
    summary["seconds"] = round(time.perf_counter() - t_start, 2)
    if failures:
        raise ModelError(
            "building failed for "
            + "; ".join(f"{k}: {v}" for k, v in failures.items())
            + f" (the other sets were written to {root})"
        )
    return summary
