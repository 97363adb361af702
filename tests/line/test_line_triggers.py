"""Triggered reads (issue 20): a camera answers a trigger with a frame taken after it, never one its
buffers held from before; each trigger gives exactly one result, with its job id, on every channel
and in the store; jobs an agent left behind still get theirs; the [line] config is validated."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from linekit import Broker, Subscriber, held, line_config
from support import label_image, query, running_agent, wait_for, write_label

from edge_ocr.config import CameraSourceConfig, ModbusConfig, MqttConfig, OpcUaConfig, Trigger, parse_config
from edge_ocr.errors import ConfigError
from edge_ocr.line.hub import LineHub
from edge_ocr.line.model import LineResult, LineVerdict, TriggerRequest, TriggerStatus, VisionState

BITS = 12  # frame index drawn as 12 black/white squares, readable after JPEG


def _stamp(base: np.ndarray, index: int) -> bytes:
    """A frame: a label with its index drawn in the top-left corner, as JPEG."""
    img = base.copy()
    for b in range(BITS):
        x = 8 + b * 30
        img[6:30, x : x + 24] = 0 if index >> b & 1 else 255
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _index(img: np.ndarray) -> int:
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    return sum(1 << b for b in range(BITS) if gray[10:26, 12 + b * 30 : 28 + b * 30].mean() < 128)


class MjpegCamera:
    """An IP camera: MJPEG over HTTP (what OpenCV's FFmpeg backend reads), sending its frames in
    bursts, as a congested network delivers a backlog: each burst's frames leave together, in one
    write, then nothing for `period` seconds. `sent[i]` is when frame i left; `burst_sent` is set
    once a burst has left."""

    def __init__(self, burst: int = 30, period: float = 1.0) -> None:
        self.sent: dict[int, float] = {}
        self.burst_sent = threading.Event()
        self.stop = threading.Event()
        self.bases = [cv2.resize(label_image(f"LOT {i:05d}", i), (640, 480)) for i in range(8)]
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                index = 0
                try:
                    while not camera.stop.is_set():
                        parts = []
                        for i in range(index, index + burst):
                            jpg = _stamp(camera.bases[i % len(camera.bases)], i % (1 << BITS))
                            parts.append(
                                b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                                + jpg + b"\r\n"
                            )  # fmt: skip
                        now = time.monotonic()
                        camera.sent.update((i, now) for i in range(index, index + burst))
                        self.wfile.write(b"".join(parts))
                        self.wfile.flush()
                        index += burst
                        camera.burst_sent.set()
                        camera.stop.wait(period)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"

    def index_sent_at(self, index: int) -> float:
        return self.sent[index]

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def test_a_triggered_camera_reads_a_frame_sent_after_the_trigger_never_a_buffered_one(
    dirs, broker: Broker
) -> None:
    camera = MjpegCamera(burst=30, period=0.8)
    sub = Subscriber(broker.port, ["edge-ocr/st1/#"])
    cam = CameraSourceConfig(
        name="cam", url=camera.url, trigger=Trigger.LINE, consensus_frames=1, reconnect_max=1.0
    )
    cfg = replace(line_config(dirs, mqtt=MqttConfig(url=broker.url)), folders=(), cameras=(cam,))
    triggered_at = []
    try:
        with running_agent(cfg):
            wait_for(lambda: len(camera.sent) > 60, what="the camera streaming")
            for n in range(6):
                camera.burst_sent.clear()
                assert camera.burst_sent.wait(10)
                time.sleep(0.002 * n)  # while the reader is still taking the burst's frames
                triggered_at.append(time.monotonic())
                sub.publish("edge-ocr/st1/trigger", json.dumps({"request_id": str(n)}))
                wait_for(lambda k=n: len(sub.json_on("edge-ocr/st1/result")) == k + 1, what=f"result {n}")
    finally:
        sub.close()
        camera.close()
    results = sub.json_on("edge-ocr/st1/result")
    assert [r["verdict"] for r in results] == ["pass"] * 6
    for r, t in zip(results, triggered_at, strict=True):
        stored = cv2.imread(r["image"])
        frame = _index(stored)
        assert camera.index_sent_at(frame) >= t, (
            f"job {r['job_id']} read frame {frame}, sent before its trigger"
        )
        assert r["timings_ms"]["grab"] > 0


def test_each_trigger_gives_exactly_one_result_on_every_channel(dirs, broker: Broker) -> None:
    """Triggers from MQTT, Modbus and OPC UA, mixed, some with nothing to read: one result per job
    id on MQTT, one ResultReady event per job id on OPC UA, the Modbus counter, and the store."""
    import asyncio

    from asyncua import Client, ua
    from pymodbus.client import ModbusTcpClient

    from edge_ocr.line.modbus import COIL
    from edge_ocr.line.opcua import NAMESPACE, node_id

    sub = Subscriber(broker.port, ["edge-ocr/st1/#"])
    cfg = line_config(
        dirs,
        triggered=True,
        mqtt=MqttConfig(url=broker.url),
        opcua=OpcUaConfig(endpoint="opc.tcp://127.0.0.1:0/edge-ocr/"),
        modbus=ModbusConfig(port=0),
        max_queued=16,
    )
    with running_agent(cfg) as agent:
        ch = agent.line.channels
        assert ch.opcua.wait_started(300)
        modbus = ModbusTcpClient("127.0.0.1", port=wait_for(lambda: ch.modbus.port), timeout=10)
        assert modbus.connect()

        async def scenario() -> list[str]:
            client = Client(ch.opcua.endpoint, timeout=30)
            await client.connect()
            try:
                idx = await client.get_namespace_index(NAMESPACE)
                node = lambda *p: client.get_node(ua.NodeId(node_id(*p), idx))  # noqa: E731
                got: list[str] = []

                class Handler:
                    def event_notification(self, event) -> None:
                        got.append(event.JobId)

                sub_ua = await client.create_subscription(20, Handler())
                await sub_ua.subscribe_events(node(), node("ResultReadyEventType"))
                for i in range(9):
                    if i % 3 != 2:  # every third trigger finds nothing new: a no-read
                        write_label(dirs["in"] / f"f{i}.png", f"LOT {i}1234", i)
                        for _ in range(600):
                            if held(agent):
                                break
                            await asyncio.sleep(0.05)
                    channel = ("mqtt", "modbus", "opcua")[i % 3]
                    if channel == "mqtt":
                        sub.publish("edge-ocr/st1/trigger", "")
                    elif channel == "modbus":
                        await asyncio.get_running_loop().run_in_executor(
                            None, lambda: modbus.write_coil(COIL["TRIGGER"], True, device_id=1)
                        )
                    else:
                        await node("VisionStateMachine").call_method(
                            ua.QualifiedName("StartSingleJob", idx), "", "", "", ""
                        )
                    for _ in range(600):
                        if len(got) == i + 1:
                            break
                        await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)  # nothing more comes
                return got
            finally:
                await client.disconnect()

        try:
            events = asyncio.run(scenario())
            counter = modbus.read_input_registers(0, count=1, device_id=1).registers[0]
        finally:
            modbus.close()
            sub.close()
    mqtt_ids = [r["job_id"] for r in sub.json_on("edge-ocr/st1/result")]
    assert mqtt_ids == list(range(1, 10))
    assert events == [str(i) for i in range(1, 10)]
    assert counter == 9
    jobs = query(dirs["db"], "SELECT id, origin, state, verdict FROM line_jobs ORDER BY id")
    assert [(o, s) for _, o, s, _ in jobs] == [(("mqtt", "modbus", "opcua")[i % 3], "done") for i in range(9)]
    assert [v for *_, v in jobs] == ["pass", "pass", "no-read"] * 3
    replies = sub.json_on("edge-ocr/st1/trigger/reply")
    assert [r["job_id"] for r in replies] == [1, 4, 7]


def test_jobs_a_stopped_agent_left_behind_get_their_result_at_the_next_start(dirs, broker: Broker) -> None:
    from edge_ocr.store import line as line_store
    from edge_ocr.store.db import open_connection

    cfg = line_config(dirs, triggered=True, mqtt=MqttConfig(url=broker.url))
    conn = open_connection(dirs["db"])
    try:  # what an agent killed between recording a trigger and reading it leaves
        line_store.create_job(
            conn, origin="modbus", source=f"folder:{dirs['in']}", recipe=None, part_id="P-1"
        )
    finally:
        conn.close()
    sub = Subscriber(broker.port, ["edge-ocr/st1/result"])
    try:
        with running_agent(cfg):
            wait_for(lambda: sub.json_on("edge-ocr/st1/result"), what="the orphan's result")
    finally:
        sub.close()
    (result,) = sub.json_on("edge-ocr/st1/result")
    assert (result["job_id"], result["verdict"], result["part_id"]) == (1, "error", "P-1")
    assert "stopped before the job was read" in result["reasons"][0]
    assert query(dirs["db"], "SELECT state, verdict FROM line_jobs") == [("done", "error")]


# -- the hub and the config, without an agent --------------------------------------------------


def test_hub_states_and_answers() -> None:
    hub = LineHub("s", ["a"], active_recipe="a", triggered_source="camera:c", max_queued=1)
    assert hub.state is VisionState.PREOPERATIONAL
    assert hub.trigger(TriggerRequest("x")).status is TriggerStatus.REFUSED
    hub.set_ready(True)
    assert hub.state is VisionState.READY
    assert hub.trigger(TriggerRequest("x", recipe="b")).status is TriggerStatus.BAD_REQUEST
    answers = []
    t = threading.Thread(target=lambda: answers.append(hub.trigger(TriggerRequest("x"))))
    t.start()
    wait_for(lambda: hub.queue_depth() == 1, what="the trigger waiting")
    assert hub.state is VisionState.SINGLE_EXECUTION
    assert hub.trigger(TriggerRequest("y")).status is TriggerStatus.BUSY
    from edge_ocr.line.model import LineJob

    (pending,) = hub.take_triggers()
    assert hub.accepted(pending, LineJob(7, "x"))
    t.join(5)
    assert answers[0].job_id == 7
    hub.publish(LineResult(7, "s", "x", "camera:c", LineVerdict.PASS))
    assert hub.state is VisionState.READY and hub.counters.busy == 1 and hub.counters.results == 1
    assert hub.start_continuous().accepted and hub.state is VisionState.CONTINUOUS_EXECUTION
    assert hub.trigger(TriggerRequest("x")).status is TriggerStatus.REFUSED
    assert hub.stop().accepted and hub.halt().accepted and hub.state is VisionState.HALTED
    assert not hub.dispatch_allowed()
    hub.set_error("the store is gone")
    assert hub.state is VisionState.ERROR and not hub.reset().accepted
    hub.set_error(None)
    assert hub.reset().accepted and hub.state is VisionState.READY


def test_a_trigger_the_agent_never_records_is_refused_not_lost() -> None:
    hub = LineHub("s", [], active_recipe=None, triggered_source="camera:c", max_queued=2)
    hub.set_ready(True)
    reply = hub.trigger(TriggerRequest("x"), timeout=0.2)
    assert reply.status is TriggerStatus.REFUSED and "did not record" in reply.reason
    assert hub.take_triggers() == [] and hub.queue_depth() == 0


@pytest.mark.parametrize(
    "line,message",
    [
        ({"mqtt": {"url": "tcp://x:1"}}, "line.mqtt.url"),
        ({"mqtt": {"qos": 3}}, "line.mqtt.qos: 3 is out of range"),
        ({"mqtt": {"prefix": "a/+/b"}}, "line.mqtt.prefix"),
        ({"mqtt": {"cert_file": "/c.pem"}}, "cert_file and key_file"),
        ({"mqtt": {"url": "mqtt://h:1", "ca_file": "/ca.pem"}}, "need an mqtts:// URL"),
        ({"opcua": {"endpoint": "http://x"}}, "line.opcua.endpoint"),
        ({"opcua": {"security": "rsa"}}, "line.opcua.security: invalid value 'rsa'"),
        ({"opcua": {"security": "basic256sha256"}}, "needs username and password"),
        ({"opcua": {"username": "u", "password": "p"}}, "username needs security"),
        ({"modbus": {"port": -1}}, "line.modbus.port"),
        ({"max_queued": 0, "modbus": {}}, "line.max_queued"),
        ({"job_timeout": 0, "modbus": {}}, "line.job_timeout"),
        ({"modbus": {}, "recipe": "nope"}, "line.recipe: recipe 'nope' is not defined"),
        ({"modbus": {}, "source": "folder:/nowhere"}, "line.source"),
        (
            {"modbus": {}, "colour": "red"},
            "line: unknown key 'colour' (known: job_timeout, max_queued, modbus, mqtt",
        ),
    ],
)
def test_line_config_errors_name_the_key(line, message, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace("+", r"\+").replace(".", r"\.")
    ):
        parse_config({"sources": {"folder": [{"path": str(tmp_path)}]}, "line": line}, env={})


def test_two_triggered_sources_need_line_source(tmp_path: Path) -> None:
    raw = {
        "sources": {
            "folder": [
                {"path": str(tmp_path / "a"), "trigger": "line"},
                {"path": str(tmp_path / "b"), "trigger": "line"},
            ]
        },
        "line": {"modbus": {}},
    }
    with pytest.raises(ConfigError, match="name the one triggers read with line.source"):
        parse_config(raw, env={})
    cfg = parse_config({**raw, "line": {"modbus": {}, "source": f"folder:{tmp_path / 'b'}"}}, env={})
    assert cfg.triggered_source().path == tmp_path / "b"
    with pytest.raises(ConfigError, match="needs a line channel"):
        parse_config({"sources": raw["sources"]}, env={})


def test_old_line_jobs_and_acknowledged_messages_are_forgotten_pending_ones_kept(tmp_path: Path) -> None:
    """Retention removes line jobs older than max_age_days with their messages once the broker has
    them all; a job whose message still waits for the broker stays. Acknowledged messages go after a
    day by themselves."""
    from edge_ocr.store import line as line_store
    from edge_ocr.store.db import open_connection, transaction
    from edge_ocr.store.retention import apply_retention

    conn = open_connection(tmp_path / "s.db")
    try:
        ids = []
        for _ in range(3):
            job = line_store.create_job(conn, origin="mqtt", source="camera:c", recipe=None)
            with transaction(conn):
                line_store.finish_job(conn, job.job_id, verdict="pass")
                ids.append(
                    line_store.add_messages(conn, job.job_id, [line_store.Message("t/result", "{}")])[0]
                )
        line_store.ack_messages(conn, ids[:2])  # the third job's message still waits for the broker
        conn.execute("UPDATE line_jobs SET finished_at = '2020-01-01T00:00:00.000Z'")
        conn.execute(
            "UPDATE line_messages SET acked_at = '2020-01-01T00:00:00.000Z' WHERE acked_at IS NOT NULL"
        )
        apply_retention(conn, owned_images_dir=tmp_path / "captures", max_age_days=30)
        left = [r.job_id for r in [line_store.get_job(conn, i) for i in (1, 2, 3)] if r is not None]
        assert left == [3] and line_store.count_unacked(conn) == 1
        job = line_store.create_job(conn, origin="mqtt", source="camera:c", recipe=None)
        with transaction(conn):
            line_store.finish_job(conn, job.job_id, verdict="fail")
            (mid,) = line_store.add_messages(conn, job.job_id, [line_store.Message("t/verdict", "fail")])
        line_store.ack_messages(conn, [mid])
        assert line_store.prune_acked(conn, older_than_iso="2999-01-01T00:00:00.000Z") == 1
        assert line_store.count_unacked(conn) == 1
    finally:
        conn.close()


def test_a_line_camera_reads_one_fresh_frame_unless_told_otherwise(tmp_path: Path) -> None:
    raw = {
        "sources": {
            "camera": [
                {"name": "a", "url": "http://127.0.0.1:1/a", "trigger": "line"},
                {"name": "b", "url": "http://127.0.0.1:1/b", "trigger": "line", "consensus_frames": 3},
                {"name": "c", "url": "http://127.0.0.1:1/c"},
            ]
        },
        "line": {"modbus": {}, "source": "camera:a"},
    }
    assert [c.consensus_frames for c in parse_config(raw, env={}).cameras] == [1, 3, 3]


def test_the_thread_clock_counts_sleep_and_not_work_nor_waiting_for_a_cpu() -> None:
    """What FreshFrames calls waiting for the camera: time the reading thread slept. A grab that
    decodes a buffered frame on a busy machine (running, or runnable and waiting for a CPU) has
    slept nothing, however long it took; one blocked on the socket has slept the whole wait."""
    import subprocess
    import sys

    from edge_ocr.agent.sources.camera import ThreadClock

    clock = ThreadClock()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        time.sleep(0.3)
        for _ in range(3):
            start, busy = time.monotonic(), clock.busy()
            x = 0
            for i in range(2_000_000):  # CPU work, preempted by the hogs
                x += i
            wall = time.monotonic() - start
            assert clock.slept(wall, busy) < 0.2 * wall + 0.002, "work counted as waiting"
        start, busy = time.monotonic(), clock.busy()
        time.sleep(0.05)  # blocked, as on a socket
        assert clock.slept(time.monotonic() - start, busy) >= 0.045
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        clock.close()
