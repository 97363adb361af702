"""The line tests: a real Mosquitto broker on a free loopback port per test, real OPC UA, MQTT and
Modbus clients, the agent with the fake engine in worker processes (the channels, not the OCR, are
what is tested here; `edge-ocr bench --line` reads with the real models).
Every test fails if it leaks threads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from linekit import Broker


@pytest.fixture(autouse=True)
def _no_leaked_threads(no_leaked_threads: None) -> None:
    return None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()
