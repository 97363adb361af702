"""The agent never touches anything outside its watched folder (issue 21.2): a sub-folder swapped
for a symbolic link after its files were seen, a file swapped under the worker, a file replaced
after it was read. Real watchdog observers, real worker processes (fake engine), real links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import make_config, query, running_agent, wait_for, write_label

from edge_ocr.agent.sources import dirfd
from edge_ocr.agent.sources.entries import inspect_entry
from edge_ocr.agent.sources.moves import after_success, quarantine
from edge_ocr.agent.workers import FileJob, JobFailed, _copy_checked
from edge_ocr.config import AfterSuccess, FolderSourceConfig


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("after", ["archive", "delete"])
def test_a_subfolder_swapped_for_a_link_after_its_files_are_seen_moves_nothing_outside(
    dirs: dict[str, Path], tmp_path: Path, after: str
) -> None:
    outside = tmp_path / "outside"  # what the link will lead to: the same names, other content
    for i in range(8):
        write_label(outside / f"f{i}.png", f"OUTSIDE {i}", 100 + i)
    (outside / "bad.png").write_text("not an image: the agent would quarantine it")
    before = snapshot(outside)
    sub = dirs["in"] / "sub"
    # written in place and polled: each waits settle_seconds after its last change before it is read
    cfg = make_config(dirs, settle_seconds=5.0, polling=True, poll_interval=0.1, after=AfterSuccess(after))
    with running_agent(cfg) as agent:
        debouncer = agent._folders[0].debouncer
        wait_for(debouncer.scanned.is_set, what="the startup rescan")
        sub.mkdir()
        for i in range(8):
            (sub / f"f{i}.png").write_bytes(
                write_label(tmp_path / "src" / f"f{i}.png", f"IN {i}", i).read_bytes()
            )
        (sub / "bad.png").write_text("not an image either")
        wait_for(lambda: debouncer.pending() == 9, what="the nine files seen, not yet read")
        sub.rename(tmp_path / "moved-away")
        sub.symlink_to(outside, target_is_directory=True)
        write_label(dirs["in"] / "later.png", "LATER", 42)  # the agent goes on with the rest
        wait_for(lambda: query(dirs["db"], "SELECT count(*) FROM files WHERE state = 'done'") == [(1,)])
        wait_for(lambda: agent.queue_depth() == 0, 30, "every seen file handled")
    assert snapshot(outside) == before  # nothing moved, renamed, removed or rewritten out there
    assert sub.is_symlink()
    kept = [p for p in (dirs["data"] / "quarantine").rglob("*") if p.is_file()]
    kept += [p for p in (dirs["data"] / "archive").rglob("*") if p.is_file()]
    assert [p.name for p in kept] == (["later.png"] if after == "archive" else [])
    assert query(dirs["db"], "SELECT count(*) FROM results WHERE text LIKE '%OUTSIDE%'") == [(0,)]
    skipped = [m for (m,) in query(dirs["db"], "SELECT message FROM events WHERE kind = 'file.skipped'")]
    assert len(skipped) == 9 and all("symbolic link on the way (sub)" in m for m in skipped), skipped


def test_the_worker_refuses_a_file_whose_folder_became_a_link(tmp_path: Path) -> None:
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(b"inside")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.png").write_bytes(b"outside: never read")
    job = FileJob(1, 1, str(root / "sub" / "a.png"), root=str(root), name="sub/a.png")
    assert _copy_checked(job, tmp_path / "copy") == (
        tmp_path / "copy",
        os.stat(root / "sub" / "a.png").st_mtime,
    )
    (root / "sub").rename(tmp_path / "away")
    (root / "sub").symlink_to(outside, target_is_directory=True)
    answer = _copy_checked(job, tmp_path / "copy2")
    assert isinstance(answer, JobFailed) and answer.changed and not answer.bad_input
    assert "symbolic link on the way (sub)" in answer.error
    assert not (tmp_path / "copy2").exists()


def test_moves_refuse_links_on_the_way_and_entries_changed_since_they_were_read(tmp_path: Path) -> None:
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    victim = tmp_path / "outside" / "x.png"
    victim.parent.mkdir()
    victim.write_bytes(b"outside")
    folder = FolderSourceConfig(path=root, after=AfterSuccess.ARCHIVE)
    (root / "sub" / "x.png").write_bytes(b"inside")
    seen = inspect_entry(root / "sub" / "x.png", root)
    assert seen.ident is not None and seen.key == (6, os.stat(root / "sub" / "x.png").st_mtime_ns)
    (root / "sub").rename(tmp_path / "away")
    (root / "sub").symlink_to(victim.parent, target_is_directory=True)
    for act in (
        lambda: after_success(folder, root / "sub" / "x.png", tmp_path / "archive"),
        lambda: quarantine(folder, root / "sub" / "x.png", tmp_path / "quarantine", "bad"),
        lambda: dirfd.unlink(root, ("sub", "x.png")),
    ):
        with pytest.raises(dirfd.LinkInTheWay):
            act()
    assert victim.read_bytes() == b"outside"
    # a file replaced after it was read is left for the next read, never archived in its place
    (root / "y.png").write_bytes(b"first")
    read = inspect_entry(root / "y.png", root)
    (root / "y.png.new").write_bytes(b"second, not read yet")
    (root / "y.png.new").replace(root / "y.png")
    with pytest.raises(dirfd.EntryChanged):
        after_success(folder, root / "y.png", tmp_path / "archive", expect=read.ident)
    assert (root / "y.png").read_bytes() == b"second, not read yet"
    assert not (tmp_path / "archive" / "y.png").exists()


def test_moves_never_replace_and_fit_long_names(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    folder = FolderSourceConfig(path=root)
    long_name = "é" * 123 + ".png"  # 250 bytes: the note's name would be 260
    for i in range(3):
        (root / long_name).write_bytes(b"bad %d" % i)
        target = quarantine(folder, root / long_name, tmp_path / "q", f"reason {i}")
        assert target is not None and target.read_bytes() == b"bad %d" % i
    names = sorted(p.name for p in (tmp_path / "q").iterdir())
    assert len(names) == 6 and all(len(os.fsencode(n)) <= 255 for n in names)
    notes = [n for n in names if n.endswith(".error.txt")]
    assert len(notes) == 3
    texts = sorted((tmp_path / "q" / n).read_text() for n in notes)
    assert [t.splitlines()[1] for t in texts] == ["reason 0", "reason 1", "reason 2"]
    assert all(t.splitlines()[0] == str(root / long_name) for t in texts)
    for n in names:  # cut at a character boundary: still text
        n.encode("utf-8")
