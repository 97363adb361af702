"""The station's line channels, built from `[line]`: one hub, and the OPC UA, MQTT and Modbus
channels that are configured; started and stopped together, and seen together by `status`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from edge_ocr.config import Config
from edge_ocr.errors import ConfigError
from edge_ocr.line.hub import LineHub
from edge_ocr.line.model import ChannelStatus, LineResult
from edge_ocr.store.line import Message

logger = logging.getLogger(__name__)


def require(module: str, section: str) -> None:
    """A configured channel whose library is missing is a config error saying what to install."""
    import importlib.util

    if importlib.util.find_spec(module.split(".")[0]) is None:
        raise ConfigError(f"{section} needs {module.split('.')[0]}: pip install 'edge-ocr[line]'")


class Channel(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> ChannelStatus: ...


class LineChannels:
    """The hub and its channels; `messages_for` and `take_acks` are the MQTT outbox's two ends."""

    def __init__(
        self,
        cfg: Config,
        *,
        db_path: Path,
        wake: Callable[[], None],
        status_extra: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        line = cfg.line
        triggered = cfg.triggered_source()
        active = line.recipe or (triggered.recipe if triggered is not None else None)
        if active is None and len(cfg.recipes) == 1:
            active = next(iter(cfg.recipes))
        self.cfg = cfg
        self.hub = LineHub(
            cfg.station_name(),
            cfg.recipes,
            active_recipe=active,
            triggered_source=triggered.source_name if triggered is not None else None,
            max_queued=line.max_queued,
            wake=wake,
        )
        self.mqtt: Any = None
        self.opcua: Any = None
        self.modbus: Any = None
        self.channels: list[Channel] = []
        for name, module in (("mqtt", "paho.mqtt"), ("opcua", "asyncua"), ("modbus", "pymodbus")):
            if getattr(line, name) is not None:
                require(module, f"[line.{name}]")
        if line.mqtt is not None:
            from edge_ocr.line.mqtt import MqttChannel

            self.mqtt = MqttChannel(line.mqtt, self.hub, db_path=db_path, status_extra=status_extra)
            self.channels.append(self.mqtt)
        if line.opcua is not None:
            from edge_ocr.line.opcua import OpcUaChannel

            self.opcua = OpcUaChannel(
                line.opcua,
                self.hub,
                recipe_fields={name: tuple(f.name for f in r.fields) for name, r in cfg.recipes.items()},
                certificate_dir=line.opcua.certificate_dir or cfg.data_dir() / "opcua",
            )
            self.channels.append(self.opcua)
        if line.modbus is not None:
            from edge_ocr.line.modbus import ModbusChannel

            self.modbus = ModbusChannel(line.modbus, self.hub)
            self.channels.append(self.modbus)

    def start(self) -> None:
        """Start every channel; one that cannot start (a port in use, a bad certificate) is logged and
        shown down in `status`, and the others run."""
        for ch in self.channels:
            try:
                ch.start()
            except Exception as exc:  # a channel's failure is reported, the station keeps reading
                logger.error("line: the %s channel cannot start: %s", ch.name, exc)

    def stop(self) -> None:
        for ch in reversed(self.channels):
            try:
                ch.stop()
            except Exception:  # keep stopping the others
                logger.exception("line: stopping the %s channel", ch.name)

    def messages_for(self, result: LineResult) -> list[Message]:
        """What the result publishes through a durable channel (MQTT), stored with it."""
        if self.mqtt is None:
            return []
        from edge_ocr.line.mqtt import messages_for

        assert self.cfg.line.mqtt is not None
        return messages_for(self.cfg.line.mqtt, self.hub.station, result)

    def take_acks(self) -> list[int]:
        return self.mqtt.take_acks() if self.mqtt is not None else []

    def wake_publishers(self) -> None:
        if self.mqtt is not None:
            self.mqtt.wake()

    def status(self) -> dict[str, Any]:
        return {**self.hub.status(), "channels": [ch.status().to_dict() for ch in self.channels]}
