"""Checks of the machine and the install: CPU, inference runtimes, model files."""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

from edge_ocr.config import Config
from edge_ocr.errors import EdgeOcrError
from edge_ocr.ops.doctor.findings import DoctorOptions, Finding, Status, ok

logger = logging.getLogger(__name__)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def check_cpu(cfg: Config, opts: DoctorOptions) -> list[Finding]:
    machine = platform.machine().lower()
    flags = cpu_flags()
    cores = os.cpu_count() or 1
    if machine in ("x86_64", "amd64"):
        have = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f") if f in flags]
        msg = f"x86-64, {cores} core(s), {', '.join(have) or 'no SIMD flags read'}"
        if flags and "avx" not in flags:
            return [
                Finding(
                    "cpu",
                    Status.WARN,
                    msg + "; no AVX: the paddle and onnx wheels may crash with 'illegal instruction'",
                    'use the lite engine ([engine] name = "lite"), which runs on SSE4 CPUs',
                )
            ]
        return [ok("cpu", msg)]
    if machine in ("aarch64", "arm64", "armv7l", "armv8l"):
        msg = f"ARM ({machine}), {cores} core(s), {'NEON' if {'asimd', 'neon'} & flags else 'no NEON flag read'}"
        return [
            Finding(
                "cpu",
                Status.INFO,
                msg,
                'on ARM use [engine] name = "lite" with the ARM .nb models or "onnx" (docs/USER_GUIDE.md#arm-boards)',
            )
        ]
    return [
        Finding(
            "cpu", Status.WARN, f"untested architecture {machine}", "edge-ocr is tested on x86-64 and ARM64"
        )
    ]


# -- engines --------------------------------------------------------------------------------------


_ENGINE_EXTRA = {"lite": "lite", "onnx": "onnx", "paddle": "paddle"}


def check_engines(cfg: Config, opts: DoctorOptions) -> list[Finding]:
    from edge_ocr.ocr.engines.registry import available_engines

    out = []
    wanted = cfg.engine.name
    for name, reason in available_engines().items():
        if reason is None:
            out.append(ok("engines", f"{name}: imports"))
            continue
        status = Status.FAIL if wanted == name else Status.INFO
        out.append(
            Finding(
                "engines",
                status,
                f"{name}: unavailable: {reason}",
                _engine_fix(name) if status is Status.FAIL else None,
            )
        )
    if wanted == "auto" and all(f.status is not Status.OK for f in out):
        out.append(
            Finding(
                "engines",
                Status.FAIL,
                "no inference engine can run here",
                "install one: pip install 'edge-ocr[onnx]' (x86/ARM64) or 'edge-ocr[lite]'",
            )
        )
    return out


def _engine_fix(name: str) -> str:
    if name == "lite":
        from edge_ocr.ocr.engines.lite import lite_wheel_exists

        if platform.machine() not in ("x86_64", "AMD64"):
            return (
                '[engine] name = "onnx" (or "auto"), or build Paddle Lite\'s Python package from its ARM '
                "release (docs/USER_GUIDE.md#arm-boards)"
            )
        if not lite_wheel_exists():  # no pip install can help on this Python
            return '[engine] name = "onnx" (or "auto"), or install edge-ocr under CPython 3.10 for Lite'
    return f"pip install 'edge-ocr[{_ENGINE_EXTRA[name]}]' into the edge-ocr environment"


# -- models ---------------------------------------------------------------------------------------


def check_models(cfg: Config, opts: DoctorOptions) -> list[Finding]:
    from edge_ocr.ocr.modelstore import ModelStore, sha256_tree

    store = ModelStore(cfg.engine.models_dir)
    rebuild = f"edge-ocr models build --models-dir {store.root}"
    if cfg.engine.name == "fake":
        return [Finding("models", Status.INFO, "engine is 'fake': models are not used")]
    try:
        sets = store.sets()
    except EdgeOcrError as exc:
        return [Finding("models", Status.FAIL, str(exc), rebuild)]
    except (KeyError, TypeError) as exc:
        return [Finding("models", Status.FAIL, f"{store.manifest_path} is malformed ({exc})", rebuild)]
    if not sets:
        return [Finding("models", Status.FAIL, f"{store.manifest_path} lists no model sets", rebuild)]
    out: list[Finding] = []
    usable = []
    for s in sets:
        broken = []
        for role, entry in sorted(s.files.items()):
            path = store.root / entry["path"]
            if not path.exists():
                broken.append(f"{role} file {path} is missing")
            elif sha256_tree(path) != entry.get("sha256"):
                broken.append(f"{role} file {path} does not match its sha256 (corrupt or changed)")
        if broken:
            out.append(
                Finding(
                    "models",
                    Status.FAIL if s.active else Status.WARN,
                    f"{s.set_id}: " + "; ".join(broken),
                    f"{rebuild} --force --only {s.set_id}"
                    + (
                        f", or `edge-ocr models rollback --models-dir {store.root}`"
                        if _has_prev(store.root)
                        else ""
                    ),
                )
            )
            continue
        acc = s.accuracy or {}
        if s.active:
            usable.append(s)
            agreement = acc.get("ref_line_agreement")
            vs = f"matches the reference on {agreement:.1%} of lines" if agreement is not None else "active"
            out.append(ok("models", f"{s.set_id}: files intact, {vs}"))
        else:
            why = s.reason or acc.get("error") or "not checked against the reference"
            out.append(
                Finding(
                    "models",
                    Status.INFO,
                    f"{s.set_id}: inactive: {why}",
                    None if s.target != "x86" else f"{rebuild} --only {s.set_id} to check it again",
                )
            )
    # sets the last build could not make (a family's Paddle/Lite sets converted from ONNX): why
    for set_id, why in sorted((store.manifest().get("skipped") or {}).items()):
        if "@" not in set_id and not any(s.set_id == set_id for s in sets):
            out.append(
                Finding("models", Status.INFO, f"{set_id}: {why}", f"{rebuild} --only {set_id} to try again")
            )
    wanted = cfg.engine.name
    if wanted == "auto":
        if not usable:
            out.append(Finding("models", Status.FAIL, "no active model set with intact files", rebuild))
    elif not any(s.engine == wanted and s.variant == cfg.engine.variant for s in usable):
        out.append(
            Finding(
                "models",
                Status.FAIL,
                f"the configured engine {wanted}/{cfg.engine.variant} has no active, intact model set",
                f"{rebuild} --only {wanted}/{cfg.engine.variant}, or choose another [engine] name/variant",
            )
        )
    return out


def _has_prev(root: Path) -> bool:
    from edge_ocr.ocr.modelstore import PREV_MANIFEST_NAME

    return (root / PREV_MANIFEST_NAME).is_file()


# -- database -------------------------------------------------------------------------------------
