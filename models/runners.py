"""Run a single network on one tensor with Paddle Inference or Paddle Lite (build-time checks).

These are for verifying converted artifacts, not for serving: the agent's engines live in
`edge_ocr.ocr.engines`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_ocr_models.program import MODEL_FILE, PARAMS_FILE


def paddle_inference_run(
    model_dir: Path, x: np.ndarray, *, threads: int = 2, mkldnn: bool = False
) -> np.ndarray:
    """Output 0 of a Paddle inference model folder on input x (a fresh predictor each call)."""
    from paddle import inference

    cfg = inference.Config(str(Path(model_dir) / MODEL_FILE), str(Path(model_dir) / PARAMS_FILE))
    cfg.disable_gpu()
    cfg.set_cpu_math_library_num_threads(threads)
    if mkldnn:
        cfg.enable_mkldnn()
    else:
        cfg.disable_mkldnn()
    cfg.disable_glog_info()
    cfg.switch_ir_optim(False)  # run the program as written: compare graphs, not fusion passes
    pred = inference.create_predictor(cfg)
    inp = pred.get_input_handle(pred.get_input_names()[0])
    inp.reshape(list(x.shape))
    inp.copy_from_cpu(np.ascontiguousarray(x, dtype=np.float32))
    pred.run()
    out = pred.get_output_handle(pred.get_output_names()[0])
    return np.array(out.copy_to_cpu(), copy=True)


class LiteRunner:
    """A Paddle Lite predictor for one `.nb`, with the numpy-2 input-copy fix.

    Inputs must not shrink between runs (PADDLE_LITE_NOTES trap 4): use one runner per shape.
    """

    def __init__(self, nb_path: Path) -> None:
        from paddlelite.lite import MobileConfig, create_paddle_predictor

        cfg = MobileConfig()
        cfg.set_model_from_file(str(nb_path))
        self._pred = create_paddle_predictor(cfg)

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        t = self._pred.get_input(0)
        t.from_numpy(x)  # allocates; under numpy 2 it copies nothing
        t.numpy()[...] = x  # so write through the zero-copy view
        self._pred.run()
        return np.array(self._pred.get_output(0).numpy(), copy=True)  # outputs are views
