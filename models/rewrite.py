"""Graph rewrites on Paddle inference programs (``inference.pdmodel``), done on the protobuf.

Five rewrites; the first two were measured in shared/PADDLE_LITE_NOTES.md, the last two were
needed by the PP-OCRv6 programs that X2Paddle makes from ONNX (models/x2paddle.py):

``affine``
    PP-LCNetV3's learnable-affine blocks ``elementwise_mul(x, w0[1])`` followed by
    ``elementwise_add(., w1[1])`` (scalar persistable parameters) become one
    ``scale(x, scale=w0, bias=w1)``: same output, ~3x faster on Paddle Lite x86.

``matmul``
    ``matmul_v2(X, W)`` with a persistable 2-D W and no transposes becomes
    ``mul(X, W, x_num_col_dims=rank(X)-1, y_num_col_dims=1)``. Paddle Lite's weight-only
    quantization de-quantizes mul weights at load but not matmul_v2 weights, so this must run
    before ``--quant_model``.

``reuse``
    Paddle Lite plans memory reuse (its ``memory_optimize_pass``) only for ARM and OpenCL
    targets: on x86 every intermediate tensor keeps its own buffer, so a worker held ~220 MB of
    activations for one 640x480 detection and ~180 MB for one 48x700 text line. This rewrite
    does the same planning on the program: intermediate variables whose lifetimes (first to last
    op touching them, widened by ``REUSE_MARGIN`` ops so that no op Lite fuses ever reads and
    writes one buffer) do not overlap share one name, hence one buffer. Only float tensors of the
    same dtype share; feed/fetch, persistable variables and the operands of ops that alias
    their input (reshape, squeeze, flatten...) never do. Measured output: bit-identical.

``reuse_dag``
    ``reuse`` made safe for programs whose op order is not the order Paddle Lite runs them in.
    Lite re-sorts the program topologically; X2Paddle emits the FPN branches of the PP-OCRv6 det
    programs in an odd but valid order, so lifetimes computed in program order let two live
    tensors share a buffer (Lite aborts: ``elementwise_op_func.h:340 Wrong broadcast type``). Here
    a variable takes over a name only when every op that touched the name's earlier occupants is
    a DAG ancestor of the op that writes it (safe in any topological order), and outputs of ops
    that read only parameters or constants (``fill_constant``, which Lite folds) never share.
    ``reuse`` itself is unchanged, so the PP-OCRv4 sets stay bit-identical (the rule would plan
    v4 det differently).

``chsplit``
    Each depthwise conv with a kernel of at least ``CHSPLIT_MIN_KERNEL`` (PP-OCRv6 det small's
    7x7 RepLK FPN convs) becomes ``split`` -> ``CHSPLIT_GROUPS`` depthwise convs -> ``concat``
    over channel groups: exact by construction. Lite x86 runs a 7x7 depthwise conv through an
    im2col-like workspace of C*49*H*W*4 bytes (361 MB at 480x640); split, the det small worker
    peaks at ~300 MB instead of ~620 MB and runs ~2x faster. This rewrite adds parameters (the
    split filters), so it rewrites the parameters file too.

``clip_bounds``
    X2Paddle writes hard-sigmoid/hard-swish as ``clip(X, Min=fill_constant, Max=fill_constant)``
    with the attributes left at +-FLT_MAX. Paddle Inference 3.3.1's
    ``elementwise_act_onednn_fuse_pass`` fuses ``elementwise_add + clip`` using the attributes, not
    the tensors: the classifier's output moved by 0.1-0.2 with oneDNN (exact without). The rewrite
    writes the constants into ``min``/``max`` and drops the tensor inputs (and the then unread
    ``fill_constant`` ops): the same computation, and the fused op is right.

The parameters file is rewritten only by ``chsplit``: the parameters the other rewrites no longer
use stay in the program as persistable variables, so the combined ``inference.pdiparams`` (one
tensor per persistable variable, sorted by name) still lines up and is copied unchanged.

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

logger = logging.getLogger(__name__)

MODEL_FILE = "inference.pdmodel"
PARAMS_FILE = "inference.pdiparams"
REWRITES = ("chsplit", "clip_bounds", "affine", "matmul", "reuse", "reuse_dag")
CHSPLIT_GROUPS = 12
CHSPLIT_MIN_KERNEL = 7
# ops whose operands must keep their own buffers: aliasing ops (Out may share X's memory),
# control flow and I/O (the same list as Paddle Lite's own memory_optimize_pass, plus aliasing)
NO_REUSE_OPS = frozenset(
    {
        "feed", "fetch", "while", "conditional_block", "conditional_block_infer", "merge_lod_tensor",
        "merge_lod_tensor_infer", "cast", "expand", "lod_reset", "equal", "yolo_box", "subgraph",
        "reshape", "reshape2", "flatten", "flatten2", "flatten_contiguous_range", "squeeze",
        "squeeze2", "unsqueeze", "unsqueeze2", "share_data", "assign",
    }
)  # fmt: skip
# Lite fuses chains of up to 3-4 ops (conv + bn + act, fc = mul + add + act, ...): a variable stays
# reserved this many ops past its last reader, so a fused op's input and output never share.
REUSE_MARGIN = 6


def framework_pb2() -> Any:
    """Paddle's ProgramDesc protobuf module (paddle 3.x: ``paddle.base.proto``; 2.x: ``paddle.fluid.proto``)."""
    try:
        from paddle.base.proto import framework_pb2 as pb
    except ImportError:  # pragma: no cover - paddle 2.x
        try:
            from paddle.fluid.proto import framework_pb2 as pb  # type: ignore[no-redef]
        except ImportError as exc:
            raise ModelError(
                "the model rewrites need paddlepaddle (framework_pb2); install the build extra: "
                "pip install 'edge-ocr[build]'"
            ) from exc
    return pb


