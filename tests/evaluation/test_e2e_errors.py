"""The end-to-end error breakdown: each ground-truth line lands in the class its geometry and text say."""

from __future__ import annotations

from pathlib import Path

from edge_ocr.evaluation import DetSample, GtRegion, evaluate_e2e
from studies.e2e_errors import analyse, text_error_class

V4 = "ppocrv4-mobile"  # these tests pin PP-OCRv4 behaviour (golden text, parity with PaddleOCR 2.10)


def _quad(x0: float, y0: float, x1: float, y1: float) -> tuple[tuple[float, float], ...]:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def test_text_error_classes():
    assert text_error_class("date: 12", "date:12") == "text_space"
    assert text_error_class("taman daya,", "taman daya") == "text_punct"
    assert text_error_class("rounding adjustment", "rounding adjustmen") == "text_edge_missing"
    assert text_error_class("10.00", "0.00") == "text_edge_missing"
    assert text_error_class("gst 6%", "sr gst 6%") == "text_edge_extra"
    assert text_error_class("amount", "amouni") == "text_other"


def test_every_region_gets_its_class_and_the_hmean_agrees_with_the_metric():
    regions = (
        GtRegion("TOTAL 5.00", _quad(0, 0, 200, 20)),  # right
        GtRegion("THANK YOU", _quad(0, 30, 200, 50)),  # read without the space
        GtRegion("CASH RM 10", _quad(0, 60, 200, 80)),  # split in two boxes
        GtRegion("1", _quad(0, 90, 20, 110)),  # merged with the next one
        GtRegion("X", _quad(30, 90, 50, 110)),
        GtRegion("GONE", _quad(0, 200, 100, 220)),  # nothing there
        GtRegion("ABC", _quad(0, 120, 60, 140)),  # box too big: IoU 0.45
        GtRegion("###", _quad(300, 0, 400, 20)),  # don't care
    )
    preds = [
        ("total 5.00", _quad(0, 0, 200, 21)),
        ("THANKYOU", _quad(0, 30, 200, 50)),
        ("CASH", _quad(0, 60, 90, 80)),
        ("RM 10", _quad(110, 60, 200, 80)),
        ("1X", _quad(0, 90, 50, 110)),
        ("ABC", _quad(-12, 114, 72, 146)),
        ("noise", _quad(300, 0, 400, 20)),  # on the don't-care region: dropped
        ("stray", _quad(500, 500, 540, 520)),
    ]
    sample = DetSample(path=Path("x.png"), regions=regions)
    report = analyse([sample], [preds], case_insensitive=True)
    assert dict(report.gt) == {
        "right": 1,
        "text_space": 1,
        "split": 1,
        "merged": 2,
        "missed": 1,
        "iou_near": 1,
    }
    assert dict(report.fp) == {"fp_split_part": 2, "fp_merged": 1, "fp_on_matched": 1, "fp_spurious": 1}
    assert report.n_pred == 7
    metric = evaluate_e2e([(regions, preds)], case_insensitive=True)
    assert abs(report.e2e_hmean() - metric.e2e_hmean) < 1e-12
    assert report.e2e_hmean(["text_space"]) > report.e2e_hmean()


def test_det_grid_scores_box_geometry_on_generated_labels(tmp_path, model_store):
    import cv2
    import numpy as np

    from edge_ocr.ocr.pipeline.det import DetOptions
    from edge_ocr.ocr.reader import open_pipeline
    from edge_ocr.synth import GeneratorOptions, generate_label
    from studies.e2e_errors import det_grid

    samples = []
    for i in range(3):
        label = generate_label(np.random.default_rng([11, i]), GeneratorOptions())
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), label.image)
        regions = tuple(GtRegion(line.text, tuple(tuple(p) for p in line.box)) for line in label.lines)
        samples.append(DetSample(path=path, regions=regions))
    with open_pipeline("onnx", models=V4) as pipe:
        default, bloated = det_grid(samples, pipe, [DetOptions(), DetOptions(outline_unclip_ratio=4.0)], True)
    assert default["det_hmean"] > 0.8, default
    assert bloated["det_hmean"] < default["det_hmean"], (default, bloated)
