"""Camera source: OpenCV VideoCapture (device index, RTSP/HTTP URL or video file) -> records.

One physical label passing the camera yields one record: a presence tracker compares each frame
with a slowly updated background; while something is in view it keeps the sharpest frames
(Laplacian variance) in which the object is whole; when it has left, those frames go to a worker as
one job, which OCRs each, votes the text line by line (`vote`) and keeps the sharpest frame. Only
frames that become records are saved (by the agent). Other triggers: every `interval` seconds
(continuous), on POST /trigger (http), when `trigger_file` appears (file), or on a line trigger
(line: OPC UA, MQTT, Modbus), which reads the freshest frames after the trigger (`FreshFrames`).
"""

from __future__ import annotations

import contextlib
import heapq
import http.server
import logging
import os
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edge_ocr.config import CameraSourceConfig, Trigger
from edge_ocr.line.model import LineJob
from edge_ocr.store.db import utcnow
from edge_ocr.types import OcrResult, TextLine

logger = logging.getLogger(__name__)

SMALL_WIDTH = 160
DIFF_LEVEL = 25  # grey levels
EDGE_MARGIN = 2  # small-image pixels: an object touching the border is not whole
#: a grab that returns sooner than this after a line trigger came from a buffer (the driver's,
#: FFmpeg's, the network's): the frame was taken before the trigger and is dropped
FRESH_WAIT_S = 0.002
#: ... but a video file never makes the reader wait: its next frame counts after this many dropped;
MAX_DRAIN_FILE = 8
#: and a live camera that outruns the reader (its buffer never empties) after this many (logged)
MAX_DRAIN_LIVE = 240


@dataclass(frozen=True)
class CameraCapture:
    """Frames of one object seen by a camera, ready to OCR as one record."""

    camera: CameraSourceConfig
    frames: tuple[np.ndarray, ...]
    sharpness: tuple[float, ...]
    captured_at: str
    seen_at: float
    job: LineJob | None = None  # the line trigger it answers
    grab_ms: float = 0.0  # trigger to the last frame grabbed (line triggers)


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian: higher is sharper."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


# -- consensus ---------------------------------------------------------------------------------


def _order(lines: Sequence[TextLine]) -> list[TextLine]:
    def key(line: TextLine) -> tuple[float, float]:
        return (sum(p[1] for p in line.box) / 4, sum(p[0] for p in line.box) / 4)

    return sorted(lines, key=key)


def vote(results: Sequence[OcrResult], sharp: Sequence[float]) -> tuple[OcrResult, int]:
    """Merge the readings of one object across frames: the most common line count wins, then each
    line's most common text (ties go to the sharper frame). Returns the voted result, with boxes from
    the sharpest frame of the winning group, and that frame's index."""
    if not results:
        raise ValueError("vote needs at least one result")
    counts = Counter(len(r.lines) for r in results)
    top = max(counts.values())
    tied = {n for n, c in counts.items() if c == top}
    by_sharp = sorted(range(len(results)), key=lambda i: -sharp[i] if i < len(sharp) else 0.0)
    n_lines = next(len(results[i].lines) for i in by_sharp if len(results[i].lines) in tied)
    group = [i for i in by_sharp if len(results[i].lines) == n_lines]
    best = group[0]
    ordered = {i: _order(results[i].lines) for i in group}
    lines = []
    for pos in range(n_lines):
        texts = Counter(ordered[i][pos].text for i in group)
        most = max(texts.values())
        winner = next(ordered[i][pos].text for i in group if texts[ordered[i][pos].text] == most)
        confs = [ordered[i][pos].confidence for i in group if ordered[i][pos].text == winner]
        base = ordered[best][pos]
        lines.append(
            TextLine(winner, float(sum(confs) / len(confs)), base.box, base.raw_text, base.corrections)
        )
    timings: dict[str, float] = {}
    for r in results:
        for k, v in r.timings_ms.items():
            timings[k] = timings.get(k, 0.0) + v
    ref = results[best]
    return OcrResult(tuple(lines), ref.image_size, ref.engine, ref.model, timings), best


# -- presence tracking ---------------------------------------------------------------------------