def load_program(path: Path) -> Any:
    pb = framework_pb2()
    prog = pb.ProgramDesc()
    try:
        prog.ParseFromString(Path(path).read_bytes())
    except Exception as exc:  # protobuf raises DecodeError, a bare Exception subclass
        raise ModelError(f"{path} is not a Paddle program ({exc})") from exc
    return prog


def _dtypes() -> dict[int, np.dtype]:
    vt = framework_pb2().VarType
    return {
        vt.FP32: np.dtype("<f4"),
        vt.FP64: np.dtype("<f8"),
        vt.FP16: np.dtype("<f2"),
        vt.INT8: np.dtype("i1"),
        vt.UINT8: np.dtype("u1"),
        vt.INT16: np.dtype("<i2"),
        vt.INT32: np.dtype("<i4"),
        vt.INT64: np.dtype("<i8"),
        vt.BOOL: np.dtype("?"),
    }


def persistable_names(prog: Any) -> list[str]:
    """The variables of a combined params file, in file order."""
    vt = framework_pb2().VarType
    return sorted(
        v.name
        for v in prog.blocks[0].vars
        if v.persistable and v.type.type == vt.DENSE_TENSOR and v.name not in ("feed", "fetch")
    )


def read_params(prog: Any, params_path: Path) -> dict[str, np.ndarray]:
    """Parse a combined ``.pdiparams`` (a sequence of serialized LoDTensors) into arrays."""
    pb = framework_pb2()
    dtypes = _dtypes()
    buf = Path(params_path).read_bytes()
    off = 0
    out: dict[str, np.ndarray] = {}
    try:
        for name in persistable_names(prog):
            off += 4  # LoDTensor version
            (lod_levels,) = struct.unpack_from("<Q", buf, off)
            off += 8
            for _ in range(lod_levels):
                (n,) = struct.unpack_from("<Q", buf, off)
                off += 8 + n
            off += 4  # Tensor version
            (desc_size,) = struct.unpack_from("<i", buf, off)
            off += 4
            desc = pb.VarType.TensorDesc()
            desc.ParseFromString(buf[off : off + desc_size])
            off += desc_size
            dt = dtypes[desc.data_type]
            shape = tuple(int(d) for d in desc.dims)
            count = int(np.prod(shape)) if shape else 1
            out[name] = np.frombuffer(buf, dtype=dt, count=count, offset=off).reshape(shape)
            off += count * dt.itemsize
    except (struct.error, ValueError, KeyError) as exc:
        raise ModelError(
            f"{params_path} does not match its program ({exc}); the files are not a pair"
        ) from exc
    if off != len(buf):
        raise ModelError(f"{params_path} has {len(buf) - off} trailing bytes; it does not match its program")
    return out


def _io(op: Any, which: str) -> dict[str, list[str]]:
    return {x.parameter: list(x.arguments) for x in getattr(op, which)}


