"""Memory-reuse planning on a Paddle program: the ``reuse`` graph rewrite (models/rewrite.py
applies it last, on the final op list) and the sized plan that models/lite_plan.py runs.

``reuse``
    Paddle Lite plans memory reuse (its ``memory_optimize_pass``) only for ARM and OpenCL
    targets: on x86 every intermediate tensor keeps its own buffer, so a worker held ~220 MB of
    activations for one 640x480 detection and ~180 MB for one 48x700 text line. This rewrite
    does the same planning on the program: intermediate variables whose lifetimes (first to last
    op touching them, widened by ``REUSE_MARGIN`` ops so that no op Lite fuses ever reads and
    writes one buffer) do not overlap share one name, hence one buffer. Only float tensors of the
    same dtype share; feed/fetch, persistable variables and the operands of ops that alias
    their input (reshape, squeeze, flatten...) never do. Measured output: bit-identical. Used on
    the PP-OCRv4 programs, whose op order is the order Lite runs them in.

``lite_plan`` (``reuse_memory_sized``)
    The plan made on the program Paddle Lite actually runs (after its fusions, in its order),
    with every tensor's measured size: models/lite_plan.py gets both from Lite. Tensors, largest
    first, take the smallest existing buffer none of whose tensors' lifetimes comes within
    ``SIZED_MARGIN`` ops of theirs, else a buffer of their own (greedy by size, as TFLite plans
    its shared tensors). It replaced ``reuse_dag`` for the X2Paddle programs of PP-OCRv6: Lite
    re-sorts those (X2Paddle emits the FPN branches in an odd order), so a program-order plan let
    two live tensors share a buffer, and the any-order rule that fixed it shared little. PP-OCRv6
    det small alone in a process, 544x960 input (Lite-only peak RSS): 424 MB with ``reuse_dag``,
    256 MB with this plan at one op of margin, 240 MB at none (with ``insplit``, models/rewrite.py).
"""

from __future__ import annotations

from typing import Any

from edge_ocr_models.program import framework_pb2, io_args

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
# the sized plan runs on the program Lite runs, fusions done (models/lite_plan.py checks that Lite
# fuses nothing more in it) and one op after another: a buffer an op last reads is free for the next
SIZED_MARGIN = 0


def _plannable(ops: list[Any], var_by_name: dict[str, Any]) -> dict[str, list[int]]:
    """Lifetimes ([first, last] op index) of the variables a plan may rename."""
    vt = framework_pb2().VarType
    excluded: set[str] = set()
    readers: set[str] = set()
    for op in ops:
        if op.type in NO_REUSE_OPS:
            for io in ("inputs", "outputs"):
                for args in io_args(op, io).values():
                    excluded.update(args)
        for args in io_args(op, "inputs").values():
            readers.update(args)
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
    return life


def _apply_renames(block: Any, ops: list[Any], rename: dict[str, str]) -> None:
    for op in ops:
        for io in (op.inputs, op.outputs):
            for x in io:
                x.arguments[:] = [rename.get(n, n) for n in x.arguments]
    keep = [v for v in block.vars if v.name not in rename]
    del block.vars[:]
    block.vars.extend(keep)


def reuse_memory_sized(prog: Any, sizes: dict[str, int], margin: int = SIZED_MARGIN) -> tuple[int, int]:
    """Rename variables to share buffers, largest tensors first, each into the smallest buffer whose
    tensors' lifetimes stay ``margin`` ops clear of its own. ``sizes``: elements per variable (a
    variable without one keeps its own buffer). Returns (variables renamed, planned elements)."""
    block = prog.blocks[0]
    ops = list(block.ops)
    var_by_name = {v.name: v for v in block.vars}
    life = {k: v for k, v in _plannable(ops, var_by_name).items() if k in sizes}
    buffers: list[tuple[str, int, list[tuple[int, int]]]] = []  # name, elements, lifetimes held
    rename: dict[str, str] = {}
    for name, (start, end) in sorted(life.items(), key=lambda kv: (-sizes[kv[0]], kv[1][0], kv[0])):
        fits = [b for b in buffers if all(end + margin < s or e + margin < start for s, e in b[2])]
        if fits:
            best = min(fits, key=lambda b: b[1])
            rename[name] = best[0]
            best[2].append((start, end))
        else:
            buffers.append((name, sizes[name], [(start, end)]))
    if rename:
        _apply_renames(block, ops, rename)
    return len(rename), sum(b[1] for b in buffers)


def reuse_memory(prog: Any, margin: int = REUSE_MARGIN) -> int:
    """Rename intermediate variables with disjoint lifetimes to share buffers; returns how many were
    renamed. Greedy interval assignment in program order: a variable takes the most recently freed
    name of its dtype (neighbouring layers have similar sizes), or gets its own."""
    block = prog.blocks[0]
    ops = list(block.ops)
    var_by_name = {v.name: v for v in block.vars}
    life = _plannable(ops, var_by_name)
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
    if rename:
        _apply_renames(block, ops, rename)
    return len(rename)
