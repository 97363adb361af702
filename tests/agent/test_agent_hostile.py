"""The agent against hostile input (issue 13): names that are not UTF-8, links out of the folder,
another process holding the database lock, slow writers, files renamed in. Real watchdog
observers, real worker processes (fake engine), real SQLite files."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from support import make_config, query, running_agent, wait_for, write_label

from edge_ocr.cli import main
from edge_ocr.store import files
from edge_ocr.store.db import BUSY_TIMEOUT_MS


def done_count(db: Path) -> int:
    try:
        return query(db, "SELECT count(*) FROM files WHERE state = 'done'")[0][0]
    except sqlite3.OperationalError:  # created by another process, not migrated yet
        return 0


def agent_toml(dirs: dict[str, Path], path: Path, **folder: object) -> Path:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in folder.items())
    path.write_text(
        f'[agent]\ndb = "{dirs["db"]}"\ndata_dir = "{dirs["data"]}"\nworkers = 1\nheartbeat = 0.5\n'
        f'[engine]\nname = "fake"\n'
        f'[[sources.folder]]\npath = "{dirs["in"]}"\nsettle_seconds = 0.1\n{extra}'
    )
    return path


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_ocr.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "EDGE_OCR_CONFIG": ""},
    )


# -- 1. names that are not UTF-8 --------------------------------------------------------------------


def test_a_name_that_is_not_utf8_is_read_stored_losslessly_and_not_read_again(
    dirs: dict[str, Path], tmp_path: Path
) -> None:
    raw = os.fsencode(dirs["in"]) + b"/bad\xff\xfe.png"
    label = write_label(tmp_path / "label.png", "LOT 7", 7)
    with open(raw, "wb") as fh:
        fh.write(label.read_bytes())
    write_label(dirs["in"] / "good.png", "GOOD", 1)
    config = agent_toml(dirs, tmp_path / "agent.toml")
    log = tmp_path / "agent.log"
    proc = cli("--log-file", str(log), "run", "--config", str(config))
    try:
        wait_for(lambda: proc.poll() is not None or done_count(dirs["db"]) == 2, 60, "both files done")
        assert proc.poll() is None, proc.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        proc.stderr.close()  # type: ignore[union-attr]
    assert code == 0
    keys = [k for (k,) in query(dirs["db"], "SELECT path FROM files ORDER BY id")]
    assert raw in keys  # the exact bytes of the name, as a BLOB
    shown = files.display_path(raw)
    assert shown.endswith("bad\\xff\\xfe.png")
    assert (shown,) in query(dirs["db"], "SELECT source_path FROM captures")
    # the startup rescan finds it again: recorded once, read once, and the agent does not loop
    assert cli("run", "--once", "--config", str(config)).wait(120) == 0
    assert query(dirs["db"], "SELECT count(*) FROM files")[0][0] == 2
    assert query(dirs["db"], "SELECT count(*) FROM results")[0][0] == 2


def test_an_error_with_one_file_is_contained_logged_and_recorded(
    dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    observe = files.observe_file

    def failing(conn, source, path, *args):  # a bug that only shows with one file
        if "boom" in os.fspath(path):
            raise RuntimeError("simulated bug")
        return observe(conn, source, path, *args)

    monkeypatch.setattr(files, "observe_file", failing)
    write_label(dirs["in"] / "boom.png", "BOOM", 1)
    with caplog.at_level(logging.ERROR), running_agent(make_config(dirs)) as agent:
        wait_for(lambda: agent.stats.files_quarantined == 1, what="the file quarantined")
        write_label(dirs["in"] / "after.png", "AFTER", 2)  # the agent goes on
        wait_for(lambda: done_count(dirs["db"]) == 1, what="the next file done")
    (reason,) = [e for (e,) in query(dirs["db"], "SELECT last_error FROM files WHERE state = 'quarantined'")]
    assert "RuntimeError: simulated bug" in reason
    note = next((dirs["data"] / "quarantine").rglob("boom.png.error.txt")).read_text()
    assert "simulated bug" in note
    (record,) = [r for r in caplog.records if "boom.png" in r.getMessage()]
    assert record.exc_info is not None  # the traceback goes to the log handlers (the log file)


# -- 2. links -----------------------------------------------------------------------------------------


def test_links_never_read_outside_the_folder_and_no_bytes_are_echoed(
    dirs: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inp = dirs["in"]
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:SECRET-TOKEN:/root:/bin/bash\n")
    outside_label = write_label(tmp_path / "elsewhere" / "label.png", "OUTSIDE", 1)
    (inp / "passwd.png").symlink_to(secret)
    (inp / "label.png").symlink_to(outside_label)
    (inp / "loop.png").symlink_to(inp / "loop.png")
    (inp / "x.png").mkdir()  # a folder named like an image: its contents are still watched
    write_label(inp / "x.png" / "inner.png", "INNER", 2)
    inside = write_label(inp / "kept" / "real.png", "REAL", 3)
    (inp / "alias.png").symlink_to(inside)  # a link inside the folder is read like a copy
    (inp / "notes.jpg").write_text("root:x:0:0:SECRET-TOKEN inside the folder, not an image\n")
    with caplog.at_level(logging.DEBUG), running_agent(make_config(dirs)) as agent:
        wait_for(lambda: agent.stats.files_quarantined == 4, what="links and the non-image quarantined")
        wait_for(lambda: done_count(dirs["db"]) == 3, what="inner, real and the alias (a duplicate)")
        wait_for(lambda: agent.queue_depth() == 0, what="nothing pending")
    texts = {Path(os.fsdecode(p)).name: e for p, e in query(dirs["db"], "SELECT path, last_error FROM files")}
    assert "outside the watched folder" in texts["passwd.png"]
    assert "outside the watched folder" in texts["label.png"]
    assert "symbolic link" in texts["loop.png"]
    assert query(dirs["db"], "SELECT count(*) FROM results WHERE text LIKE '%OUTSIDE%'") == [(0,)]
    assert query(dirs["db"], "SELECT count(*) FROM results")[0][0] == 2  # inner, real
    skipped = query(dirs["db"], "SELECT message FROM events WHERE kind = 'file.skipped'")
    assert any("x.png" in m and "folder" in m for (m,) in skipped)
    assert inp.joinpath("x.png").is_dir() and secret.exists() and outside_label.exists()
    # the links themselves went to quarantine; nothing anywhere repeats a file's bytes
    everything = [
        json.dumps(query(dirs["db"], f"SELECT * FROM {t}"), default=files.display_path)
        for t in ("files", "events", "captures")  # exact names (BLOBs) shown as text
    ]
    everything += [p.read_text() for p in (dirs["data"] / "quarantine").rglob("*.error.txt")]
    everything.append(caplog.text)
    for text in everything:
        assert "SECRET-TOKEN" not in text and "root:x" not in text


# -- 3. another process holds the write lock ----------------------------------------------------------


@contextmanager
def write_lock(db: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def status(db: Path, capsys: pytest.CaptureFixture) -> dict:
    main(["status", "--db", str(db), "--json"])
    return json.loads(capsys.readouterr().out)


def test_a_write_lock_held_past_the_busy_timeout_is_waited_out(
    dirs: dict[str, Path], capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), running_agent(make_config(dirs)) as agent:
        with write_lock(dirs["db"]):
            write_label(dirs["in"] / "a.png", "A", 1)
            wait_for(
                lambda: (
                    (status(dirs["db"], capsys).get("waiting_for_lock") or {}).get("waited_s", 0)
                    > BUSY_TIMEOUT_MS / 1000 + 1
                ),
                60,
                "status to show the agent waiting past the busy timeout",
            )
            report = status(dirs["db"], capsys)
            assert report["running"] is True
        wait_for(lambda: done_count(dirs["db"]) == 1, what="the file done once the lock is gone")
        wait_for(lambda: status(dirs["db"], capsys)["waiting_for_lock"] is None, what="the note removed")
        assert agent.queue_depth() == 0
    assert query(dirs["db"], "SELECT count(*) FROM files WHERE state = 'processing'") == [(0,)]
    assert "locked by another process" in caplog.text


# -- 4. slow writers and renames ------------------------------------------------------------------------


def write_slowly(path: Path, data: bytes, chunks: int, pause: float) -> None:
    """A writer that keeps the file open and pauses longer than settle_seconds between chunks."""
    step = len(data) // chunks + 1
    gate = threading.Event()
    with path.open("wb") as fh:
        for i in range(0, len(data), step):
            fh.write(data[i : i + step])
            fh.flush()
            os.fsync(fh.fileno())
            gate.wait(pause)  # the pause is the scenario, not a wait for something


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_a_file_written_with_long_pauses_is_read_once_complete(
    dirs: dict[str, Path], tmp_path: Path, polling: bool
) -> None:
    data = write_label(tmp_path / "label.png", "SLOW 42", 4).read_bytes()
    cfg = make_config(dirs, settle_seconds=0.2, polling=polling, poll_interval=0.1)
    with running_agent(cfg) as agent:
        for i in range(6):  # keep the workers busy while it is written
            write_label(dirs["in"] / f"busy{i}.png", f"BUSY {i}", 10 + i)
        write_slowly(dirs["in"] / "slow.png", data, chunks=4, pause=0.6)
        wait_for(lambda: done_count(dirs["db"]) >= 7, 60, "every file done")
        wait_for(lambda: agent.queue_depth() == 0, what="nothing pending")
    assert done_count(dirs["db"]) == 7
    assert query(dirs["db"], "SELECT count(*) FROM files WHERE path LIKE '%slow.png'") == [(1,)]
    assert query(dirs["db"], "SELECT count(*) FROM captures WHERE source_path LIKE '%slow.png'") == [(1,)]
    assert query(dirs["db"], "SELECT count(*) FROM files WHERE state = 'quarantined'") == [(0,)]
    assert (dirs["in"] / "slow.png").exists()


def test_a_file_renamed_into_the_folder_is_read_without_a_settle_wait(
    dirs: dict[str, Path], tmp_path: Path
) -> None:
    cfg = make_config(dirs, settle_seconds=600)  # a file written in place would wait this long
    staged = write_label(tmp_path / "stage" / "moved.png", "MOVED", 5)
    with running_agent(cfg) as agent:
        wait_for(lambda: agent._folders[0].debouncer.scanned.is_set(), what="the startup rescan")
        staged.rename(dirs["in"] / "moved.png")
        wait_for(lambda: done_count(dirs["db"]) == 1, 60, "the renamed file done")
        assert agent.stats.latencies_renamed_s and not agent.stats.latencies_written_s


def test_a_truncated_file_modified_long_ago_is_still_quarantined(
    dirs: dict[str, Path], tmp_path: Path
) -> None:
    data = write_label(tmp_path / "label.png", "CUT", 6).read_bytes()
    cut = dirs["in"] / "cut.png"
    cut.write_bytes(data[:300])
    os.utime(cut, (1e9, 1e9))  # an old file: not one still being written
    with running_agent(replace(make_config(dirs))) as agent:
        wait_for(lambda: agent.stats.files_quarantined == 1, what="quarantined")
    assert agent.stats.files_incomplete == 0


# -- 5. names at the file-name limit (issue 21.6) -------------------------------------------------------


def test_a_name_at_the_file_name_limit_is_quarantined_with_a_note_that_fits(
    dirs: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    name = "x" * 251 + ".png"  # 255 bytes: `<name>.error.txt` would be 265
    (dirs["in"] / name).write_text("not an image")
    with caplog.at_level(logging.WARNING), running_agent(make_config(dirs)) as agent:
        wait_for(lambda: agent.stats.files_quarantined == 1, what="quarantined")
    moved = [p for p in (dirs["data"] / "quarantine").rglob("*") if p.is_file()]
    assert sorted(p.name.endswith(".error.txt") for p in moved) == [False, True]
    note = next(p for p in moved if p.name.endswith(".error.txt"))
    assert len(os.fsencode(note.name)) <= 255 and note.name.startswith("x" * 200)
    assert note.read_text().splitlines()[0] == str(dirs["in"] / name)  # the full name inside
    assert (note.parent / name).read_text() == "not an image"
    assert "cannot move to quarantine" not in caplog.text and "could not be written" not in caplog.text


# -- 6. names that show the same (issue 21.5) -----------------------------------------------------------


def test_a_raw_name_and_its_display_form_never_meet_in_the_store_or_the_export(
    dirs: dict[str, Path], tmp_path: Path
) -> None:
    import cv2
    import numpy as np

    raw = os.fsencode(dirs["in"]) + b"/lot\xff.png"  # an undecodable byte...
    literal = dirs["in"] / "lot\\xff.png"  # ...and a name made of its display form, `\xff` literally
    with open(raw, "wb") as fh:
        fh.write(write_label(tmp_path / "a.png", "RAW NAME", 1).read_bytes())
    literal.write_bytes(write_label(tmp_path / "b.png", "LITERAL NAME 42", 2).read_bytes())
    with running_agent(make_config(dirs)) as agent:
        wait_for(lambda: done_count(dirs["db"]) == 2, what="both files done")
        wait_for(lambda: agent.queue_depth() == 0, what="nothing pending")
    rows = query(
        dirs["db"],
        "SELECT c.id, c.source_path, c.source_path_raw, r.lines FROM captures c JOIN results r ON r.capture_id = c.id",
    )
    assert {shown for _, shown, _, _ in rows} == {files.display_path(raw)}  # they show the same...
    assert {bytes(name) for _, _, name, _ in rows} == {raw, os.fsencode(literal)}  # ...and are kept apart
    out = tmp_path / "export"
    assert main(["export", "--db", str(dirs["db"]), "--format", "ppocrlabel", "--out", str(out)]) == 0
    by_capture = {cid: (bytes(name), json.loads(lines)) for cid, _, name, lines in rows}
    labels = (out / "Label.txt").read_text(encoding="utf-8").splitlines()
    assert len(labels) == 2
    for label in labels:
        image_name, entries = label.split("\t")
        name, lines = by_capture[int(Path(image_name).name.split("_")[0])]
        exported = cv2.imread(str(out / image_name))
        original = cv2.imdecode(np.fromfile(os.fsdecode(name), np.uint8), cv2.IMREAD_COLOR)
        assert np.array_equal(exported, original), f"the text of {name!r} is paired with another image"
        assert [e["transcription"] for e in json.loads(entries)] == [line["text"] for line in lines]
