"""The dashboard: throughput, read rate, verdicts per recipe and per shift, agent and sync status.
Aggregates are computed by a background job; the page only paints its answer."""

from __future__ import annotations

import logging

from PySide6.QtCore import QElapsedTimer, Qt, Signal
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from edge_ocr.store import dashboard as dashboard_store
from edge_ocr.store.dashboard import Dashboard
from edge_ocr_gui import workers
from edge_ocr_gui.charts import StackedBarChart, TimeBarChart
from edge_ocr_gui.store import StoreSession

logger = logging.getLogger(__name__)

MIN_REFRESH_MS = 5000  # live changes refresh the aggregates at most this often
STALE_HEARTBEAT_S = 60


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} days ago"


class DashboardPage(QWidget):
    updated = Signal(object)  # the Dashboard shown
    failed = Signal(str)  # the aggregates cannot be read (the message)

    def __init__(self, session: StoreSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.data: Dashboard | None = None
        self._job: workers.Job | None = None
        self._since_refresh = QElapsedTimer()
        self.throughput = TimeBarChart("Results per hour (UTC), last 24 h")
        self.per_recipe = StackedBarChart("Verdicts per recipe", ("pass", "fail", "unreadable"))
        self.per_shift = StackedBarChart("Verdicts per shift", ("pass", "fail", "unreadable"))
        self.read_rate = QLabel("…")
        self.read_rate.setStyleSheet("font-size: 28px; font-weight: bold")
        self.totals = QLabel("")
        self.agent = QLabel("…")
        self.agent.setTextFormat(Qt.TextFormat.RichText)
        self.agent.setWordWrap(True)
        self.sync = QLabel("…")
        self.sync.setWordWrap(True)
        self.sync.setTextFormat(Qt.TextFormat.RichText)

        rate_box = QGroupBox("Read rate")
        rate_layout = QVBoxLayout(rate_box)
        rate_layout.addWidget(self.read_rate)
        rate_layout.addWidget(self.totals)
        rate_layout.addStretch(1)
        agent_box = QGroupBox("Agent")
        QVBoxLayout(agent_box).addWidget(self.agent)
        sync_box = QGroupBox("Sync")
        QVBoxLayout(sync_box).addWidget(self.sync)
        status = QWidget()
        status_layout = QVBoxLayout(status)
        status_layout.setContentsMargins(0, 0, 0, 0)
        for box in (rate_box, agent_box, sync_box):
            status_layout.addWidget(box)
        status_layout.addStretch(1)

        grid = QGridLayout(self)
        grid.addWidget(self.throughput, 0, 0, 1, 2)
        grid.addWidget(status, 0, 2, 2, 1)
        grid.addWidget(self.per_recipe, 1, 0)
        grid.addWidget(self.per_shift, 1, 1)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 3)
        grid.setColumnStretch(2, 2)
        session.changed.connect(self.store_changed)

    def refresh(self) -> None:
        if self._job is not None:
            return  # one at a time; the next change triggers another
        self._since_refresh.start()
        job = workers.Job(self.session.path, lambda conn, report, token: dashboard_store.dashboard(conn))
        job.signals.done.connect(self.show_data)
        job.signals.failed.connect(self._failed)
        self._job = workers.start(job)

    def store_changed(self) -> None:
        if self.isVisible() and (
            not self._since_refresh.isValid() or self._since_refresh.elapsed() > MIN_REFRESH_MS
        ):
            self.refresh()

    def _failed(self, message: str) -> None:
        self._job = None
        self.agent.setText(f"<span style='color:#d62728'>could not read the store: {message}</span>")
        self.failed.emit(message)

    def show_data(self, data: Dashboard) -> None:
        self._job = None
        self.data = data
        self.throughput.set_points(data.throughput)
        self.per_recipe.set_bars([(n, (c.passed, c.failed, c.unreadable)) for n, c in data.per_recipe])
        self.per_shift.set_bars([(n, (c.passed, c.failed, c.unreadable)) for n, c in data.per_shift])
        rate = data.read_rate
        self.read_rate.setText("–" if rate is None else f"{rate:.1%}")
        self.totals.setText(
            f"{data.readable:,} of {data.total:,} results readable\n"
            f"{data.window_start[:16].replace('T', ' ')} – {data.window_end[:16].replace('T', ' ')} UTC"
        )
        self.agent.setText(self._agent_html(data))
        s = data.sync
        error = (
            f"<br><span style='color:#d62728'>last error {s.last_error_at or ''}: {s.last_error}</span>"
            if s.last_error
            else "<br>no errors"
        )
        self.sync.setText(
            f"pending batches: <b>{s.pending_batches}</b> · records not yet acknowledged: <b>{s.pending_records:,}</b>"
            f"<br>last success: {s.last_success or 'never'}{error}"
        )
        self.updated.emit(data)

    @staticmethod
    def _agent_html(data: Dashboard) -> str:
        if not data.agents:
            return "no agent has written to this store yet"
        parts = []
        for a in data.agents:
            stale = a.heartbeat_age_s is None or a.heartbeat_age_s > STALE_HEARTBEAT_S
            running = a.state == "running" and not stale
            colour = "#1f9d3a" if running else "#d62728"
            state = a.state or "unknown"
            if a.state == "running" and stale:
                state = "not responding"
            versions = ", ".join(f"{k} {v}" for k, v in sorted(a.model_versions.items())) or "-"
            parts.append(
                f"<b>{a.agent_id}</b> on {a.host or '?'} (pid {a.pid or '?'}): "
                f"<span style='color:{colour}'><b>{state}</b></span><br>"
                f"heartbeat {_age(a.heartbeat_age_s)} · queue {a.queue_depth if a.queue_depth is not None else '?'}<br>"
                f"engine {a.engine or '?'} · model {a.model or '?'} · edge-ocr {a.version or '?'}<br>"
                f"versions: {versions}"
            )
        return "<br><br>".join(parts)
