"""Label-file readers and the runner, on label files and a synthetic set written to a temp folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from edge_ocr.errors import InputError
from edge_ocr.evaluation import (
    default_case_insensitive,
    read_det_labels,
    read_image,
    read_rec_labels,
    resolve_label_file,
    run_eval,
)
from edge_ocr.synth import write_dataset
from edge_ocr.types import OcrResult, TextLine


def test_rec_reader_tolerates_bom_crlf_blank_lines_and_tabs(tmp_path):
    f = tmp_path / "rec_gt.txt"
    f.write_bytes("\ufeffa.png\tLOT A1\r\n\r\n  \nsub/b.png\tEXP\t2027\r\n".encode())
    samples = read_rec_labels(f)
    assert [(s.path, s.text) for s in samples] == [
        (tmp_path / "a.png", "LOT A1"),
        (tmp_path / "sub/b.png", "EXP\t2027"),
    ]


def test_det_reader_and_dont_care(tmp_path):
    f = tmp_path / "det_gt.txt"
    f.write_text(
        'x.jpg\t[{"transcription": "生产", "points": [[0, 0], [10, 0], [10, 5], [0, 5]]},'
        ' {"transcription": "###", "points": [[1, 1], [2, 1], [2, 2]]}]\n\nempty.jpg\t[]\n',
        encoding="utf-8",
    )
    first, second = read_det_labels(f)
    assert first.path == tmp_path / "x.jpg"
    assert [r.text for r in first.regions] == ["生产", "###"]
    assert first.regions[0].points[2] == (10.0, 5.0)
    assert [r.ignore for r in first.regions] == [False, True]
    assert second.regions == ()


@pytest.mark.parametrize(
    ("content", "reader", "message"),
    [
        ("a.png\tok\nno tab here\n", read_rec_labels, ":2:"),
        ("\tno path\n", read_rec_labels, ":1:"),
        ('a.png\t[{"transcription": "x"}]\n', read_det_labels, "points"),
        ("a.png\t[{not json\n", read_det_labels, "JSON"),
        ('a.png\t{"transcription": "x"}\n', read_det_labels, "list"),
        ('\na.png\t[{"transcription": "x", "points": [[0, 0], [1]]}]\n', read_det_labels, ":2:"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, content, reader, message):
    f = tmp_path / "labels.txt"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match="labels.txt") as exc:
        reader(f)
    assert message in str(exc.value)


def test_case_insensitivity_follows_the_folder_name(tmp_path):
    for name, expected in [("icdar2015", True), ("IIIT5K_test", True), ("sroie", True), ("dotmatrix", False)]:
        d = tmp_path / name
        d.mkdir()
        assert default_case_insensitive(d / "rec_gt.txt") is expected
    assert default_case_insensitive(tmp_path / "icdar2015" / "test" / "det_gt.txt") is True


def test_resolve_label_file(tmp_path):
    with pytest.raises(InputError, match="exactly one"):
        resolve_label_file(tmp_path)
    (tmp_path / "custom.txt").write_text('a.png\t[{"transcription": "x", "points": []}]\n')
    assert resolve_label_file(tmp_path / "custom.txt")[1] == "e2e"
    (tmp_path / "other.txt").write_text("a.png\tLOT\n")
    assert resolve_label_file(tmp_path / "other.txt")[1] == "rec"
    with pytest.raises(InputError, match="no label file"):
        resolve_label_file(tmp_path / "missing")


class Oracle:
    """Answers with the ground truth of the image it is shown (looked up by pixel hash)."""

    def __init__(self, truth: dict[str, tuple[TextLine, ...]]):
        self.truth = truth
        self.calls: list[bool] = []

    def __call__(self, image: np.ndarray, det: bool) -> OcrResult:
        self.calls.append(det)
        lines = self.truth[hashlib.sha1(image.tobytes()).hexdigest()]
        return OcrResult(
            lines=lines, image_size=(image.shape[1], image.shape[0]), engine="oracle", model="gt"
        )


def _digest(path: Path) -> str:
    return hashlib.sha1(read_image(path).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("synth"), 3, seed=21)


def test_run_eval_end_to_end_with_a_perfect_engine_and_a_broken_image(synth_set, tmp_path):
    truth = {
        _digest(s.path): tuple(TextLine(r.text, 1.0, r.points) for r in s.regions)  # type: ignore[arg-type]
        for s in read_det_labels(synth_set / "det_gt.txt")
    }
    oracle = Oracle(truth)
    seen: list[tuple[int, int]] = []
    report = run_eval(synth_set, oracle, progress=lambda i, n: seen.append((i, n)))
    assert report.kind == "e2e" and report.n == 3 and not report.errors
    assert report.case_insensitive is False
    assert report.metrics["det_hmean"] == 1.0 and report.metrics["e2e_hmean"] == 1.0
    assert report.metrics["word_f"] == 1.0
    assert oracle.calls == [True, True, True] and seen == [(1, 3), (2, 3), (3, 3)]
    assert "| e2e_hmean | 1.0000 |" in report.to_markdown()

    # the same set plus an unreadable image: recorded, scored as all wrong, no crash
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.png").write_bytes(b"not a png")
    lines = (synth_set / "det_gt.txt").read_text(encoding="utf-8").splitlines()
    lines = [f"{synth_set / line}" for line in lines]
    lines.append('bad.png\t[{"transcription": "LOT X1", "points": [[0, 0], [9, 0], [9, 9], [0, 9]]}]')
    (broken / "det_gt.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = run_eval(broken, oracle)
    assert report.n == 4 and len(report.errors) == 1 and "bad.png" in report.errors[0].path
    gt_total = report.metrics["counts"]["gt"]
    assert report.metrics["det_recall"] == pytest.approx((gt_total - 1) / gt_total)
    assert report.to_dict()["errors"][0]["path"].endswith("bad.png")
    assert "scored as all wrong" in report.to_markdown()


def test_run_eval_recognition_set(synth_set):
    rec_file = synth_set / "rec" / "rec_gt.txt"
    samples = read_rec_labels(rec_file)
    truth = {
        _digest(s.path): (TextLine(s.text.lower(), 1.0, ((0, 0), (1, 0), (1, 1), (0, 1))),) for s in samples
    }
    oracle = Oracle(truth)
    sensitive = run_eval(rec_file, oracle)
    assert sensitive.kind == "rec" and sensitive.n == len(samples)
    assert set(oracle.calls) == {False}
    insensitive = run_eval(rec_file, oracle, case_insensitive=True)
    assert insensitive.metrics["line_accuracy"] == 1.0 and insensitive.metrics["cer"] == 0.0
    assert sensitive.metrics["line_accuracy"] < 1.0  # the oracle lower-cased everything
