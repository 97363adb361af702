"""Paddle Inference engine (paddlepaddle, oneDNN on x86)."""

from __future__ import annotations

import logging
import warnings

import numpy as np

from edge_ocr.errors import EngineUnavailableError, ModelError
from edge_ocr.ocr.engine import Engine, Session
from edge_ocr.types import ModelRole

logger = logging.getLogger(__name__)


def _import_inference():
    """`paddle.inference`, imported without its side effect on logging: importing paddle adds a
    stderr handler to the root logger and lowers its level to INFO, which would double every log
    line of the agent and let third-party INFO chatter through. Both are put back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
            from paddle import inference
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
    return inference


class _PaddleSession(Session):
    def __init__(self, role: ModelRole, model_dir: str, threads: int) -> None:
        inference = _import_inference()

        config = inference.Config(f"{model_dir}/inference.pdmodel", f"{model_dir}/inference.pdiparams")
        config.disable_gpu()
        config.enable_mkldnn()
        config.set_cpu_math_library_num_threads(max(1, threads))
        config.switch_ir_optim(True)
        config.enable_memory_optim()
        config.disable_glog_info()
        config.switch_use_feed_fetch_ops(False)
        try:
            self._pred = inference.create_predictor(config)
        except Exception as exc:  # paddle raises untyped errors
            raise ModelError(f"cannot load Paddle model {model_dir}: {exc}") from exc
        self.role = role
        self._in = self._pred.get_input_handle(self._pred.get_input_names()[0])
        self._out = self._pred.get_output_handle(self._pred.get_output_names()[0])

    def run(self, x: np.ndarray) -> np.ndarray:
        self._in.reshape(list(x.shape))
        self._in.copy_from_cpu(np.ascontiguousarray(x))
        self._pred.run()
        return self._out.copy_to_cpu()


class PaddleEngine(Engine):
    name = "paddle"
    model_format = "paddle"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        import importlib.util

        if importlib.util.find_spec("paddle") is None:
            return "paddlepaddle is not installed: pip install 'edge-ocr[paddle]'"
        return None

    def _load(self, role: ModelRole) -> Session:
        reason = self.unavailable_reason()
        if reason:
            raise EngineUnavailableError(reason)
        return _PaddleSession(role, str(self.files.path(role)), self.options.threads)

    def versions(self) -> dict[str, str]:
        import paddle

        return {"paddlepaddle": paddle.__version__}
