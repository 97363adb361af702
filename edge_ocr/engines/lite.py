"""Paddle Lite engine (`.nb` models from `edge-ocr models build`).

Three traps of paddlelite 2.13rc0 on x86 are handled here (shared/PADDLE_LITE_NOTES.md):

1. `Tensor.from_numpy` copies nothing under numpy 2: we call it to allocate, then write
   through the zero-copy view (`t.numpy()[...] = x`), which works under numpy 1 and 2.
2. Outputs are views into the predictor's memory: we copy them before returning.
3. A predictor fed a smaller input than an earlier one corrupts the heap. Each predictor here
   only ever sees one input shape: there is one per exact shape, kept in a small LRU pool
   (creating one from a `.nb` takes milliseconds). Inputs are never padded, because padding
   changes what the recognizer's attention layers read; the pipeline feeds Lite exactly the
   tensors it feeds every other engine.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np

from edge_ocr.engines.base import Engine, Session
from edge_ocr.errors import EngineUnavailableError, ModelError
from edge_ocr.types import ModelRole

logger = logging.getLogger(__name__)

POOL_SIZE = {ModelRole.DET: 2, ModelRole.REC: 4, ModelRole.CLS: 2}


class _LiteSession(Session):
    """A pool of predictors, one per input shape (least recently used dropped first)."""

    def __init__(self, role: ModelRole, path: str, max_predictors: int) -> None:
        self.role = role
        self._path = path
        self._max = max_predictors
        self._pool: OrderedDict[tuple[int, ...], object] = OrderedDict()
        self.created = 0  # predictors created so far (for tests and diagnostics)

    def _predictor(self, shape: tuple[int, ...]) -> object:
        pred = self._pool.get(shape)
        if pred is not None:
            self._pool.move_to_end(shape)
            return pred
        from paddlelite.lite import MobileConfig, create_paddle_predictor

        config = MobileConfig()
        config.set_model_from_file(self._path)
        try:
            pred = create_paddle_predictor(config)
        except Exception as exc:  # pybind raises untyped errors
            raise ModelError(f"cannot load Paddle Lite model {self._path}: {exc}") from exc
        self.created += 1
        logger.debug("new Lite %s predictor for shape %s", self.role.value, shape)
        self._pool[shape] = pred
        while len(self._pool) > self._max:
            self._pool.popitem(last=False)
        return pred

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        pred = self._predictor(tuple(int(d) for d in x.shape))
        tensor = pred.get_input(0)  # type: ignore[attr-defined]
        tensor.from_numpy(x)  # allocates (and copies nothing under numpy 2) ...
        tensor.numpy()[...] = x  # ... so write through the zero-copy view
        pred.run()  # type: ignore[attr-defined]
        return np.array(pred.get_output(0).numpy(), copy=True)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._pool.clear()


class LiteEngine(Engine):
    name = "lite"
    model_format = "nb"
    single_core = True

    @classmethod
    def unavailable_reason(cls) -> str | None:
        import importlib.util
        import platform

        if importlib.util.find_spec("paddlelite") is None:
            if platform.machine() not in ("x86_64", "AMD64"):
                return (
                    "paddlelite has no PyPI wheel for this CPU: build Paddle Lite's Python package from its "
                    "ARM release and use the ARM .nb files from `edge-ocr models build`, or use --engine onnx"
                )
            return "paddlelite is not installed: pip install 'edge-ocr[lite]' (Python 3.10, x86-64)"
        return None

    def _load(self, role: ModelRole) -> Session:
        reason = self.unavailable_reason()
        if reason:
            raise EngineUnavailableError(reason)
        return _LiteSession(role, str(self.files.path(role)), POOL_SIZE[role])

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"paddlelite": version("paddlelite")}