def _dims(var_by_name: dict[str, Any], name: str) -> list[int] | None:
    v = var_by_name.get(name)
    if v is None or not v.type.HasField("dense_tensor"):
        return None
    return [int(d) for d in v.type.dense_tensor.tensor.dims]


def _copy_common_attrs(src: Any, dst: Any) -> None:
    for a in src.attrs:
        if a.name in ("op_role", "op_namescope", "op_device", "op_callstack", "op_role_var"):
            dst.attrs.add().CopyFrom(a)


def _set_attr(op: Any, name: str, kind: str, value: Any) -> None:
    pb = framework_pb2()
    a = op.attrs.add()
    a.name = name
    a.type = getattr(pb, kind)
    {
        "FLOAT": lambda: setattr(a, "f", float(value)),
        "INT": lambda: setattr(a, "i", int(value)),
        "BOOLEAN": lambda: setattr(a, "b", bool(value)),
    }[kind]()


def _consumers(ops: list[Any]) -> dict[str, list[int]]:
    used: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        for args in _io(op, "inputs").values():
            for a in args:
                used.setdefault(a, []).append(i)
    return used


def fuse_affine(prog: Any, params: dict[str, np.ndarray]) -> int:
    """Rewrite scalar ``mul + add`` pairs into ``scale``; returns how many were rewritten."""
    block = prog.blocks[0]
    ops = list(block.ops)
    var_by_name = {v.name: v for v in block.vars}
    used = _consumers(ops)

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
            ins, outs = _io(op, "inputs"), _io(op, "outputs")
            x, y, out = ins.get("X", [None])[0], ins.get("Y", [None])[0], outs.get("Out", [None])[0]
            w0, act = (x, y) if scalar_param(x or "") is not None else (y, x)
            if scalar_param(w0 or "") is not None and act is not None and scalar_param(act) is None and out:
                readers = used.get(out, [])
                if len(readers) == 1 and ops[readers[0]].type == "elementwise_add":
                    j = readers[0]
                    add = ops[j]
                    a_ins, a_out = _io(add, "inputs"), _io(add, "outputs").get("Out", [None])[0]
                    others = [n for n in (a_ins.get("X", [None])[0], a_ins.get("Y", [None])[0]) if n != out]
                    if len(others) == 1 and scalar_param(others[0]) is not None and a_out:
                        fused = (j, act, a_out, scalar_param(w0), scalar_param(others[0]), out)
        if fused is None:
            new_ops.append(op)
            continue
        j, act, a_out, w0v, w1v, mid = fused
        scale = framework_pb2().OpDesc()
        scale.type = "scale"
        inp = scale.inputs.add()
        inp.parameter, inp.arguments[:] = "X", [act]
        o = scale.outputs.add()
        o.parameter, o.arguments[:] = "Out", [a_out]
        _set_attr(scale, "scale", "FLOAT", w0v)
        _set_attr(scale, "bias", "FLOAT", w1v)
        _set_attr(scale, "bias_after_scale", "BOOLEAN", True)
        _copy_common_attrs(op, scale)
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
        ins = _io(op, "inputs")
        x, w = ins.get("X", [None])[0], ins.get("Y", [None])[0]
        wv = var_by_name.get(w or "")
        wdims, xdims = _dims(var_by_name, w or ""), _dims(var_by_name, x or "")
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
        _set_attr(op, "x_num_col_dims", "INT", len(xdims) - 1)
        _set_attr(op, "y_num_col_dims", "INT", 1)
        count += 1
    return count


