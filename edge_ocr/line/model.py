"""The values the production line's channels exchange with the agent: the vision system's state,
trigger requests and their answers, and one result per job. No I/O here.

The states and the trigger semantics follow the subset of OPC 40100-1 (OPC UA for Machine Vision)
a line needs: a station is Preoperational while its workers load, Ready when it waits for
triggers, in SingleExecution while a triggered job is queued or running, in ContinuousExecution
while it reads on its own (a watched folder, a free-running camera), Halted when told to stop
taking work, and in Error when it cannot work (its store is gone, its workers keep dying).
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any


class VisionState(str, enum.Enum):
    """The vision system's state (OPC 40100-1's VisionStateMachineType, the states a line uses)."""

    PREOPERATIONAL = "Preoperational"
    READY = "Ready"
    SINGLE_EXECUTION = "SingleExecution"
    CONTINUOUS_EXECUTION = "ContinuousExecution"
    HALTED = "Halted"
    ERROR = "Error"

    @property
    def code(self) -> int:
        """A small number for registers and PLC programs (docs/LINE.md)."""
        return _STATE_CODES[self]


_STATE_CODES = {
    VisionState.PREOPERATIONAL: 0,
    VisionState.READY: 1,
    VisionState.SINGLE_EXECUTION: 2,
    VisionState.CONTINUOUS_EXECUTION: 3,
    VisionState.HALTED: 4,
    VisionState.ERROR: 5,
}


class LineVerdict(str, enum.Enum):
    """What the line does with the part: keep it, reject it, or treat it as unread."""

    PASS = "pass"
    FAIL = "fail"
    NO_READ = "no-read"  # nothing legible (or no image at all): the PLC decides, usually reject
    ERROR = "error"  # the station could not read it (a broken file, an internal error)

    @property
    def code(self) -> int:
        return _VERDICT_CODES[self]


_VERDICT_CODES = {LineVerdict.PASS: 1, LineVerdict.FAIL: 2, LineVerdict.NO_READ: 3, LineVerdict.ERROR: 4}


class TriggerStatus(str, enum.Enum):
    """How a trigger was answered."""

    ACCEPTED = "accepted"
    BUSY = "busy"  # the queue of triggers is full: counted, answered on the channel it came from
    REFUSED = "refused"  # not now (halted, in error, no triggered source, continuous execution)
    BAD_REQUEST = "bad-request"  # an unknown recipe, a malformed request

    @property
    def error_code(self) -> int:
        """OPC 40100-1's `Error` output: 0 OK, negative for application-specific errors."""
        return {"accepted": 0, "busy": -1, "refused": -2, "bad-request": -3}[self.value]


@dataclass(frozen=True)
class TriggerRequest:
    """ "Read this part now", from one channel."""

    origin: str  # opcua, mqtt, modbus, http, cli
    recipe: str | None = None  # None: the active recipe
    meas_id: str = ""  # the client's own identifiers of the run and the part, carried to the result
    part_id: str = ""


@dataclass(frozen=True)
class TriggerReply:
    status: TriggerStatus
    job_id: int | None = None
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return self.status is TriggerStatus.ACCEPTED

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status.value, "job_id": self.job_id}
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class LineJob:
    """A job the line knows about: a trigger taken, or a read the station made on its own."""

    job_id: int
    origin: str
    recipe: str | None = None
    meas_id: str = ""
    part_id: str = ""
    requested_at: str = ""  # ISO-8601 UTC
    requested_mono: float = 0.0  # time.monotonic() when the trigger arrived (latency figures)


@dataclass(frozen=True)
class LineResult:
    """Exactly one per job, on every channel and in the store."""

    job_id: int
    station: str
    origin: str
    source: str
    verdict: LineVerdict
    text: str = ""
    confidence: float = 0.0
    reasons: tuple[str, ...] = ()
    fields: dict[str, str | None] = field(default_factory=dict)
    recipe: str | None = None
    image_sha256: str | None = None
    image: str | None = None
    model: str | None = None
    at: str = ""  # ISO-8601 UTC, when the result was committed
    result_id: int | None = None
    capture_id: int | None = None
    pages: int = 1
    meas_id: str = ""
    part_id: str = ""
    #: where the time went, trigger to commit: wait (queue), grab, det, rec, post, rules/store
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict.value
        out["reasons"] = list(self.reasons)
        out["confidence"] = round(float(self.confidence), 4)
        out["timings_ms"] = {k: round(float(v), 1) for k, v in self.timings_ms.items()}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LineResult:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in d.items() if k in known}
        kwargs["verdict"] = LineVerdict(d["verdict"])
        kwargs["reasons"] = tuple(d.get("reasons", ()))
        return cls(**kwargs)


@dataclass(frozen=True)
class ChannelStatus:
    """One channel's state, for `status`, `doctor` and the GUI's dashboard."""

    name: str  # opcua, mqtt, modbus
    state: str  # listening, connected, reconnecting, down
    endpoint: str
    detail: str = ""
    counters: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
