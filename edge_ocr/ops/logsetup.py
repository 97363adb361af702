"""Log handlers. Only entry points call this; library modules just use getLogger(__name__)."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import threading
import time
import warnings
from pathlib import Path

#: third-party warnings that say nothing a user of edge-ocr can act on (paddlepaddle warns at
#: import that it cannot find ccache, a compiler cache for building C++ extensions)
QUIET_WARNINGS = ("No ccache found",)


def quiet_third_party_warnings() -> None:
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)


_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "process": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class RateLimitFilter(logging.Filter):
    """A handler filter that writes a repeated warning or error once per `interval_s`: the same
    logger, level, message and exception type seen again within the interval is counted, not
    written, and the next one written after it says how many were left out. Lines below WARNING
    pass untouched. One instance serves every handler it is added to (each record is judged once),
    so a flood (a server out of file descriptors logs a traceback per accept()) costs a line per
    interval, not the disk."""

    def __init__(self, interval_s: float = 10.0, max_keys: int = 1000) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._seen: dict[tuple, list[float | int]] = {}  # key -> [first written at, left out]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, "_edge_ocr_rate", None)
        if verdict is None:
            verdict = self._judge(record)
            record._edge_ocr_rate = verdict  # type: ignore[attr-defined]
        return verdict

    def _judge(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format: let the handler report it
            return True
        exc_type = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        key = (record.name, record.levelno, message[:300], exc_type)
        now = time.monotonic()
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.interval_s:
                entry[1] += 1
                return False
            left_out = int(entry[1]) if entry is not None else 0
            if len(self._seen) >= self.max_keys:
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval_s}
            self._seen[key] = [now, 0]
        if left_out:
            record.msg = f"{message} [{left_out} more like this in the last {now - entry[0]:.0f}s not logged]"
            record.args = None
        return True


_RATE_LIMIT = RateLimitFilter()


def rate_limit_handlers(*logger_names: str) -> None:
    """Add the rate limit to every handler of these loggers ("" is the root logger)."""
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            if _RATE_LIMIT not in handler.filters:
                handler.addFilter(_RATE_LIMIT)


def configure_logging(
    level: int = logging.WARNING,
    fmt: str = "plain",
    log_file: str | Path | None = None,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
) -> None:
    quiet_third_party_warnings()
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter()
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_edge_ocr", False):
            root.removeHandler(h)
            h.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=backups)
        )
    for h in handlers:
        h.setFormatter(formatter)
        h._edge_ocr = True  # type: ignore[attr-defined]
        h.addFilter(_RATE_LIMIT)
        root.addHandler(h)
    root.setLevel(level)
