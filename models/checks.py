"""The build's accuracy checks: each x86 set reads the generated check set and is compared with
its reference (the family's reference pipeline, or for sets converted from ONNX the ONNX Runtime
fp32 set), then judged; a measurement is kept while the pipeline code, the check set and the
reference are unchanged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_ocr.errors import EdgeOcrError, ModelError
from edge_ocr.ocr.engine import ModelFiles
from edge_ocr.ocr.pipeline.fingerprint import code_fingerprint
from edge_ocr_models import agreement as agreement_mod
from edge_ocr_models import verify as verify_mod
from edge_ocr_models.catalogue import Catalogue, Family
from edge_ocr_models.convert import ROLES, set_id_of, spec_for
from edge_ocr_models.manifest import json_hash, utc_now

logger = logging.getLogger(__name__)

#: the package (and version) that is each reference pipeline (models/reference.py)
REFERENCE_TOOLS = {
    "paddleocr-2.10": ("paddleocr", "paddlepaddle"),
    "rapidocr-3.10": ("rapidocr", "onnxruntime"),
}
ARM_REASON = "ARM model: not checked on this machine (x86); copy it to an ARM device with Paddle Lite 2.13rc0"


def reference_id(cat: Catalogue, family: Family, tools: dict[str, str | None]) -> str:
    """What the reference output depends on: the models it reads and the reference's versions."""
    if family.reference == "paddleocr-2.10":
        refs = [r for role in ROLES for r in (family.paddle[role].model, family.paddle[role].params)]
    else:
        refs = [family.onnx[role] for role in ROLES]
    refs.append(family.dict_ref)
    return json_hash(
        {
            "members": {str(r): cat.member_sha256(r) for r in refs},
            "tools": {k: tools.get(k) for k in REFERENCE_TOOLS[family.reference]},
        }
    )[:16]


def _needs_check(entry: dict[str, Any], check: verify_mod.CheckSpec, ref_id: str, set_id: str) -> bool:
    acc = entry.get("accuracy") or {}
    return not (
        acc.get("checked")
        and acc.get("pipeline") == code_fingerprint()
        and acc.get("check_set", {}).get("key") == check.key
        and acc.get("reference") == ref_id
        and (
            not _judged_by_tensors(set_id)
            or (acc.get("agreement") or {}).get("rule") == agreement_mod.RULE_ID
        )
    )


def _judged_by_tensors(set_id: str) -> bool:
    """A float set converted from the family's ONNX files is judged by `edge_ocr_models.agreement`."""
    spec = spec_for(set_id)
    return spec.derived and spec.variant == "fp32"


