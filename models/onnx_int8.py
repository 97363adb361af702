"""INT8 ONNX models with onnxruntime.quantization (static, QDQ, per-channel weights).

Steps for each network: opset 12 -> 13 (``onnx.version_converter``; QDQ needs >= 13),
``quant_pre_process`` (shape inference + graph optimisation), then ``quantize_static`` calibrated
on real-looking tensors preprocessed exactly as the pipeline does.

Naive det INT8 moves the probability map a lot (PADDLE_LITE_NOTES section 4), so the layers
that matter most stay in float: the first convolution (it sees raw pixels) and the DB head
(everything after the FPN concat: convs, ConvTranspose, Sigmoid).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_ocr.errors import ModelError

logger = logging.getLogger(__name__)

TARGET_OPSET = 13


@dataclass(frozen=True)
class QuantSettings:
    """The recipe of one INT8 network; recorded in the manifest."""

    calibrate_method: str = "Percentile"  # MinMax | Entropy | Percentile | Distribution
    percentile: float = 99.999
    exclude_first_conv: bool = True
    exclude_head: bool = True  # det: nodes after the last Concat; rec/cls: the final MatMul/Gemm
    op_types: tuple[str, ...] = ("Conv", "MatMul")
    per_channel: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": "QDQ",
            "weights": "int8 per-channel" if self.per_channel else "int8",
            "activations": "uint8",
            "calibrate_method": self.calibrate_method,
            "percentile": self.percentile if self.calibrate_method == "Percentile" else None,
            "exclude_first_conv": self.exclude_first_conv,
            "exclude_head": self.exclude_head,
            "op_types": list(self.op_types),
            **self.extra,
        }


class TensorReader:
    """An onnxruntime CalibrationDataReader over a list (or iterable) of input tensors."""

    def __init__(self, input_name: str, tensors: Iterable[np.ndarray]) -> None:
        self.input_name = input_name
        self._tensors = list(tensors)
        self._it: Iterator[np.ndarray] = iter(self._tensors)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}

    def rewind(self) -> None:
        self._it = iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


def _consumers(graph: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def nodes_to_exclude(model: Any, role: str, settings: QuantSettings) -> list[str]:
    """Names of the nodes to keep in float: the first conv and the head."""
    graph = model.graph
    nodes = list(graph.node)
    excluded: list[str] = []
    if settings.exclude_first_conv:
        first = next((n for n in nodes if n.op_type == "Conv"), None)
        if first is not None:
            excluded.append(first.name)
    if settings.exclude_head:
        if role == "det":
            # DB head: every node downstream of the last Concat (the FPN output).
            concat = [n for n in nodes if n.op_type == "Concat"]
            if concat:
                cons = _consumers(graph)
                seen: set[str] = set()
                frontier = list(concat[-1].output)
                while frontier:
                    t = frontier.pop()
                    for n in cons.get(t, []):
                        if n.name not in seen:
                            seen.add(n.name)
                            frontier.extend(n.output)
                excluded.extend(n.name for n in nodes if n.name in seen)
        else:
            last = [n for n in nodes if n.op_type in ("MatMul", "Gemm")]
            if last:
                excluded.append(last[-1].name)
    if any(not name for name in excluded):
        raise ModelError("cannot exclude unnamed ONNX nodes from quantization (run quant_pre_process first)")
    return excluded


def _name_nodes(model: Any) -> None:
    """Give every node a unique name (quantization addresses nodes by name)."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def quantize_onnx(
    src: Path, dst: Path, role: str, calibration: Iterable[np.ndarray], settings: QuantSettings | None = None
) -> dict[str, Any]:
    """Write an INT8 QDQ model of `src` to `dst` (atomically); returns what was done."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    settings = settings or QuantSettings()
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".q-{role}-", dir=dst.parent) as tmpdir:
        tmp = Path(tmpdir)
        model = onnx.load(str(src))
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset < TARGET_OPSET:
            model = version_converter.convert_version(model, TARGET_OPSET)
        onnx.save(model, str(tmp / "opset.onnx"))
        try:
            quant_pre_process(str(tmp / "opset.onnx"), str(tmp / "pre.onnx"), auto_merge=True)
        except Exception as exc:  # symbolic shape inference gives up on some dynamic graphs
            logger.debug("symbolic shape inference failed for %s (%s); using ONNX shape inference", role, exc)
            quant_pre_process(str(tmp / "opset.onnx"), str(tmp / "pre.onnx"), skip_symbolic_shape=True)
        pre = onnx.load(str(tmp / "pre.onnx"))
        _name_nodes(pre)
        onnx.save(pre, str(tmp / "named.onnx"))
        exclude = nodes_to_exclude(pre, role, settings)
        reader = TensorReader(pre.graph.input[0].name, calibration)
        if not len(reader):
            raise ModelError(f"no calibration tensors for the {role} network")
        extra: dict[str, Any] = {}
        if settings.calibrate_method == "Percentile":
            extra["CalibPercentile"] = settings.percentile
        quantize_static(
            str(tmp / "named.onnx"),
            str(tmp / "int8.onnx"),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(settings.op_types),
            per_channel=settings.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=getattr(CalibrationMethod, settings.calibrate_method),
            extra_options=extra,
        )
        os.replace(tmp / "int8.onnx", dst)
    # quantize_static may leave augmented-model files beside the output
    for leftover in dst.parent.glob("augmented_model*.onnx"):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(dst.parent / "__pycache__", ignore_errors=True)
    return {
        "opset_from": int(opset),
        "opset_to": max(int(opset), TARGET_OPSET),
        "calibration_tensors": len(reader),
        "excluded_nodes": exclude,
        **settings.as_dict(),
    }
