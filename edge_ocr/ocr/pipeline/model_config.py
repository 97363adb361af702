"""A model's own settings, read from PaddleOCR's inference.yml (no file access here: the model
build loads the YAML and records what `parse_inference_yml` returns in the manifest; the pipeline
reads it back as `ModelFiles.model_config`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from edge_ocr.errors import ModelError
from edge_ocr.ocr.pipeline.det import IMAGENET_MEAN, IMAGENET_STD

#: what PaddleOCR's DetResizeForTest does when its yml entry has no arguments (as PP-OCRv6's)
DEFAULT_LIMIT_SIDE_LEN = 736
DEFAULT_LIMIT_TYPE = "min"
#: PaddleX's OCRReisizeNormImg.max_imgW, when the yml gives no largest input shape
DEFAULT_REC_MAX_WIDTH = 3200
DEFAULT_REC_SHAPE = (3, 48, 320)
DET_LIMIT_DEFAULT = (DEFAULT_LIMIT_SIDE_LEN, DEFAULT_LIMIT_TYPE)
REC_MAX_WIDTH_DEFAULT = DEFAULT_REC_MAX_WIDTH

DEFAULTS: dict[str, dict[str, Any]] = {
    "det": {
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "thresh": 0.3,
        "box_thresh": 0.6,
        "unclip_ratio": 1.5,
        "max_candidates": 1000,
        "limit_side_len": DEFAULT_LIMIT_SIDE_LEN,
        "limit_type": DEFAULT_LIMIT_TYPE,
    },
    "rec": {"image_shape": list(DEFAULT_REC_SHAPE), "max_width": DEFAULT_REC_MAX_WIDTH},
}


class UnsupportedModelConfig(ModelError):
    """The inference.yml asks for something our pipeline does not do."""


def _ops(yml: Mapping[str, Any], name: str) -> dict[str, Any]:
    """{op name: its arguments (a dict, {} for none)} of a yml's PreProcess transform_ops."""
    section = yml.get(name) or {}
    ops = section.get("transform_ops") or [] if isinstance(section, Mapping) else []
    out: dict[str, Any] = {}
    for op in ops:
        if isinstance(op, Mapping):
            for key, args in op.items():
                out[str(key)] = dict(args) if isinstance(args, Mapping) else {}
    return out


def _scale(value: Any) -> float:
    if isinstance(value, str):  # "1./255."
        num, _, den = value.partition("/")
        return float(num) / float(den) if den else float(num)
    return float(value)


def _three(values: Any, what: str) -> list[float]:
    out = [float(v) for v in values]
    if len(out) != 3:
        raise UnsupportedModelConfig(f"{what} must have 3 values (one per colour channel), got {values!r}")
    return out


def parse_inference_yml(det_yml: Mapping[str, Any], rec_yml: Mapping[str, Any]) -> dict[str, Any]:
    """The settings our pipeline takes from a det and a rec model's inference.yml (as loaded by
    yaml.safe_load), as plain JSON-able values:

        {"det": {"mean", "std", "thresh", "box_thresh", "unclip_ratio", "max_candidates",
                 "limit_side_len", "limit_type"},
         "rec": {"image_shape": [3, 48, 320], "max_width": 3200}}

    Anything the yml does not say takes PaddleOCR's default for it; anything it asks that our
    pipeline does not do (another decoder, slow box scores, a fixed det input shape) raises
    UnsupportedModelConfig."""
    det = copy.deepcopy(DEFAULTS["det"])
    pre = _ops(det_yml, "PreProcess")
    norm = pre.get("NormalizeImage")
    if norm is not None:
        if "scale" in norm and abs(_scale(norm["scale"]) - 1 / 255) > 1e-9:
            raise UnsupportedModelConfig(f"detector input scale {norm['scale']!r}: only 1/255 is supported")
        if str(norm.get("order", "hwc")).lower() != "hwc":
            raise UnsupportedModelConfig(f"detector normalisation order {norm['order']!r}: only hwc")
        det["mean"] = _three(norm.get("mean", det["mean"]), "NormalizeImage mean")
        det["std"] = _three(norm.get("std", det["std"]), "NormalizeImage std")
    resize = pre.get("DetResizeForTest")
    if resize:
        if "image_shape" in resize or "resize_long" in resize:
            raise UnsupportedModelConfig(f"DetResizeForTest {resize!r}: only limit_side_len/limit_type")
        det["limit_side_len"] = int(resize.get("limit_side_len", det["limit_side_len"]))
        det["limit_type"] = str(resize.get("limit_type", det["limit_type"]))
    if det["limit_type"] not in ("min", "max"):
        raise UnsupportedModelConfig(f"DetResizeForTest limit_type {det['limit_type']!r}")
    post = det_yml.get("PostProcess") or {}
    if post.get("name", "DBPostProcess") != "DBPostProcess":
        raise UnsupportedModelConfig(f"detector post-processing {post.get('name')!r}: only DBPostProcess")
    if post.get("score_mode", "fast") != "fast" or post.get("use_dilation", False):
        raise UnsupportedModelConfig("DBPostProcess score_mode slow or use_dilation: not supported")
    for key, kind in (
        ("thresh", float),
        ("box_thresh", float),
        ("unclip_ratio", float),
        ("max_candidates", int),
    ):
        if key in post:
            det[key] = kind(post[key])

    rec = copy.deepcopy(DEFAULTS["rec"])
    rpost = rec_yml.get("PostProcess") or {}
    if rpost.get("name", "CTCLabelDecode") != "CTCLabelDecode":
        raise UnsupportedModelConfig(f"recognizer decoding {rpost.get('name')!r}: only CTCLabelDecode")
    resize_rec = _ops(rec_yml, "PreProcess").get("RecResizeImg") or {}
    if "image_shape" in resize_rec:
        shape = [int(v) for v in resize_rec["image_shape"]]
        if len(shape) != 3 or shape[0] != 3:
            raise UnsupportedModelConfig(f"recognizer image_shape {shape!r}: must be [3, H, W]")
        rec["image_shape"] = shape
    largest = _trt_max_shape(rec_yml)
    if largest is not None:
        rec["max_width"] = int(largest[-1])
    return {"det": det, "rec": rec}


def _trt_max_shape(yml: Mapping[str, Any]) -> list[int] | None:
    """The largest input shape the model declares for TensorRT (Hpi), e.g. [8, 3, 48, 3200]."""
    try:
        shapes = yml["Hpi"]["backend_configs"]["paddle_infer"]["trt_dynamic_shapes"]
        return [int(v) for v in next(iter(shapes.values()))[-1]]
    except (KeyError, TypeError, ValueError, IndexError, StopIteration, AttributeError):
        return None


def with_defaults(model_config: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A recorded model_config completed with PaddleOCR's defaults for what it leaves out."""
    out = copy.deepcopy(DEFAULTS)
    for part in ("det", "rec"):
        given = (model_config or {}).get(part) or {}
        out[part].update({k: v for k, v in given.items() if k in out[part]})
    return out
