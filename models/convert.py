"""Turn fetched models into the files of each model set.

Set ids: PP-OCRv4 mobile's sets keep their first names (``onnx/fp32``, ``lite/int8@arm``); every
other family's are ``<family>/<engine>/<variant>`` (``ppocrv6-small/onnx/fp32``).

- ``paddle/fp32``: the carrier's inference folders, copied.
- ``onnx/fp32``: the carrier's ONNX files, copied.
- ``onnx/int8``: det and rec quantized with onnxruntime (see `edge_ocr_models.onnx_int8`); cls copied.
- ``lite/<variant>[@arm]``: Paddle Lite ``.nb`` made by ``paddlelite.lite.Opt`` in a child
  process (a crash in the converter cannot take the build down), after the graph rewrites of
  `edge_ocr_models.rewrite`: fp32 gets the affine rewrite, int16/int8 (weight-only quantization) also the
  matmul_v2 -> mul rewrite that the quantized runtime needs.
- Families pinned as ONNX only (PP-OCRv6) get Paddle and Lite sets *derived* from their ONNX
  files (`edge_ocr_models.x2paddle`): the Paddle set is X2Paddle's program with only ``clip_bounds``
  (PADDLE_DERIVED_REWRITES: oneDNN mis-fuses X2Paddle's clip; it cannot run the matmul -> mul
  program at all), the Lite sets get ``chsplit`` instead of ``affine``, and on x86 ``insplit``
  and the memory plan made with Lite's own op order and measured shapes (``lite_plan``,
  `edge_ocr_models.lite_plan`) instead of ``reuse`` (lite_rewrites).

Every function writes into a folder the caller gives (the build's staging folder) and returns
what it did, for the manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_ocr.errors import ModelError
from edge_ocr_models.fetch import FetchedFamily, copy_atomic
from edge_ocr_models.lite_plan import LITE_PLAN, PROBE_INPUTS, plan_memory, probe_shapes, run_lite_script
from edge_ocr_models.program import MODEL_FILE, PARAMS_FILE
from edge_ocr_models.rewrite import rewrite_model

logger = logging.getLogger(__name__)

ROLES = ("det", "rec", "cls")
DICT_NAME = "ppocr_keys_v1.txt"  # PP-OCRv4's; other families' sets hold theirs as dict.txt
LEGACY_FAMILY = "ppocrv4-mobile"  # its sets keep the ids they had before families
LITE_TARGETS = ("x86", "arm")
LITE_QUANT = {"fp32": None, "int16": "QUANT_INT16", "int8": "QUANT_INT8"}
OPT_TIMEOUT_S = 600


@dataclass(frozen=True)
class SetSpec:
    """What one set id means."""

    set_id: str
    engine: str  # "paddle" | "onnx" | "lite"
    variant: str  # "fp32" | "int16" | "int8"
    target: str = "x86"
    family: str = LEGACY_FAMILY
    derived: bool = False  # Paddle/Lite set made from the family's ONNX files (models/x2paddle.py)

    @property
    def folder(self) -> str:
        return self.set_id

    @property
    def is_float(self) -> bool:
        return self.variant == "fp32"

    @property
    def float_set_id(self) -> str:
        """The fp32 set of the same family and engine (a quantized set is judged against it)."""
        return set_id_of(self.family, self.engine, "fp32", self.target)

    def file_name(self, role: str) -> str:
        if role == "dict":
            return DICT_NAME if self.family == LEGACY_FAMILY else "dict.txt"
        return {"paddle": role, "onnx": f"{role}.onnx", "lite": f"{role}.nb"}[self.engine]


def set_id_of(family: str, engine: str, variant: str, target: str = "x86") -> str:
    base = f"{engine}/{variant}" + ("" if target == "x86" else f"@{target}")
    return base if family == LEGACY_FAMILY else f"{family}/{base}"


#: the sets each family's formats allow: Paddle models give Paddle and Lite sets, ONNX ones ONNX sets
PADDLE_SETS = (
    ("paddle", "fp32", "x86"),
    ("lite", "fp32", "x86"),
    ("lite", "int16", "x86"),
    ("lite", "int8", "x86"),
    ("lite", "fp32", "arm"),
    ("lite", "int16", "arm"),
    ("lite", "int8", "arm"),
)
ONNX_SETS = (("onnx", "fp32", "x86"), ("onnx", "int8", "x86"))
#: the families whose ONNX int8 set is built (a quantized set must keep the rule of
#: models/verify.py; PP-OCRv6's is not built yet: see docs/BENCHMARKS.md)
ONNX_INT8_FAMILIES = (LEGACY_FAMILY,)


#: families whose Paddle and Lite sets are converted from their ONNX files (no registry carries
#: them in Paddle's program format; docs/ARCHITECTURE.md, "Model families")
DERIVED_FAMILIES = ("ppocrv6-small", "ppocrv6-tiny")


def _family_specs(family: str, has_paddle: bool, has_onnx: bool) -> list[SetSpec]:
    out = []
    derived = not has_paddle and has_onnx and family in DERIVED_FAMILIES
    for engine, variant, target in (ONNX_SETS if has_onnx else ()) + (
        PADDLE_SETS if has_paddle or derived else ()
    ):
        if engine == "onnx" and variant == "int8" and family not in ONNX_INT8_FAMILIES:
            continue
        out.append(
            SetSpec(
                set_id_of(family, engine, variant, target),
                engine,
                variant,
                target,
                family,
                derived=derived and engine != "onnx",
            )
        )
    return out


def _all_specs() -> dict[str, SetSpec]:
    from edge_ocr_models.catalogue import load_catalogue

    cat = load_catalogue()
    specs: dict[str, SetSpec] = {}
    for fid, fam in cat.families.items():
        for s in _family_specs(fid, bool(fam.paddle), bool(fam.onnx)):
            specs[s.set_id] = s
    return specs


SET_SPECS: dict[str, SetSpec] = _all_specs()
ALL_SETS = tuple(SET_SPECS)


def spec_for(set_id: str) -> SetSpec:
    try:
        return SET_SPECS[set_id]
    except KeyError:
        raise ModelError(f"unknown model set {set_id!r}; known: {', '.join(ALL_SETS)}") from None


def lite_rewrites(variant: str, target: str = "x86", derived: bool = False) -> tuple[str, ...]:
    if derived:  # X2Paddle programs: no affine pairs
        rewrites = ("chsplit",) if variant == "fp32" else ("chsplit", "matmul")
        # x86: the im2col split and the memory plan made with Lite itself (models/lite_plan.py)
        return ("chsplit", "insplit", *rewrites[1:], LITE_PLAN) if target == "x86" else rewrites
    rewrites = ("affine",) if variant == "fp32" else ("matmul", "affine")
    # Lite plans memory reuse itself for ARM; on x86 it does not, so the program does (rewrite.py)
    return (*rewrites, "reuse") if target == "x86" else rewrites


# --- Paddle Lite ------------------------------------------------------------------------------

_OPT_SCRIPT = """
import json, sys
from paddlelite.lite import Opt
a = json.loads(sys.argv[1])
opt = Opt()
opt.set_model_file(a["model"])
opt.set_param_file(a["params"])
opt.set_model_type("naive_buffer")
opt.set_valid_places(a["target"])
if a["quant"]:
    opt.set_quant_model(True)
    opt.set_quant_type(a["quant"])
