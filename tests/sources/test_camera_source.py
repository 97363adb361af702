"""The camera source on a generated video of labels passing by: one record per label, triggers, voting."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import cv2
import httpx
import pytest
from support import query, wait_for

from edge_ocr.agent.app import Agent
from edge_ocr.agent.sources.camera import CameraSource, PresenceTracker, vote
from edge_ocr.config import AgentConfig, CameraSourceConfig, Config, EngineConfig, Trigger
from edge_ocr.synth import write_video
from edge_ocr.types import OcrResult, TextLine

N_LABELS = 6


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("video") / "belt.avi"
    return write_video(path, N_LABELS, seed=3, noise=False)


def _line(text: str, y: float, conf: float = 0.9) -> TextLine:
    return TextLine(text, conf, ((0.0, y), (50.0, y), (50.0, y + 10), (0.0, y + 10)))


def test_vote_takes_the_majority_per_line_and_the_sharpest_frame() -> None:
    def res(*lines: TextLine) -> OcrResult:
        return OcrResult(lines, (100, 100), "fake", "m", {"total": 1.0})

    frames = [
        res(_line("LOT 12", 0), _line("EXP 11/2027", 20)),
        res(_line("L0T 12", 1), _line("EXP 11/2027", 21)),
        res(_line("LOT 12", 2), _line("EXP 11/2O27", 22)),
        res(_line("LOT 12", 3)),  # a frame that missed a line does not vote
    ]
    voted, best = vote(frames, [5.0, 9.0, 7.0, 99.0])
    assert [line.text for line in voted.lines] == ["LOT 12", "EXP 11/2027"]
    assert best == 1 and voted.lines[0].box == frames[1].lines[0].box
    assert voted.timings_ms["total"] == 4.0


def test_tracker_counts_each_label_once(video) -> None:
    tracker = PresenceTracker(CameraSourceConfig(file=video.path, consensus_frames=3))
    cap = cv2.VideoCapture(str(video.path))
    records = []
    try:
        for index in range(video.n_frames):
            ok, frame = cap.read()
            assert ok, index
            got = tracker.update(frame)
            if got is not None:
                records.append((index, got))
    finally:
        cap.release()
    assert tracker.flush() is None
    assert len(records) == N_LABELS
    for (index, (frames, sharp)), label in zip(records, video.labels):
        assert label.last_frame < index < label.last_frame + 15  # emitted just after the label left
        assert len(frames) == 3 and len(sharp) == 3


def test_agent_makes_one_record_per_label(video, tmp_path: Path) -> None:
    cfg = Config(
        agent=AgentConfig(db=tmp_path / "c.db", data_dir=tmp_path / "data", workers=2),
        engine=EngineConfig(name="fake"),
        cameras=(CameraSourceConfig(name="belt", file=video.path, station="line-3"),),
    )
    stats = Agent(cfg, once=True).run(threading.Event())
    assert stats.camera_records == N_LABELS
    rows = query(tmp_path / "c.db", "SELECT source, station, stored_image FROM captures")
    assert len(rows) == N_LABELS and {r[:2] for r in rows} == {("camera:belt", "line-3")}
    saved = sorted((tmp_path / "data" / "captures" / "belt").rglob("*.jpg"))
    assert sorted(r[2] for r in rows) == [str(p) for p in saved]  # only frames that became records
    assert query(tmp_path / "c.db", "SELECT count(*) FROM results WHERE n_lines > 0")[0][0] == N_LABELS


def test_http_and_file_triggers(video, tmp_path: Path) -> None:
    got: queue.Queue = queue.Queue()
    cam = CameraSourceConfig(
        name="t", file=video.path, loop=True, fps_cap=200, trigger=Trigger.HTTP, consensus_frames=2
    )
    src = CameraSource(cam, lambda c: got.put(c) or True)
    src.start()
    try:
        wait_for(lambda: src.frames_read > 0, 10, "frames")
        r = httpx.post(f"http://127.0.0.1:{src.http_port}/trigger", timeout=5)
        assert r.status_code == 202
        capture = got.get(timeout=10)
        assert len(capture.frames) == 2 and capture.camera.name == "t"
        assert httpx.post(f"http://127.0.0.1:{src.http_port}/nope", timeout=5).status_code == 404
    finally:
        src.stop()
    flag = tmp_path / "go"
    cam = CameraSourceConfig(
        name="f", file=video.path, loop=True, fps_cap=200, trigger=Trigger.FILE, trigger_file=flag
    )
    src = CameraSource(cam, lambda c: got.put(c) or True)
    src.start()
    try:
        flag.touch()
        assert len(got.get(timeout=10).frames) == 3
        wait_for(lambda: not flag.exists(), 5, "trigger file consumed")
    finally:
        src.stop()


def test_unreachable_stream_backs_off_and_stops_promptly(tmp_path: Path) -> None:
    cam = CameraSourceConfig(name="gone", url=str(tmp_path / "no-such-stream.mjpg"), reconnect_max=0.2)
    src = CameraSource(cam, lambda c: True)
    src.start()
    wait_for(lambda: src._thread is not None and src._thread.is_alive(), 5, "running")
    src.stop()
    assert src.finished.is_set() and src.frames_read == 0