def reuse_memory(prog: Any, margin: int = REUSE_MARGIN, *, any_order: bool = False) -> int:
    """Rename intermediate variables with disjoint lifetimes to share buffers; returns how many were
    renamed. Greedy interval assignment in program order: a variable takes the most recently freed
    name of its dtype (neighbouring layers have similar sizes), or gets its own.

    ``any_order`` (the ``reuse_dag`` rewrite) keeps the plan valid in every topological order of
    the ops and keeps constant-fed outputs out of it (see the module docstring)."""
    vt = framework_pb2().VarType
    block = prog.blocks[0]
    ops = list(block.ops)
    var_by_name = {v.name: v for v in block.vars}
    excluded: set[str] = set()
    readers: set[str] = set()
    for op in ops:
        if op.type in NO_REUSE_OPS:
            for io in ("inputs", "outputs"):
                for args in _io(op, io).values():
                    excluded.update(args)
        for args in _io(op, "inputs").values():
            readers.update(args)
    if any_order:
        excluded |= _constant_fed(ops, var_by_name)
    life: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        for io in ("inputs", "outputs"):
            for args in _io(op, io).values():
                for a in args:
                    v = var_by_name.get(a)
                    if (
                        v is None
                        or v.persistable
                        or a in excluded
                        or a not in readers  # written only (dropout masks, XShape): left alone
                        or v.type.type != vt.DENSE_TENSOR
                        or v.type.dense_tensor.tensor.data_type != vt.FP32
                    ):
                        continue
                    span = life.setdefault(a, [i, i])
                    span[1] = i
    ancestors, first_writer, touched = _ancestry(ops, life) if any_order else ([], {}, {})
    rename: dict[str, str] = {}
    slots: list[list[Any]] = []  # [name, reserved until op index, ops that touched it (bitmask)]
    for name, (start, end) in sorted(life.items(), key=lambda kv: (kv[1][0], kv[0])):
        free = [s for s in slots if s[1] < start]
        if any_order:
            before = ancestors[first_writer.get(name, start)]
            free = [s for s in free if s[2] & ~before == 0]
        if free:
            slot = max(free, key=lambda s: s[1])
            rename[name] = slot[0]
            slot[1] = end + margin
            if any_order:
                slot[2] |= touched[name]
        else:
            slots.append([name, end + margin, touched.get(name, 0)])
    if not rename:
        return 0
    for op in ops:
        for io in (op.inputs, op.outputs):
            for x in io:
                x.arguments[:] = [rename.get(n, n) for n in x.arguments]
    keep = [v for v in block.vars if v.name not in rename]
    del block.vars[:]
    block.vars.extend(keep)
    return len(rename)


def _constant_fed(ops: list[Any], var_by_name: dict[str, Any]) -> set[str]:
    """Outputs of ops that read only persistable variables or other such outputs (Lite folds them)."""
    const: set[str] = set()
    for op in ops:
        if op.type == "feed":
            continue
        ins = [a for args in _io(op, "inputs").values() for a in args]
        if all((a in var_by_name and var_by_name[a].persistable) or a in const for a in ins):
            for args in _io(op, "outputs").values():
                const.update(args)
    return const


def _ancestry(ops: list[Any], life: dict[str, list[int]]) -> tuple[list[int], dict[str, int], dict[str, int]]:
    """Per op the bitmask of its DAG ancestors; per variable its first writer and the ops touching it."""
    first_writer: dict[str, int] = {}
    ancestors = [0] * len(ops)
    for i, op in enumerate(ops):
        mask = 0
        for args in _io(op, "inputs").values():
            for a in args:
                j = first_writer.get(a)
                if j is not None:
                    mask |= ancestors[j] | (1 << j)
        ancestors[i] = mask
        for args in _io(op, "outputs").values():
            for a in args:
                first_writer.setdefault(a, i)
    touched: dict[str, int] = {}
    for i, op in enumerate(ops):
        for io in ("inputs", "outputs"):
            for args in _io(op, io).values():
                for a in args:
                    if a in life:
                        touched[a] = touched.get(a, 0) | (1 << i)
    return ancestors, first_writer, touched


# --- chsplit: the parameters file as segments -------------------------------------------------


