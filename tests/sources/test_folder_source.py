"""The folder source with a real watchdog observer on temp folders: stable-file detection, globs,
rescan, polling, symlink loops, vanishing files, overlap checks."""

from __future__ import annotations

import queue
import time
from pathlib import Path

import pytest
from support import wait_for, write_label

from edge_ocr.agent.sources.folder import (
    FileCandidate,
    FolderSource,
    check_folders,
    quarantine,
    sha256_file,
    wanted,
)
from edge_ocr.config import AfterSuccess, AgentConfig, Config, FolderSourceConfig
from edge_ocr.errors import ConfigError


def collect(folder: FolderSourceConfig) -> tuple[FolderSource, queue.Queue[FileCandidate]]:
    out: queue.Queue[FileCandidate] = queue.Queue()
    return FolderSource(folder, lambda c: out.put(c) or True), out


def drain(q: queue.Queue, quiet: float = 0.5) -> list[FileCandidate]:
    items = []
    while True:
        try:
            items.append(q.get(timeout=quiet))
        except queue.Empty:
            return items


@pytest.mark.parametrize("polling", [False, True])
def test_new_and_existing_files_are_emitted_once(tmp_path: Path, polling: bool) -> None:
    write_label(tmp_path / "old.png", "OLD")  # arrived while the agent was down
    folder = FolderSourceConfig(path=tmp_path, settle_seconds=0.1, polling=polling, poll_interval=0.1)
    src, out = collect(folder)
    src.start()
    try:
        first = out.get(timeout=10)
        assert first.path == tmp_path / "old.png" and first.sha256 == sha256_file(first.path)
        write_label(tmp_path / "sub" / "new.PNG", "NEW")
        (tmp_path / "notes.txt").write_text("ignored")
        (tmp_path / ".hidden.png").write_bytes(b"x")
        second = out.get(timeout=10)
        assert second.path == tmp_path / "sub" / "new.PNG"
        assert drain(out) == []
        assert src.debouncer.scanned.is_set()
    finally:
        src.stop()


def test_a_growing_file_waits_until_stable(tmp_path: Path) -> None:
    folder = FolderSourceConfig(path=tmp_path, settle_seconds=0.4)
    src, out = collect(folder)
    src.start()
    try:
        path = tmp_path / "slow.png"
        data = (write_label(tmp_path.parent / f"{tmp_path.name}-src.png", "SLOW")).read_bytes()
        with path.open("wb") as fh:  # a slow writer: chunks 0.1 s apart, never 0.4 s quiet
            for i in range(0, len(data), max(1, len(data) // 8)):
                fh.write(data[i : i + max(1, len(data) // 8)])
                fh.flush()
                with pytest.raises(queue.Empty):
                    out.get(timeout=0.1)
        got = out.get(timeout=5)
        assert got.size == len(data) and got.sha256 == sha256_file(path)
    finally:
        src.stop()


def test_globs_and_recursion() -> None:
    f = FolderSourceConfig(path=Path("/in"), include=("*.png",), exclude=("tmp*", ".*"), recursive=False)
    assert wanted(f, Path("/in/a.PNG"))
    assert not wanted(f, Path("/in/a.jpg"))
    assert not wanted(f, Path("/in/tmpa.png"))
    assert not wanted(f, Path("/in/sub/a.png"))  # not recursive
    r = FolderSourceConfig(path=Path("/in"))
    assert wanted(r, Path("/in/sub/a.pdf")) and not wanted(r, Path("/in/.git/a.png"))
    assert not wanted(r, Path("/elsewhere/a.png"))


def test_symlink_loops_and_vanishing_files(tmp_path: Path) -> None:
    (tmp_path / "self.png").symlink_to(tmp_path / "self.png")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "up").symlink_to(tmp_path, target_is_directory=True)
    real = write_label(tmp_path.parent / f"{tmp_path.name}-real.png", "REAL")
    (tmp_path / "link.png").symlink_to(real)  # a file symlink is read
    folder = FolderSourceConfig(path=tmp_path, settle_seconds=0.2)
    src, out = collect(folder)
    src.start()
    try:
        wait_for(src.debouncer.scanned.is_set, 10, "rescan")
        for i in range(10):
            write_label(tmp_path / f"gone{i}.png", "GONE").unlink()
        got = drain(out, quiet=1.0)
        assert [c.path.name for c in got] == ["link.png"]
        wait_for(lambda: src.pending() == 0, 5, "nothing pending")
    finally:
        src.stop()


def test_overlapping_folders_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "a" / "b"
    b.mkdir(parents=True)
    agent = AgentConfig(data_dir=tmp_path / "data")
    with pytest.raises(ConfigError, match="input folders overlap"):
        check_folders(Config(agent=agent, folders=(FolderSourceConfig(a), FolderSourceConfig(b))))
    with pytest.raises(ConfigError, match="overlaps the archive folder"):
        check_folders(
            Config(agent=agent, folders=(FolderSourceConfig(b, after=AfterSuccess.ARCHIVE, archive_dir=a),))
        )
    with pytest.raises(ConfigError, match="is not a folder"):
        check_folders(Config(agent=agent, folders=(FolderSourceConfig(tmp_path / "missing"),)))
    check_folders(Config(agent=agent, folders=(FolderSourceConfig(b),)))


def test_quarantine_writes_error_beside_the_file(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    (inp / "x").mkdir(parents=True)
    bad = inp / "x" / "bad.png"
    bad.write_bytes(b"junk")
    target = quarantine(FolderSourceConfig(inp), bad, tmp_path / "q", "not an image")
    assert target == tmp_path / "q" / "x" / "bad.png" and not bad.exists()
    assert "not an image" in (tmp_path / "q" / "x" / "bad.png.error.txt").read_text()
    bad.write_bytes(b"junk again")  # a second bad file of the same name does not overwrite the first
    assert (
        quarantine(FolderSourceConfig(inp), bad, tmp_path / "q", "again")
        == tmp_path / "q" / "x" / "bad.1.png"
    )


def test_stop_joins_while_emit_is_blocked(tmp_path: Path) -> None:
    write_label(tmp_path / "a.png", "A")
    src = FolderSource(
        FolderSourceConfig(path=tmp_path, settle_seconds=0.05), lambda c: time.sleep(0.05) or False
    )
    src.start()
    wait_for(src.debouncer.scanned.is_set, 10, "rescan")
    src.stop()  # the no-leaked-threads fixture checks the join
