"""Paddle Lite engine (`.nb` models from `edge-ocr models build`).

Three traps of paddlelite 2.13rc0 on x86 are handled here (shared/PADDLE_LITE_NOTES.md):

1. `Tensor.from_numpy` copies nothing under numpy 2: we call it to allocate, then write
   through the zero-copy view (`t.numpy()[...] = x`), which works under numpy 1 and 2.
2. Outputs are views into the predictor's memory: we copy them before returning.
3. A predictor fed a smaller input than an earlier one corrupts the heap, and one fed a larger
   input gives wrong recognitions (measured: the text model's output is garbage after its width
   grows). So each role keeps one predictor that only ever sees one input shape; a new shape
   gets a fresh predictor (creating one from a `.nb` takes milliseconds; the old one's memory is
   freed). Inputs are never padded, because padding changes what the recognizer's attention
   layers read.

Memory (the budget is 300 MB per Lite worker): Paddle Lite plans no memory reuse on x86, so the
build rewrites the programs to share buffers between tensors with disjoint lifetimes
(models/rewrite_reuse.py "reuse" for PP-OCRv4, models/lite_plan.py for PP-OCRv6); the detection
predictor is freed as soon as it has run, so its ~100 MB of activations are not held while the
lines are recognised; and every predictor is freed when an image is done (`image_done`), so the
next detection does not sit on top of the last recognition. Every time predictors are freed,
glibc's `malloc_trim` gives the freed heap back to the system (the predictors' buffers otherwise
stay in the fragmented heap and the next, larger allocations land on top of them: `edge-ocr
bench`'s worker reading receipt-sized pages with PP-OCRv6 small peaked at 340 MB before this and
the batch-output change below, 287 MB after). Re-creating predictors costs a few milliseconds of
CPU per image; measured in docs/BENCHMARKS.md. (Pinning glibc's mmap threshold gave a steadier peak
but cost ~30% more CPU in page faults: not used.)

Batches (rec, cls) are run one sample at a time: samples are independent at inference, every
sample is already padded to its batch's width by the pipeline (exactly as the reference
pads it), and a predictor's memory grows with the batch (about 190 MB for six 48x700 lines),
so this keeps a Lite worker small and its output identical to the batched engines'. The text
lines' outputs are handed to the pipeline one at a time (`run_each`), and `run` copies each
sample's output straight into the batch's array: PP-OCRv6's 18,710 classes make a 1,500 px
line's output 14 MB.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator

import numpy as np

from edge_ocr.errors import EngineUnavailableError, ModelError
from edge_ocr.ocr.engine import Engine, Session
from edge_ocr.types import ModelRole

logger = logging.getLogger(__name__)


class _LiteSession(Session):
    """One predictor that only ever sees one input shape; replaced when the shape changes."""

    def __init__(self, role: ModelRole, path: str, *, keep: bool = True) -> None:
        self.role = role
        self._path = path
        self._keep = keep  # False: free the predictor (and its activations) after every run
        self._pred: object | None = None
        self._shape: tuple[int, ...] | None = None  # the one input shape this predictor has seen

    def _predictor(self, shape: tuple[int, ...]) -> object:
        if self._pred is not None and shape == self._shape:
            return self._pred
        from paddlelite.lite import MobileConfig, create_paddle_predictor

        if self._pred is not None:  # free the old predictor (back to the system) before making the new one
            self._pred = None
            _return_free_heap()
        config = MobileConfig()
        config.set_model_from_file(self._path)
        try:
            self._pred = create_paddle_predictor(config)
        except Exception as exc:  # pybind raises untyped errors
            raise ModelError(f"cannot load Paddle Lite model {self._path}: {exc}") from exc
        self._shape = shape
        logger.debug("new Lite %s predictor for shape %s", self.role.value, shape)
        return self._pred

    def _run_one(self, x: np.ndarray, into: np.ndarray | None = None) -> np.ndarray:
        """Run one input; the output is copied out of the predictor (into ``into`` when given)."""
        pred = self._predictor(tuple(int(d) for d in x.shape))
        tensor = pred.get_input(0)  # type: ignore[attr-defined]
        tensor.from_numpy(x)  # allocates (and copies nothing under numpy 2) ...
        tensor.numpy()[...] = x  # ... so write through the zero-copy view
        pred.run()  # type: ignore[attr-defined]
        view = pred.get_output(0).numpy()  # type: ignore[attr-defined]
        if into is None:
            out = np.array(view, copy=True)
        else:
            into[...] = view
            out = into
        del view, tensor, pred  # the predictor's last references here: close() frees it
        if not self._keep:  # detection: its activations go back to the system before the lines are read
            self.close()
            _return_free_heap()
        return out

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.role is ModelRole.DET or x.shape[0] == 1:
            return self._run_one(x)
        # one sample at a time, each output written straight into the batch's: a PP-OCRv6 text line
        # 1,500 px wide gives 184 x 18,710 probabilities (14 MB), and a list of them concatenated
        # held every sample twice
        first = self._run_one(x[:1])
        out = np.empty((x.shape[0], *first.shape[1:]), dtype=first.dtype)
        out[:1] = first
        del first
        for i in range(1, x.shape[0]):
            self._run_one(x[i : i + 1], into=out[i : i + 1])
        return out

    def run_each(self, x: np.ndarray) -> Iterator[np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        for i in range(x.shape[0]):
            yield self._run_one(x[i : i + 1])

    def close(self) -> None:
        self._pred = None
        self._shape = None


def _return_free_heap() -> None:
    """Give the heap pages freed with the predictors back to the system (glibc's malloc_trim).

    A text line of a new width gets a new predictor, and the freed activations of dozens of them
    leave the heap fragmented, so each detection and each new line width allocated on top of the
    last ones' leftovers (see the module docstring). A fraction of a millisecond; a no-op where
    libc has no malloc_trim."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc
        return None


#: where `pip install paddlelite` can work at all (the `lite` extra's environment marker)
LITE_WHEELS = "Paddle Lite 2.13rc0 has wheels for CPython 3.10 on x86-64 only"


def lite_wheel_exists() -> bool:
    """True on the one platform Paddle Lite's last wheel (2.13rc0, cp310 x86-64) installs on."""
    import platform
    import sys

    return sys.version_info[:2] == (3, 10) and platform.machine() in ("x86_64", "AMD64")


def lite_missing_reason() -> str:
    """Why paddlelite is missing here, and what to do (for doctor, models list and the build)."""
    import platform
    import sys

    machine = platform.machine()
    here = f"this is Python {sys.version_info[0]}.{sys.version_info[1]} on {machine}"
    if machine not in ("x86_64", "AMD64"):
        return (
            f"{LITE_WHEELS}; {here}: build Paddle Lite's Python package from its ARM release and use "
            "the ARM .nb files from `edge-ocr models build`, or use the onnx engine"
        )
    if not lite_wheel_exists():
        return f"{LITE_WHEELS}; {here}: use the onnx or paddle engine, or install edge-ocr under Python 3.10"
    return "paddlelite is not installed: pip install 'edge-ocr[lite]'"


class LiteEngine(Engine):
    name = "lite"
    model_format = "nb"
    single_core = True

    @classmethod
    def unavailable_reason(cls) -> str | None:
        import importlib.util

        if importlib.util.find_spec("paddlelite") is None:
            return lite_missing_reason()
        return None

    def _load(self, role: ModelRole) -> Session:
        reason = self.unavailable_reason()
        if reason:
            raise EngineUnavailableError(reason)
        # detection runs once per image on the largest input: its activations are not kept
        return _LiteSession(role, str(self.files.path(role)), keep=role is not ModelRole.DET)

    def image_done(self) -> None:
        # the predictors (and their activations) are re-created for the next image's shapes anyway
        for sess in self._sessions.values():
            sess.close()
        _return_free_heap()

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"paddlelite": version("paddlelite")}
