"""Engine names -> classes, imported lazily so a device needs only the runtime it uses."""

from __future__ import annotations

import importlib

from edge_ocr.errors import ConfigError, EngineUnavailableError
from edge_ocr.ocr.engine import Engine, EngineOptions, ModelFiles

ENGINES: dict[str, str] = {
    "lite": "edge_ocr.ocr.engines.lite:LiteEngine",
    "onnx": "edge_ocr.ocr.engines.onnx:OnnxEngine",
    "paddle": "edge_ocr.ocr.engines.paddle:PaddleEngine",
    "fake": "edge_ocr.ocr.engines.fake:FakeEngine",
}
#: engines whose output is compared with the reference (fake is for tests only)
REAL_ENGINES = ("lite", "onnx", "paddle")
ENGINE_CHOICES = ("auto", *ENGINES)


def engine_class(name: str) -> type[Engine]:
    try:
        target = ENGINES[name]
    except KeyError:
        raise ConfigError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINE_CHOICES)}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def available_engines() -> dict[str, str | None]:
    """Each real engine and why it cannot run here (None when it can)."""
    return {name: engine_class(name).unavailable_reason() for name in REAL_ENGINES}


def open_engine(files: ModelFiles, *, threads: int) -> Engine:
    """The engine for a resolved model set, or `EngineUnavailableError` saying what to install."""
    cls = engine_class(files.engine)
    reason = cls.unavailable_reason()
    if reason:
        raise EngineUnavailableError(f"engine {files.engine!r} cannot run here: {reason}")
    return cls(files, EngineOptions(threads=threads))
