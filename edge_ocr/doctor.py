"""`edge-ocr doctor`: checks an installation and says, for each problem, the fix to apply.

Each check is a function returning `Finding`s; none of them changes anything on disk (a probe file
written to test that a folder is writable is removed at once). The checks:

config     the TOML file parses and validates
cpu        architecture and the instruction sets the engines need
engines    which inference runtimes import here
models     the manifest, every file's sha256, each set's recorded check against the reference
database   SQLite integrity check and schema version
disk       free space where the database and data live
folders    watched folders readable; archive, quarantine, data and database folders writable
cameras    video devices present and accessible, stream hosts reachable
endpoint   the sync endpoint answers GET /v1/health, and the clock agrees with its Date header
"""

from __future__ import annotations

import enum
import logging
import os
import platform
import shutil
import socket
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge_ocr.config import AfterSuccess, Config
from edge_ocr.errors import EdgeOcrError

logger = logging.getLogger(__name__)

MIN_FREE_BYTES = 200 * 1024 * 1024  # below: the store and the archive will fail soon
LOW_FREE_BYTES = 1024 * 1024 * 1024
MAX_CLOCK_SKEW_S = 30.0  # signed sync requests and "not expired" checks need a right clock
HEALTH_PATH = "/v1/health"


class Status(str, enum.Enum):
    OK = "ok"
    INFO = "info"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    message: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d


@dataclass(frozen=True)
class DoctorOptions:
    endpoint: str | None = None  # default: [sync] endpoint_url from the config
    timeout: float = 3.0  # seconds, per network probe
    thorough: bool = False  # PRAGMA integrity_check instead of quick_check


def _ok(check: str, msg: str) -> Finding:
    return Finding(check, Status.OK, msg)


