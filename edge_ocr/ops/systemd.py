"""A per-user systemd unit for the agent: render, install, uninstall, status.

The system-wide unit (own user, hardened) is `packaging/systemd/edge-ocr.service`, installed by
`packaging/install.sh`. This module is the no-root path: `edge-ocr service install --config F`
writes `$XDG_CONFIG_HOME/systemd/user/edge-ocr.service`, reloads the user manager and enables
the unit. The config is validated before anything is written, so a broken file never reaches
a running service.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge_ocr.config import load_config
from edge_ocr.errors import EdgeOcrError

logger = logging.getLogger(__name__)

UNIT_NAME = "edge-ocr.service"
CONFIG_EXIT_CODE = 2  # ConfigError: restarting cannot help, so systemd must not loop on it
LINGER_DIR = Path("/var/lib/systemd/linger")  # logind: one file per user whose manager starts at boot

# Kept in step with packaging/systemd/edge-ocr-user.service (a test compares them).
USER_UNIT_TEMPLATE = """\
# edge-ocr agent, per-user unit. Written by `edge-ocr service install`; edit the config, not this.
[Unit]
Description=edge-ocr OCR agent (user service)
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=300
StartLimitBurst=10

[Service]
Type=simple
Environment=PYTHONUNBUFFERED=1
Environment=EDGE_OCR_CONFIG={config}
{extra_env}# refuse to (re)start with a config that does not validate
ExecStartPre={exe} doctor --only config --config {config}
ExecStart={exe} --log-format json -v run --config {config}
Restart=on-failure
RestartSec=5
RestartPreventExitStatus={config_exit}
# SIGTERM to the agent only; it drains its workers within [agent] shutdown_grace
KillMode=mixed
TimeoutStopSec=45

[Install]
WantedBy=default.target
"""


class ServiceError(EdgeOcrError):
    """The user service cannot be installed, removed or queried."""

    exit_code = 8


@dataclass
class ServiceReport:
    unit_path: Path
    steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, check=False)


def user_unit_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".config")
    return Path(base) / "systemd" / "user"


def _quote(arg: str) -> str:
    """One argument in systemd's command-line syntax: specifiers (%) escaped, quoted if needed."""
    arg = arg.replace("%", "%%")
    if any(c in arg for c in " \t\"\\'$;"):
        arg = '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if "$" in arg:
        arg = arg.replace("$", "$$")
    return arg


def default_executable() -> list[str]:
    """The `edge-ocr` script beside this interpreter, else `python -m edge_ocr.cli`."""
    script = Path(sys.executable).parent / "edge-ocr"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "edge_ocr.cli"]


def render_user_unit(
    config: Path, exe: Sequence[str] | None = None, env: dict[str, str] | None = None
) -> str:
    exe = list(exe) if exe is not None else default_executable()
    extra = "".join(f"Environment={_quote(f'{k}={v}')}\n" for k, v in sorted((env or {}).items()))
    return USER_UNIT_TEMPLATE.format(
        exe=" ".join(_quote(a) for a in exe),
        config=_quote(str(config)),
        extra_env=extra,
        config_exit=CONFIG_EXIT_CODE,
    )


def _systemctl(runner: Runner, report: ServiceReport, *args: str) -> bool:
    cmd = ["systemctl", "--user", *args]
    if shutil.which("systemctl") is None and runner is _run:
        report.warnings.append(f"systemctl not found; run later: {' '.join(cmd)}")
        return False
    try:
        proc = runner(cmd)
    except (OSError, subprocess.TimeoutExpired) as exc:
        report.warnings.append(f"{' '.join(cmd)} failed: {exc}")
        return False
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout or "").strip().splitlines()
        report.warnings.append(
            f"{' '.join(cmd)} exited {proc.returncode}: {why[-1] if why else 'no output'}"
            " (no user systemd session? log in normally, or use the system unit)"
        )
        return False
    report.steps.append(" ".join(cmd))
    return True


def install(
    config: Path,
    *,
    exe: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
    unit_dir: Path | None = None,
    start: bool = True,
    runner: Runner = _run,
) -> ServiceReport:
    """Validate `config`, write the unit atomically, reload, enable (and start). Raises ConfigError."""
    config = Path(config).expanduser().resolve()
    load_config(config)  # raises ConfigError naming the problem: nothing is written then
    unit_dir = unit_dir or user_unit_dir()
    path = unit_dir / UNIT_NAME
    report = ServiceReport(path)
    try:
        unit_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{UNIT_NAME}.tmp")
        tmp.write_text(render_user_unit(config, exe, env), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ServiceError(f"cannot write {path}: {exc.strerror or exc}; check that folder's owner") from exc
    report.steps.append(f"wrote {path}")
    if _systemctl(runner, report, "daemon-reload"):
        _systemctl(runner, report, "enable", *(["--now"] if start else []), UNIT_NAME)
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    if not (user and (LINGER_DIR / user).exists()):
        report.warnings.append(
            f"to start it at boot without logging in, run once: loginctl enable-linger {user}".rstrip()
        )
    return report


def uninstall(*, unit_dir: Path | None = None, runner: Runner = _run) -> ServiceReport:
    """Stop and disable the unit, remove the file, reload. The database and data stay."""
    path = (unit_dir or user_unit_dir()) / UNIT_NAME
    report = ServiceReport(path)
    if path.exists():
        _systemctl(runner, report, "disable", "--now", UNIT_NAME)
        path.unlink()
        report.steps.append(f"removed {path}")
        _systemctl(runner, report, "daemon-reload")
    else:
        report.warnings.append(f"{path} is not installed")
    return report


def unit_state(*, unit_dir: Path | None = None, runner: Runner = _run) -> dict[str, str | bool | None]:
    """Installed or not, and what systemd says (None when it cannot be asked)."""
    path = (unit_dir or user_unit_dir()) / UNIT_NAME
    out: dict[str, str | bool | None] = {
        "unit": str(path),
        "installed": path.is_file(),
        "active": None,
        "enabled": None,
    }
    if not path.is_file() or (runner is _run and shutil.which("systemctl") is None):
        return out
    for key in ("active", "enabled"):
        try:
            proc = runner(["systemctl", "--user", f"is-{key}", UNIT_NAME])
        except (OSError, subprocess.TimeoutExpired):
            continue
        out[key] = (proc.stdout or "").strip() or None
    return out
