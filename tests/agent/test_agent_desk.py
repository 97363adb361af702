"""The file desk with its real collaborators: a running folder source takes back a file to look at
again, the retry queue takes a failed file's next attempt, the outputs get the verdict, and the
results keep the versions of the worker that read them."""

from __future__ import annotations

import json
import queue
from dataclasses import replace
from pathlib import Path

import cv2
from support import make_config, query, write_label

from edge_ocr.agent.filing import FileDesk
from edge_ocr.agent.outputs import Outputs
from edge_ocr.agent.records import AgentStats
from edge_ocr.agent.retries import RetryQueue
from edge_ocr.agent.sources.folder import FileCandidate, FolderSource
from edge_ocr.agent.workers import JobDone, JobFailed, PageRead
from edge_ocr.config import ChecksSpec, FieldSpec, OutputsConfig, RecipeConfig
from edge_ocr.ocr.reader import open_pipeline
from edge_ocr.store.db import open_connection


def test_the_desk_works_through_its_collaborators(dirs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "verdicts.jsonl"
    recipe = RecipeConfig("any", (FieldSpec("first", regex=r"^(\w+)"),), ChecksSpec(not_expired=False))
    cfg = replace(
        make_config(dirs, recipe="any"), recipes={"any": recipe}, outputs=OutputsConfig(jsonl=str(out))
    )
    folder = cfg.folders[0]
    label = write_label(dirs["in"] / "a.png", "LOT 12345", 1)
    handed: queue.Queue[FileCandidate] = queue.Queue()
    source = FolderSource(folder, lambda item: handed.put(item) or True)
    conn = open_connection(dirs["db"])
    outputs = Outputs.from_config(cfg.outputs)
    retries: RetryQueue[FileCandidate] = RetryQueue()
    desk = FileDesk(cfg, conn, AgentStats(), sources={folder: source}, outputs=outputs, retries=retries)
    source.start()
    try:
        first = handed.get(timeout=30)  # the startup rescan
        assert first.path == label

        # the content is not what was hashed: the desk hands the path back to its source, which
        # looks at it again and hands it over once more
        flight = desk.prepare(first, 1, 1)
        assert flight is not None
        desk.finish(flight, JobFailed(1, "changed since it was hashed", bad_input=False, changed=True), {})
        again = handed.get(timeout=30)
        assert again.path == label and desk.stats.files_incomplete == 1

        # a worker crash: the next attempt waits in the retry queue
        flight = desk.prepare(again, 1, 2)
        assert flight is not None
        desk.failed(flight, "worker crashed (exit code -9)")
        assert len(retries) == 1
        item, attempts = retries.take()
        assert (item, attempts) == (again, 2)

        # read: stored with the reading worker's versions, its verdict sent to the outputs
        flight = desk.prepare(item, attempts, 3)
        assert flight is not None
        with open_pipeline("fake") as pipe:
            result = pipe.run(cv2.imread(str(label)))
        done = JobDone(3, (PageRead(0, 1, result),), 5.0)
        desk.finish(flight, done, {"fake": "1.0", "models": "none"})
    finally:
        source.stop()
        outputs.close()
        conn.close()
    assert query(dirs["db"], "SELECT state FROM files") == [("done",)]
    ((versions,),) = query(dirs["db"], "SELECT model_versions FROM results")
    assert json.loads(versions) == {"fake": "1.0", "models": "none"}
    (verdict,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert Path(verdict["image"]).name == "a.png" and verdict["verdict"] in ("pass", "fail", "unreadable")
