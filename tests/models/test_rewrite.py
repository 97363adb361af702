"""The Paddle program rewrites keep the outputs (Paddle Inference, rewritten vs original)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.rewrite import load_program, read_params, rewrite_model
from models.runners import paddle_inference_run

pytestmark = pytest.mark.models

# (rewrites, expected counts per role) measured on PP-OCRv4 mobile det/rec and mobile v2 cls
EXPECTED = {
    ("affine",): {
        "det": {"affine_to_scale": 52},
        "rec": {"affine_to_scale": 56},
        "cls": {"affine_to_scale": 0},
    },
    ("matmul", "affine"): {
        "det": {"matmul_v2_to_mul": 0, "affine_to_scale": 52},
        "rec": {"matmul_v2_to_mul": 9, "affine_to_scale": 56},
        "cls": {"matmul_v2_to_mul": 1, "affine_to_scale": 0},
    },
}


@pytest.mark.parametrize("rewrites", list(EXPECTED), ids=["affine", "matmul+affine"])
@pytest.mark.parametrize("role", ["det", "rec", "cls"])
def test_rewrite_preserves_outputs(
    built_models_dir: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    role: str,
    rewrites: tuple[str, ...],
) -> None:
    src = built_models_dir / "paddle" / "fp32" / role
    x = request.getfixturevalue(f"{role}_tensor")
    report = rewrite_model(src / "inference.pdmodel", src / "inference.pdiparams", tmp_path / role, rewrites)
    assert report.counts == EXPECTED[rewrites][role]
    # the parameters file is reused unchanged
    assert (tmp_path / role / "inference.pdiparams").read_bytes() == (
        src / "inference.pdiparams"
    ).read_bytes()

    before = paddle_inference_run(src, x)
    after = paddle_inference_run(tmp_path / role, x)
    assert after.shape == before.shape
    assert np.abs(before).max() > 1e-3, "the original model gave an empty output: the test tensor is wrong"
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)


def test_rewritten_program_has_no_matmul_on_weights(built_models_dir: Path, tmp_path: Path) -> None:
    src = built_models_dir / "paddle" / "fp32" / "rec"
    rewrite_model(
        src / "inference.pdmodel", src / "inference.pdiparams", tmp_path / "rec", ("matmul", "affine")
    )
    prog = load_program(tmp_path / "rec" / "inference.pdmodel")
    persist = {v.name for v in prog.blocks[0].vars if v.persistable}
    for op in prog.blocks[0].ops:
        if op.type == "matmul_v2":  # only activation x activation matmuls (attention) remain
            ys = [a for x in op.inputs if x.parameter == "Y" for a in x.arguments]
            assert not set(ys) & persist
    types = [op.type for op in prog.blocks[0].ops]
    assert "scale" in types and types.count("mul") == 9


def test_read_params_matches_program(built_models_dir: Path) -> None:
    src = built_models_dir / "paddle" / "fp32" / "det"
    prog = load_program(src / "inference.pdmodel")
    params = read_params(prog, src / "inference.pdiparams")
    dims = {v.name: list(v.type.dense_tensor.tensor.dims) for v in prog.blocks[0].vars if v.name in params}
    assert params and all(list(params[k].shape) == dims[k] for k in params)
