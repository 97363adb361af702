"""Retry timing: exponential backoff with full jitter, Retry-After, and a circuit breaker."""

from __future__ import annotations

import enum
import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

RETRY_AFTER_CAP_S = 600.0  # a Retry-After longer than this is taken as this


class CircuitState(str, enum.Enum):
    CLOSED = "closed"  # sending normally
    OPEN = "open"  # too many failures in a row: wait before trying again
    HALF_OPEN = "half_open"  # one trial request decides


@dataclass
class Backoff:
    base_s: float = 0.5
    max_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """Count a failure and return how long to wait: full jitter over an exponential cap,
        never less than the server's Retry-After."""
        self.failures += 1
        cap = min(self.max_s, self.base_s * (2 ** min(self.failures - 1, 30)))
        delay = self.rng.uniform(self.base_s / 2, cap) if cap > self.base_s / 2 else cap
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, max(self.max_s, RETRY_AFTER_CAP_S)))
        return delay

    def reset(self) -> None:
        self.failures = 0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


@dataclass
class CircuitBreaker:
    failure_threshold: int = 5
    open_s: float = 30.0
    clock: callable = time.monotonic  # type: ignore[valid-type]
    consecutive_failures: int = 0
    opened_at: float | None = None

    @property
    def state(self) -> CircuitState:
        if self.opened_at is None:
            return CircuitState.CLOSED
        if self.clock() - self.opened_at >= self.open_s:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    def allow(self) -> bool:
        return self.state is not CircuitState.OPEN

    def remaining_s(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.open_s - (self.clock() - self.opened_at))

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self.opened_at = None

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        if self.state is CircuitState.HALF_OPEN or self.consecutive_failures >= self.failure_threshold:
            self.opened_at = self.clock()
