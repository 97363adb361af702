"""The one engine protocol.

An engine turns model files into sessions; a session maps one input tensor (NCHW float32)
to one output tensor. Pre- and post-processing live in `edge_ocr.ocr.pipeline`, never here, so
every engine sees exactly the same tensors and must give the same answers.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edge_ocr.types import ModelRole

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFiles:
    """Resolved files of one model set for one engine: what an engine needs to load."""

    set_id: str  # e.g. "onnx/fp32" (PP-OCRv4) or "ppocrv6-small/onnx/fp32"
    engine: str
    variant: str
    det: Path
    rec: Path
    cls: Path
    rec_dict: Path
    #: the model family (models/catalogue.json): it decides the pipeline's settings
    family: str = "ppocrv4-mobile"
    #: the settings the model's own config gives (its inference.yml, read by the build and
    #: recorded in the manifest): {"det": {...}, "rec": {...}}; empty for the PP-OCRv4 sets
    model_config: Mapping[str, Any] = field(default_factory=dict)

    def path(self, role: ModelRole) -> Path:
        return {ModelRole.DET: self.det, ModelRole.REC: self.rec, ModelRole.CLS: self.cls}[role]


@dataclass(frozen=True)
class EngineOptions:
    threads: int = 2


class Session(abc.ABC):
    """One loaded network. `run` returns an array the caller owns (never a view into the runtime)."""

    role: ModelRole

    @abc.abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray: ...

    def run_each(self, x: np.ndarray) -> Iterator[np.ndarray]:
        """A batch's outputs one sample at a time, each a (1, ...) array, for a caller that can use
        each as it comes. An engine that runs samples one by one anyway (Paddle Lite) overrides it
        so that only one sample's output is held: a PP-OCRv6 line 1,500 px wide gives 14 MB of
        probabilities, a batch of six 83 MB."""
        out = self.run(x)
        for i in range(out.shape[0]):
            yield out[i : i + 1]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the runtime's memory."""


class Engine(abc.ABC):
    """Loads sessions for the det, cls and rec networks of one model set."""

    name: ClassVar[str]
    #: formats of model file the engine reads, in the order it prefers them
    model_format: ClassVar[str]
    #: True when the runtime uses one core whatever it is told (Paddle Lite x86): throughput
    #: then comes from one process per core.
    single_core: ClassVar[bool] = False

    def __init__(self, files: ModelFiles, options: EngineOptions | None = None) -> None:
        self.files = files
        self.options = options or EngineOptions()
        self._sessions: dict[ModelRole, Session] = {}

    @classmethod
    @abc.abstractmethod
    def unavailable_reason(cls) -> str | None:
        """None when the engine can run here, else a sentence saying what to install."""

    @abc.abstractmethod
    def _load(self, role: ModelRole) -> Session: ...

    def session(self, role: ModelRole) -> Session:
        sess = self._sessions.get(role)
        if sess is None:
            logger.debug("loading %s %s from %s", self.name, role.value, self.files.path(role))
            sess = self._load(role)
            self._sessions[role] = sess
        return sess

    def image_done(self) -> None:  # noqa: B027 (an optional hook: most engines keep their buffers)
        """Called when an image needs no more inference; engines may free per-image memory."""

    def close(self) -> None:
        for sess in self._sessions.values():
            sess.close()
        self._sessions.clear()

    def versions(self) -> dict[str, str]:
        """Runtime library versions, recorded with every result."""
        return {}
