"""The folder source with a real watchdog observer on temp folders: stable-file detection, globs,
rescan, polling, symlink loops, vanishing files, overlap checks."""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import pytest
from support import wait_for, write_label

from edge_ocr.agent.preflight import check_folders
from edge_ocr.agent.sources.folder import FileCandidate, FileRejected, FolderSource, sha256_file, wanted
from edge_ocr.agent.sources.moves import quarantine
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


def test_links_out_loops_fifos_and_folders_are_rejected_with_a_reason(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "self.png").symlink_to(inp / "self.png")  # a loop
    (inp / "d").mkdir()
    (inp / "d" / "up").symlink_to(inp, target_is_directory=True)  # a folder loop: not followed
    outside = write_label(tmp_path / "outside.png", "SECRET")
    (inp / "out.png").symlink_to(outside)  # never read
    (inp / "dangling.png").symlink_to(inp / "nothing.png")
    inside = write_label(inp / "sub" / "real.png", "REAL")
    (inp / "in.png").symlink_to(inside)  # inside the folder: read, through its target
    (inp / "folder.png").mkdir()  # a folder named like an image
    os.mkfifo(inp / "pipe.png")  # would block a reader forever
    src, out = collect(FolderSourceConfig(path=inp, settle_seconds=0.2))
    src.start()
    try:
        wait_for(src.debouncer.scanned.is_set, 10, "rescan")
        got = {c.path.name: c for c in drain(out, quiet=1.0)}
        wait_for(lambda: src.pending() == 0, 5, "nothing pending")
    finally:
        src.stop()
    assert sorted(got) == [
        "dangling.png",
        "folder.png",
        "in.png",
        "out.png",
        "pipe.png",
        "real.png",
        "self.png",
    ]
    assert isinstance(got["in.png"], FileCandidate) and got["in.png"].read_path == inside
    assert got["in.png"].sha256 == sha256_file(inside)
    rejected = {n: c for n, c in got.items() if isinstance(c, FileRejected)}
    assert sorted(rejected) == ["dangling.png", "folder.png", "out.png", "pipe.png", "self.png"]
    assert "outside the watched folder" in rejected["out.png"].reason
    assert "cannot be followed" in rejected["self.png"].reason
    assert "does not exist" in rejected["dangling.png"].reason
    assert "not a regular file" in rejected["pipe.png"].reason
    assert "folder" in rejected["folder.png"].reason and not rejected["folder.png"].move


def test_vanishing_files_are_not_emitted_after_they_are_gone(tmp_path: Path) -> None:
    src, out = collect(FolderSourceConfig(path=tmp_path, settle_seconds=0.2))
    src.start()
    try:
        wait_for(src.debouncer.scanned.is_set, 10, "rescan")
        for i in range(10):
            (tmp_path / f"gone{i}.png").write_bytes(b"x" * 100)
            (tmp_path / f"gone{i}.png").unlink()
        assert drain(out, quiet=1.0) == []
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
