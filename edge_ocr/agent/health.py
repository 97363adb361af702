"""The agent's own troubles, apart from any file's: its scratch folder, its disk, its database.

A file that meets one is kept and read again (never quarantined for it). One failure is not news;
the same trouble `PERSIST_FAILURES` times in a row makes the agent unhealthy: said once in the
log, in the heartbeat's state (`unhealthy`, with the problems in its details), in the note
beside the database and so in `edge-ocr status`. The next success clears it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from edge_ocr.store.db import utcnow

logger = logging.getLogger(__name__)

PERSIST_FAILURES = 3
RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0


@dataclass
class Trouble:
    kind: str  # "scratch", "disk full", "database gone"
    message: str
    since: str
    count: int = 1

    @property
    def persists(self) -> bool:
        return self.count >= PERSIST_FAILURES


class Health:
    """What is wrong with the agent itself, counted per kind."""

    def __init__(self) -> None:
        self._troubles: dict[str, Trouble] = {}

    def failed(self, kind: str, message: str, *, at_once: bool = False) -> Trouble:
        """Another failure of this kind. `at_once`: it is news from the first time (the caller
        logs it)."""
        trouble = self._troubles.get(kind)
        if trouble is None:
            trouble = self._troubles[kind] = Trouble(kind, message, utcnow())
        else:
            trouble.count += 1
            trouble.message = message
        if at_once:
            trouble.count = max(trouble.count, PERSIST_FAILURES + 1)
        elif trouble.count == PERSIST_FAILURES:
            logger.error(
                "the agent is unhealthy: %s (%d times in a row since %s); the files it meets are kept "
                "and read again, none is quarantined for it",
                message,
                trouble.count,
                trouble.since,
            )
        return trouble

    def retry_after(self, kind: str) -> float:
        """Seconds before a file that met this trouble is tried again (doubling, capped)."""
        trouble = self._troubles.get(kind)
        count = trouble.count if trouble else 1
        return min(RETRY_MAX_S, RETRY_MIN_S * 2 ** (count - 1))

    def recovered(self, kind: str) -> None:
        trouble = self._troubles.pop(kind, None)
        if trouble is not None and trouble.persists:
            logger.warning("the agent recovered: %s is gone after %d failure(s)", kind, trouble.count)

    @property
    def healthy(self) -> bool:
        return not any(t.persists for t in self._troubles.values())

    def problems(self) -> list[dict[str, object]]:
        """The troubles that persist, for the heartbeat and the note beside the database."""
        return [asdict(t) for t in self._troubles.values() if t.persists]