def check_sets(
    models_dir: Path,
    sets: dict[str, dict[str, Any]],
    set_ids: list[str],
    check: verify_mod.CheckSpec,
    family: Family,
    ref_id: str,
    progress: Callable[[str], None],
    threads: int | None,
) -> dict[str, float]:
    """Measure accuracy where it is missing, then judge every x86 set (float sets first).

    Sets converted from the family's ONNX files (spec.derived) are measured against the ONNX
    Runtime fp32 set's reading of the check set instead of the family's reference (issue 15)."""
    timings: dict[str, float] = {}
    onnx_id = set_id_of(family.family_id, "onnx", "fp32")
    onnx_ref_id = _onnx_reference_id(sets.get(onnx_id))

    def ref_id_of(set_id: str) -> str:
        return onnx_ref_id if spec_for(set_id).derived else ref_id

    todo = [
        s
        for s in set_ids
        if s in sets and spec_for(s).target == "x86" and _needs_check(sets[s], check, ref_id_of(s), s)
    ]
    if todo:
        t0 = time.perf_counter()
        progress(f"generating the check set ({check.count} labels, seed {check.seed})")
        images, truth = verify_mod.check_images(check)
        refs: list[list[verify_mod.Line]] | None = None
        ref_error = ""
        if any(not spec_for(s).derived for s in todo):
            progress(
                f"running the reference pipeline ({family.reference}) on the check set for {family.family_id}"
            )
            try:
                ref_files = _reference_files(models_dir, sets, family)
                refs = verify_mod.reference_lines(
                    models_dir, check, images, ref_id, family.reference, ref_files
                )
            except EdgeOcrError as exc:
                ref_error = str(exc)
            except Exception as exc:  # any failure of the third-party reference is reported, not fatal
                ref_error = f"{type(exc).__name__}: {exc}"
        onnx_refs: list[list[verify_mod.Line]] | None = None
        onnx_error = f"no {onnx_id} set; build it too"
        if any(spec_for(s).derived for s in todo) and onnx_id in sets:
            progress(f"reading the check set with {onnx_id} (ONNX Runtime), the converted sets' reference")
            try:
                onnx_refs, _ = verify_mod.run_set(
                    _model_files(models_dir, onnx_id, sets[onnx_id]), images, threads
                )
            except Exception as exc:  # reported on the converted sets, not fatal
                onnx_error = f"{onnx_id} could not read the check set: {type(exc).__name__}: {exc}"
        timings["reference"] = round(time.perf_counter() - t0, 2)
        for set_id in sorted(todo, key=lambda s: spec_for(s).variant != "fp32"):
            entry = sets[set_id]
            t1 = time.perf_counter()
            progress(f"checking {set_id} on the check set")
            set_refs, why = (onnx_refs, onnx_error) if spec_for(set_id).derived else (refs, ref_error)
            if set_refs is None:
                entry["accuracy"] = {"checked": False, "error": f"reference unavailable: {why}"}
                continue
            try:
                lines, ms = verify_mod.run_set(_model_files(models_dir, set_id, entry), images, threads)
                same_model = (
                    _tensor_agreement(models_dir, sets, onnx_id, set_id, images, threads)
                    if _judged_by_tensors(set_id)
                    else None
                )
            except EdgeOcrError as exc:
                entry["accuracy"] = {"checked": False, "error": str(exc)}
                continue
            except Exception as exc:  # an engine crash marks the set inactive, it does not stop the build
                logger.exception("checking %s failed", set_id)
                entry["accuracy"] = {"checked": False, "error": f"{type(exc).__name__}: {exc}"}
                continue
            metrics = verify_mod.compare(truth, set_refs, lines)
            reference_metrics = verify_mod.compare(truth, set_refs, set_refs)
            entry["accuracy"] = {
                "checked": True,
                "pipeline": code_fingerprint(),
                "check_set": {**check.as_dict(), "key": check.key},
                "reference": ref_id_of(set_id),
                **({"reference_set": onnx_id} if spec_for(set_id).derived else {}),
                **({"agreement": same_model} if same_model is not None else {}),
                **metrics,
                "reference_gt_line_accuracy_nospace": reference_metrics["gt_line_accuracy_nospace"],
                "reference_gt_char_accuracy": reference_metrics["gt_char_accuracy"],
                "ms_per_image": round(ms, 1),
                "checked_at": utc_now(),
            }
            timings[set_id] = round(time.perf_counter() - t1, 2)
    # judge (cheap; quantized sets against their float set's current numbers)
    for set_id in set_ids:
        if set_id not in sets:
            continue
        spec, entry = spec_for(set_id), sets[set_id]
        if spec.target != "x86":
            entry["accuracy"] = {"checked": False, "note": "not checked on this machine (x86)"}
            entry["active"], entry["reason"] = False, ARM_REASON
            continue
        acc = entry.get("accuracy") or {}
        if not acc.get("checked"):
            entry["active"] = False
            entry["reason"] = (
                f"accuracy not checked: {acc.get('error', 'unknown error')}; rerun `edge-ocr models build`"
            )
            continue
        base_id = spec.float_set_id
        base = sets.get(base_id, {}).get("accuracy")
        if spec.variant != "fp32" and not (base and base.get("checked")):
            base = None
        if spec.derived:
            ok, why = verify_mod.judge(
                set_id,
                spec.variant,
                acc,
                base,
                reference_name=f"ONNX Runtime ({onnx_id})",
            )
        else:
            ok, why = verify_mod.judge(set_id, spec.variant, acc, base)
        if spec.variant != "fp32" and base is not None:
            acc["baseline"] = {"set": base_id, "gt_line_accuracy_nospace": base["gt_line_accuracy_nospace"]}
        entry["active"], entry["reason"] = ok, why
    return timings


def _tensor_agreement(
    models_dir: Path,
    sets: dict[str, dict[str, Any]],
    onnx_id: str,
    set_id: str,
    images: list[Any],
    threads: int | None,
) -> dict[str, Any]:
    """The converted float set's outputs against ONNX Runtime's on the same tensors (issue 21):
    what `verify.judge` reads to decide whether it is the same model."""
    from edge_ocr.ocr.reader import pipeline_from_files

    ref = pipeline_from_files(_model_files(models_dir, onnx_id, sets[onnx_id]), threads=threads)
    cand = pipeline_from_files(_model_files(models_dir, set_id, sets[set_id]), threads=threads)
    try:
        found = agreement_mod.compare_engines(ref.engine, cand.engine, images)
    finally:
        ref.close()
        cand.close()
    same, why = found.judge(set_id, f"ONNX Runtime ({onnx_id})")
    return {**found.as_dict(), "same_model": same, "why": why}


def _onnx_reference_id(entry: dict[str, Any] | None) -> str:
    """What a converted set's reference (the family's ONNX fp32 set) depends on: its recipe."""
    return "onnx-fp32-" + (entry.get("recipe", "")[:16] if entry else "missing")


def _reference_files(models_dir: Path, sets: dict[str, dict[str, Any]], family: Family) -> ModelFiles | None:
    """The model files a reference pipeline reads: RapidOCR reads the family's own ONNX files (its
    fp32 ONNX set); PaddleOCR 2.10 finds the carrier's Paddle folders itself (None)."""
    if family.reference == "paddleocr-2.10":
        return None
    sid = set_id_of(family.family_id, "onnx", "fp32")
    if sid not in sets:
        raise ModelError(f"the {family.family_id} reference needs its ONNX fp32 set; build {sid} too")
    return _model_files(models_dir, sid, sets[sid])


def _model_files(models_dir: Path, set_id: str, entry: dict[str, Any]) -> ModelFiles:
    f = entry["files"]
    return ModelFiles(
        set_id=set_id,
        engine=entry["engine"],
        variant=entry["variant"],
        det=models_dir / f["det"]["path"],
        rec=models_dir / f["rec"]["path"],
        cls=models_dir / f["cls"]["path"],
        rec_dict=models_dir / f["dict"]["path"],
        family=spec_for(set_id).family,
        model_config=entry.get("model_config") or {},
    )
