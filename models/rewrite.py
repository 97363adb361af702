"""Graph rewrites on Paddle inference programs (``inference.pdmodel``), done on the protobuf.

Three rewrites; the first two were measured in shared/PADDLE_LITE_NOTES.md:

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

The parameters file is never rewritten: the parameters the rewrites no longer use stay in the
program as persistable variables, so the combined ``inference.pdiparams`` (one tensor per
persistable variable, sorted by name) still lines up and is copied unchanged.

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
REWRITES = ("affine", "matmul", "reuse")
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


def reuse_memory(prog: Any, margin: int = REUSE_MARGIN) -> int:
    """Rename intermediate variables with disjoint lifetimes to share buffers; returns how many were
    renamed. Greedy interval assignment in program order: a variable takes the most recently freed
    name of its dtype (neighbouring layers have similar sizes), or gets its own."""
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
    rename: dict[str, str] = {}
    slots: list[list[Any]] = []  # [name, reserved until op index]
    for name, (start, end) in sorted(life.items(), key=lambda kv: (kv[1][0], kv[0])):
        free = [s for s in slots if s[1] < start]
        if free:
            slot = max(free, key=lambda s: s[1])
            rename[name] = slot[0]
            slot[1] = end + margin
        else:
            slots.append([name, end + margin])
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
        shutil.copyfile(params_file, tmp / PARAMS_FILE)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.debug("rewrote %s: %s", model_file, report.counts)
    return report
