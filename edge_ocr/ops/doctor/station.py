"""Checks of the station's own files: the database, its folders, free disk."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from edge_ocr.config import AfterSuccess, Config
from edge_ocr.ops.doctor.findings import DoctorOptions, Finding, Status, ok

logger = logging.getLogger(__name__)

MIN_FREE_BYTES = 200 * 1024 * 1024  # below: the store and the archive will fail soon
LOW_FREE_BYTES = 1024 * 1024 * 1024


def check_database(cfg: Config, opts: DoctorOptions) -> list[Finding]:
    from edge_ocr.store.db import IntegrityProblem, check_integrity, damaged_fix
    from edge_ocr.store.migrations import LATEST_VERSION

    path = cfg.db_path()
    if not path.exists():
        return [Finding("database", Status.INFO, f"{path} does not exist yet; the agent creates it on start")]
    if not path.is_file():
        return [
            Finding("database", Status.FAIL, f"{path} is not a file", "remove it or set [agent] db elsewhere")
        ]
    restore = damaged_fix(path)
    check = check_integrity(path, thorough=opts.thorough)
    if check.problem is IntegrityProblem.LOCKED:
        return [
            Finding(
                "database", Status.WARN, f"{path} is locked ({check.reason})", "run doctor again in a moment"
            )
        ]
    if check.problem is not None:
        # on a full disk SQLite cannot even read a database in WAL mode: say so, never "damaged"
        return [
            _full_disk(path, check.reason)
            or Finding("database", Status.FAIL, f"{path} {check.problem.value}: {check.reason}", restore)
        ]
    rows, pragma, version = list(check.answers), check.pragma, check.version
    if rows != ["ok"]:
        detail = "; ".join(rows[:3]) + (f" (+{len(rows) - 3} more)" if len(rows) > 3 else "")
        return [Finding("database", Status.FAIL, f"{path} failed its {pragma}: {detail}", restore)]
    out = [ok("database", f"{path}: {pragma} ok, {path.stat().st_size / 1e6:.1f} MB")]
    if version > LATEST_VERSION:
        out.append(
            Finding(
                "database",
                Status.FAIL,
                f"schema version {version} is newer than this edge-ocr knows ({LATEST_VERSION})",
                "upgrade edge-ocr (pip install -U edge-ocr) or restore a backup made before the upgrade",
            )
        )
    elif version < LATEST_VERSION:
        out.append(
            Finding(
                "database",
                Status.INFO,
                f"schema version {version}; the agent migrates it to {LATEST_VERSION} on start (backup first)",
            )
        )
    else:
        out.append(ok("database", f"schema version {version} (current)"))
    return out


def _full_disk(path: Path, reason: str) -> Finding | None:
    """On a full disk SQLite cannot even read a database in WAL mode (it needs its -shm file): say
    "disk full", never "damaged" with the advice to start an empty one."""
    from edge_ocr.store.db import disk_full

    full = disk_full(path)
    if full is None:
        return None
    return Finding(
        "database",
        Status.FAIL,
        f"{path} cannot be checked: disk full: {full} ({reason}); the database is most likely intact",
        "free space on that disk (delete old archives, set [retention] max_age_days / max_images_mb); "
        "do not move or replace the database: a running agent waits for space and goes on by itself",
    )


# -- disk and folders -----------------------------------------------------------------------------


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def probe_writable(folder: Path) -> str | None:
    """None when files can be created in `folder` (or where it would be created), else why not."""
    folder = folder.expanduser()
    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file, not a folder"
    base = _existing_ancestor(folder)
    if not base.is_dir():
        return f"{base} is a file, so {folder} cannot be created"
    try:
        fd, probe = tempfile.mkstemp(prefix=".edge-ocr-doctor-", dir=base)
    except OSError as exc:
        return f"cannot create files in {base}: {exc.strerror or exc}"
    os.close(fd)
    os.unlink(probe)
    return None


def _owner_fix(folder: Path) -> str:
    user = os.environ.get("EDGE_OCR_SERVICE_USER", "edge-ocr")
    return (
        f"make it a writable folder for the agent's user: mkdir -p {folder} && chown {user}: {folder} "
        "(for the system service also list it in ReadWritePaths= of edge-ocr.service)"
    )


def check_folders(cfg: Config, opts: DoctorOptions) -> list[Finding]:
    out: list[Finding] = []
    writable: list[tuple[str, Path]] = [
        ("data folder", cfg.data_dir()),
        ("database folder", cfg.db_path().parent),
    ]
    for f in cfg.folders:
        p = f.path.expanduser()
        if not p.is_dir():
            out.append(
                Finding(
                    "folders",
                    Status.FAIL,
                    f"watched folder {p} " + ("is a file, not a folder" if p.exists() else "does not exist"),
                    f"mkdir -p {p}, or fix [[sources.folder]] path",
                )
            )
            continue
        if not os.access(p, os.R_OK | os.X_OK):
            out.append(
                Finding("folders", Status.FAIL, f"watched folder {p} is not readable", f"chmod u+rx {p}")
            )
            continue
        out.append(ok("folders", f"watched folder {p} readable"))
        if f.after is not AfterSuccess.KEEP:
            writable.append((f"watched folder ({f.after.value} after success)", p))
        if f.after is AfterSuccess.ARCHIVE:
            writable.append(("archive folder", cfg.archive_dir(f)))
        writable.append(("quarantine folder", cfg.quarantine_dir(f)))
    seen = set()
    for what, folder in writable:
        folder = folder.expanduser()
        if folder in seen:
            continue
        seen.add(folder)
        why = probe_writable(folder)
        if why is None:
            out.append(ok("folders", f"{what} {folder} writable"))
        else:
            out.append(
                Finding("folders", Status.FAIL, f"{what} {folder} is not writable: {why}", _owner_fix(folder))
            )
    return out


def check_disk(cfg: Config, opts: DoctorOptions) -> list[Finding]:
    from edge_ocr.store.db import FULL_BELOW_BYTES

    out = []
    seen = set()
    for what, path in (("database", cfg.db_path().parent), ("data", cfg.data_dir())):
        base = _existing_ancestor(path.expanduser())
        try:
            usage = shutil.disk_usage(base)
            dev = os.stat(base).st_dev
        except OSError as exc:
            out.append(Finding("disk", Status.WARN, f"cannot read free space of {base}: {exc}"))
            continue
        if dev in seen:
            continue
        seen.add(dev)
        free = usage.free
        msg = f"{what} ({base}): {free / 1e9:.1f} GB free of {usage.total / 1e9:.1f} GB"
        fix = "free space, or set [retention] max_age_days / max_images_mb so the agent prunes old data"
        if free < FULL_BELOW_BYTES:
            msg = f"{what} ({base}): disk full: {free / 1e3:.0f} kB free of {usage.total / 1e6:.0f} MB"
            fix += "; a running agent waits for space and goes on by itself, losing nothing"
            out.append(Finding("disk", Status.FAIL, msg, fix))
        elif free < MIN_FREE_BYTES:
            out.append(Finding("disk", Status.FAIL, msg, fix))
        elif free < LOW_FREE_BYTES:
            out.append(Finding("disk", Status.WARN, msg, fix))
        else:
            out.append(ok("disk", msg))
    return out


# -- cameras --------------------------------------------------------------------------------------
