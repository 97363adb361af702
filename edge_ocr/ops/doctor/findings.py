"""What a doctor check returns: a status, a message and the fix."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any


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


def ok(check: str, msg: str) -> Finding:
    return Finding(check, Status.OK, msg)


# -- cpu ------------------------------------------------------------------------------------------
