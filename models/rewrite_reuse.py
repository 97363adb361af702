"""Memory-reuse planning on a Paddle program: the ``reuse`` and ``reuse_dag`` graph rewrites
(models/rewrite.py applies them last, on the final op list).

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
"""

from __future__ import annotations

from typing import Any

from models.program import framework_pb2, io_args

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
                for args in io_args(op, io).values():
                    excluded.update(args)
        for args in io_args(op, "inputs").values():
            readers.update(args)
    if any_order:
        excluded |= _constant_fed(ops, var_by_name)
    life: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        for io in ("inputs", "outputs"):
            for args in io_args(op, io).values():
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
        ins = [a for args in io_args(op, "inputs").values() for a in args]
        if all((a in var_by_name and var_by_name[a].persistable) or a in const for a in ins):
            for args in io_args(op, "outputs").values():
                const.update(args)
    return const


def _ancestry(ops: list[Any], life: dict[str, list[int]]) -> tuple[list[int], dict[str, int], dict[str, int]]:
    """Per op the bitmask of its DAG ancestors; per variable its first writer and the ops touching it."""
    first_writer: dict[str, int] = {}
    ancestors = [0] * len(ops)
    for i, op in enumerate(ops):
        mask = 0
        for args in io_args(op, "inputs").values():
            for a in args:
                j = first_writer.get(a)
                if j is not None:
                    mask |= ancestors[j] | (1 << j)
        ancestors[i] = mask
        for args in io_args(op, "outputs").values():
            for a in args:
                first_writer.setdefault(a, i)
    touched: dict[str, int] = {}
    for i, op in enumerate(ops):
        for io in ("inputs", "outputs"):
            for args in io_args(op, io).values():
                for a in args:
                    if a in life:
                        touched[a] = touched.get(a, 0) | (1 << i)
    return ancestors, first_writer, touched
