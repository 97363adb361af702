"""The line tests' kit: a real Mosquitto broker, on a free loopback port, and a real MQTT subscriber.

Mosquitto comes from Debian's packages (scripts/test.sh installs it where it is missing). The broker
runs with persistence on, so a subscriber with a persistent session gets what was queued for it
across a broker restart, as on a plant's broker."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0, *, open_: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if open_:
                    return
        except OSError:
            if not open_:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} {'not listening' if open_ else 'still listening'} after {timeout:g} s")


class Broker:
    """`start()`, `stop()` (SIGTERM, it saves its persistence), `start()` again on the same port."""

    def __init__(self, root: Path, *, extra: str = "", tls: dict[str, Path] | None = None) -> None:
        if not Path(MOSQUITTO).exists():
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto mosquitto-clients")
        self.root = root
        self.port = free_port()
        self.root.mkdir(parents=True, exist_ok=True)
        import getpass

        lines = [
            f"user {getpass.getuser()}",  # as root it would drop to `mosquitto`, which cannot write here
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {root}/",
            f"log_dest file {root}/mosquitto.log",
            "log_type all",
        ]
        if tls is not None:
            lines += [f"cafile {tls['ca']}", f"certfile {tls['cert']}", f"keyfile {tls['key']}"]
        lines.append(extra or "allow_anonymous true")
        self.conf = root / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stderr=subprocess.PIPE)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log()[-2000:]}") from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        path = self.root / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Subscriber:
    """A real MQTT client with a persistent session (QoS 1): every message it was sent, in order."""

    def __init__(
        self, port: int, topics: list[str], *, client_id: str = "test-subscriber", **tls: Any
    ) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._topics = topics
        self.connected = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False
        )
        if tls.get("username"):
            self.client.username_pw_set(tls["username"], tls.get("password"))
        if tls.get("ca"):
            self.client.tls_set(ca_certs=str(tls["ca"]))
        self.client.reconnect_delay_set(0.1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(20):
            self.close()
            raise TimeoutError("the test subscriber could not connect")

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            return
        client.subscribe([(t, 1) for t in self._topics])
        self.connected.set()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def json_on(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.on(topic)]

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def held(agent: Any, n: int = 1) -> bool:
    """The triggered folder holds at least `n` complete files, waiting for triggers."""
    return agent.line is not None and agent.line.status().get("held_files", 0) >= n


def line_config(dirs: dict[str, Path], *, triggered: bool = False, recipes: bool = False, **line: Any) -> Any:
    """The agent tests' config (fake engine, two workers) with a [line] section; `triggered` reads the
    folder on line triggers only; `recipes` adds two recipes that pass and fail the fake engine's text."""
    from dataclasses import replace

    from support import make_config

    from edge_ocr.config import ChecksSpec, FieldSpec, FolderTrigger, LineConfig, RecipeConfig

    cfg = make_config(dirs, trigger=FolderTrigger.LINE if triggered else FolderTrigger.ARRIVAL)
    if recipes:
        any_text = RecipeConfig("any", (FieldSpec("first", regex=r"(.+)"),), ChecksSpec(not_expired=False))
        never = RecipeConfig(
            "never",
            (FieldSpec("first", regex=r"(.+)", expected="NEVER-THIS"),),
            ChecksSpec(not_expired=False),
        )
        cfg = replace(cfg, recipes={"any": any_text, "never": never})
        cfg = replace(cfg, folders=(replace(cfg.folders[0], recipe="any"),))
    return replace(cfg, line=LineConfig(station=line.pop("station", "st1"), **line))
