"""The x86 Lite memory plan (models/lite_plan.py, rewrite_reuse.reuse_memory_sized) and the im2col
split (rewrite.py ``insplit``): the plan is exact and small, the split exact within float rounding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ocr_models.program import framework_pb2, load_program
from edge_ocr_models.rewrite_reuse import reuse_memory_sized

V6_DERIVED = "ppocrv6-small"


def _chain_program(sizes: dict[str, int]):
    """feed -> relu(x)=a -> relu(a)=b -> relu(b)=c -> relu(c)=d -> relu(d)=e -> fetch, one op each."""
    pb = framework_pb2()
    prog = pb.ProgramDesc()
    block = prog.blocks.add()
    names = ["x", *sizes, "out"]
    for n in names:
        v = block.vars.add()
        v.name = n
        v.type.type = pb.VarType.DENSE_TENSOR
        v.type.dense_tensor.tensor.data_type = pb.VarType.FP32
        v.type.dense_tensor.tensor.dims.extend([-1, -1])
    chain = list(zip(names, names[1:], strict=False))
    for src, dst in chain:
        op = block.ops.add()
        op.type = "relu"
        i = op.inputs.add()
        i.parameter, i.arguments[:] = "X", [src]
        o = op.outputs.add()
        o.parameter, o.arguments[:] = "Out", [dst]
    return prog


def _names(prog) -> list[list[str]]:
    return [[a for x in op.outputs for a in x.arguments] for op in prog.blocks[0].ops]


def test_sized_plan_shares_buffers_by_size_and_never_between_live_tensors():
    # lifetimes in op indices: a [0,1], b [1,2], c [2,3], d [3,4], e [4,5], f [5,6]
    sizes = {"a": 1000, "b": 10, "c": 20, "d": 900, "e": 5, "f": 15}
    prog = _chain_program(sizes)
    renamed, elements = reuse_memory_sized(prog, sizes, margin=1)
    outs = [n[0] for n in _names(prog)][:6]
    # largest first: d reuses a's buffer (a last read by op 1, d written by op 3), f c's, e b's
    assert outs == ["a", "b", "c", "a", "b", "c"]
    assert renamed == 3 and elements == 1000 + 20 + 10  # each buffer as big as its largest tensor
    holders: dict[str, list[int]] = {}
    for i, name in enumerate(outs):
        holders.setdefault(name, []).append(i)
    for ops in holders.values():  # a tensor is written by op i and read by op i + 1
        assert all(later - earlier > 2 for earlier, later in zip(ops, ops[1:], strict=False))


def test_sized_plan_leaves_unsized_and_aliased_variables_alone():
    sizes = {"a": 100, "b": 100, "c": 100, "d": 100, "e": 100}
    prog = _chain_program(sizes)
    prog.blocks[0].ops[2].type = "reshape2"  # b -> c aliases its input
    renamed, _ = reuse_memory_sized(prog, {k: v for k, v in sizes.items() if k != "e"}, margin=1)
    outs = [n[0] for n in _names(prog)]
    assert outs[1] == "b" and outs[2] == "c" and outs[4] == "e"
    assert renamed == 1 and outs[3] == "a"


def _derived_program(model_store, family: str, role: str) -> Path:
    from edge_ocr_models.x2paddle import DERIVED_DIR

    found = sorted((model_store.root / DERIVED_DIR / family).glob(f"*/{role}"))
    if not found:
        pytest.fail(f"no converted {family} {role} program under {model_store.root / DERIVED_DIR}")
    return found[-1]


def _lite_run(nb: Path, x: np.ndarray) -> np.ndarray:
    from paddlelite.lite import MobileConfig, create_paddle_predictor

    config = MobileConfig()
    config.set_model_from_file(str(nb))
    predictor = create_paddle_predictor(config)
    tensor = predictor.get_input(0)
    tensor.from_numpy(x)
    tensor.numpy()[...] = x
    predictor.run()
    return np.array(predictor.get_output(0).numpy(), copy=True)


@pytest.mark.models
@pytest.mark.lite
def test_splits_are_exact_on_v6_det_small(model_store, tmp_path):
    """chsplit and insplit (with the probed shapes) change det small's output by float rounding only
    (Paddle Inference, original vs rewritten program)."""
    from edge_ocr_models.lite_plan import PROBE_INPUTS, probe_shapes
    from edge_ocr_models.rewrite import rewrite_model
    from edge_ocr_models.runners import paddle_inference_run

    src = _derived_program(model_store, V6_DERIVED, "det")
    model, params = src / "inference.pdmodel", src / "inference.pdiparams"
    shapes = probe_shapes(model, params, PROBE_INPUTS["det"])
    assert shapes and all(len(s) == 4 for s in shapes.values())
    report = rewrite_model(
        model,
        params,
        tmp_path / "det",
        ("chsplit", "insplit"),
        shapes=shapes,
        input_shape=PROBE_INPUTS["det"],
    )
    assert report.counts["depthwise_split"] == 4  # the four 7x7 RepLK FPN convs
    assert report.counts["input_channel_split"] == 2  # the stem's 2x2 conv and the head's 3x3 conv
    types = [op.type for op in load_program(tmp_path / "det" / "inference.pdmodel").blocks[0].ops]
    assert types.count("split") == 6
    x = np.random.default_rng(0).random((1, 3, 320, 256), dtype=np.float32)
    before = paddle_inference_run(src, x)
    after = paddle_inference_run(tmp_path / "det", x)
    assert np.abs(before).max() > 1e-3
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-4)


@pytest.mark.models
@pytest.mark.lite
@pytest.mark.parametrize("role", ["det", "rec"])
def test_lite_plan_is_bit_identical_and_a_fraction_of_the_unplanned_memory(model_store, tmp_path, role):
    """The plan made with Lite's own run order and measured shapes: Lite reads bit-identically what it
    reads without any plan, on inputs that shrink and grow (each size in a fresh predictor, as the
    engine does), and the planned buffers are under a quarter of one buffer per tensor."""
    from edge_ocr_models.convert import lite_optimize
    from edge_ocr_models.lite_plan import PROBE_INPUTS, plan_memory

    src = _derived_program(model_store, V6_DERIVED, role)
    summary = plan_memory(src, tmp_path / "planned", PROBE_INPUTS[role])
    assert summary["renamed"] > 100
    assert summary["buffers_mb"] < summary["unplanned_mb"] / 4
    lite_optimize(src, tmp_path / "plain.nb", target="x86", quant=None)
    lite_optimize(tmp_path / "planned", tmp_path / "planned.nb", target="x86", quant=None)
    sizes = [(480, 640), (320, 320), (544, 960)] if role == "det" else [(48, 320), (48, 160), (48, 640)]
    rng = np.random.default_rng(3)
    for h, w in sizes:
        x = rng.random((1, 3, h, w), dtype=np.float32)
        np.testing.assert_array_equal(
            _lite_run(tmp_path / "planned.nb", x), _lite_run(tmp_path / "plain.nb", x)
        )
