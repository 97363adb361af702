"""`edge-ocr bench --line`: trigger to verdict on a production line, over MQTT and OPC UA.

A camera streams generated 640x480 labels as MJPEG over HTTP on loopback (an IP camera, read by
OpenCV's FFmpeg backend as a real one is); the agent reads it on line triggers with one worker; a
local Mosquitto (when installed) and the agent's OPC UA server carry triggers and results. Each
trigger is sent when the station is idle, and the time is taken from just before the trigger is
sent to the moment the client holds the result: for MQTT a `trigger` message to the `verdict` and
`result` messages, for OPC UA a StartSingleJob call to its ResultReady event. The result's own
timings say where the time went: waiting for a fresh frame (grab), detection, recognition, the
rest of the pipeline, rules and the store, and publishing to the client.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_ocr.agent.app import running_in_thread
from edge_ocr.config import (
    AgentConfig,
    CameraSourceConfig,
    Config,
    EngineConfig,
    LineConfig,
    MqttConfig,
    OpcUaConfig,
    Trigger,
)

FPS = 30.0
STATION = "bench"


class MjpegStream:
    """A loopback IP camera: `frames` (JPEG bytes) in a loop at `fps`."""

    def __init__(self, frames: list[bytes], fps: float = FPS) -> None:
        self.frames = frames
        self.stop = threading.Event()
        stream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i, next_at = 0, time.monotonic()
                try:
                    while not stream.stop.is_set():
                        jpg = stream.frames[i % len(stream.frames)]
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                            + jpg
                            + b"\r\n"
                        )
                        i += 1
                        next_at += 1.0 / fps
                        stream.stop.wait(max(0.0, next_at - time.monotonic()))
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/labels.mjpg"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def _labels(count: int) -> list[bytes]:
    from edge_ocr.synth import GeneratorOptions, generate_label

    out = []
    for i in range(count):
        label = generate_label(np.random.default_rng([20, i]), GeneratorOptions())
        img = cv2.resize(label.image, (640, 480), interpolation=cv2.INTER_AREA)
        out.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _mosquitto(root: Path) -> Iterator[int | None]:
    """A local broker on a free port, or None when Mosquitto is not installed."""
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if exe is None:
        yield None
        return
    import getpass

    port = _free_port()
    conf = root / "mosquitto.conf"
    conf.write_text(f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _config(root: Path, family: str, camera_url: str, mqtt_port: int | None, opcua_port: int) -> Config:
    cam = CameraSourceConfig(
        name="cam", url=camera_url, trigger=Trigger.LINE, consensus_frames=1, reconnect_max=1.0
    )
    line = LineConfig(
        station=STATION,
        max_queued=4,
        mqtt=MqttConfig(url=f"mqtt://127.0.0.1:{mqtt_port}") if mqtt_port else None,
        opcua=OpcUaConfig(endpoint=f"opc.tcp://127.0.0.1:{opcua_port}/edge-ocr/"),
    )
    return Config(
        agent=AgentConfig(db=root / "line.db", data_dir=root / "data", workers=1, heartbeat=5.0),
        engine=EngineConfig(name="auto", models=family),
        cameras=(cam,),
        line=line,
    )


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _summary(samples: list[dict[str, float]]) -> dict[str, Any]:
    total = [s["total"] for s in samples]
    parts = ("grab", "det", "rec", "rest", "publish")
    return {
        "n": len(samples),
        "p50_ms": round(_percentile(total, 50), 1),
        "p99_ms": round(_percentile(total, 99), 1),
        "max_ms": round(max(total), 1) if total else float("nan"),
        "median_parts_ms": {p: round(_percentile([s[p] for s in samples], 50), 1) for p in parts},
    }


def _parts(total_ms: float, timings: dict[str, float]) -> dict[str, float]:
    """Where a trigger's time went: grab (a fresh frame), det, rec, rest (the pipeline's other
    stages, the worker round trip, rules and the store), publish (to the client)."""
    commit = timings.get("trigger_to_commit", total_ms)
    grab = timings.get("grab", 0.0)
    det, rec = timings.get("det", 0.0), timings.get("rec", 0.0)
    return {
        "total": total_ms,
        "grab": grab,
        "det": det,
        "rec": rec,
        "rest": max(0.0, commit - grab - det - rec),
        "publish": max(0.0, total_ms - commit),
    }


def _mqtt_runs(port: int, n: int, say: Callable[[str], None]) -> list[dict[str, float]]:
    import paho.mqtt.client as mqtt

    results: dict[int, tuple[float, dict[str, Any]]] = {}
    got = threading.Condition()
    replies: list[dict[str, Any]] = []

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        now = time.perf_counter()
        with got:
            if msg.topic.endswith("/result"):
                body = json.loads(msg.payload)
                results[body["job_id"]] = (now, body)
            elif msg.topic.endswith("/trigger/reply"):
                replies.append(json.loads(msg.payload))
            got.notify_all()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="edge-ocr-bench-client", clean_session=True
    )
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe([(f"edge-ocr/{STATION}/result", 1), (f"edge-ocr/{STATION}/trigger/reply", 1)])
    client.loop_start()
    samples = []
    try:
        time.sleep(0.5)
        for i in range(n + 3):  # the first three warm the worker up
            with got:
                seen = len(replies)
            t0 = time.perf_counter()
            client.publish(f"edge-ocr/{STATION}/trigger", json.dumps({"request_id": str(i)}), qos=1)
            with got:
                if not got.wait_for(lambda s=seen: len(replies) > s, 30):
                    raise RuntimeError("no answer to a trigger over MQTT")
                job = replies[-1].get("job_id")
                if job is None:
                    raise RuntimeError(f"trigger refused: {replies[-1]}")
                if not got.wait_for(lambda j=job: j in results, 60):
                    raise RuntimeError(f"no result for job {job} over MQTT")
                at, body = results[job]
            if i >= 3:
                samples.append(_parts((at - t0) * 1000, body["timings_ms"]))
            time.sleep(0.05 + 0.1 * (i % 3) / 2)  # the next part arrives a moment later
        say(f"MQTT: {len(samples)} triggers")
    finally:
        client.disconnect()
        client.loop_stop()
    return samples


def _opcua_runs(endpoint: str, n: int, say: Callable[[str], None]) -> list[dict[str, float]]:
    from asyncua import Client, ua

    from edge_ocr.line.opcua import NAMESPACE, node_id

    async def run() -> list[dict[str, float]]:
        client = Client(endpoint, timeout=30)
        await client.connect()
        try:
            idx = await client.get_namespace_index(NAMESPACE)

            def node(*p: str) -> Any:
                return client.get_node(ua.NodeId(node_id(*p), idx))

            events: dict[str, tuple[float, Any]] = {}
            arrived = asyncio.Event()

            class Handler:
                def event_notification(self, event: Any) -> None:
                    events[event.JobId] = (time.perf_counter(), event)
                    arrived.set()

            sub = await client.create_subscription(10, Handler())
            await sub.subscribe_events(node(), node("ResultReadyEventType"))
            sm = node("VisionStateMachine")
            samples = []
            for i in range(n + 3):
                t0 = time.perf_counter()
                job, error = await sm.call_method(ua.QualifiedName("StartSingleJob", idx), "", "", "", "")
                if error != 0:
                    raise RuntimeError(f"StartSingleJob answered error {error}")
                deadline = time.monotonic() + 60
                while job not in events:
                    arrived.clear()
                    await asyncio.wait_for(arrived.wait(), max(0.01, deadline - time.monotonic()))
                at, _event = events[job]
                if i >= 3:
                    samples.append({"total": (at - t0) * 1000, "job": float(job)})
                await asyncio.sleep(0.05 + 0.1 * (i % 3) / 2)
            say(f"OPC UA: {len(samples)} triggers")
            return samples
        finally:
            await client.disconnect()

    return asyncio.run(run())


def _with_store_timings(db: Path, samples: list[dict[str, float]]) -> list[dict[str, float]]:
    """OPC UA events carry no timings: the job's, from the MQTT message stored with its result."""
    from edge_ocr.store import line as line_store
    from edge_ocr.store.db import open_connection

    conn = open_connection(db, readonly=True)
    try:
        timings = line_store.result_timings(conn, [int(s["job"]) for s in samples])
    finally:
        conn.close()
    return [_parts(s["total"], timings.get(int(s["job"]), {})) for s in samples]


