"""ONNX Runtime engine."""

from __future__ import annotations

import logging

import numpy as np

from edge_ocr.errors import EngineUnavailableError, ModelError
from edge_ocr.ocr.engine import Engine, Session
from edge_ocr.types import ModelRole

logger = logging.getLogger(__name__)


class _OrtSession(Session):
    def __init__(self, role: ModelRole, path: str, threads: int) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, threads)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        try:
            self._sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load ONNX model {path}: {exc}") from exc
        self.role = role
        self._input = self._sess.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run(None, {self._input: x})[0]


class OnnxEngine(Engine):
    name = "onnx"
    model_format = "onnx"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed: pip install 'edge-ocr[onnx]'"
        return None

    def _load(self, role: ModelRole) -> Session:
        reason = self.unavailable_reason()
        if reason:
            raise EngineUnavailableError(reason)
        return _OrtSession(role, str(self.files.path(role)), self.options.threads)

    def versions(self) -> dict[str, str]:
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__}
