"""Graph rewrites on Paddle inference programs (``inference.pdmodel``), done on the protobuf.

Six rewrites. Five are here; the first two were measured in shared/PADDLE_LITE_NOTES.md, the
other three were needed by the PP-OCRv6 programs that X2Paddle makes from ONNX (models/x2paddle.py).
The memory planning rewrite ``reuse`` is in models/rewrite_reuse.py (the PP-OCRv6 Lite sets are
planned with Lite itself instead: models/lite_plan.py), and the protobuf plumbing all of them
share in models/program.py.

``affine``
    PP-LCNetV3's learnable-affine blocks ``elementwise_mul(x, w0[1])`` followed by
    ``elementwise_add(., w1[1])`` (scalar persistable parameters) become one
    ``scale(x, scale=w0, bias=w1)``: same output, ~3x faster on Paddle Lite x86.

``matmul``
    ``matmul_v2(X, W)`` with a persistable 2-D W and no transposes becomes
    ``mul(X, W, x_num_col_dims=rank(X)-1, y_num_col_dims=1)``. Paddle Lite's weight-only
    quantization de-quantizes mul weights at load but not matmul_v2 weights, so this must run
    before ``--quant_model``.

``chsplit``
    Each depthwise conv with a kernel of at least ``CHSPLIT_MIN_KERNEL`` (PP-OCRv6 det small's
    7x7 RepLK FPN convs) becomes ``split`` -> ``CHSPLIT_GROUPS`` depthwise convs -> ``concat``
    over channel groups: exact by construction. Lite x86 runs a 7x7 depthwise conv through an
    im2col-like workspace of C*49*H*W*4 bytes (361 MB at 480x640); split, the det small worker
    peaks at ~300 MB instead of ~620 MB and runs ~2x faster. This rewrite adds parameters (the
    split filters), so it rewrites the parameters file too.

``insplit``
    The same idea for one-group convs that Lite x86 runs through im2col (not 1x1, not its direct
    3x3-stride-2 kernel): a workspace of Cin*kh*kw*Hout*Wout floats per run. Each such conv whose
    workspace exceeds ``INSPLIT_FLOATS_PER_PIXEL`` floats per pixel of the network's input becomes
    ``split`` over input channels -> one conv per group -> a chain of ``elementwise_add``: the
    same sum in another order (float rounding only, ~1e-6). It needs the tensors' shapes, which
    models/lite_plan.py probes with Lite. On PP-OCRv6 det small: the stem's 2x2 conv (48 MB at
    544x960) and the head's 3x3 conv over 96 channels (108 MB) become 2 and 6 convs.

``clip_bounds``
    X2Paddle writes hard-sigmoid/hard-swish as ``clip(X, Min=fill_constant, Max=fill_constant)``
    with the attributes left at +-FLT_MAX. Paddle Inference 3.3.1's
    ``elementwise_act_onednn_fuse_pass`` fuses ``elementwise_add + clip`` using the attributes, not
    the tensors: the classifier's output moved by 0.1-0.2 with oneDNN (exact without). The rewrite
    writes the constants into ``min``/``max`` and drops the tensor inputs (and the then unread
    ``fill_constant`` ops): the same computation, and the fused op is right.

The parameters file is rewritten only by ``chsplit`` and ``insplit``: the parameters the other
rewrites no longer use stay in the program as persistable variables, so the combined
``inference.pdiparams`` (one tensor per persistable variable, sorted by name) still lines up and is
copied unchanged.

Only ``google.protobuf`` and Paddle's generated ``framework_pb2`` are used; no executor.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_ocr.errors import ModelError
from edge_ocr_models.lite_plan import PROBE_INPUTS
from edge_ocr_models.program import (
    MODEL_FILE,
    PARAMS_FILE,
    consumers,
    copy_common_attrs,
    framework_pb2,
    io_args,
    load_program,
    persistable_names,
    read_params,
    set_attr,
    tensor_dtypes,
    var_dims,
)
from edge_ocr_models.rewrite_reuse import SIZED_MARGIN, reuse_memory

logger = logging.getLogger(__name__)

REWRITES = ("chsplit", "insplit", "clip_bounds", "affine", "matmul", "reuse")
CHSPLIT_GROUPS = 24
CHSPLIT_MIN_KERNEL = 7
# insplit: the largest im2col workspace a conv may keep, in floats per pixel of the network's input
# (12: 25 MB for a 544x960 detection input, the size of det small's split 7x7 convs' workspace)
INSPLIT_FLOATS_PER_PIXEL = 12.0


def fuse_affine(prog: Any, params: dict[str, np.ndarray]) -> int:
    """Rewrite scalar ``mul + add`` pairs into ``scale``; returns how many were rewritten."""
    block = prog.blocks[0]
    ops = list(block.ops)
    var_by_name = {v.name: v for v in block.vars}
    used = consumers(ops)

    def scalar_param(name: str) -> float | None:
        v = var_by_name.get(name)
        if v is None or not v.persistable or name not in params or params[name].size != 1:
            return None
        if params[name].dtype.kind != "f":
            return None
        return float(params[name].reshape(-1)[0])

    new_ops: list[Any] = []
    removed_vars: set[str] = set()
    skip: set[int] = set()
    count = 0
    for i, op in enumerate(ops):
        if i in skip:
            continue
        fused = None
        if op.type == "elementwise_mul":
            ins, outs = io_args(op, "inputs"), io_args(op, "outputs")
            x, y, out = ins.get("X", [None])[0], ins.get("Y", [None])[0], outs.get("Out", [None])[0]
            w0, act = (x, y) if scalar_param(x or "") is not None else (y, x)
            if scalar_param(w0 or "") is not None and act is not None and scalar_param(act) is None and out:
                readers = used.get(out, [])
                if len(readers) == 1 and ops[readers[0]].type == "elementwise_add":
                    j = readers[0]
                    add = ops[j]
                    a_ins, a_out = io_args(add, "inputs"), io_args(add, "outputs").get("Out", [None])[0]
                    others = [n for n in (a_ins.get("X", [None])[0], a_ins.get("Y", [None])[0]) if n != out]
                    if len(others) == 1 and scalar_param(others[0]) is not None and a_out:
                        fused = (j, act, a_out, scalar_param(w0), scalar_param(others[0]), out)
        if fused is None:
            new_ops.append(op)
            continue
        j, act, a_out, w0v, w1v, mid = fused
        scale = _new_op("scale", {"X": [act]}, {"Out": [a_out]}, {})
        set_attr(scale, "scale", "FLOAT", w0v)
        set_attr(scale, "bias", "FLOAT", w1v)
        set_attr(scale, "bias_after_scale", "BOOLEAN", True)
        copy_common_attrs(op, scale)
        new_ops.append(scale)
        skip.add(j)
        removed_vars.add(mid)
        count += 1
    if count:
        del block.ops[:]
        block.ops.extend(new_ops)
        keep = [v for v in block.vars if v.name not in removed_vars]
        del block.vars[:]
        block.vars.extend(keep)
    return count


def matmul_to_mul(prog: Any) -> int:
    """Rewrite ``matmul_v2(X, persistable 2-D W)`` (no transposes) into ``mul``; returns the count."""
    block = prog.blocks[0]
    var_by_name = {v.name: v for v in block.vars}
    count = 0
    for op in block.ops:
        if op.type != "matmul_v2":
            continue
        attrs = {a.name: a for a in op.attrs}
        if any(attrs[k].b for k in ("trans_x", "trans_y") if k in attrs):
            continue
        ins = io_args(op, "inputs")
        x, w = ins.get("X", [None])[0], ins.get("Y", [None])[0]
        wv = var_by_name.get(w or "")
        wdims, xdims = var_dims(var_by_name, w or ""), var_dims(var_by_name, x or "")
        if (
            wv is None
            or not wv.persistable
            or wdims is None
            or len(wdims) != 2
            or not xdims
            or len(xdims) < 2
        ):
            continue
        keep = [
            a
            for a in op.attrs
            if a.name not in ("trans_x", "trans_y", "fused_reshape_Out", "fused_transpose_Out")
        ]
        del op.attrs[:]
        op.attrs.extend(keep)
        op.type = "mul"
        set_attr(op, "x_num_col_dims", "INT", len(xdims) - 1)
        set_attr(op, "y_num_col_dims", "INT", 1)
        count += 1
    return count


# --- chsplit: the parameters file as segments -------------------------------------------------


def _param_segments(prog: Any, params_path: Path) -> dict[str, list[Any]]:
    """name -> [LoDTensor header bytes, TensorDesc, data bytes] of a combined params file."""
    pb = framework_pb2()
    dtypes = tensor_dtypes()
    buf = Path(params_path).read_bytes()
    segs: dict[str, list[Any]] = {}
    off = 0
    try:
        for name in persistable_names(prog):
            start = off
            off += 4
            (lod_levels,) = struct.unpack_from("<Q", buf, off)
            off += 8
            for _ in range(lod_levels):
                (n,) = struct.unpack_from("<Q", buf, off)
                off += 8 + n
            head_end = off
            off += 4
            (desc_size,) = struct.unpack_from("<i", buf, off)
            off += 4
            desc = pb.VarType.TensorDesc()
            desc.ParseFromString(buf[off : off + desc_size])
            off += desc_size
            count = int(np.prod([int(d) for d in desc.dims])) if desc.dims else 1
            size = count * dtypes[desc.data_type].itemsize
            segs[name] = [buf[start:head_end], desc, buf[off : off + size]]
            off += size
    except (struct.error, ValueError, KeyError) as exc:
        raise ModelError(f"{params_path} does not match its program ({exc})") from exc
    if off != len(buf):
        raise ModelError(f"{params_path} has {len(buf) - off} trailing bytes; it does not match its program")
    return segs


def _join_segments(prog: Any, segs: dict[str, list[Any]]) -> bytes:
    out = bytearray()
    for name in persistable_names(prog):
        head, desc, data = segs[name]
        d = desc.SerializeToString()
        out += head + struct.pack("<I", 0) + struct.pack("<i", len(d)) + d + data
    return bytes(out)


def split_depthwise(
    prog: Any, segs: dict[str, list[Any]], groups: int = CHSPLIT_GROUPS, min_kernel: int = CHSPLIT_MIN_KERNEL
) -> int:
    """Split each depthwise conv with kernel height >= `min_kernel` into `groups` channel groups
    (adds the split filters to `segs`); returns how many convs were split."""
    block = prog.blocks[0]
    var_by_name = {v.name: v for v in block.vars}

    def add_var(name: str, like: str, dims: list[int]) -> Any:
        return _add_var(block, var_by_name, name, like, dims)

    new_ops: list[Any] = []
    count = 0
    for op in list(block.ops):
        if op.type != "depthwise_conv2d":
            new_ops.append(op)
            continue
        ins, outs = io_args(op, "inputs"), io_args(op, "outputs")
        w, x, y = ins["Filter"][0], ins["Input"][0], outs["Output"][0]
        dims = var_dims(var_by_name, w)
        xdims = var_dims(var_by_name, x)
        if not dims or len(dims) != 4 or dims[2] < min_kernel or dims[0] % groups or w not in segs:
            new_ops.append(op)
            continue
        cg = dims[0] // groups
        head, desc, data = segs[w]
        weights = np.frombuffer(data, np.dtype("<f4")).reshape(dims)
        xs = [f"{x}__cs{count}_{g}" for g in range(groups)]
        ys = [f"{y}__cs{g}" for g in range(groups)]
        for name in xs:
            add_var(name, x, [*(xdims or [-1])[:1], cg, *(xdims or [-1, -1, -1, -1])[2:]])
        ydims = var_dims(var_by_name, y) or [-1, -1, -1, -1]
        for name in ys:
            add_var(name, y, [ydims[0], cg, *ydims[2:]])
        new_ops.append(_split_op(x, xs))
        for g in range(groups):
            wn = f"{w}__cs{g}"
            add_var(wn, w, [cg, *dims[1:]])
            _add_param(segs, wn, head, desc, weights[g * cg : (g + 1) * cg])
            new_ops.append(_conv_copy(op, xs[g], wn, ys[g], groups=cg))
        new_ops.append(_new_op("concat", {"X": ys}, {"Out": [y]}, {"axis": 1}))
        count += 1
    if count:
        del block.ops[:]
        block.ops.extend(new_ops)
    return count


def _add_var(block: Any, var_by_name: dict[str, Any], name: str, like: str, dims: list[int]) -> Any:
    v = block.vars.add()
    v.CopyFrom(var_by_name[like])
    v.name = name
    t = v.type.dense_tensor.tensor
    del t.dims[:]
    t.dims.extend(dims)
    return v


def _new_op(kind: str, ins: dict[str, list[str]], outs: dict[str, list[str]], ints: dict[str, int]) -> Any:
    op = framework_pb2().OpDesc()
    op.type = kind
    for k, v in ins.items():
        x = op.inputs.add()
        x.parameter, x.arguments[:] = k, v
    for k, v in outs.items():
        x = op.outputs.add()
        x.parameter, x.arguments[:] = k, v
    for k, val in ints.items():
        set_attr(op, k, "INT", val)
    return op


def _conv_copy(op: Any, x: str, w: str, y: str, groups: int | None = None) -> Any:
    """A copy of conv ``op`` reading ``x`` with filter ``w`` into ``y`` (and ``groups`` groups)."""
    conv = framework_pb2().OpDesc()
    conv.CopyFrom(op)
    for p in conv.inputs:
        if p.parameter == "Filter":
            p.arguments[:] = [w]
        elif p.parameter == "Input":
            p.arguments[:] = [x]
    for p in conv.outputs:
        if p.parameter == "Output":
            p.arguments[:] = [y]
    if groups is not None:
        for at in conv.attrs:
            if at.name == "groups":
                at.i = groups
    return conv


def _split_op(x: str, parts: list[str]) -> Any:
    """``split`` of ``x`` into equal channel groups."""
    split = _new_op("split", {"X": [x]}, {"Out": parts}, {"axis": 1, "num": len(parts)})
    a = split.attrs.add()
    a.name, a.type = "sections", framework_pb2().INTS
    return split


def _add_param(segs: dict[str, list[Any]], name: str, head: Any, desc: Any, values: np.ndarray) -> None:
    """Add a float parameter to the parameters file's segments, with ``desc``'s header but its own dims."""
    d2 = framework_pb2().VarType.TensorDesc()
    d2.CopyFrom(desc)
    del d2.dims[:]
    d2.dims.extend(values.shape)
    segs[name] = [head, d2, np.ascontiguousarray(values, dtype="<f4").tobytes()]


def _ints_attr(op: Any, name: str, default: list[int]) -> list[int]:
    for a in op.attrs:
        if a.name == name:
            return list(a.ints) or default
    return default


def im2col_elements(op: Any, w_dims: list[int], out_shape: tuple[int, ...]) -> int:
    """Floats of the im2col workspace Paddle Lite x86 allocates for one run of a ``conv2d`` with
    one group (0 where it takes its 1x1 GEMM or its direct 3x3-stride-2 kernel instead)."""
    co, ci, kh, kw = w_dims
    strides = _ints_attr(op, "strides", [1, 1])
    pads = _ints_attr(op, "paddings", [0, 0])
    dilations = _ints_attr(op, "dilations", [1, 1])
    if kh == kw == 1 and strides == [1, 1] and not any(pads):
        return 0
    pads4 = pads if len(pads) == 4 else [pads[0], pads[0], pads[1], pads[1]]
    if (
        co % 8 == 0 and kh == kw == 3 and strides == [2, 2] and dilations == [1, 1]
        and len(set(pads4)) == 1 and pads4[0] in (0, 1)
    ):  # fmt: skip
        return 0
    return ci * kh * kw * int(np.prod(out_shape[2:]))


def split_input_channels(
    prog: Any,
    segs: dict[str, list[Any]],
    shapes: dict[str, tuple[int, ...]],
    input_pixels: int,
    budget: float = INSPLIT_FLOATS_PER_PIXEL,
) -> int:
    """Split each one-group ``conv2d`` whose im2col workspace exceeds ``budget`` floats per input
    pixel into convs over input-channel groups summed by ``elementwise_add`` (adds the split
    filters to ``segs``); returns how many convs were split."""
    block = prog.blocks[0]
    var_by_name = {v.name: v for v in block.vars}
    new_ops: list[Any] = []
    count = 0
    for op in list(block.ops):
        ins, outs = io_args(op, "inputs"), io_args(op, "outputs")
        w = (ins.get("Filter") or [None])[0]
        if (
            op.type != "conv2d"
            or w not in segs
            or any(ins.get(k) for k in ("Bias", "ResidualData"))
            or _int_attr(op, "groups", 1) != 1
        ):
            new_ops.append(op)
            continue
        x, y = ins["Input"][0], outs["Output"][0]
        dims = var_dims(var_by_name, w) or []
        col = im2col_elements(op, dims, shapes[y]) if len(dims) == 4 and y in shapes else 0
        per_pixel = col / max(1, input_pixels)
        ci = dims[1] if len(dims) == 4 else 0
        groups = next((g for g in range(2, ci + 1) if ci % g == 0 and per_pixel / g <= budget), 0)
        if per_pixel <= budget or not groups:
            new_ops.append(op)
            continue
        cg = ci // groups
        head, desc, data = segs[w]
        weights = np.frombuffer(data, np.dtype("<f4")).reshape(dims)
        xdims = var_dims(var_by_name, x) or [-1, -1, -1, -1]
        ydims = var_dims(var_by_name, y) or [-1, -1, -1, -1]
        xs = [f"{x}__is{count}_{g}" for g in range(groups)]
        ys = [f"{y}__is{g}" for g in range(groups)]
        sums = [f"{y}__isum{g}" for g in range(1, groups - 1)] + [y]
        for name in xs:
            _add_var(block, var_by_name, name, x, [xdims[0], cg, *xdims[2:]])
        for name in ys + sums[:-1]:
            _add_var(block, var_by_name, name, y, ydims)
        new_ops.append(_split_op(x, xs))
        for g in range(groups):
            wn = f"{w}__is{g}"
            _add_var(block, var_by_name, wn, w, [dims[0], cg, *dims[2:]])
            _add_param(segs, wn, head, desc, weights[:, g * cg : (g + 1) * cg])
            new_ops.append(_conv_copy(op, xs[g], wn, ys[g]))
        acc = ys[0]
        for g in range(1, groups):
            new_ops.append(
                _new_op("elementwise_add", {"X": [acc], "Y": [ys[g]]}, {"Out": [sums[g - 1]]}, {"axis": -1})
            )
            acc = sums[g - 1]
        count += 1
    if count:
        del block.ops[:]
        block.ops.extend(new_ops)
    return count


def _int_attr(op: Any, name: str, default: int) -> int:
    for a in op.attrs:
        if a.name == name:
            return int(a.i)
    return default


def rewrite_settings() -> dict[str, Any]:
    """The constants the split and plan rewrites use (part of a derived set's recipe)."""
    return {
        "chsplit_groups": CHSPLIT_GROUPS,
        "chsplit_min_kernel": CHSPLIT_MIN_KERNEL,
        "insplit_floats_per_pixel": INSPLIT_FLOATS_PER_PIXEL,
        "plan_margin": SIZED_MARGIN,
        "probe_inputs": {role: list(shape) for role, shape in PROBE_INPUTS.items()},
    }


def clip_bounds(prog: Any) -> int:
    """Move constant ``Min``/``Max`` tensor inputs of ``clip`` into its attributes; returns the count."""
    block = prog.blocks[0]
    ops = list(block.ops)
    producer = {a: op for op in ops for args in io_args(op, "outputs").values() for a in args}

    def constant(name: str) -> float | None:
        op = producer.get(name)
        if op is None or op.type != "fill_constant":
            return None
        if any(io_args(op, "inputs").get(k) for k in ("ValueTensor", "ShapeTensor", "ShapeTensorList")):
            return None
        attrs = {a.name: a for a in op.attrs}
        if attrs.get("str_value") is not None and attrs["str_value"].s:
            return float(attrs["str_value"].s)
        return float(attrs["value"].f) if "value" in attrs else None

    count = 0
    for op in ops:
        if op.type != "clip":
            continue
        ins = io_args(op, "inputs")
        bounds = {k: constant(ins[k][0]) for k in ("Min", "Max") if ins.get(k)}
        if not bounds or any(v is None for v in bounds.values()):
            continue
        for x in op.inputs:
            if x.parameter in bounds:
                del x.arguments[:]
        for a in op.attrs:
            if a.name in ("min", "max") and a.name.capitalize() in bounds:
                a.f = bounds[a.name.capitalize()]
        count += 1
    if count:  # drop the fill_constant ops nobody reads any more
        read = {a for op in block.ops for args in io_args(op, "inputs").values() for a in args}
        keep = [
            op
            for op in block.ops
            if op.type != "fill_constant"
            or any(a in read for args in io_args(op, "outputs").values() for a in args)
        ]
        del block.ops[:]
        block.ops.extend(keep)
    return count


@dataclass
class RewriteReport:
    applied: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"applied": list(self.applied), "counts": dict(self.counts)}


