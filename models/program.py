"""Paddle inference programs (``inference.pdmodel``) as protobuf, shared by the graph rewrites:
loading, the combined parameters file, and small helpers over ops and variables.

Only ``google.protobuf`` and Paddle's generated ``framework_pb2`` are used; no executor.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from edge_ocr.errors import ModelError

MODEL_FILE = "inference.pdmodel"
PARAMS_FILE = "inference.pdiparams"


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


def tensor_dtypes() -> dict[int, np.dtype]:
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
    dtypes = tensor_dtypes()
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


def io_args(op: Any, which: str) -> dict[str, list[str]]:
    return {x.parameter: list(x.arguments) for x in getattr(op, which)}


def var_dims(var_by_name: dict[str, Any], name: str) -> list[int] | None:
    v = var_by_name.get(name)
    if v is None or not v.type.HasField("dense_tensor"):
        return None
    return [int(d) for d in v.type.dense_tensor.tensor.dims]


def copy_common_attrs(src: Any, dst: Any) -> None:
    for a in src.attrs:
        if a.name in ("op_role", "op_namescope", "op_device", "op_callstack", "op_role_var"):
            dst.attrs.add().CopyFrom(a)


def set_attr(op: Any, name: str, kind: str, value: Any) -> None:
    pb = framework_pb2()
    a = op.attrs.add()
    a.name = name
    a.type = getattr(pb, kind)
    {
        "FLOAT": lambda: setattr(a, "f", float(value)),
        "INT": lambda: setattr(a, "i", int(value)),
        "BOOLEAN": lambda: setattr(a, "b", bool(value)),
    }[kind]()


def consumers(ops: list[Any]) -> dict[str, list[int]]:
    used: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        for args in io_args(op, "inputs").values():
            for a in args:
                used.setdefault(a, []).append(i)
    return used
