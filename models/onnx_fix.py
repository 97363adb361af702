"""ONNX graph surgery that lets X2Paddle 1.6.0 turn the PP-OCRv6 ONNX files into static Paddle programs.

X2Paddle writes a static program whose shapes come from the ONNX graph. Three things in the
pinned ONNX files defeat it (docs/ARCHITECTURE.md, "Model families"):

- a Reshape whose target is computed at run time (``Shape -> Slice -> Concat -> Reshape``, the
  SVTR neck of rec small, the classifier's flatten): the program loses every dimension and
  X2Paddle's fused LayerNorm fails (``expected input with shape [*, 120], but got [-1, -1, -1]``).
  Each such target is evaluated with ONNX Runtime on a few probe inputs and replaced by a constant
  with Reshape's own semantics: a dimension equal on every probe stays, one that follows the
  input's dimension at the same position becomes 0 (copy), the rest (at most one) -1 (infer);
- ``Identity`` nodes (RapidOCR's exports carry ~140), which would become ``assign`` ops;
- tensor names that are not Python identifiers (``Reshape@18``): X2Paddle generates Python code
  from them.

The result is checked against the original with ONNX Runtime on the probes. ``onnxsim`` was tried
first and is not used: it wrote a sequence length of 1 into rec small's attention reshapes.

Needs onnx and onnxruntime (the project's environment, not the conversion tool's).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_ocr.errors import ModelError

logger = logging.getLogger(__name__)

#: probe input shapes per role (det: any H, W; rec: height 48, any width; cls: 48x192)
PROBES = {
    "det": [(1, 3, 640, 480), (2, 3, 320, 256)],
    "rec": [(1, 3, 48, 320), (2, 3, 48, 160), (1, 3, 48, 488)],
    "cls": [(1, 3, 48, 192), (2, 3, 48, 192)],
}
#: the fixed graph must equal the original within this on the probes (ORT fuses the two differently)
MAX_DIFF = 1e-4
_IDENT = re.compile(r"[^0-9A-Za-z_]")


@dataclass
class FixReport:
    identity_removed: int = 0
    renamed: int = 0
    reshapes_frozen: dict[str, list[int]] = field(default_factory=dict)
    dead_removed: int = 0
    max_diff: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "identity_removed": self.identity_removed,
            "renamed": self.renamed,
            "reshapes_frozen": dict(self.reshapes_frozen),
            "dead_removed": self.dead_removed,
            "max_abs_diff_vs_original": self.max_diff,
        }


def _const_names(g: Any) -> set[str]:
    out = {i.name for i in g.initializer}
    out.update(n.output[0] for n in g.node if n.op_type == "Constant")
    return out


def _remove_dead(m: Any) -> int:
    g = m.graph
    live = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in live for o in n.output):
            keep.append(n)
            live.update(n.input)
    removed = len(g.node) - len(keep)
    del g.node[:]
    g.node.extend(reversed(keep))
    inits = [i for i in g.initializer if i.name in live]
    del g.initializer[:]
    g.initializer.extend(inits)
    return removed


def _drop_identities(g: Any) -> int:
    outs = {o.name for o in g.output}
    alias: dict[str, str] = {}
    for n in list(g.node):
        if n.op_type == "Identity" and n.output[0] not in outs:
            alias[n.output[0]] = n.input[0]
            g.node.remove(n)

    def resolve(x: str) -> str:
        while x in alias:
            x = alias[x]
        return x

    for n in g.node:
        for i, x in enumerate(n.input):
            n.input[i] = resolve(x)
    return len(alias)


def _sanitize_names(g: Any) -> int:
    """Rename tensors and nodes whose names are not identifiers (graph inputs/outputs keep theirs
    when they are valid, as all of the pinned files' are)."""
    names = {i.name for i in g.initializer} | {x for n in g.node for x in (*n.input, *n.output) if x}
    names |= {i.name for i in g.input} | {o.name for o in g.output}
    taken = set(names)
    new: dict[str, str] = {}
    for name in sorted(names):
        if not _IDENT.search(name) and not name[:1].isdigit():
            continue
        cand = base = "t_" + _IDENT.sub("_", name)
        k = 0
        while cand in taken:
            k += 1
            cand = f"{base}_{k}"
        taken.add(cand)
        new[name] = cand
    if not new:
        return 0
    for i in g.initializer:
        i.name = new.get(i.name, i.name)
    for vi in (*g.input, *g.output):
        vi.name = new.get(vi.name, vi.name)
    for n in g.node:
        n.input[:] = [new.get(x, x) for x in n.input]
        n.output[:] = [new.get(x, x) for x in n.output]
        if n.name and _IDENT.search(n.name):
            n.name = "n_" + _IDENT.sub("_", n.name)
    return len(new)


def _probe_inputs(role: str) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random(s, dtype=np.float32) for s in PROBES[role]]