def bench_line(families: list[str], n: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Trigger to verdict for each family, over MQTT and OPC UA."""
    frames = _labels(16)
    out: dict[str, Any] = {"families": {}, "labels": "generated, 640x480, 4 lines", "camera_fps": FPS}
    with tempfile.TemporaryDirectory(prefix="edge-ocr-line-bench-") as tmp:
        root = Path(tmp)
        camera = MjpegStream(frames)
        try:
            with _mosquitto(root) as mqtt_port:
                out["mqtt"] = mqtt_port is not None
                for family in families:
                    say(f"{family}: starting the agent")
                    fam_root = root / family
                    fam_root.mkdir()
                    opcua_port = _free_port()
                    cfg = _config(fam_root, family, camera.url, mqtt_port, opcua_port)
                    figures: dict[str, Any] = {}
                    with running_in_thread(cfg, ready_timeout=600.0) as agent:
                        assert agent.line is not None
                        if not agent.line.channels.opcua.wait_started(600):
                            raise RuntimeError("the OPC UA server did not start")
                        figures["model"] = agent.line.model
                        if mqtt_port is not None:
                            figures["mqtt"] = _summary(_mqtt_runs(mqtt_port, n, say))
                        samples = _opcua_runs(agent.line.channels.opcua.endpoint, n, say)
                    figures["opcua"] = _summary(_with_store_timings(cfg.db_path(), samples))
                    out["families"][family] = figures
        finally:
            camera.close()
    return out


def to_markdown(info: dict[str, Any], figures: dict[str, Any]) -> str:
    lines = [
        "## On the line: trigger to verdict",
        "",
        f"Machine: {info.get('cpu', '?')}, {info.get('cores', '?')} cores; {info.get('date', '?')}. "
        f"`edge-ocr bench --line`: a loopback MJPEG camera at {figures['camera_fps']:g} fps streaming "
        f"{figures['labels']} labels, one worker, the freshest frame after each trigger; each trigger sent "
        "when the station is idle; time from just before the trigger leaves the client to the result in "
        "the client's hands (MQTT: the `result` message; OPC UA: the ResultReady event of the job "
        "StartSingleJob answered). Target: p50 <= 150 ms, p99 <= 300 ms with `ppocrv6-tiny`.",
        "",
        "| family | model set | channel | triggers | p50 ms | p99 ms | max ms | grab | det | rec | rest | publish |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for family, f in figures["families"].items():
        for channel in ("mqtt", "opcua"):
            s = f.get(channel)
            if not s:
                continue
            parts = s["median_parts_ms"]
            lines.append(
                f"| {family} | {f.get('model') or '?'} | {'MQTT' if channel == 'mqtt' else 'OPC UA'} | {s['n']} | "
                f"{s['p50_ms']} | {s['p99_ms']} | {s['max_ms']} | {parts['grab']} | {parts['det']} | {parts['rec']} | "
                f"{parts['rest']} | {parts['publish']} |"
            )
    lines += [
        "",
        "Parts are medians (ms): grab = trigger received to the fresh frame in hand (at most one frame "
        "period waiting for the camera, plus the frames dropped as buffered); det and rec = the models; "
        "rest = the frame to the worker and back, the pipeline's other stages, the rules and the store's "
        "commit; publish = the commit to the result in the client's hands."
        + ("" if figures.get("mqtt") else " Mosquitto was not installed: OPC UA only."),
        "",
    ]
    return "\n".join(lines)
