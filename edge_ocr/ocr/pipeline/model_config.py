"""A model's own settings, from PaddleOCR's `inference.yml` (parsed by the build, recorded in the
manifest as `model_config`, read by `PipelineOptions.for_family`). Pure: the build loads the
YAML, this turns the two documents into the small JSON-able shape the pipeline reads::

    {"det": {"mean": [..], "std": [..], "thresh": 0.2, "box_thresh": 0.45, "unclip_ratio": 1.4,
             "max_candidates": 3000, "limit_side_len": 736, "limit_type": "min"},
     "rec": {"image_shape": [3, 48, 320], "max_width": 3200}}

Where a document says nothing (PaddleOCR's `DetResizeForTest: null`), PaddleOCR's own defaults
apply: limit 736 on the short side; the recognizer's widest input is its TensorRT shape's.
"""

from __future__ import annotations

from typing import Any

DET_LIMIT_DEFAULT = (736, "min")  # PaddleOCR's DetResizeForTest() without arguments
REC_MAX_WIDTH_DEFAULT = 3200


def _ops(doc: dict[str, Any]) -> dict[str, Any]:
    """PreProcess.transform_ops as {op name: its arguments or {}}."""
    out: dict[str, Any] = {}
    for op in (doc.get("PreProcess") or {}).get("transform_ops") or []:
        if isinstance(op, dict):
            for name, args in op.items():
                out[name] = args or {}
    return out


def _floats(value: Any) -> list[float] | None:
    if isinstance(value, list | tuple) and len(value) == 3:
        return [float(v) for v in value]
    return None


def parse_inference_yml(det_yml: dict[str, Any], rec_yml: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if det_yml:
        ops = _ops(det_yml)
        post = det_yml.get("PostProcess") or {}
        det: dict[str, Any] = {}
        norm = ops.get("NormalizeImage") or {}
        if _floats(norm.get("mean")) and _floats(norm.get("std")):
            det["mean"], det["std"] = _floats(norm["mean"]), _floats(norm["std"])
        for key in ("thresh", "box_thresh", "unclip_ratio"):
            if key in post:
                det[key] = float(post[key])
        if "max_candidates" in post:
            det["max_candidates"] = int(post["max_candidates"])
        resize = ops.get("DetResizeForTest") or {}
        det["limit_side_len"] = int(resize.get("limit_side_len", DET_LIMIT_DEFAULT[0]))
        det["limit_type"] = str(resize.get("limit_type", DET_LIMIT_DEFAULT[1]))
        out["det"] = det
    if rec_yml:
        ops = _ops(rec_yml)
        rec: dict[str, Any] = {}
        shape = (ops.get("RecResizeImg") or {}).get("image_shape")
        if isinstance(shape, list) and len(shape) == 3:
            rec["image_shape"] = [int(v) for v in shape]
        try:
            widest = rec_yml["Hpi"]["backend_configs"]["paddle_infer"]["trt_dynamic_shapes"]["x"][-1][-1]
            rec["max_width"] = int(widest)
        except (KeyError, IndexError, TypeError, ValueError):
            rec["max_width"] = REC_MAX_WIDTH_DEFAULT
        out["rec"] = rec
    return out