def rewrite_model(
    model_file: Path,
    params_file: Path,
    out_dir: Path,
    rewrites: tuple[str, ...] | list[str],
    *,
    shapes: dict[str, tuple[int, ...]] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> RewriteReport:
    """Write ``out_dir/inference.pdmodel`` (rewritten) and ``inference.pdiparams`` (unchanged copy,
    or rewritten by ``chsplit``/``insplit``). ``insplit`` needs the program's tensor ``shapes`` on
    ``input_shape`` (models/lite_plan.py's probe_shapes).

    The folder is written to a temporary sibling and renamed, so it is either complete or absent.
    """
    unknown = set(rewrites) - set(REWRITES)
    if unknown:
        raise ModelError(f"unknown rewrite(s) {', '.join(sorted(unknown))}; known: {', '.join(REWRITES)}")
    prog = load_program(model_file)
    report = RewriteReport()
    params_bytes: bytes | None = None  # None: the parameters file is copied unchanged
    if "insplit" in rewrites and (shapes is None or input_shape is None):
        raise ModelError("the insplit rewrite needs the program's tensor shapes and input shape")
    if "chsplit" in rewrites or "insplit" in rewrites:  # first: the other rewrites see the split convs
        segs = _param_segments(prog, params_file)
        if "chsplit" in rewrites:
            report.counts["depthwise_split"] = split_depthwise(prog, segs)
            report.applied.append("depthwise_split")
        if "insplit" in rewrites and shapes is not None and input_shape is not None:
            pixels = int(np.prod(input_shape[2:]))
            report.counts["input_channel_split"] = split_input_channels(prog, segs, shapes, pixels)
            report.applied.append("input_channel_split")
        if report.counts.get("depthwise_split") or report.counts.get("input_channel_split"):
            params_bytes = _join_segments(prog, segs)
    if "clip_bounds" in rewrites:
        report.counts["clip_bounds"] = clip_bounds(prog)
        report.applied.append("clip_bounds")
    if "matmul" in rewrites:
        report.counts["matmul_v2_to_mul"] = matmul_to_mul(prog)
        report.applied.append("matmul_v2_to_mul")
    if "affine" in rewrites:
        params = read_params(prog, params_file)
        report.counts["affine_to_scale"] = fuse_affine(prog, params)
        report.applied.append("affine_to_scale")
    if "reuse" in rewrites:  # last: it plans on the final op list
        report.counts["memory_reuse"] = reuse_memory(prog)
        report.applied.append("memory_reuse")
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        (tmp / MODEL_FILE).write_bytes(prog.SerializeToString())
        if params_bytes is None:
            shutil.copyfile(params_file, tmp / PARAMS_FILE)
        else:
            (tmp / PARAMS_FILE).write_bytes(params_bytes)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.debug("rewrote %s: %s", model_file, report.counts)
    return report
