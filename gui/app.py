"""Starting the GUI: `edge-ocr gui` and the `edge-ocr-gui` desktop launcher."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from edge_ocr.config import Config, default_db_path, load_config
from edge_ocr.errors import ConfigError, StoreError

logger = logging.getLogger(__name__)

SCREENSHOT_TIMEOUT_MS = 30_000


def resolve(db: Path | None, config_path: Path | None) -> tuple[Path, Config | None, Path | None]:
    """The store to open and the config (when one is given by option or EDGE_OCR_CONFIG)."""
    if config_path is None and os.environ.get("EDGE_OCR_CONFIG"):
        config_path = Path(os.environ["EDGE_OCR_CONFIG"])
    config = load_config(config_path) if config_path is not None and config_path.is_file() else None
    if db is None:
        db = config.db_path() if config is not None else default_db_path()
    return Path(db), config, config_path


def run(
    db: Path | None = None,
    *,
    config_path: Path | None = None,
    screenshot: Path | None = None,
    page: str = "review",
    argv: list[str] | None = None,
) -> int:
    from PySide6.QtCore import QEventLoop, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from edge_ocr_gui.main_window import MainWindow, unreadable_store_message

    db, config, config_path = resolve(db, config_path)
    app = QApplication.instance() or QApplication(argv or [sys.argv[0]])
    app.setApplicationName("edge-ocr")
    app.setDesktopFileName("edge-ocr")
    window = MainWindow(db, config=config, config_path=config_path, page=page)
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    window.show()
    if screenshot is None:
        code = app.exec()
        return code
    outcome: dict = {"code": 1, "error": window.error}
    loop = QEventLoop()  # a local loop: never quits an application that someone else runs
    deadline = QTimer()
    deadline.setSingleShot(True)
    done = {"flag": False}

    def save() -> None:
        if done["flag"]:
            return
        done["flag"] = True
        deadline.stop()
        pixmap = window.grab()
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        if pixmap.save(str(screenshot)):
            outcome["code"] = 0
            print(f"saved {screenshot} ({pixmap.width()}x{pixmap.height()})")
        window.close()
        loop.quit()

    def timeout() -> None:
        if done["flag"]:
            return
        done["flag"] = True
        print("edge-ocr: error: the first page was not shown in time", file=sys.stderr)
        window.close()
        loop.quit()

    def fail(message: str) -> None:
        if outcome["error"] is None:  # the first problem found is the one reported
            outcome["error"] = message
        QTimer.singleShot(50, save)  # the screenshot shows the message

    if window.error is not None:
        QTimer.singleShot(0, save)
    else:
        # the window tells from the event loop, so connecting after it was built is in time
        window.firstPageFailed.connect(fail)
        if page == "dashboard":
            window.dashboard.updated.connect(lambda _d: QTimer.singleShot(50, save))
            window.dashboard.failed.connect(
                lambda m: fail(unreadable_store_message(db, f"could not read the dashboard: {m}"))
            )
        else:
            window.firstPageShown.connect(lambda: QTimer.singleShot(50, save))
    deadline.timeout.connect(timeout)
    deadline.start(SCREENSHOT_TIMEOUT_MS)
    try:
        loop.exec()
    finally:
        deadline.stop()  # a timer left running would fire into whatever runs Qt next
    if outcome["error"] is not None:
        raise StoreError(outcome["error"])
    return outcome["code"]


def main(argv: list[str] | None = None) -> int:
    """The desktop launcher (`edge-ocr-gui`): the same options as `edge-ocr gui`."""
    from edge_ocr.ops.logsetup import configure_logging
    from edge_ocr_gui.options import add_arguments

    parser = argparse.ArgumentParser(prog="edge-ocr-gui", description="Review and monitor edge-ocr results.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(level=logging.WARNING)
    try:
        return run(args.db, config_path=args.config, screenshot=args.screenshot, page=args.page)
    except (StoreError, ConfigError) as exc:
        print(f"edge-ocr-gui: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
