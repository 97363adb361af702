"""A video of labels sliding past a fixed camera, one at a time, for testing the camera source."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_ocr.errors import ConfigError, EdgeOcrError
from edge_ocr.synth.label import GeneratorOptions, GroundTruthLine, Layout, generate_label
from edge_ocr.types import Quad

logger = logging.getLogger(__name__)

_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


@dataclass(frozen=True)
class VideoLabel:
    """One label's pass through the frame. Frames are 0-based and inclusive."""

    index: int
    first_frame: int  # first frame showing any part of the label
    last_frame: int  # last frame showing any part of it
    full_first: int  # first frame showing the whole label
    full_last: int  # last frame showing the whole label
    texts: tuple[str, ...]
    fields: dict[str, str]
    lines: tuple[GroundTruthLine, ...]  # boxes in the label's own pixels
    size: tuple[int, int]  # label (width, height)
    y: int  # top of the label in the frame
    speed_px: int  # leftward motion per frame
    frame_width: int

    def x_at(self, frame: int) -> int:
        """Left edge of the label in `frame` (it enters from the right)."""
        return self.frame_width - self.speed_px * (frame - self.first_frame + 1)

    def boxes_at(self, frame: int) -> tuple[Quad, ...]:
        """Line boxes in frame pixels (they may lie partly outside the frame)."""
        dx, dy = self.x_at(frame), self.y
        return tuple(
            tuple((x + dx, y + dy) for x, y in line.box)  # type: ignore[misc]
            for line in self.lines
        )


@dataclass(frozen=True)
class VideoGroundTruth:
    path: Path
    fps: float
    frame_size: tuple[int, int]  # (width, height)
    n_frames: int
    labels: tuple[VideoLabel, ...]

    def label_at(self, frame: int) -> VideoLabel | None:
        return next((lab for lab in self.labels if lab.first_frame <= frame <= lab.last_frame), None)


def write_video(
    path: Path,
    n_labels: int,
    fps: float = 30,
    *,
    seed: int = 0,
    frame_size: tuple[int, int] = (640, 480),
    label_size: tuple[int, int] = (400, 300),
    speed_px: int = 16,
    gap_frames: int = 15,
    options: GeneratorOptions | None = None,
    noise: bool = True,
) -> VideoGroundTruth:
    """Write labels moving right to left across a plain conveyor background, `gap_frames` empty frames
    before, between and after them. `.mp4` uses the mp4v codec, `.avi` MJPG. `options` (default: a
    clean 3-line label of `label_size`) describes the labels; its width and height are the label size."""
    path = Path(path)
    codec = _CODECS.get(path.suffix.lower())
    if codec is None:
        raise ConfigError(f"video {path} must end in .mp4 or .avi")
    fw, fh = frame_size
    if options is None:
        options = GeneratorOptions(
            width=label_size[0], height=label_size[1], n_lines=3, cap_height=(16, 22), layouts=(Layout.PLAIN,)
        )
    lw, lh = options.width, options.height
    if lw > fw or lh > fh or speed_px < 1 or n_labels < 0 or gap_frames < 0:
        raise ConfigError(
            f"labels of {lw}x{lh} must fit frames of {fw}x{fh}; speed_px >= 1, n_labels and gap_frames >= 0"
        )
    rng = np.random.default_rng([seed, 1 << 20])
    background = np.empty((fh, fw, 3), np.uint8)
    background[:] = np.clip(rng.normal((70, 75, 80), 4, 3), 0, 255).astype(np.uint8)
    texture = rng.normal(0, 3, (fh, fw, 1)).astype(np.float32)
    background = np.clip(background + texture, 0, 255).astype(np.uint8)

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), float(fps), (fw, fh))
    if not writer.isOpened():
        raise EdgeOcrError(f"OpenCV cannot write {codec} video to {path}; check the folder is writable")
    labels: list[VideoLabel] = []
    frame_no = 0
    try:

        def emit(frame: np.ndarray) -> None:
            nonlocal frame_no
            if noise:
                frame = np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8)
            writer.write(frame)
            frame_no += 1

        for _ in range(gap_frames):
            emit(background.copy())
        for i in range(n_labels):
            label = generate_label(np.random.default_rng([seed, i]), options)
            y = (fh - lh) // 2 + int(rng.integers(-(fh - lh) // 4, (fh - lh) // 4 + 1))
            steps = math.ceil((fw + lw) / speed_px) - 1  # frames with some of the label in view
            first = frame_no
            info = VideoLabel(
                index=i,
                first_frame=first,
                last_frame=first + steps - 1,
                full_first=first + math.ceil(lw / speed_px) - 1,
                full_last=first + fw // speed_px - 1,
                texts=label.texts,
                fields=label.fields,
                lines=label.lines,
                size=(lw, lh),
                y=y,
                speed_px=speed_px,
                frame_width=fw,
            )
            for f in range(first, first + steps):
                frame = background.copy()
                x = info.x_at(f)
                sx0, sx1 = max(0, -x), min(lw, fw - x)
                frame[y : y + lh, x + sx0 : x + sx1] = label.image[:, sx0:sx1]
                emit(frame)
            labels.append(info)
            for _ in range(gap_frames):
                emit(background.copy())
    finally:
        writer.release()
    logger.info("wrote %d labels in %d frames to %s", n_labels, frame_no, path)
    return VideoGroundTruth(
        path=path, fps=float(fps), frame_size=(fw, fh), n_frames=frame_no, labels=tuple(labels)
    )
