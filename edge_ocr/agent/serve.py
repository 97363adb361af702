"""Run the agent as a service: until SIGTERM/SIGINT (or once), with the background services its
config asks for and the metrics endpoint when `EDGE_OCR_METRICS_PORT` is set."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from edge_ocr.agent.app import Agent
from edge_ocr.agent.preflight import check_runnable
from edge_ocr.agent.services import running_services
from edge_ocr.config import Config, default_db_path
from edge_ocr.errors import ConfigError, EdgeOcrError
from edge_ocr.ops.metrics import serve_from_env

logger = logging.getLogger(__name__)


def serve(cfg: Config, once: bool, base_dir: Path | None = None) -> int:
    """Run the agent (and the services its config asks for) until a signal, or once with `once`."""
    if not cfg.folders and not cfg.cameras:
        raise ConfigError(
            "no sources configured: add [[sources.folder]] or [[sources.camera]] (docs/CONFIG.md)"
        )
    base_dir = base_dir or Path.cwd()
    # the same function as `doctor --only config`; `--once` too, though it starts no services: a
    # config that `run` refuses is refused however it is run
    check_runnable(cfg, base_dir=base_dir)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logger.info("signal %d: finishing in-flight work", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        services = {} if once else {"sync": cfg.sync}  # `--once` only reads; `edge-ocr sync --once` ships
        db_path = cfg.agent.db or default_db_path()
        with (
            serve_from_env(),  # off unless EDGE_OCR_METRICS_PORT is set
            running_services(services, db_path=db_path, base_dir=base_dir),
        ):
            try:
                stats = Agent(cfg, once=once).run(stop)
            except EdgeOcrError:
                raise  # the CLI prints it as one line
            except Exception:  # a bug: its traceback goes to the log file too, not only stderr
                logger.critical("the agent stopped on an unexpected error", exc_info=True)
                raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    logger.info(
        "agent stopped: %d file(s) done, %d duplicate(s), %d quarantined, %d camera record(s)",
        stats.files_done,
        stats.files_duplicate,
        stats.files_quarantined,
        stats.camera_records,
    )
    return 0