class PresenceTracker:
    """Frame-by-frame: is an object in view, and which of its frames are the best to read."""

    def __init__(self, cfg: CameraSourceConfig) -> None:
        self.cfg = cfg
        self._bg: np.ndarray | None = None
        self._mask_roi: np.ndarray | None = None
        self.present = False
        self._on = 0
        self._off = 0
        self._frames = 0
        self._best: list[tuple[float, int, np.ndarray]] = []  # min-heap of (sharpness, seq, frame)
        self._fallback: list[tuple[float, int, np.ndarray]] = []  # by foreground share, if never whole
        self._seq = 0
        self._started = 0.0

    def _small(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        small = cv2.resize(
            frame, (SMALL_WIDTH, max(1, round(h * SMALL_WIDTH / w))), interpolation=cv2.INTER_AREA
        )
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        gray = cv2.GaussianBlur(gray, (5, 5), 0)
        if self._mask_roi is None and self.cfg.rois:
            mask = np.zeros(gray.shape, np.uint8)
            sx = gray.shape[1] / w
            sy = gray.shape[0] / h
            for r in self.cfg.rois:
                mask[int(r.y * sy) : int((r.y + r.h) * sy) + 1, int(r.x * sx) : int((r.x + r.w) * sx) + 1] = 1
            self._mask_roi = mask
        return gray

    def _keep(self, heap: list, score: float, frame: np.ndarray) -> None:
        self._seq += 1
        k = self.cfg.consensus_frames
        if len(heap) < k:
            heapq.heappush(heap, (score, self._seq, frame.copy()))
        elif score > heap[0][0]:
            heapq.heapreplace(heap, (score, self._seq, frame.copy()))

    def update(self, frame: np.ndarray) -> tuple[tuple[np.ndarray, ...], tuple[float, ...]] | None:
        """Feed one frame; returns (frames, sharpness) when an object has just left the view."""
        gray = self._small(frame)
        if self._bg is None:
            self._bg = gray.astype(np.float32)
            return None
        diff = cv2.absdiff(gray, cv2.convertScaleAbs(self._bg)) > DIFF_LEVEL
        if self._mask_roi is not None:
            diff &= self._mask_roi.astype(bool)
        share = float(diff.mean())
        threshold = self.cfg.motion_threshold
        if not self.present:
            if share < threshold / 2:  # learn only from an empty scene, never from an object arriving
                cv2.accumulateWeighted(gray, self._bg, 0.05)
            self._on = self._on + 1 if share > threshold else 0
            if self._on >= self.cfg.min_frames:
                self.present, self._off, self._frames = True, 0, 0
                self._best, self._fallback = [], []
                self._started = time.monotonic()
            else:
                return None
        self._frames += 1
        if share > threshold / 2:
            self._off = 0
            ys, xs = np.nonzero(diff)
            whole = (
                len(xs) > 0
                and xs.min() > EDGE_MARGIN
                and xs.max() < diff.shape[1] - 1 - EDGE_MARGIN
                and ys.min() > EDGE_MARGIN
                and ys.max() < diff.shape[0] - 1 - EDGE_MARGIN
            )
            if whole:
                self._keep(self._best, sharpness(frame), frame)
            else:
                self._keep(self._fallback, share, frame)
            return None
        self._off += 1
        if self._off < self.cfg.min_frames:
            return None
        return self.flush()

    def flush(self) -> tuple[tuple[np.ndarray, ...], tuple[float, ...]] | None:
        """End the current object (also at the end of a video). None when nothing was in view."""
        if not self.present:
            return None
        self.present, self._on = False, 0
        if self._best:
            chosen = sorted(self._best, key=lambda t: t[1])
            scores = tuple(t[0] for t in chosen)
        else:
            chosen = sorted(self._fallback, key=lambda t: t[1])
            scores = tuple(sharpness(t[2]) for t in chosen)
        self._best, self._fallback = [], []
        if not chosen:
            return None
        return tuple(t[2] for t in chosen), scores


# -- line triggers: the freshest frames ---------------------------------------------------------


class ThreadClock:
    """How long the calling thread slept (blocked, e.g. on a socket) during a span of wall time: the
    span less its time on a CPU (`time.thread_time`, exact) and in the run queue, waiting for a CPU
    (Linux's /proc/thread-self/schedstat). Without schedstat, only the CPU time is taken out. Use
    it from the thread that made it."""

    def __init__(self) -> None:
        self._fd: int | None = None
        with contextlib.suppress(OSError):
            self._fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY | os.O_CLOEXEC)

    def busy(self) -> int:
        """Nanoseconds this thread has run or waited to run."""
        queued = 0
        if self._fd is not None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                queued = int(os.pread(self._fd, 128, 0).split()[1])
        return time.thread_time_ns() + queued

    def slept(self, wall: float, busy_before: int) -> float:
        """Seconds slept during the `wall` seconds since busy() said `busy_before`."""
        return max(0.0, wall - (self.busy() - busy_before) / 1e9)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class FreshFrames:
    """Picks the frames that answer a line trigger. The camera is read all the time, so its buffers
    stay drained. A grab that had to wait for the camera returns the frame that just arrived; one
    that returns at once (in the time it takes to decode) returns a frame some buffer held (the
    driver's, FFmpeg's, the network's) since some earlier time. So a frame answers a trigger only
    when its grab waited for it (at least a third of the camera's frame period, measured between
    the frames it waited for: a steady camera's next frame is waited for nearly a whole period, a
    buffered one comes in decoding time, far less; never under FRESH_WAIT_S) and was still waiting
    that long after the trigger: its frame began to arrive at least that long after the trigger,
    not on its way before it. The grab under way when the trigger comes counts too when it keeps
    waiting that long (a trigger early in a frame period is answered by the next frame, not the
    one after). Frames buffered from before the trigger are dropped.

    "Waited" is the time the reading thread slept during the grab (`ThreadClock`): its time on a
    CPU and in the run queue taken out, so a buffered frame whose decoding a busy machine held up
    is not mistaken for one the camera sent after the trigger; and the grab's start plus its wait
    is when its frame began to arrive."""

    def __init__(self, wanted: int, max_drain: int) -> None:
        self.wanted = wanted
        self.max_drain = max_drain
        self.job: LineJob | None = None
        self.frames: list[np.ndarray] = []
        self._drained = 0
        self._arrivals: deque[float] = deque(maxlen=16)  # when waited-for frames came

    def start(self, job: LineJob) -> None:
        self.job, self.frames, self._drained = job, [], 0

    def observe(self, returned: float, waited: float) -> None:
        """Every grab, triggered or not: learn the camera's frame period."""
        if waited >= FRESH_WAIT_S:
            self._arrivals.append(returned)

    @property
    def wait_needed(self) -> float:
        """How long a grab must have waited for its frame to count as fresh."""
        if len(self._arrivals) < 4:
            return FRESH_WAIT_S
        gaps = np.diff(np.asarray(self._arrivals))
        return max(FRESH_WAIT_S, float(np.median(gaps)) / 3)

    def offer(self, started: float, waited: float) -> bool:
        """Should the frame whose grab began at `started` (monotonic) and waited `waited` seconds
        for the camera be kept? Only if it waited, and its frame began to arrive (`started +
        waited`) at least that wait after the trigger: a frame already on its way is not fresh."""
        if self.job is None:
            return False
        if self.frames:
            return True  # the frames after a fresh one
        needed = self.wait_needed
        if waited >= needed and started + waited >= self.job.requested_mono + needed:
            return True
        if started < self.job.requested_mono:
            return False  # the grab under way at the trigger: not a buffered frame to count
        if self._drained >= self.max_drain:
            if self.max_drain == MAX_DRAIN_LIVE:
                logger.warning(
                    "camera: %d buffered frames dropped after a trigger; the camera outruns the reader",
                    self._drained,
                )
            return True
        self._drained += 1
        return False

    def add(self, frame: np.ndarray) -> LineJob | None:
        """Keep a frame; the job once it has its frames."""
        self.frames.append(frame)
        if len(self.frames) < self.wanted:
            return None
        job, self.job = self.job, None
        return job


