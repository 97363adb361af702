"""A Paddle Lite .nb made by the build runs on a real tensor and matches Paddle Inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ocr_models.runners import LiteRunner, paddle_inference_run

pytestmark = [pytest.mark.models, pytest.mark.lite]


@pytest.mark.parametrize(
    ("variant", "atol", "role"),
    [
        ("fp32", 1e-3, "det"),
        ("fp32", 1e-3, "rec"),
        ("fp32", 1e-3, "cls"),
        ("int16", 5e-2, "det"),
        ("int16", 5e-2, "rec"),
    ],
)
def test_lite_nb_matches_paddle_inference(
    built_models_dir: Path, request: pytest.FixtureRequest, variant: str, atol: float, role: str
) -> None:
    x = request.getfixturevalue(f"{role}_tensor")
    want = paddle_inference_run(built_models_dir / "paddle" / "fp32" / role, x)
    got = LiteRunner(built_models_dir / "lite" / variant / f"{role}.nb").run(x)
    assert got.shape == want.shape
    # numpy-2 trap: an input that was not copied gives a near-zero det map / garbage rec
    assert np.abs(got).max() > 1e-2
    np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    if role == "rec":
        assert (got.argmax(-1) == want.argmax(-1)).all()


def test_lite_int8_rec_reads_like_float(built_models_dir: Path, rec_tensor: np.ndarray) -> None:
    """Weight-only INT8 after the matmul_v2 -> mul rewrite: no NaN, nearly the same frames."""
    want = paddle_inference_run(built_models_dir / "paddle" / "fp32" / "rec", rec_tensor)
    got = LiteRunner(built_models_dir / "lite" / "int8" / "rec.nb").run(rec_tensor)
    assert np.isfinite(got).all()
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.9


def test_lite_output_is_owned_copy(built_models_dir: Path, det_tensor: np.ndarray) -> None:
    runner = LiteRunner(built_models_dir / "lite" / "fp32" / "det.nb")
    first = runner.run(det_tensor)
    keep = first.copy()
    runner.run(np.zeros_like(det_tensor))
    np.testing.assert_array_equal(first, keep)
