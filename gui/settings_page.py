"""Settings: the agent's config file (sources, recipes, engine), validated with the agent's own
loader before it is written back; start and stop the agent's user service."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from PySide6.QtCore import QProcess, Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from edge_ocr.config import Config, parse_config
from edge_ocr.errors import ConfigError
from edge_ocr.ocr.reader import ENGINE_CHOICES

logger = logging.getLogger(__name__)

SERVICE = "edge-ocr"
UNIT_DIRS = (
    Path("~/.config/systemd/user").expanduser(),
    Path("/etc/systemd/user"),
    Path("/usr/lib/systemd/user"),
    Path("/usr/local/lib/systemd/user"),
)


def validate_text(text: str) -> Config:
    """Parse and validate config text exactly as the agent will. Raises ConfigError."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}") from None
    return parse_config(raw, env={})


def set_engine(text: str, engine: str) -> str:
    """Set `[engine] name` in config text, keeping everything else (comments included)."""
    section = re.search(r"(?m)^\[engine\][ \t]*(#.*)?$", text)
    line = f'name = "{engine}"'
    if section is None:
        return text.rstrip("\n") + ("\n\n" if text.strip() else "") + f"[engine]\n{line}\n"
    start = section.end()
    following = re.search(r"(?m)^\[", text[start:])
    end = start + following.start() if following else len(text)
    body = text[start:end]
    if re.search(r"(?m)^\s*name\s*=", body):
        body = re.sub(r"(?m)^(\s*)name\s*=.*$", lambda m: m.group(1) + line, body, count=1)
    else:
        body = "\n" + line + body
    return text[:start] + body + text[end:]


def service_available() -> tuple[bool, str]:
    if shutil.which("systemctl") is None:
        return False, "systemctl is not installed: the agent does not run as a user service here"
    if not any((d / f"{SERVICE}.service").is_file() for d in UNIT_DIRS):
        return False, f"no {SERVICE}.service user unit is installed (see packaging/systemd/)"
    return True, f"systemctl --user start|stop {SERVICE}"


class SettingsPage(QWidget):
    saved = Signal(object)  # the validated Config written back

    def __init__(self, config_path: Path | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.config_path = config_path
        self.path_label = QLabel()
        self.editor = QPlainTextEdit()
        self.editor.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.engine = QComboBox()
        self.engine.addItems(list(ENGINE_CHOICES))
        self.validate_button = QPushButton("Validate")
        self.save_button = QPushButton("Save")
        self.revert_button = QPushButton("Revert")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.start_button = QPushButton("Start agent")
        self.stop_button = QPushButton("Stop agent")
        self.service_label = QLabel("")
        self._process: QProcess | None = None

        top = QHBoxLayout()
        top.addWidget(self.path_label, 1)
        top.addWidget(QLabel("Engine"))
        top.addWidget(self.engine)
        buttons = QHBoxLayout()
        for b in (self.validate_button, self.save_button, self.revert_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        service = QHBoxLayout()
        service.addWidget(QLabel("Agent service:"))
        service.addWidget(self.start_button)
        service.addWidget(self.stop_button)
        service.addWidget(self.service_label, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.editor, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addLayout(service)

        self.validate_button.clicked.connect(self.validate)
        self.save_button.clicked.connect(self.save)
        self.revert_button.clicked.connect(self.revert)
        self.engine.activated.connect(lambda _i: self._engine_chosen())
        self.start_button.clicked.connect(lambda: self.run_service("start"))
        self.stop_button.clicked.connect(lambda: self.run_service("stop"))
        available, why = service_available()
        for b in (self.start_button, self.stop_button):
            b.setEnabled(available)
            b.setToolTip(why)
        self.service_label.setText("" if available else why)
        self.revert()

    def revert(self) -> None:
        if self.config_path is None:
            self.path_label.setText("No config file given (start with --config PATH or set EDGE_OCR_CONFIG)")
            self.editor.setPlainText("")
            self.editor.setEnabled(False)
            for b in (self.validate_button, self.save_button, self.revert_button, self.engine):
                b.setEnabled(False)
            return
        self.path_label.setText(f"Config: {self.config_path}")
        try:
            text = self.config_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        except OSError as exc:
            self._show(False, f"cannot read {self.config_path}: {exc}")
            return
        self.editor.setPlainText(text)
        self.validate()

    def _engine_chosen(self) -> None:
        self.editor.setPlainText(set_engine(self.editor.toPlainText(), self.engine.currentText()))
        self.validate()

    def _show(self, ok: bool, message: str) -> None:
        colour = "#1f9d3a" if ok else "#d62728"
        self.status.setText(f"<span style='color:{colour}'>{message}</span>")

    def validate(self) -> Config | None:
        try:
            cfg = validate_text(self.editor.toPlainText())
        except ConfigError as exc:
            self._show(False, f"invalid: {exc}")
            return None
        index = self.engine.findText(cfg.engine.name)
        if index >= 0:
            self.engine.setCurrentIndex(index)
        n_sources = len(cfg.folders) + len(cfg.cameras)
        self._show(
            True, f"valid: {n_sources} source(s), {len(cfg.recipes)} recipe(s), engine {cfg.engine.name}"
        )
        return cfg

    def save(self) -> bool:
        cfg = self.validate()
        if cfg is None or self.config_path is None:
            return False
        text = self.editor.toPlainText()
        tmp = self.config_path.with_name(self.config_path.name + ".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.config_path)
        except OSError as exc:
            self._show(False, f"cannot write {self.config_path}: {exc}")
            return False
        self._show(True, f"saved {self.config_path}; restart the agent to apply it")
        self.saved.emit(cfg)
        return True

    def run_service(self, action: str) -> None:
        if self._process is not None:
            return
        process = QProcess(self)
        process.finished.connect(lambda code, _status: self._service_done(action, code))
        process.errorOccurred.connect(lambda _err: self._service_done(action, -1))
        self._process = process
        self.service_label.setText(f"{action}ing {SERVICE}…")
        process.start("systemctl", ["--user", action, SERVICE])

    def _service_done(self, action: str, code: int) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        err = bytes(process.readAllStandardError().data()).decode(errors="replace").strip()
        self.service_label.setText(
            f"{SERVICE}: {action} done" if code == 0 else f"{SERVICE}: {action} failed ({code}) {err}"
        )
        process.deleteLater()