opt.set_optimize_out(a["out"])
opt.run()
"""


def lite_optimize(model_dir: Path, out_nb: Path, *, target: str, quant: str | None) -> None:
    """Run Paddle Lite's opt on a Paddle inference folder; writes `out_nb` (ending in .nb)."""
    if target not in LITE_TARGETS:
        raise ModelError(f"Paddle Lite target must be one of {', '.join(LITE_TARGETS)}, not {target!r}")
    if out_nb.suffix != ".nb":
        raise ModelError(f"{out_nb} must end in .nb")
    out_nb.parent.mkdir(parents=True, exist_ok=True)
    args = {
        "model": str(Path(model_dir) / MODEL_FILE),
        "params": str(Path(model_dir) / PARAMS_FILE),
        "target": target,
        "quant": quant,
        "out": str(out_nb.with_suffix("")),  # opt appends .nb
    }
    what = f"running opt on {model_dir} (target {target}, quant {quant})"
    run_lite_script(_OPT_SCRIPT, args, what, timeout=OPT_TIMEOUT_S)
    if not out_nb.is_file():
        raise ModelError(f"Paddle Lite wrote no {out_nb.name} {what}")


def build_lite_set(fetched: FetchedFamily, spec: SetSpec, out_dir: Path, work_dir: Path) -> dict[str, Any]:
    """Rewrite and convert det/rec/cls into `out_dir/<role>.nb`; returns rewrites and options per role."""
    rewrites = lite_rewrites(spec.variant, spec.target, spec.derived)
    quant = LITE_QUANT[spec.variant]
    info: dict[str, Any] = {"rewrites": {}, "opt": {"valid_targets": spec.target, "quant_type": quant}}
    program_rewrites = tuple(r for r in rewrites if r != LITE_PLAN)
    for role in ROLES:
        model, params = fetched.paddle[role]
        rw_dir = work_dir / "rewritten" / "+".join(rewrites) / role
        probe = PROBE_INPUTS[role]
        shapes = probe_shapes(model, params, probe) if "insplit" in rewrites else None
        report = rewrite_model(model, params, rw_dir, program_rewrites, shapes=shapes, input_shape=probe)
        info["rewrites"][role] = report.as_dict()
        src = rw_dir
        if LITE_PLAN in rewrites:
            src = rw_dir.with_name(f"{role}-planned")
            info["rewrites"][role]["applied"].append(LITE_PLAN)
            info["rewrites"][role]["memory_plan"] = plan_memory(rw_dir, src, probe)
        lite_optimize(src, out_dir / spec.file_name(role), target=spec.target, quant=quant)
    copy_atomic(fetched.dict_path, out_dir / spec.file_name("dict"))
    return info


