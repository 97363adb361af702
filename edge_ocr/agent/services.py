"""Background services contributed by optional packages (entry-point group `edge_ocr.agent.services`).

`edge-ocr run` starts each service whose config section is filled in (today: `[sync]`, from the
`sync` package), in a thread with the agent's stop event, and joins it on the way out. The core
never imports the packages that provide them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from edge_ocr.errors import ConfigError

logger = logging.getLogger(__name__)

GROUP = "edge_ocr.agent.services"
JOIN_TIMEOUT_S = 30.0


def _factories(sections: Mapping[str, Mapping[str, Any]]) -> dict[str, Callable[..., Any]]:
    """The factory of every service whose section is non-empty. Raises ConfigError."""
    available = {ep.name: ep for ep in entry_points(group=GROUP)}
    out = {}
    for name, settings in sections.items():
        if not settings:
            continue
        ep = available.get(name)
        if ep is None:
            raise ConfigError(
                f"[{name}] is configured but no installed package provides it (pip install 'edge-ocr[cloud]')"
            )
        try:
            out[name] = ep.load()
        except ImportError as exc:
            raise ConfigError(f"[{name}] is configured but its package cannot be imported: {exc}") from exc
    return out


def check_services(sections: Mapping[str, Mapping[str, Any]], *, base_dir: Path) -> None:
    """Validate each configured section the way `running_services` will: its package builds the
    service (validating the section, reading any secret file) without starting it."""
    for name, factory in _factories(sections).items():
        factory(dict(sections[name]), db_path=None, base_dir=base_dir, stop_event=threading.Event())


@contextmanager
def running_services(
    sections: Mapping[str, Mapping[str, Any]], *, db_path: Path, base_dir: Path
) -> Iterator[list[str]]:
    """Start the services whose section in `sections` is non-empty; stop and join them on exit."""
    stop = threading.Event()
    threads: list[threading.Thread] = []
    for name, factory in _factories(sections).items():
        service = factory(dict(sections[name]), db_path=db_path, base_dir=base_dir, stop_event=stop)
        thread = threading.Thread(target=service.run, name=f"service-{name}")
        thread.start()
        threads.append(thread)
        logger.info("started the %s service", name)
    try:
        yield [t.name for t in threads]
    finally:
        stop.set()
        for thread in threads:
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                logger.error("%s did not stop within %.0f s", thread.name, JOIN_TIMEOUT_S)