def _param_segments(prog: Any, params_path: Path) -> dict[str, list[Any]]:
    """name -> [LoDTensor header bytes, TensorDesc, data bytes] of a combined params file."""
    pb = framework_pb2()
    dtypes = _dtypes()
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
    pb = framework_pb2()
    block = prog.blocks[0]
    var_by_name = {v.name: v for v in block.vars}

    def add_var(name: str, like: str, dims: list[int]) -> Any:
        v = block.vars.add()
        v.CopyFrom(var_by_name[like])
        v.name = name
        t = v.type.dense_tensor.tensor
        del t.dims[:]
        t.dims.extend(dims)
        return v

    def new_op(kind: str, ins: dict[str, list[str]], outs: dict[str, list[str]], ints: dict[str, int]) -> Any:
        op = pb.OpDesc()
        op.type = kind
        for k, v in ins.items():
            x = op.inputs.add()
            x.parameter, x.arguments[:] = k, v
        for k, v in outs.items():
            x = op.outputs.add()
            x.parameter, x.arguments[:] = k, v
        for k, val in ints.items():
            _set_attr(op, k, "INT", val)
        return op

    new_ops: list[Any] = []
    count = 0
    for op in list(block.ops):
        if op.type != "depthwise_conv2d":
            new_ops.append(op)
            continue
        ins, outs = _io(op, "inputs"), _io(op, "outputs")
        w, x, y = ins["Filter"][0], ins["Input"][0], outs["Output"][0]
        dims = _dims(var_by_name, w)
        xdims = _dims(var_by_name, x)
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
        ydims = _dims(var_by_name, y) or [-1, -1, -1, -1]
        for name in ys:
            add_var(name, y, [ydims[0], cg, *ydims[2:]])
        split = new_op("split", {"X": [x]}, {"Out": xs}, {"axis": 1, "num": groups})
        a = split.attrs.add()
        a.name, a.type = "sections", pb.INTS
        new_ops.append(split)
        for g in range(groups):
            wn = f"{w}__cs{g}"
            add_var(wn, w, [cg, *dims[1:]])
            d2 = pb.VarType.TensorDesc()
            d2.CopyFrom(desc)
            del d2.dims[:]
            d2.dims.extend([cg, *dims[1:]])
            segs[wn] = [head, d2, weights[g * cg : (g + 1) * cg].astype("<f4").tobytes()]
            conv = pb.OpDesc()
            conv.CopyFrom(op)
            for p in conv.inputs:
                if p.parameter == "Filter":
                    p.arguments[:] = [wn]
                elif p.parameter == "Input":
                    p.arguments[:] = [xs[g]]
            for p in conv.outputs:
                if p.parameter == "Output":
                    p.arguments[:] = [ys[g]]
            for at in conv.attrs:
                if at.name == "groups":
                    at.i = cg
            new_ops.append(conv)
        new_ops.append(new_op("concat", {"X": ys}, {"Out": [y]}, {"axis": 1}))
        count += 1
    if count:
        del block.ops[:]
        block.ops.extend(new_ops)
    return count


def clip_bounds(prog: Any) -> int:
    """Move constant ``Min``/``Max`` tensor inputs of ``clip`` into its attributes; returns the count."""
    block = prog.blocks[0]
    ops = list(block.ops)
    producer = {a: op for op in ops for args in _io(op, "outputs").values() for a in args}

    def constant(name: str) -> float | None:
        op = producer.get(name)
        if op is None or op.type != "fill_constant":
            return None
        if any(_io(op, "inputs").get(k) for k in ("ValueTensor", "ShapeTensor", "ShapeTensorList")):
            return None
        attrs = {a.name: a for a in op.attrs}
        if attrs.get("str_value") is not None and attrs["str_value"].s:
            return float(attrs["str_value"].s)
        return float(attrs["value"].f) if "value" in attrs else None

    count = 0
    for op in ops:
        if op.type != "clip":
            continue
        ins = _io(op, "inputs")
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
        read = {a for op in block.ops for args in _io(op, "inputs").values() for a in args}
        keep = [
            op
            for op in block.ops
            if op.type != "fill_constant"
            or any(a in read for args in _io(op, "outputs").values() for a in args)
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
    model_file: Path, params_file: Path, out_dir: Path, rewrites: tuple[str, ...] | list[str]
) -> RewriteReport:
    """Write ``out_dir/inference.pdmodel`` (rewritten) and ``inference.pdiparams`` (unchanged copy).

    The folder is written to a temporary sibling and renamed, so it is either complete or absent.
    """
    unknown = set(rewrites) - set(REWRITES)
    if unknown:
        raise ModelError(f"unknown rewrite(s) {', '.join(sorted(unknown))}; known: {', '.join(REWRITES)}")
    prog = load_program(model_file)
    report = RewriteReport()
    params_bytes: bytes | None = None  # None: the parameters file is copied unchanged
    if "chsplit" in rewrites:  # first: the other rewrites see the split convs
        segs = _param_segments(prog, params_file)
        report.counts["depthwise_split"] = split_depthwise(prog, segs)
        report.applied.append("depthwise_split")
        if report.counts["depthwise_split"]:
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
    if "reuse" in rewrites and "reuse_dag" in rewrites:
        raise ModelError("choose one of the rewrites reuse and reuse_dag")
    if "reuse" in rewrites:  # last: it plans on the final op list
        report.counts["memory_reuse"] = reuse_memory(prog)
        report.applied.append("memory_reuse")
    if "reuse_dag" in rewrites:
        report.counts["memory_reuse_dag"] = reuse_memory(prog, any_order=True)
        report.applied.append("memory_reuse_dag")
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