# --- Paddle and ONNX float --------------------------------------------------------------------


#: the Paddle Inference set of a converted family: only the rewrite oneDNN needs (rewrite.py)
PADDLE_DERIVED_REWRITES = ("clip_bounds",)


def build_paddle_set(fetched: FetchedFamily, spec: SetSpec, out_dir: Path) -> dict[str, Any]:
    if spec.derived:
        reports = {}
        for role in ROLES:
            model, params = fetched.paddle[role]
            reports[role] = rewrite_model(model, params, out_dir / role, PADDLE_DERIVED_REWRITES).as_dict()
        copy_atomic(fetched.dict_path, out_dir / spec.file_name("dict"))
        return {"rewrites": reports}
    for role in ROLES:
        model, params = fetched.paddle[role]
        copy_atomic(model, out_dir / role / MODEL_FILE)
        copy_atomic(params, out_dir / role / PARAMS_FILE)
    copy_atomic(fetched.dict_path, out_dir / spec.file_name("dict"))
    return {"rewrites": None}


def build_onnx_fp32_set(fetched: FetchedFamily, spec: SetSpec, out_dir: Path) -> dict[str, Any]:
    for role in ROLES:
        copy_atomic(fetched.onnx[role], out_dir / spec.file_name(role))
    copy_atomic(fetched.dict_path, out_dir / spec.file_name("dict"))
    check_embedded_dictionary(out_dir / spec.file_name("rec"), out_dir / spec.file_name("dict"))
    return {"rewrites": None}


def check_embedded_dictionary(rec_onnx: Path, dict_path: Path) -> None:
    """A recognizer that carries its dictionary (RapidOCR's `character` metadata) must carry the
    same one, entry for entry, as the dictionary file the set reads: U+3000 is an entry, so lines
    are split on newlines only and stripped of "\r" only."""
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(rec_onnx), load_external_data=False).metadata_props}
    if "character" not in meta:
        return
    embedded = meta["character"].split("\n")
    text = dict_path.read_text(encoding="utf-8")
    listed = [line.rstrip("\r") for line in text.split("\n")]
    if listed and listed[-1] == "":
        listed.pop()
    if embedded != listed:
        first = next(
            (i for i, (a, b) in enumerate(zip(embedded, listed)) if a != b), min(len(embedded), len(listed))
        )
        raise ModelError(
            f"{rec_onnx.name}'s embedded dictionary ({len(embedded)} entries) differs from {dict_path.name} "
            f"({len(listed)} entries) from entry {first} on; the catalogue pins the wrong dictionary"
        )


# --- ONNX int8 --------------------------------------------------------------------------------

CalibrationSource = Callable[[str], Iterable[np.ndarray]]


def build_onnx_int8_set(
    fetched: FetchedFamily,
    spec: SetSpec,
    out_dir: Path,
    calibration: CalibrationSource,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Quantize det and rec (cls stays float: it is 0.6 MB and runs once per line at most)."""
    from edge_ocr_models.onnx_int8 import quantize_onnx

    info: dict[str, Any] = {"quantization": {}}
    for role in ("det", "rec"):
        info["quantization"][role] = quantize_onnx(
            fetched.onnx[role], out_dir / spec.file_name(role), role, calibration(role), settings[role]
        )
    copy_atomic(fetched.onnx["cls"], out_dir / spec.file_name("cls"))
    info["quantization"]["cls"] = "not quantized (float copy)"
    copy_atomic(fetched.dict_path, out_dir / spec.file_name("dict"))
    return info
