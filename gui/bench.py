"""`python -m edge_ocr_gui.bench --db PATH`: the GUI's figures on a store (docs/BENCHMARKS_GUI.md).

Opens the main window offscreen and measures: window created to first page and count shown; a
full-text search (filter applied, first page shown, count known); scrolling to the end (pages and
rows read); next unreviewed; a correction stored.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

SEARCHES = ("LOT", "Sealant", "EXP 2027", "zzqqxx")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    parser = argparse.ArgumentParser(prog="python -m edge_ocr_gui.bench")
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from edge_ocr.store.review import ResultFilter
    from edge_ocr_gui import workers
    from edge_ocr_gui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])

    def wait_for(predicate, timeout_s: float = 30.0) -> None:
        deadline = time.perf_counter() + timeout_s
        loop = QEventLoop()
        while not predicate():
            if time.perf_counter() > deadline:
                raise TimeoutError("benchmark step timed out")
            QTimer.singleShot(1, loop.quit)
            loop.exec()

    t0 = time.perf_counter()
    window = MainWindow(args.db)
    window.show()
    page = window.review
    first_page = time.perf_counter() - t0
    wait_for(lambda: page.model.count is not None)
    with_count = time.perf_counter() - t0
    app.processEvents()
    print(f"store: {args.db} ({page.model.count:,} results)")
    print(f"open: first page shown {first_page * 1000:.0f} ms, count shown {with_count * 1000:.0f} ms")

    for word in SEARCHES:
        first, full = [], []
        for _ in range(args.repeat):
            page.model.set_query(ResultFilter())
            wait_for(lambda: page.model.count is not None)
            t = time.perf_counter()
            page.apply_filter(ResultFilter(search=word))
            first.append(time.perf_counter() - t)
            wait_for(lambda: page.model.count is not None)
            full.append(time.perf_counter() - t)
        print(
            f"search {word!r}: first page {statistics.median(first) * 1000:.1f} ms, with count "
            f"{statistics.median(full) * 1000:.1f} ms ({page.model.count:,} hits)"
        )

    page.apply_filter(ResultFilter())
    wait_for(lambda: page.model.count is not None)
    model = page.model
    read_before = model.rows_read
    t = time.perf_counter()
    page.table.scrollToBottom()
    page.table.viewport().repaint()
    last = model.row(model.rowCount() - 1)
    print(
        f"scroll to end: {(time.perf_counter() - t) * 1000:.1f} ms, rows read {model.rows_read - read_before:,} "
        f"of {model.rowCount():,} (last id {last.id if last else None})"
    )
    t = time.perf_counter()
    for _ in range(20):
        page.next_unreviewed()
    print(f"next unreviewed: {(time.perf_counter() - t) / 20 * 1000:.1f} ms each")
    window.close()
    workers.wait_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