def _session(model: Any) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _freeze_reshapes(m: Any, role: str, report: FixReport) -> None:
    import copy

    from onnx import helper, numpy_helper

    g = m.graph
    consts = _const_names(g)
    targets = [n for n in g.node if n.op_type == "Reshape" and n.input[1] not in consts]
    if not targets:
        return
    probe = copy.deepcopy(m)
    existing = {o.name for o in probe.graph.output}
    for name in dict.fromkeys(x for n in targets for x in (n.input[0], n.input[1])):
        if name not in existing:
            probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    sess = _session(probe)
    outs = [o.name for o in sess.get_outputs()]
    iname = sess.get_inputs()[0].name
    runs = [dict(zip(outs, sess.run(None, {iname: x}))) for x in _probe_inputs(role)]
    for k, n in enumerate(targets):
        shapes = [r[n.input[1]].tolist() for r in runs]
        data_shapes = [r[n.input[0]].shape for r in runs]
        frozen: list[int] = []
        for i in range(len(shapes[0])):
            vals = [s[i] for s in shapes]
            if all(v == vals[0] for v in vals):
                frozen.append(int(vals[0]))
            elif all(i < len(d) and d[i] == s[i] for d, s in zip(data_shapes, shapes)):
                frozen.append(0)
            else:
                frozen.append(-1)
        if frozen.count(-1) > 1:
            raise ModelError(
                f"cannot make reshape {n.name or n.output[0]} static: probe targets {shapes} leave "
                f"{frozen.count(-1)} dimensions free"
            )
        cname = f"fixed_shape_{k}"
        g.initializer.append(numpy_helper.from_array(np.array(frozen, dtype=np.int64), cname))
        n.input[1] = cname
        report.reshapes_frozen[n.name or n.output[0]] = frozen


def fix_onnx(src: Path, dst: Path, role: str) -> FixReport:
    """Write the fixed graph of `src` to `dst`; raises ModelError when it differs from the original."""
    import onnx

    if role not in PROBES:
        raise ModelError(f"unknown model role {role!r}")
    original = onnx.load(str(src))
    m = onnx.load(str(src))
    del m.graph.value_info[:]
    report = FixReport()
    report.identity_removed = _drop_identities(m.graph)
    report.renamed = _sanitize_names(m.graph)
    _freeze_reshapes(m, role, report)
    report.dead_removed = _remove_dead(m)
    try:
        onnx.checker.check_model(m)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"the fixed {role} graph of {src.name} is not valid ONNX: {exc}") from exc
    s0, s1 = _session(original), _session(m)
    i0, i1 = s0.get_inputs()[0].name, s1.get_inputs()[0].name
    for x in _probe_inputs(role):
        a, b = s0.run(None, {i0: x})[0], s1.run(None, {i1: x})[0]
        if a.shape != b.shape:
            raise ModelError(f"the fixed {role} graph gives shape {b.shape}, the original {a.shape}")
        report.max_diff = max(report.max_diff, float(np.abs(a - b).max()))
    if report.max_diff > MAX_DIFF:
        raise ModelError(
            f"the fixed {role} graph differs from the original by {report.max_diff:.2e} (> {MAX_DIFF:.0e})"
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(dst))
    logger.debug("fixed %s: %s", src, report.as_dict())
    return report
