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
line       the MQTT broker takes the login, the OPC UA and Modbus ports are free (or the running
           agent's), the OPC UA certificate is valid
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from edge_ocr.config import Config
from edge_ocr.ops.doctor.findings import DoctorOptions, Finding, Status
from edge_ocr.ops.doctor.host import check_cpu, check_engines, check_models
from edge_ocr.ops.doctor.line import check_line
from edge_ocr.ops.doctor.network import check_cameras, check_endpoint
from edge_ocr.ops.doctor.station import check_database, check_disk, check_folders

logger = logging.getLogger(__name__)

__all__ = ["CHECKS", "CHECK_NAMES", "DoctorOptions", "Finding", "Status", "run_checks", "worst"]


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
    "line": check_line,
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