# -- the source ---------------------------------------------------------------------------------


class _TriggerHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/trigger":
            self.send_error(404, "POST /trigger")
            return
        self.server.fire()  # type: ignore[attr-defined]
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("trigger http: " + format, *args)


class _TriggerServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], fire: Callable[[], None]) -> None:
        super().__init__(addr, _TriggerHandler)
        self.fire = fire


class CameraSource:
    """Reads frames in its own thread and submits one CameraCapture per record."""

    def __init__(
        self,
        cfg: CameraSourceConfig,
        emit: Callable[[Any], bool],
        *,
        continuous: Callable[[], bool] = lambda: False,
    ) -> None:
        self.cfg = cfg
        self._emit = emit
        self._continuous = continuous  # a line camera: read every `interval` s instead of on triggers
        self._line_jobs: queue.Queue[LineJob] = queue.Queue()
        self._stop = threading.Event()
        self.finished = threading.Event()  # a video file has been read to its end
        self._fire = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: _TriggerServer | None = None
        self._server_thread: threading.Thread | None = None
        self.frames_read = 0
        self.records = 0
        self.started = 0.0
        self.ended = 0.0
        self.http_port: int | None = None

    @property
    def name(self) -> str:
        return self.cfg.source_name

    def pending(self) -> int:
        return 0

    def start(self) -> None:
        if self.cfg.trigger is Trigger.HTTP:
            self._server = _TriggerServer((self.cfg.http_host, self.cfg.http_port), self._fire.set)
            self.http_port = self._server.server_address[1]
            self._server_thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name=f"trigger:{self.cfg.name}",
            )
            self._server_thread.start()
            logger.info(
                "%s: POST http://%s:%d/trigger to capture", self.name, self.cfg.http_host, self.http_port
            )
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()
        finally:
            if self._server_thread is not None:
                self._server_thread.join(timeout=5)
            if self._thread is not None:
                self._thread.join(timeout=10)

    def fire(self) -> None:
        """External trigger (what POST /trigger does)."""
        self._fire.set()

    def read_for(self, job: LineJob) -> None:
        """A line trigger (trigger = "line"): the freshest frames after it become `job`'s record."""
        self._line_jobs.put(job)

    def _open(self) -> cv2.VideoCapture:
        if self.cfg.device is not None:
            return cv2.VideoCapture(self.cfg.device)
        if self.cfg.url is not None:
            return cv2.VideoCapture(self.cfg.url)
        return cv2.VideoCapture(str(self.cfg.file))

    def _submit(
        self,
        frames: tuple[np.ndarray, ...],
        scores: tuple[float, ...],
        seen_at: float,
        job: LineJob | None = None,
    ) -> None:
        grab_ms = (time.monotonic() - job.requested_mono) * 1000 if job is not None else 0.0
        capture = CameraCapture(self.cfg, frames, scores, utcnow(), seen_at, job, grab_ms)
        while not self._stop.is_set():
            if self._emit(capture):
                self.records += 1
                return
        logger.warning("%s: stopping; one capture not submitted", self.name)

    def _run(self) -> None:
        backoff = 0.5
        try:
            while not self._stop.is_set():
                cap = self._open()
                try:
                    if not cap.isOpened():
                        if self.cfg.file is not None:
                            logger.error("%s: cannot open video file %s", self.name, self.cfg.file)
                            return
                        logger.warning("%s: cannot open; retrying in %.1f s", self.name, backoff)
                    else:
                        backoff = 0.5
                        self._read(cap)
                finally:
                    cap.release()
                if self.cfg.file is not None and not self.cfg.loop:
                    return
                if self._stop.wait(backoff if self.cfg.file is None else 0):
                    return
                backoff = min(backoff * 2, self.cfg.reconnect_max)
        finally:
            self.ended = time.monotonic()
            self.finished.set()

    def _read(self, cap: cv2.VideoCapture) -> None:
        if self.cfg.trigger is Trigger.LINE:
            self._read_line(cap)
            return
        tracker = PresenceTracker(self.cfg)
        period = 1.0 / self.cfg.fps_cap if self.cfg.fps_cap > 0 else 0.0
        next_at = time.monotonic()
        next_continuous = time.monotonic() + self.cfg.interval
        burst: list[np.ndarray] = []
        if not self.started:
            self.started = time.monotonic()
        while not self._stop.is_set():
            ok, frame = cap.read()
            if not ok or frame is None:
                if self.cfg.file is None:
                    logger.warning("%s: stream ended; reconnecting", self.name)
                break
            now = time.monotonic()
            if period:
                if now < next_at:
                    if self.cfg.file is not None and self._stop.wait(next_at - now):
                        break
                    elif self.cfg.file is None:
                        continue  # live: drop frames above the cap
                next_at = max(next_at + period, time.monotonic() - period)
            self.frames_read += 1
            trig = self.cfg.trigger
            if trig is Trigger.MOTION:
                done = tracker.update(frame)
                if done is not None:
                    self._submit(done[0], done[1], tracker._started)
                continue
            if not burst:
                if trig is Trigger.CONTINUOUS and now >= next_continuous:
                    next_continuous = now + self.cfg.interval
                elif trig is Trigger.HTTP and self._fire.is_set():
                    self._fire.clear()
                elif (
                    trig is Trigger.FILE
                    and self.cfg.trigger_file is not None
                    and self.cfg.trigger_file.exists()
                ):
                    self.cfg.trigger_file.unlink(missing_ok=True)
                else:
                    continue
            burst.append(frame.copy())
            if len(burst) >= self.cfg.consensus_frames:
                self._submit(tuple(burst), tuple(sharpness(f) for f in burst), now)
                burst = []
        if self.cfg.trigger is Trigger.MOTION:
            done = tracker.flush()
            if done is not None:
                self._submit(done[0], done[1], time.monotonic())

    def _read_line(self, cap: cv2.VideoCapture) -> None:
        """trigger = "line": grab every frame the camera gives (decoding only those kept), answer each
        line trigger with the freshest frames after it; in continuous execution, a record every
        `interval` seconds."""
        clock = ThreadClock()  # the reading thread's: made here
        try:
            self._read_line_timed(cap, clock)
        finally:
            clock.close()

    def _read_line_timed(self, cap: cv2.VideoCapture, clock: ThreadClock) -> None:
        fresh = FreshFrames(
            self.cfg.consensus_frames, MAX_DRAIN_FILE if self.cfg.file is not None else MAX_DRAIN_LIVE
        )
        burst: list[np.ndarray] = []
        next_continuous = time.monotonic() + self.cfg.interval
        if not self.started:
            self.started = time.monotonic()
        while not self._stop.is_set():
            started, busy = time.monotonic(), clock.busy()
            if not cap.grab():
                if self.cfg.file is None:
                    logger.warning("%s: stream ended; reconnecting", self.name)
                break
            returned = time.monotonic()
            waited = clock.slept(returned - started, busy)
            self.frames_read += 1
            if fresh.job is None:
                with contextlib.suppress(queue.Empty):
                    fresh.start(self._line_jobs.get_nowait())
            keep = fresh.offer(started, waited)
            fresh.observe(returned, waited)
            if keep:
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    job = fresh.add(frame.copy())
                    if job is not None:
                        frames = tuple(fresh.frames)
                        self._submit(frames, tuple(sharpness(f) for f in frames), job.requested_mono, job)
                continue
            if fresh.job is None and self._continuous():
                now = time.monotonic()
                if burst or now >= next_continuous:
                    ok, frame = cap.retrieve()
                    if ok and frame is not None:
                        burst.append(frame.copy())
                    if len(burst) >= self.cfg.consensus_frames:
                        self._submit(tuple(burst), tuple(sharpness(f) for f in burst), now)
                        burst, next_continuous = [], now + self.cfg.interval
            elif self.cfg.file is not None and fresh.job is None:
                # a video file between triggers: pace it like a camera rather than reading to its end
                self._stop.wait(1.0 / (self.cfg.fps_cap or 30.0))
        if fresh.job is not None:  # the stream ended under a trigger: its job waits for the reconnect
            self._line_jobs.put(fresh.job)

    def pending_line_jobs(self) -> int:
        return self._line_jobs.qsize()
