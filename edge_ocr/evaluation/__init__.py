"""Evaluation: PaddleOCR label-file readers, the metrics of shared/eval/README.md and a runner.

report = run_eval(Path("eval/icdar2015"), lambda image, det: pipeline.run(image, det=det))
print(report.to_markdown())
"""

from edge_ocr.evaluation.labels import (
    DONT_CARE,
    DetSample,
    GtRegion,
    RecSample,
    read_det_labels,
    read_rec_labels,
)
from edge_ocr.evaluation.metrics import (
    E2EMetrics,
    ImageCounts,
    ImageMatch,
    RecMetrics,
    count_image,
    evaluate_e2e,
    evaluate_rec,
    levenshtein,
    match_image,
    normalize_text,
)
from edge_ocr.evaluation.polygon import iou
from edge_ocr.evaluation.runner import (
    CASE_INSENSITIVE_SETS,
    EvalError,
    EvalReport,
    default_case_insensitive,
    read_image,
    resolve_label_file,
    run_eval,
)

__all__ = [
    "CASE_INSENSITIVE_SETS",
    "DONT_CARE",
    "DetSample",
    "E2EMetrics",
    "EvalError",
    "EvalReport",
    "GtRegion",
    "ImageCounts",
    "ImageMatch",
    "RecMetrics",
    "RecSample",
    "count_image",
    "default_case_insensitive",
    "evaluate_e2e",
    "evaluate_rec",
    "iou",
    "levenshtein",
    "match_image",
    "normalize_text",
    "read_det_labels",
    "read_image",
    "read_rec_labels",
    "resolve_label_file",
    "run_eval",
]
