"""The station's line hub: the one place the line's channels (OPC UA, MQTT, Modbus) and the agent
meet. Thread-safe; no I/O.

Channels call `trigger`, `select_recipe`, `start_continuous`, `stop`, `halt` and `reset` from their
own threads and get an answer at once (a trigger waits, a few milliseconds, for the agent's writer
thread to record it and give it a job id, so a job id a PLC holds is always in the store). The agent
takes triggers with `take_triggers`, answers them, and reports what happens (`job_finished`,
`set_ready`, `set_error`); every result and every state change goes to the channels' listeners,
which only enqueue: a slow or broken channel never holds up the agent or another channel.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from edge_ocr.line.model import (
    LineJob,
    LineResult,
    TriggerReply,
    TriggerRequest,
    TriggerStatus,
    VisionState,
)

logger = logging.getLogger(__name__)

#: how long a channel waits for the agent to record a trigger before answering "refused"
ANSWER_TIMEOUT_S = 5.0


class LineListener(Protocol):
    """What a channel gets from the hub. Both calls must only enqueue and return at once."""

    def on_result(self, result: LineResult) -> None: ...

    def on_state(self, state: VisionState, hub: LineHub) -> None: ...


@dataclass
class PendingTrigger:
    """A trigger a channel is waiting on, until the agent records it (or refuses it)."""

    request: TriggerRequest
    received_mono: float
    done: threading.Event = field(default_factory=threading.Event)
    reply: TriggerReply | None = None
    cancelled: bool = False


@dataclass
class HubCounters:
    triggers: int = 0  # accepted
    busy: int = 0  # refused because the queue was full
    refused: int = 0  # refused for another reason (halted, no triggered source, ...)
    bad_requests: int = 0
    results: int = 0
    no_reads: int = 0


class LineHub:
    """State, triggers and results of one station, shared by its channels and its agent."""

    def __init__(
        self,
        station: str,
        recipes: Iterable[str],
        *,
        active_recipe: str | None,
        triggered_source: str | None,
        max_queued: int,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.station = station
        self.recipes = tuple(sorted(recipes))
        self.triggered_source = triggered_source  # the source triggers read from; None: none does
        self.max_queued = max_queued
        self._wake = wake
        self._lock = threading.Lock()
        self._inbox: list[PendingTrigger] = []
        self._running: dict[int, LineJob] = {}  # accepted triggers not yet finished
        self._active_recipe = active_recipe
        self._ready = False
        self._halted = False
        self._error: str | None = None
        # a station whose source reads on triggers waits for them; one without reads on its own
        self._continuous = triggered_source is None
        self._listeners: list[LineListener] = []
        self._state = VisionState.PREOPERATIONAL
        self.counters = HubCounters()
        self.last_result: LineResult | None = None

    # -- listeners ---------------------------------------------------------------------------------
    def subscribe(self, listener: LineListener) -> None:
        with self._lock:
            self._listeners.append(listener)
        listener.on_state(self.state, self)

    def _notify_state(self) -> None:
        with self._lock:
            new = self._compute_state()
            changed = new is not self._state
            self._state = new
            listeners = list(self._listeners)
        if changed:
            logger.info("line: %s", new.value)
            for listener in listeners:
                listener.on_state(new, self)

    def _compute_state(self) -> VisionState:
        if self._error is not None:
            return VisionState.ERROR
        if not self._ready:
            return VisionState.PREOPERATIONAL
        if self._halted:
            return VisionState.HALTED
        if self._continuous:
            return VisionState.CONTINUOUS_EXECUTION
        if self._running or self._inbox:
            return VisionState.SINGLE_EXECUTION
        return VisionState.READY

    # -- read-only views ---------------------------------------------------------------------------
    @property
    def state(self) -> VisionState:
        with self._lock:
            return self._compute_state()

    @property
    def active_recipe(self) -> str | None:
        with self._lock:
            return self._active_recipe

    @property
    def continuous(self) -> bool:
        with self._lock:
            return self._continuous

    @property
    def error(self) -> str | None:
        with self._lock:
            return self._error

    def queue_depth(self) -> int:
        """Triggers taken and not yet answered by a result."""
        with self._lock:
            return len(self._running) + len(self._inbox)

    def busy(self) -> bool:
        return self.queue_depth() > 0

    def dispatch_allowed(self) -> bool:
        """May the agent start new work? Not while halted (what is running finishes)."""
        with self._lock:
            return not self._halted

    # -- channels' side ----------------------------------------------------------------------------
    def _refusal(self) -> TriggerReply | None:
        """Why a trigger cannot be taken now (lock held), or None."""
        if self._error is not None:
            return TriggerReply(TriggerStatus.REFUSED, reason=f"the station is in error: {self._error}")
        if not self._ready:
            return TriggerReply(TriggerStatus.REFUSED, reason="the station is starting (Preoperational)")
        if self._halted:
            return TriggerReply(TriggerStatus.REFUSED, reason="the station is halted; reset it first")
        if self.triggered_source is None:
            return TriggerReply(
                TriggerStatus.REFUSED,
                reason="no source reads on triggers: set trigger = 'line' on a source (docs/LINE.md)",
            )
        if self._continuous:
            return TriggerReply(
                TriggerStatus.REFUSED, reason="the station is in continuous execution; stop it first"
            )
        return None

    def trigger(self, request: TriggerRequest, timeout: float = ANSWER_TIMEOUT_S) -> TriggerReply:
        """Take a trigger: the answer says accepted (with the job id the result will carry), busy
        (the queue of `max_queued` triggers is full) or refused, with the reason."""
        with self._lock:
            if request.recipe is not None and request.recipe not in self.recipes:
                self.counters.bad_requests += 1
                known = ", ".join(self.recipes) or "none configured"
                return TriggerReply(
                    TriggerStatus.BAD_REQUEST, reason=f"unknown recipe {request.recipe!r} (known: {known})"
                )
            refusal = self._refusal()
            if refusal is not None:
                self.counters.refused += 1
                return refusal
            if len(self._running) + len(self._inbox) >= self.max_queued:
                self.counters.busy += 1
                return TriggerReply(
                    TriggerStatus.BUSY, reason=f"busy: {self.max_queued} trigger(s) already queued"
                )
            pending = PendingTrigger(request, time.monotonic())
            self._inbox.append(pending)
        self._notify_state()
        self._wake()
        if not pending.done.wait(timeout):
            with self._lock:
                if pending.reply is None:
                    pending.cancelled = True
                    if pending in self._inbox:
                        self._inbox.remove(pending)
                    self.counters.refused += 1
                    pending.reply = TriggerReply(
                        TriggerStatus.REFUSED,
                        reason=f"the station did not record the trigger within {timeout:g} s",
                    )
            self._notify_state()
        assert pending.reply is not None
        return pending.reply

    def select_recipe(self, name: str) -> TriggerReply:
        with self._lock:
            if name not in self.recipes:
                self.counters.bad_requests += 1
                known = ", ".join(self.recipes) or "none configured"
                return TriggerReply(
                    TriggerStatus.BAD_REQUEST, reason=f"unknown recipe {name!r} (known: {known})"
                )
            self._active_recipe = name
        logger.info("line: recipe %s selected", name)
        return TriggerReply(TriggerStatus.ACCEPTED)

    def start_continuous(self) -> TriggerReply:
        with self._lock:
            if self.triggered_source is None:
                return TriggerReply(TriggerStatus.ACCEPTED, reason="the station always reads continuously")
            if self._error is not None or not self._ready or self._halted:
                self.counters.refused += 1
                return TriggerReply(TriggerStatus.REFUSED, reason=f"not from {self._compute_state().value}")
            self._continuous = True
        self._notify_state()
        self._wake()
        return TriggerReply(TriggerStatus.ACCEPTED)

    def stop(self) -> TriggerReply:
        """Back from continuous to single-job execution (triggers only)."""
        with self._lock:
            if self.triggered_source is None:
                self.counters.refused += 1
                return TriggerReply(
                    TriggerStatus.REFUSED,
                    reason="no source reads on triggers, so the station cannot leave continuous execution; "
                    "halt it to pause",
                )
            self._continuous = False
        self._notify_state()
        self._wake()
        return TriggerReply(TriggerStatus.ACCEPTED)

    def halt(self) -> TriggerReply:
        with self._lock:
            self._halted = True
        self._notify_state()
        return TriggerReply(TriggerStatus.ACCEPTED)

    def reset(self) -> TriggerReply:
        """Out of Halted (and of Error once its cause is gone) into Ready or ContinuousExecution."""
        with self._lock:
            self._halted = False
            still = self._error
        self._notify_state()
        self._wake()
        if still is not None:
            return TriggerReply(TriggerStatus.REFUSED, reason=f"still in error: {still}")
        return TriggerReply(TriggerStatus.ACCEPTED)

    # -- agent's side ------------------------------------------------------------------------------
    def take_triggers(self) -> list[PendingTrigger]:
        """Triggers waiting to be recorded (the agent's writer thread)."""
        with self._lock:
            taken, self._inbox = [p for p in self._inbox if not p.cancelled], []
            return taken

    def accepted(self, pending: PendingTrigger, job: LineJob) -> bool:
        """The agent recorded `pending` as `job`; False when its channel stopped waiting (the agent
        then finishes the job as refused, so it still gets its one result)."""
        with self._lock:
            if pending.cancelled:
                return False
            self._running[job.job_id] = job
            self.counters.triggers += 1
            pending.reply = TriggerReply(TriggerStatus.ACCEPTED, job.job_id)
        pending.done.set()
        return True

    def refused(self, pending: PendingTrigger, reply: TriggerReply) -> None:
        with self._lock:
            self.counters.refused += 1
            pending.reply = reply
        pending.done.set()
        self._notify_state()

    def set_ready(self, ready: bool) -> None:
        with self._lock:
            self._ready = ready
        self._notify_state()

    def set_error(self, reason: str | None) -> None:
        with self._lock:
            self._error = reason
        self._notify_state()

    def publish(self, result: LineResult) -> None:
        """A job's one result: to every listener, and the job leaves the queue."""
        with self._lock:
            self._running.pop(result.job_id, None)
            self.counters.results += 1
            if result.verdict.value == "no-read":
                self.counters.no_reads += 1
            self.last_result = result
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener.on_result(result)
            except Exception:  # a channel's bug must not stop the others or the agent
                logger.exception("line: a channel failed to take result %d", result.job_id)
        self._notify_state()

    def status(self) -> dict[str, object]:
        """For the heartbeat (`status`, the GUI's dashboard)."""
        with self._lock:
            return {
                "state": self._compute_state().value,
                "recipe": self._active_recipe,
                "continuous": self._continuous,
                "triggered_source": self.triggered_source,
                "queued": len(self._running) + len(self._inbox),
                "max_queued": self.max_queued,
                "error": self._error,
                "counters": dict(self.counters.__dict__),
                "last_job": self.last_result.job_id if self.last_result else None,
            }
