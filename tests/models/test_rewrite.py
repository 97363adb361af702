"""The Paddle program rewrites keep the outputs (Paddle Inference, rewritten vs original)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ocr_models.program import load_program, read_params
from edge_ocr_models.rewrite import rewrite_model
from edge_ocr_models.runners import paddle_inference_run

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


def _lifetimes(prog) -> dict[str, tuple[int, int]]:
    from edge_ocr_models.program import io_args

    life: dict[str, list[int]] = {}
    for i, op in enumerate(prog.blocks[0].ops):
        for io in ("inputs", "outputs"):
            for args in io_args(op, io).values():
                for a in args:
                    life.setdefault(a, [i, i])[1] = i
    return {k: (v[0], v[1]) for k, v in life.items()}


@pytest.mark.parametrize("role", ["det", "rec", "cls"])
def test_memory_reuse_plan_is_safe(built_models_dir: Path, tmp_path: Path, role: str) -> None:
    """After the reuse rewrite no op reads and writes one buffer, no op that Lite may fuse with its
    neighbours sees a buffer another variable still holds, and weights and I/O keep their names."""
    from edge_ocr_models.program import io_args
    from edge_ocr_models.rewrite_reuse import NO_REUSE_OPS, REUSE_MARGIN

    src = built_models_dir / "paddle" / "fp32" / role
    before = load_program(src / "inference.pdmodel")
    report = rewrite_model(
        src / "inference.pdmodel", src / "inference.pdiparams", tmp_path / role, ("reuse",)
    )
    after = load_program(tmp_path / role / "inference.pdmodel")
    assert report.counts["memory_reuse"] > 100  # hundreds of activations share a dozen buffers
    ops_b, ops_a = list(before.blocks[0].ops), list(after.blocks[0].ops)
    assert [o.type for o in ops_b] == [o.type for o in ops_a]
    persist = {v.name for v in before.blocks[0].vars if v.persistable}
    for ob, oa in zip(ops_b, ops_a):
        ins_b, ins_a = io_args(ob, "inputs"), io_args(oa, "inputs")
        outs_b, outs_a = io_args(ob, "outputs"), io_args(oa, "outputs")
        if ob.type in NO_REUSE_OPS:
            assert (ins_a, outs_a) == (ins_b, outs_b)
        # renamed variables map back one to one within an op
        flat_b = [n for args in (*ins_b.values(), *outs_b.values()) for n in args]
        flat_a = [n for args in (*ins_a.values(), *outs_a.values()) for n in args]
        assert len(set(flat_b)) == len(set(flat_a))
        for nb, na in zip(flat_b, flat_a):
            if nb in persist:
                assert na == nb
    # two original variables that share a name never live within REUSE_MARGIN ops of each other
    life_b = _lifetimes(before)
    owner: dict[str, list[tuple[int, int]]] = {}
    for ob, oa in zip(ops_b, ops_a):
        for io in ("inputs", "outputs"):
            for nb, na in zip(
                [n for a in io_args(ob, io).values() for n in a],
                [n for a in io_args(oa, io).values() for n in a],
            ):
                spans = owner.setdefault(na, [])
                if life_b[nb] not in spans:
                    spans.append(life_b[nb])
    for spans in owner.values():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start > end + REUSE_MARGIN


@pytest.mark.parametrize("role", ["det", "rec"])
@pytest.mark.lite
def test_memory_reuse_gives_bit_identical_lite_output(
    built_models_dir: Path, tmp_path: Path, request: pytest.FixtureRequest, role: str
) -> None:
    """The same program converted with and without the reuse rewrite gives the same bits on Lite."""
    from edge_ocr_models.convert import lite_optimize
    from edge_ocr_models.runners import LiteRunner

    src = built_models_dir / "paddle" / "fp32" / role
    x = request.getfixturevalue(f"{role}_tensor")
    outs = []
    for rewrites in (("affine",), ("affine", "reuse")):
        rw = tmp_path / "+".join(rewrites)
        rewrite_model(src / "inference.pdmodel", src / "inference.pdiparams", rw, rewrites)
        nb = tmp_path / f"{'+'.join(rewrites)}.nb"
        lite_optimize(rw, nb, target="x86", quant=None)
        outs.append(LiteRunner(nb).run(x))
    assert np.abs(outs[0]).max() > 1e-2
    np.testing.assert_array_equal(outs[1], outs[0])
