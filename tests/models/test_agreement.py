"""Converted float sets are judged by a rule that holds on every CPU (issue 21): the same model within
float tolerance on the same tensors, text differences explained only by the reference's near-ties.

The machine-independence is shown, not assumed: the reference's own outputs perturbed by a few ulps,
and ONNX Runtime with another execution path (no graph optimisation: other kernels, other rounding),
must both pass; a real difference must not."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from edge_ocr.ocr.engine import Engine, Session
from edge_ocr.ocr.engines.onnx import OnnxEngine
from edge_ocr.types import ModelRole
from edge_ocr_models.agreement import (
    TIE_MARGIN,
    TOLERANCE,
    Agreement,
    LineDifference,
    compare_engines,
    line_difference,
)
from edge_ocr_models.verify import judge

CHARSET = ["blank", "A", "B", "C", " "]


def _probs(rows: list[list[float]]) -> np.ndarray:
    return np.asarray([rows], dtype=np.float32)


# -- the rule, on arrays ------------------------------------------------------------------------


def test_a_flip_at_a_near_tie_is_explained_and_a_clear_one_is_not() -> None:
    ref = _probs([[0.1, 0.9, 0.0, 0.0, 0.0], [0.0, 0.0, 0.5004, 0.4996, 0.0]])  # "AB", B and C tied
    tied = _probs([[0.1, 0.9, 0.0, 0.0, 0.0], [0.0, 0.0, 0.4996, 0.5004, 0.0]])  # "AC"
    diff = line_difference(0, ref, tied, CHARSET)
    assert diff is not None and (diff.reference, diff.candidate) == ("AB", "AC")
    assert diff.margins == pytest.approx((0.0008,), abs=1e-6) and diff.explained
    clear = _probs([[0.1, 0.9, 0.0, 0.0, 0.0], [0.0, 0.0, 0.8, 0.2, 0.0]])  # "AB", B well ahead
    bad = line_difference(0, clear, tied, CHARSET)
    assert bad is not None and bad.margins == pytest.approx((0.6,)) and not bad.explained
    assert line_difference(0, ref, ref.copy(), CHARSET) is None


def test_a_text_difference_with_no_flipped_frame_is_not_explained() -> None:
    assert not LineDifference(0, "A", "AA", ()).explained


def test_judge_names_the_network_the_distance_and_the_unexplained_line() -> None:
    found = Agreement()
    found.roles["det"].add(np.full(8, 5e-6), 0)
    found.lines = 10
    assert found.judge("x/paddle/fp32", "ONNX Runtime") == (True, "")
    found.differences.append(LineDifference(3, "LOT 1", "LOT 7", (TIE_MARGIN / 2,)))
    assert found.judge("x/paddle/fp32", "ONNX Runtime") == (True, "")
    found.differences.append(LineDifference(4, "EXP 2027", "EXP 2021", (0.4,)))
    ok, why = found.judge("x/paddle/fp32", "ONNX Runtime")
    assert not ok and "1 of 10 lines" in why and "'EXP 2027'" in why and "check image 4" in why
    found.roles["rec"].add(np.array([0.0, 0.05]), 2)
    ok, why = found.judge("x/paddle/fp32", "ONNX Runtime")
    assert not ok and "rec outputs" in why and "0.05" in why and "check image 2" in why


def test_a_small_shift_of_every_output_is_not_the_same_model() -> None:
    found = Agreement()
    found.roles["det"].add(np.full(1000, 5e-3), 0)  # within the per-element tolerance, everywhere
    ok, why = found.judge("x/lite/fp32", "ONNX Runtime")
    assert not ok and "on average" in why


def test_verify_judge_reads_the_agreement_for_float_sets() -> None:
    same = {"same_model": True, "why": ""}
    assert judge("x/lite/fp32", "fp32", {"ref_line_agreement": 0.99, "agreement": same}, None)[0]
    # one line in a hundred reading otherwise end to end is no longer a failure ...
    assert judge("x/lite/fp32", "fp32", {"ref_line_agreement": 0.99, "agreement": same}, None)[0]
    # ... but a different model is, whatever the end-to-end text
    other = {"same_model": False, "why": "x/lite/fp32's det outputs differ"}
    assert judge("x/lite/fp32", "fp32", {"ref_line_agreement": 1.0, "agreement": other}, None) == (
        False,
        "x/lite/fp32's det outputs differ",
    )


# -- the rule, on the real networks ------------------------------------------------------------


class _Perturbed(Session):
    """The reference's own outputs moved by `ulps` units in the last place, up or down at random per
    element (another CPU's kernels), or by `noise` (a different model)."""

    def __init__(self, inner: Session, ulps: int, noise: float, seed: int) -> None:
        self.role = inner.role
        self._inner = inner
        self._ulps = ulps
        self._noise = noise
        self._rng = np.random.default_rng(seed)

    def run(self, x: np.ndarray) -> np.ndarray:
        out = self._inner.run(x).astype(np.float32)
        if self._ulps:
            step = np.spacing(out) * self._rng.integers(-self._ulps, self._ulps + 1, size=out.shape)
            out = (out + step.astype(np.float32)).astype(np.float32)
        if self._noise:
            out = out + self._rng.uniform(-self._noise, self._noise, size=out.shape).astype(np.float32)
        return out

    def run_each(self, x: np.ndarray) -> Iterator[np.ndarray]:
        out = self.run(x)
        for i in range(out.shape[0]):
            yield out[i : i + 1]


class PerturbedEngine(Engine):
    name = "onnx"
    model_format = "onnx"

    def __init__(self, inner: Engine, *, ulps: int = 0, noise: float = 0.0, roles=tuple(ModelRole)) -> None:
        super().__init__(inner.files, inner.options)
        self.inner = inner
        self._ulps, self._noise, self._roles = ulps, noise, roles

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    def _load(self, role: ModelRole) -> Session:
        inner = self.inner.session(role)
        if role not in self._roles:
            return inner
        return _Perturbed(inner, self._ulps, self._noise, seed=hash(role.value) % 1000)


class _OrtUnoptimised(Session):
    def __init__(self, role: ModelRole, path: str) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        self.role = role
        self._sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        self._input = self._sess.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run(None, {self._input: x})[0]


class _OrtOtherPath(OnnxEngine):
    """ONNX Runtime with graph optimisation off and one thread: unfused kernels, another order of
    every sum, so other rounding, as another CPU's kernels give."""

    def _load(self, role: ModelRole) -> Session:
        return _OrtUnoptimised(role, str(self.files.path(role)))


@pytest.fixture(scope="module")
def check_images():
    from edge_ocr.synth import check_set

    return [label.image for label in check_set(seed=21, count=4)]


@pytest.fixture(scope="module")
def onnx_small(model_store):
    return model_store.resolve("onnx", "fp32", family="ppocrv6-small")


pytestmark = pytest.mark.models


def test_a_few_ulps_anywhere_keep_the_set_the_same_model(onnx_small, check_images) -> None:
    reference = OnnxEngine(onnx_small)
    candidate = PerturbedEngine(OnnxEngine(onnx_small), ulps=8)
    try:
        found = compare_engines(reference, candidate, check_images)
    finally:
        reference.close()
        candidate.close()
    assert found.lines >= 8 and all(r.runs for r in found.roles.values())
    assert 0 < found.roles["det"].max_abs_diff < 1e-5
    assert found.judge("ulps", "ONNX Runtime") == (True, "")
    assert not found.unexplained


def test_onnx_runtime_on_another_execution_path_is_the_same_model(onnx_small, check_images) -> None:
    reference = OnnxEngine(onnx_small)
    candidate = _OrtOtherPath(onnx_small)
    try:
        found = compare_engines(reference, candidate, check_images)
    finally:
        reference.close()
        candidate.close()
    assert found.roles["rec"].max_abs_diff > 0  # really another rounding, not the same kernels
    assert found.judge("ort-unoptimised", "ONNX Runtime") == (True, "")


def test_a_different_model_fails_and_says_which_network(onnx_small, check_images) -> None:
    reference = OnnxEngine(onnx_small)
    candidate = PerturbedEngine(OnnxEngine(onnx_small), noise=20 * TOLERANCE, roles=(ModelRole.CLS,))
    try:
        found = compare_engines(reference, candidate, check_images[:2])
    finally:
        reference.close()
        candidate.close()
    ok, why = found.judge("noisy", "ONNX Runtime")
    assert not ok and "cls outputs" in why


def test_converted_float_sets_are_active_and_record_why(model_store) -> None:
    """What the build recorded for every converted float set on this machine: the tensor rule ran,
    and the set is active (the README's "every fp32 set active")."""
    from edge_ocr.ocr.engines.registry import engine_class

    converted = [
        s
        for s in model_store.sets()
        if s.variant == "fp32"
        and s.target == "x86"
        and s.raw.get("converted_from_onnx")
        and engine_class(s.engine).unavailable_reason() is None
    ]
    assert converted, "no converted float set was built"
    for s in converted:
        agreement = s.accuracy.get("agreement")
        assert agreement is not None, f"{s.set_id} was not judged on tensors"
        assert s.active, f"{s.set_id}: {s.reason}"
        assert max(agreement["max_abs_diff"].values()) <= TOLERANCE
