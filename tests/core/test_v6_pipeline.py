"""The PP-OCRv6 families' pipeline settings: read from the models' own inference.yml, RapidOCR
3.10's defaults in raw mode, and the pieces of RapidOCR's pipeline ours reproduces (checked
against RapidOCR's own functions); PP-OCRv4's settings unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from edge_ocr.ocr.pipeline import det as det_stage
from edge_ocr.ocr.pipeline import prepare
from edge_ocr.ocr.pipeline.model_config import (
    UnsupportedModelConfig,
    parse_inference_yml,
    with_defaults,
)
from edge_ocr.ocr.pipeline.rec import rounded_score
from edge_ocr.ocr.pipeline.runner import PipelineOptions

# what PaddleOCR 3.7 ships as PP-OCRv6 small's inference.yml, the parts that matter
DET_YML = {
    "Global": {"model_name": "PP-OCRv6_small_det"},
    "PostProcess": {
        "name": "DBPostProcess",
        "thresh": 0.2,
        "box_thresh": 0.45,
        "unclip_ratio": 1.4,
        "max_candidates": 3000,
    },
    "PreProcess": {
        "transform_ops": [
            {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
            {"DetLabelEncode": None},
            {"DetResizeForTest": None},
            {
                "NormalizeImage": {
                    "mean": [0.485, 0.456, 0.406],
                    "std": [0.229, 0.224, 0.225],
                    "order": "hwc",
                    "scale": "1./255.",
                }
            },
            {"ToCHWImage": None},
        ]
    },
}
REC_YML = {
    "Hpi": {
        "backend_configs": {
            "paddle_infer": {
                "trt_dynamic_shapes": {"x": [[1, 3, 48, 160], [1, 3, 48, 320], [8, 3, 48, 3200]]}
            }
        }
    },
    "PreProcess": {
        "transform_ops": [
            {"DecodeImage": {"img_mode": "BGR"}},
            {"RecResizeImg": {"image_shape": [3, 48, 320]}},
        ]
    },
    "PostProcess": {"name": "CTCLabelDecode", "character_dict": ["a", "\u3000"]},
}
SMALL = {
    "det": {
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "thresh": 0.2,
        "box_thresh": 0.45,
        "unclip_ratio": 1.4,
        "max_candidates": 3000,
        "limit_side_len": 736,
        "limit_type": "min",
    },
    "rec": {"image_shape": [3, 48, 320], "max_width": 3200},
}


def test_inference_yml_gives_the_models_own_settings():
    assert parse_inference_yml(DET_YML, REC_YML) == SMALL
    import json

    assert json.loads(json.dumps(SMALL)) == SMALL


@pytest.mark.parametrize(
    "change",
    [
        {"PostProcess": {"name": "DBPostProcess", "score_mode": "slow"}},
        {"PostProcess": {"name": "EASTPostProcess"}},
        {"PreProcess": {"transform_ops": [{"DetResizeForTest": {"image_shape": [640, 640]}}]}},
        {"PreProcess": {"transform_ops": [{"NormalizeImage": {"mean": [0.5], "std": [0.5, 0.5, 0.5]}}]}},
    ],
)
def test_inference_yml_asking_what_we_do_not_do_is_refused(change):
    with pytest.raises(UnsupportedModelConfig):
        parse_inference_yml({**DET_YML, **change}, REC_YML)


def test_v6_defaults_are_the_models_settings_with_our_post_processing():
    for family, box_thresh in (("ppocrv6-small", 0.45), ("ppocrv6-tiny", 0.4)):
        config = {**SMALL, "det": {**SMALL["det"], "box_thresh": box_thresh}}
        opts = PipelineOptions.for_family(family, config)
        assert (opts.det.mean, opts.det.std) == (det_stage.IMAGENET_MEAN, det_stage.IMAGENET_STD)
        assert (opts.det.thresh, opts.det.box_thresh, opts.det.max_candidates) == (0.2, box_thresh, 3000)
        assert opts.det.unclip_ratio == 1.4  # the crop: the model's own margin
        assert opts.det.outline_unclip_ratio == 1.2  # the reported box: tighter, as for v4
        assert (opts.rec.image_height, opts.rec.min_width, opts.rec.max_width) == (48, 320, 3200)
        assert opts.spacing.enabled and opts.retry.enabled and opts.patterns.enabled
        assert opts.calibration.enabled
        assert opts.image == prepare.ImageOptions()  # no RapidOCR pre-resize or padding
    # a set recorded without a config still opens, with PaddleOCR's defaults
    assert with_defaults({})["det"]["limit_side_len"] == 736
    assert PipelineOptions.for_family("ppocrv6-small").det.box_thresh == 0.6


def test_v4_settings_are_unchanged():
    assert PipelineOptions.for_family("ppocrv4-mobile") == PipelineOptions()
    assert PipelineOptions.for_family("ppocrv4-mobile", raw=True) == PipelineOptions.reference()
    d = PipelineOptions().det
    assert (d.limit_side_len, d.limit_type, d.thresh, d.box_thresh, d.unclip_ratio) == (
        960,
        "max",
        0.3,
        0.6,
        1.7,
    )
    assert (d.point_order, d.reading_order, d.normalise_float64) == ("sum-diff", "paddle", False)
    assert PipelineOptions().image == prepare.ImageOptions()
    with pytest.raises(ValueError, match="no pipeline settings"):
        PipelineOptions.for_family("ppocrv9-huge")


def test_raw_v6_is_rapidocr_3_10s_config():
    """The values of rapidocr/config.yaml 3.10 (read from the installed package)."""
    from pathlib import Path

    import rapidocr
    import yaml

    cfg = yaml.safe_load((Path(rapidocr.__file__).parent / "config.yaml").read_text(encoding="utf-8"))
    opts = PipelineOptions.for_family("ppocrv6-tiny", SMALL, raw=True)
    g, d, c, r = cfg["Global"], cfg["Det"], cfg["Cls"], cfg["Rec"]
    assert (opts.image.max_side_len, opts.image.min_side_len) == (g["max_side_len"], g["min_side_len"])
    assert (opts.image.pad_min_height, opts.image.pad_width_height_ratio) == (
        g["min_height"],
        g["width_height_ratio"],
    )
    assert (opts.det.limit_side_len, opts.det.limit_type) == (d["limit_side_len"], d["limit_type"])
    assert (list(opts.det.mean), list(opts.det.std)) == (d["mean"], d["std"])
    assert (opts.det.thresh, opts.det.box_thresh, opts.det.unclip_ratio) == (
        d["thresh"],
        d["box_thresh"],
        d["unclip_ratio"],
    )
    assert (opts.det.max_candidates, opts.det.use_dilation) == (d["max_candidates"], d["use_dilation"])
    assert opts.det.outline_unclip_ratio is None
    assert opts.use_cls == g["use_cls"]
    assert [3, opts.cls.image_height, opts.cls.image_width] == c["cls_image_shape"]
    assert (opts.cls.batch_size, opts.cls.thresh) == (c["cls_batch_num"], c["cls_thresh"])
    assert [3, opts.rec.image_height, opts.rec.min_width] == r["rec_img_shape"]
    assert (opts.rec.batch_size, opts.rec.drop_score, opts.rec.max_width) == (
        r["rec_batch_num"],
        g["text_score"],
        None,
    )
    assert not (
        opts.spacing.enabled or opts.retry.enabled or opts.patterns.enabled or opts.calibration.enabled
    )


def _random_quads(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    quads = []
    for _ in range(n):
        x, y = rng.integers(0, 600), rng.integers(0, 400)
        w, h = rng.integers(20, 200), rng.integers(8, 40)
        quads.append(np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32))
    return quads


def test_rows_reading_order_is_rapidocrs():
    from rapidocr.ch_ppocr_det.main import TextDetector

    rng = np.random.default_rng(3)
    for n in (0, 1, 5, 40):
        quads = _random_quads(rng, n)
        quads += [q + np.float32([rng.integers(-30, 30), rng.integers(-9, 9)]) for q in quads[:5]]
        order = det_stage.sort_reading_order(quads, "rows")
        if quads:
            want = TextDetector.sorted_boxes(np.stack(quads))
            assert np.array_equal(np.stack([quads[i] for i in order]), want)


def test_x_sort_corner_order_is_rapidocrs():
    from rapidocr.ch_ppocr_det.utils import DBPostProcess

    rng = np.random.default_rng(4)
    post = DBPostProcess()
    for _ in range(200):
        pts = rng.integers(0, 50, size=(4, 2)).astype(np.float32)
        assert np.array_equal(det_stage.order_points_x_sort(pts), post.order_points_clockwise(pts.copy()))


@pytest.mark.parametrize(
    "hw", [(480, 640), (2600, 900), (20, 300), (2500, 12), (40, 500), (31, 200), (900, 30)]
)
def test_image_preparation_is_rapidocrs(hw):
    from rapidocr.utils.process_img import ResizeImgError, apply_vertical_padding, resize_image_within_bounds

    from edge_ocr.errors import InputError

    img = np.random.default_rng(5).integers(0, 255, size=(*hw, 3), dtype=np.uint8)
    opts = PipelineOptions.rapidocr_3_10().image
    try:
        want, ratio_h, ratio_w = resize_image_within_bounds(img, 30, 2000)
    except ResizeImgError:  # too thin: shrinking the long side leaves no short side
        with pytest.raises(InputError):
            prepare.within_bounds(img, opts)
        return
    got = prepare.within_bounds(img, opts)
    assert np.array_equal(got.image, want) and (got.ratio_h, got.ratio_w) == (ratio_h, ratio_w)
    record = {"preprocess": {"ratio_h": ratio_h, "ratio_w": ratio_w}}
    padded, record = apply_vertical_padding(want, record, 8, 30)
    got = prepare.pad_for_detection(got, opts)
    assert np.array_equal(got.image, padded) and got.top == record["padding_1"]["top"]


def test_rounded_score_is_rapidocrs():
    from rapidocr.ch_ppocr_rec.utils import CTCLabelDecode

    decoder = CTCLabelDecode(character=["a", "b"])
    rng = np.random.default_rng(6)
    for _ in range(50):
        probs = rng.random((1, 12, 4)).astype(np.float32)
        want = decoder(probs)[0][0][1]
        idx = probs.argmax(axis=2)[0]
        keep = np.ones(len(idx), bool)
        keep[1:] = idx[1:] != idx[:-1]
        keep &= idx != 0
        confs = tuple(float(c) for c in probs.max(axis=2)[0][keep])
        assert rounded_score(confs, 5) == want
