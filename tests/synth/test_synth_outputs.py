"""Dataset and video writers, read back with the evaluation readers and OpenCV."""

from __future__ import annotations

import cv2
import numpy as np

from edge_ocr.evaluation import read_det_labels, read_image, read_rec_labels
from edge_ocr.synth import GeneratorOptions, crop_quad, generate_label, write_dataset, write_video


def test_dataset_round_trips_through_the_readers(tmp_path):
    opts = GeneratorOptions(rotation_deg=6, dot_matrix=True)
    assert write_dataset(tmp_path, 3, seed=9, options=opts) == tmp_path
    det = read_det_labels(tmp_path / "det_gt.txt")
    rec = read_rec_labels(tmp_path / "rec" / "rec_gt.txt")
    assert len(det) == 3
    for i, sample in enumerate(det):
        label = generate_label(np.random.default_rng([9, i]), opts)
        assert np.array_equal(read_image(sample.path), label.image)  # PNG is lossless
        assert [r.text for r in sample.regions] == list(label.texts)
        for region, line in zip(sample.regions, label.lines):
            assert np.abs(np.array(region.points) - np.array(line.box)).max() <= 0.5
    assert len(rec) == sum(len(s.regions) for s in det)
    assert [r.text for r in rec] == [r.text for s in det for r in s.regions]
    crop = read_image(rec[0].path)
    assert crop.shape[1] > crop.shape[0] > 14


def test_crop_quad_straightens_a_rotated_box():
    img = np.zeros((100, 200, 3), np.uint8)
    quad = ((50.0, 40.0), (150.0, 30.0), (152.0, 50.0), (52.0, 60.0))
    out = crop_quad(img, quad)
    assert out.shape[:2] == (20, 100)


def test_video_has_the_expected_frames_and_ground_truth(tmp_path):
    path = tmp_path / "labels.avi"
    gt = write_video(
        path, 2, fps=10, seed=3, frame_size=(320, 240), label_size=(240, 160), speed_px=40, gap_frames=4
    )
    steps = -(-(320 + 240) // 40) - 1  # frames with part of a label in view
    assert gt.n_frames == 4 + 2 * (steps + 4)
    first, second = gt.labels
    assert (first.first_frame, first.last_frame) == (4, 4 + steps - 1)
    assert second.first_frame == first.last_frame + 4 + 1
    assert first.texts and all(first.texts)
    assert gt.label_at(0) is None and gt.label_at(first.full_first) is first
    # at full_first the whole label is in view, and its boxes are inside the frame
    assert first.x_at(first.full_first) >= 0 and first.x_at(first.full_first) + 240 <= 320
    assert all(0 <= x <= 320 for box in first.boxes_at(first.full_first) for x, _ in box)

    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    assert len(frames) == gt.n_frames
    assert frames[0].shape == (240, 320, 3)
    # an empty frame is plain background; a frame with the whole label has the bright card in it
    assert frames[0].std() < 10
    assert frames[first.full_first].max() > 180


def test_mp4_writes_too(tmp_path):
    gt = write_video(
        tmp_path / "v.mp4", 1, frame_size=(256, 192), label_size=(200, 120), speed_px=64, gap_frames=1
    )
    cap = cv2.VideoCapture(str(gt.path))
    try:
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == gt.n_frames
    finally:
        cap.release()
