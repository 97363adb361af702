"""Memory planning for Paddle Lite x86 done with Paddle Lite itself: its op order and measured shapes.

Paddle Lite plans no memory reuse on x86 (models/rewrite_reuse.py), so the build names the
buffers. A program-order plan (``reuse`` there, and ``reuse_dag``, which this replaced) guesses
two things: the order Lite runs the ops in after its fusions (``reuse_dag`` only shared buffers
between ops ordered alike in every topological order) and the tensors' sizes (a name's buffer
grows to the largest tensor it ever held, and the program-order plan pairs names by freeing
time, not size). On the PP-OCRv6 det
small program that left a 544x960 detection at 424 MB of peak RSS; with this plan and the
``insplit`` rewrite it is 240 MB (docs/BENCHMARKS.md).

``lite_plan`` asks Lite instead:

1. ``lite_order``: Lite's ``opt`` writes the program it will run as protobuf (its fusions done,
   ops in its run order). ``plan_memory`` checks that ``opt`` run again on the planned program
   gives back the same ops, in the same order, on the same variables (no further fusion, no
   re-sort, no renaming), so the plan is made on exactly what runs.
2. ``probe_shapes``: a copy of a program with one ``fetch`` per intermediate variable is run once
   by Lite on a reference input (``PROBE_INPUTS``, per role): the exact shape of every tensor.
3. edge_ocr_models.rewrite_reuse.reuse_memory_sized plans on (1) with the sizes of (2): tensors, largest
   first, take the smallest buffer whose users' lifetimes do not overlap theirs (greedy by size).
   On PP-OCRv6 det small at 640x640: 63 MB of buffers for 560 MB of tensors (the most that is
   ever live at once, a lower bound for any plan, is 38 MB).

The same probe sizes the convolutions that ``insplit`` (models/rewrite.py) splits: Lite x86 runs a
convolution that is not 1x1 and not its direct 3x3-stride-2 kernel through an im2col workspace of
Cin*kh*kw*Hout*Wout floats, allocated per run (det small's 3x3 head conv: 108 MB at 544x960).

Every Lite call runs in a child process, as the build's ``opt`` does: a crash there is an error
of the build, never the end of it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edge_ocr.errors import ModelError
from edge_ocr_models.program import MODEL_FILE, PARAMS_FILE, io_args, load_program
from edge_ocr_models.rewrite_reuse import reuse_memory_sized

logger = logging.getLogger(__name__)

#: the input each role is probed with (any size gives the same plan: every activation of det
#: scales with H*W, of rec and cls with W; these are the sizes the pipeline typically feeds)
PROBE_INPUTS: dict[str, tuple[int, int, int, int]] = {
    "det": (1, 3, 640, 640),
    "rec": (1, 3, 48, 320),
    "cls": (1, 3, 48, 192),
}
TIMEOUT_S = 600
LITE_PLAN = "lite_plan"  # its name among a set's rewrites (models/convert.py)

#: Paddle Lite's opt on x86, writing ``a["out"]`` as ``a["model_type"]`` (protobuf or naive_buffer)
_OPT_X86_SCRIPT = """
import json, sys
from paddlelite.lite import Opt
a = json.loads(sys.argv[1])
opt = Opt()
opt.set_model_file(a["model"])
opt.set_param_file(a["params"])
opt.set_model_type(a["model_type"])
opt.set_valid_places("x86")
opt.set_optimize_out(a["out"])
opt.run()
"""

_PROBE_SCRIPT = (
    _OPT_X86_SCRIPT
    + """
import numpy as np
from paddlelite.lite import MobileConfig, create_paddle_predictor
config = MobileConfig()
config.set_model_from_file(a["out"] + ".nb")
predictor = create_paddle_predictor(config)
x = np.random.default_rng(0).random(a["shape"], dtype=np.float32)
tensor = predictor.get_input(0)
tensor.from_numpy(x)
tensor.numpy()[...] = x  # numpy 2: from_numpy copies nothing (edge_ocr/ocr/engines/lite.py)
predictor.run()
shapes = [list(predictor.get_output(a["first"] + i).shape()) for i in range(a["count"])]
with open(a["result"], "w", encoding="utf-8") as f:
    json.dump(shapes, f)
"""
)


def run_lite_script(script: str, args: dict[str, Any], what: str, timeout: float = TIMEOUT_S) -> None:
    """Run a Paddle Lite script in a child process (a crash there cannot take the build down);
    ModelError naming ``what`` with the end of its output when it fails or times out."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"Paddle Lite timed out {what}") from exc
    if proc.returncode != 0:
        tail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
        raise ModelError(f"Paddle Lite failed {what} (exit {proc.returncode}): {tail}")


