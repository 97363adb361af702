"""`edge-ocr ocr` shows a progress line (tqdm) on a terminal's stderr, and nothing when stderr is piped."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import cv2
import numpy as np

CLI = [sys.executable, "-m", "edge_ocr.cli"]


def _images(tmp_path: Path, n: int) -> list[str]:
    img = np.full((64, 200, 3), 255, np.uint8)
    cv2.putText(img, "LOT 42", (10, 45), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 2)
    paths = []
    for i in range(n):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), img)
        paths.append(str(p))
    return paths


def _run_on_terminal(cmd: list[str]) -> bytes:
    """Run `cmd` with stdout to /dev/null and stderr on a 120x40 pseudo-terminal; return what it drew."""
    pid, fd = pty.fork()
    if pid == 0:  # child: the terminal needs a size, or a progress bar has no room to draw
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            os.execv(cmd[0], cmd)
        finally:
            os._exit(127)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out[-2000:]
    return out


def test_progress_on_a_terminal(tmp_path):
    out = _run_on_terminal([*CLI, "ocr", "--engine", "fake", *_images(tmp_path, 3)])
    assert b"ocr:" in out and b"/3 [" in out, out[-2000:]


def test_no_progress_when_stderr_is_piped(tmp_path):
    proc = subprocess.run(
        [*CLI, "ocr", "--engine", "fake", *_images(tmp_path, 3)], capture_output=True, timeout=300, check=True
    )
    assert b"ocr:" not in proc.stderr and b"%|" not in proc.stderr
    assert proc.stdout.count(b"== ") == 3