# -- cpu ------------------------------------------------------------------------------------------


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
        return [_ok("cpu", msg)]
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
    from edge_ocr.engines.registry import available_engines

    out = []
    wanted = cfg.engine.name
    for name, reason in available_engines().items():
        if reason is None:
            out.append(_ok("engines", f"{name}: imports"))
            continue
        status = Status.FAIL if wanted == name else Status.INFO
        out.append(
            Finding(
                "engines",
                status,
                f"{name}: unavailable: {reason}",
                f"pip install 'edge-ocr[{_ENGINE_EXTRA[name]}]' into the edge-ocr environment"
                if status is Status.FAIL
                else None,
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


# -- models ---------------------------------------------------------------------------------------


def check_models(cfg: Config, opts: DoctorOptions) -> list[Finding]:
    from edge_ocr.modelstore import ModelStore, sha256_tree

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
            out.append(_ok("models", f"{s.set_id}: files intact, {vs}"))
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
    return (root / "manifest.prev.json").is_file()


# -- database -------------------------------------------------------------------------------------


def _db_backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.v*.bak"), key=lambda p: p.stat().st_mtime, reverse=True)


def check_database(cfg: Config, opts: DoctorOptions) -> list[Finding]:
    from edge_ocr.store.db import schema_version
    from edge_ocr.store.migrations import LATEST_VERSION

    path = cfg.db_path()
    if not path.exists():
        return [Finding("database", Status.INFO, f"{path} does not exist yet; the agent creates it on start")]
    if not path.is_file():
        return [
            Finding("database", Status.FAIL, f"{path} is not a file", "remove it or set [agent] db elsewhere")
        ]
    backups = _db_backups(path)
    restore = f"stop the agent, move the file aside (mv {path} {path}.corrupt) and " + (
        f"restore the newest backup: cp {backups[0]} {path}"
        if backups
        else "start the agent to create an empty one"
    )
    pragma = "integrity_check" if opts.thorough else "quick_check"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        return [Finding("database", Status.FAIL, f"{path} cannot be opened: {exc}", restore)]
    try:
        rows = [r[0] for r in conn.execute(f"PRAGMA {pragma}").fetchall()]
        version = schema_version(conn)
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return [
                Finding("database", Status.WARN, f"{path} is locked ({exc})", "run doctor again in a moment")
            ]
        return [Finding("database", Status.FAIL, f"{path} is not a readable SQLite database: {exc}", restore)]
    except sqlite3.DatabaseError as exc:
        return [Finding("database", Status.FAIL, f"{path} is corrupt: {exc}", restore)]
    finally:
        conn.close()
    if rows != ["ok"]:
        detail = "; ".join(rows[:3]) + (f" (+{len(rows) - 3} more)" if len(rows) > 3 else "")
        return [Finding("database", Status.FAIL, f"{path} failed its {pragma}: {detail}", restore)]
    out = [_ok("database", f"{path}: {pragma} ok, {path.stat().st_size / 1e6:.1f} MB")]
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
        out.append(_ok("database", f"schema version {version} (current)"))
    return out


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
        out.append(_ok("folders", f"watched folder {p} readable"))
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
            out.append(_ok("folders", f"{what} {folder} writable"))
        else:
            out.append(
                Finding("folders", Status.FAIL, f"{what} {folder} is not writable: {why}", _owner_fix(folder))
            )
    return out


def check_disk(cfg: Config, opts: DoctorOptions) -> list[Finding]:
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
        if free < MIN_FREE_BYTES:
            out.append(Finding("disk", Status.FAIL, msg, fix))
        elif free < LOW_FREE_BYTES:
            out.append(Finding("disk", Status.WARN, msg, fix))
        else:
            out.append(_ok("disk", msg))
    return out


# -- cameras --------------------------------------------------------------------------------------


def _tcp_reachable(host: str, port: int, timeout: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def check_cameras(cfg: Config, opts: DoctorOptions) -> list[Finding]:
    out = []
    for cam in cfg.cameras:
        name = f"camera {cam.name}"
        if cam.device is not None:
            dev = Path(f"/dev/video{cam.device}")
            if not dev.exists():
                present = sorted(str(p) for p in Path("/dev").glob("video*"))
                out.append(
                    Finding(
                        "cameras",
                        Status.FAIL,
                        f"{name}: {dev} does not exist (present: {', '.join(present) or 'none'})",
                        "plug the camera in (check `dmesg | tail`), or set device to one that exists",
                    )
                )
            elif not os.access(dev, os.R_OK | os.W_OK):
                out.append(
                    Finding(
                        "cameras",
                        Status.FAIL,
                        f"{name}: {dev} is not accessible to this user",
                        "add the agent's user to the video group: usermod -aG video edge-ocr",
                    )
                )
            else:
                out.append(_ok("cameras", f"{name}: {dev} accessible"))
        elif cam.file is not None:
            if cam.file.is_file():
                out.append(_ok("cameras", f"{name}: video file {cam.file} present"))
            else:
                out.append(
                    Finding(
                        "cameras", Status.FAIL, f"{name}: video file {cam.file} not found", "fix its path"
                    )
                )
        elif cam.url is not None:
            parts = urlsplit(cam.url)
            port = parts.port or {"rtsp": 554, "http": 80, "https": 443}.get(parts.scheme, 554)
            if not parts.hostname:
                out.append(Finding("cameras", Status.FAIL, f"{name}: {cam.url} has no host", "fix its url"))
                continue
            why = _tcp_reachable(parts.hostname, port, opts.timeout)
            if why is None:
                out.append(_ok("cameras", f"{name}: {parts.hostname}:{port} reachable"))
            else:
                out.append(
                    Finding(
                        "cameras",
                        Status.FAIL,
                        f"{name}: {parts.hostname}:{port} unreachable ({why})",
                        "check the camera's power, network cable and address",
                    )
                )
    return out


# -- endpoint and clock ---------------------------------------------------------------------------


def endpoint_url(cfg: Config, opts: DoctorOptions) -> str | None:
    if opts.endpoint:
        return opts.endpoint
    url = cfg.sync.get("endpoint_url") if isinstance(cfg.sync, dict) else None
    return url if isinstance(url, str) and url else None


def check_endpoint(cfg: Config, opts: DoctorOptions) -> list[Finding]:
    import httpx

    out: list[Finding] = []
    url = endpoint_url(cfg, opts)
    if cfg.outputs.webhook:
        parts = urlsplit(cfg.outputs.webhook)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        why = _tcp_reachable(parts.hostname or "", port, opts.timeout)
        if why is None:
            out.append(_ok("endpoint", f"webhook {parts.hostname}:{port} reachable"))
        else:
            out.append(
                Finding(
                    "endpoint",
                    Status.WARN,
                    f"webhook {cfg.outputs.webhook} unreachable ({why}); verdicts queue up and are retried",
                    "start the receiving service or fix [outputs] webhook",
                )
            )
    if url is None:
        out.append(Finding("endpoint", Status.INFO, "no sync endpoint configured ([sync] endpoint_url)"))
        return out
    health = url.rstrip("/") + HEALTH_PATH
    sent = time.time()
    try:
        resp = httpx.get(health, timeout=opts.timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        out.append(
            Finding(
                "endpoint",
                Status.FAIL,
                f"{health} unreachable: {type(exc).__name__}: {exc}",
                "check the network and DNS (curl -sS " + health + "), that the endpoint is deployed "
                "(docs/DEPLOY.md), and [sync] endpoint_url; results wait in the outbox meanwhile",
            )
        )
        return out
    received = time.time()
    if resp.status_code != 200:
        out.append(
            Finding(
                "endpoint",
                Status.FAIL,
                f"{health} answered HTTP {resp.status_code}",
                "check the endpoint's logs; a 404 usually means endpoint_url lacks the API stage prefix",
            )
        )
    else:
        out.append(_ok("endpoint", f"{health} answered 200 in {(received - sent) * 1000:.0f} ms"))
    out.extend(_clock_skew(resp.headers.get("date"), (sent + received) / 2))
    return out


def _clock_skew(date_header: str | None, local: float) -> list[Finding]:
    if not date_header:
        return [Finding("clock", Status.INFO, "the endpoint sent no Date header; clock skew not measured")]
    try:
        server = parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return [Finding("clock", Status.INFO, f"unreadable Date header {date_header!r}")]
    skew = local - server
    msg = f"local clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the endpoint"
    if abs(skew) > MAX_CLOCK_SKEW_S:
        return [
            Finding(
                "clock",
                Status.FAIL,
                msg + " (signed requests are refused, dates on labels are judged wrongly)",
                "enable time sync: timedatectl set-ntp true (or install chrony/systemd-timesyncd)",
            )
        ]
    return [_ok("clock", msg + " (Date has 1 s resolution)")]


# -- running them ---------------------------------------------------------------------------------

CheckFn = Callable[[Config, DoctorOptions], list[Finding]]

CHECKS: dict[str, CheckFn] = {
    "cpu": check_cpu,
    "engines": check_engines,
    "models": check_models,
    "database": check_database,
    "disk": check_disk,
    "folders": check_folders,
    "cameras": check_cameras,
    "endpoint": check_endpoint,
}
CHECK_NAMES = ("config", *CHECKS)


def run_checks(
    cfg: Config, opts: DoctorOptions | None = None, only: Iterable[str] | None = None
) -> list[Finding]:
    """Run the named checks (default: all); a check that crashes becomes a finding, not an exception."""
    opts = opts or DoctorOptions()
    names = [n for n in CHECKS if only is None or n in set(only)]
    out: list[Finding] = []
    for name in names:
        try:
            out.extend(CHECKS[name](cfg, opts))
        except Exception as exc:  # doctor must report, never die
            logger.debug("check %s crashed", name, exc_info=True)
            out.append(
                Finding(
                    name,
                    Status.FAIL,
                    f"the check itself failed: {type(exc).__name__}: {exc}",
                    "report this bug",
                )
            )
    return out


def worst(findings: Iterable[Finding]) -> Status:
    order = [Status.OK, Status.INFO, Status.WARN, Status.FAIL]
    return max((f.status for f in findings), key=order.index, default=Status.OK)