def lite_order(model_dir: Path, out_dir: Path) -> None:
    """Write the program Lite x86 runs (fusions done, ops in run order) to ``out_dir`` as an
    inference folder (``inference.pdmodel`` + ``inference.pdiparams``)."""
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="lite-order-") as tmp:
        args = {
            "model": str(Path(model_dir) / MODEL_FILE),
            "params": str(Path(model_dir) / PARAMS_FILE),
            "model_type": "protobuf",
            "out": str(Path(tmp) / "opt"),
        }
        run_lite_script(_OPT_X86_SCRIPT, args, f"writing the run order of {model_dir}")
        written = Path(tmp) / "opt"
        if not (written / "model").is_file() or not (written / "params").is_file():
            raise ModelError(f"Paddle Lite wrote no protobuf program for {model_dir}")
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        shutil.copyfile(written / "model", out_dir / MODEL_FILE)
        shutil.copyfile(written / "params", out_dir / PARAMS_FILE)


def intermediate_names(prog: Any) -> list[str]:
    """Every variable an op writes that is not a parameter, in program order."""
    block = prog.blocks[0]
    var_by_name = {v.name: v for v in block.vars}
    names: list[str] = []
    seen: set[str] = set()
    for op in block.ops:
        if op.type in ("feed", "fetch"):
            continue
        for args in io_args(op, "outputs").values():
            for a in args:
                v = var_by_name.get(a)
                if v is not None and not v.persistable and a not in seen:
                    seen.add(a)
                    names.append(a)
    return names


def probe_shapes(
    model_file: Path, params_file: Path, input_shape: tuple[int, ...]
) -> dict[str, tuple[int, ...]]:
    """The shape of every intermediate tensor when Lite x86 runs the program on ``input_shape``."""
    prog = load_program(model_file)
    block = prog.blocks[0]
    fetches = [op for op in block.ops if op.type == "fetch"]
    if len([op for op in block.ops if op.type == "feed"]) != 1 or not fetches:
        raise ModelError(f"{model_file}: the shape probe needs one feed and a fetch")
    names = intermediate_names(prog)
    first = len(fetches)
    for i, name in enumerate(names):
        op = block.ops.add()
        op.CopyFrom(fetches[0])
        for x in op.inputs:
            x.arguments[:] = [name]
        for a in op.attrs:
            if a.name == "col":
                a.i = first + i
    with tempfile.TemporaryDirectory(prefix="lite-probe-") as tmp:
        (Path(tmp) / "model").write_bytes(prog.SerializeToString())
        result = Path(tmp) / "shapes.json"
        args = {
            "model": str(Path(tmp) / "model"),
            "params": str(params_file),
            "model_type": "naive_buffer",
            "out": str(Path(tmp) / "probe"),
            "shape": list(input_shape),
            "first": first,
            "count": len(names),
            "result": str(result),
        }
        run_lite_script(_PROBE_SCRIPT, args, f"probing the tensor shapes of {model_file}")
        shapes = json.loads(result.read_text(encoding="utf-8"))
    return {name: tuple(int(d) for d in shape) for name, shape in zip(names, shapes, strict=True)}


def _op_signature(prog: Any) -> list[tuple[str, list[Any], list[Any]]]:
    """Each op's type and named inputs and outputs, in program order."""
    return [
        (
            op.type,
            sorted((k, tuple(v)) for k, v in io_args(op, "inputs").items()),
            sorted((k, tuple(v)) for k, v in io_args(op, "outputs").items()),
        )
        for op in prog.blocks[0].ops
    ]


def plan_memory(model_dir: Path, out_dir: Path, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Write to ``out_dir`` the program Lite x86 runs (``lite_order``) with its buffers planned by
    size (edge_ocr_models.rewrite_reuse.reuse_memory_sized on ``probe_shapes``); returns what was planned."""
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="lite-plan-") as tmp:
        ordered = Path(tmp) / "ordered"
        lite_order(model_dir, ordered)
        shapes = probe_shapes(ordered / MODEL_FILE, ordered / PARAMS_FILE, input_shape)
        prog = load_program(ordered / MODEL_FILE)
        sizes = {name: math.prod(shape) for name, shape in shapes.items()}
        renamed, elements = reuse_memory_sized(prog, sizes)
        staging = out_dir.with_name(f".{out_dir.name}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        (staging / MODEL_FILE).write_bytes(prog.SerializeToString())
        shutil.copyfile(ordered / PARAMS_FILE, staging / PARAMS_FILE)
        # the plan holds only for the ops it was made on: Lite must run the planned program as it is
        again = Path(tmp) / "again"
        lite_order(staging, again)
        if _op_signature(load_program(again / MODEL_FILE)) != _op_signature(prog):
            shutil.rmtree(staging, ignore_errors=True)
            raise ModelError(
                f"{model_dir}: Paddle Lite runs the planned program differently from the one planned "
                "(ops fused, re-sorted or renamed): its memory plan would not hold"
            )
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(staging, out_dir)
    unplanned = sum(sizes.values())
    logger.debug("%s: %d buffers renamed, %d of %d floats", model_dir, renamed, elements, unplanned)
    return {
        "probe_input": list(input_shape),
        "renamed": renamed,
        "buffers_mb": round(elements * 4 / 2**20, 1),
        "unplanned_mb": round(unplanned * 4 / 2**20, 1),
    }
