"""MQTT: every result out as JSON, the verdict alone, a retained status with a last will; triggers and
recipe changes in (paho-mqtt, MQTT 3.1.1, plain or TLS, optional user name and password).

Topics, under `<prefix>/<station>/` (docs/LINE.md):

    result          every job's result, JSON (QoS from the config, 1 by default), in job order
    verdict         the verdict alone: pass, fail, no-read or error (same QoS)
    status          retained JSON: online/offline (the last will), vision state, engine, model set,
                    queue depth
    recipe          retained: the active recipe
    trigger         in: a trigger; empty, or JSON {"request_id", "recipe", "meas_id", "part_id"}
    trigger/reply   out: {"request_id", "status": accepted|busy|refused|bad-request, "job_id", "reason"}
    recipe/set      in: a recipe name (plain, or JSON {"recipe", "request_id"})
    recipe/reply    out: {"request_id", "status", "recipe", "reason"}

Results are durable: the agent writes a job's messages into the store in the transaction that
stores its result (`messages_for`), and this channel publishes the store's unacknowledged messages
in id order and hands each broker acknowledgement back to the agent (`take_acks`), which records
it. A broker that is away, or drops the connection mid-publish, delays messages and loses none:
each new connection sends every unacknowledged message again from the store, in id order (also
after an agent restart). The one duplicate QoS 1 allows, a message the broker took but whose
acknowledgement was lost with the connection, a consumer drops by its `job_id`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from edge_ocr.config import MqttConfig
from edge_ocr.line.hub import LineHub
from edge_ocr.line.model import ChannelStatus, LineResult, TriggerRequest, TriggerStatus, VisionState
from edge_ocr.store.db import open_connection, utcnow
from edge_ocr.store.line import Message, unacked_messages

logger = logging.getLogger(__name__)

#: messages handed to paho and not yet acknowledged, at most (the rest wait in the store)
MAX_OUTSTANDING = 500
MAX_PAYLOAD = 64 * 1024  # a trigger or recipe message larger than this is refused unread
MAX_INBOX = 1000  # triggers and recipe changes waiting for an answer; more are answered busy
STATUS_INTERVAL_S = 30.0  # the retained status also goes out at once on every change


def topics(prefix: str, station: str) -> dict[str, str]:
    base = f"{prefix}/{station}"
    return {
        "result": f"{base}/result",
        "verdict": f"{base}/verdict",
        "status": f"{base}/status",
        "recipe": f"{base}/recipe",
        "trigger": f"{base}/trigger",
        "trigger_reply": f"{base}/trigger/reply",
        "recipe_set": f"{base}/recipe/set",
        "recipe_reply": f"{base}/recipe/reply",
    }


def messages_for(cfg: MqttConfig, station: str, result: LineResult) -> list[Message]:
    """What a result publishes (stored with it, sent in order)."""
    t = topics(cfg.prefix, station)
    return [
        Message(t["result"], result.to_json(), cfg.qos),
        Message(t["verdict"], result.verdict.value, cfg.qos),
    ]


def read_secret(value: str | None, path: Path | None) -> str | None:
    if path is None:
        return value
    return path.read_text(encoding="utf-8").strip()


class MqttChannel:
    """One connection to the broker, driven by a thread of its own (paho's loop_read/loop_write under
    our select, no paho thread): it publishes from the store, answers triggers (which wait a moment
    for the agent) and reconnects with backoff. Every connection is a fresh paho client, and what
    was in flight when a connection died is sent again from the store, in id order: paho itself
    never re-sends, so nothing is sent out of order or twice by us."""

    name = "mqtt"

    def __init__(
        self,
        cfg: MqttConfig,
        hub: LineHub,
        *,
        db_path: Path,
        status_extra: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.cfg = cfg
        self.hub = hub
        self._db_path = db_path
        self._status_extra = status_extra
        self.topics = topics(cfg.prefix, hub.station)
        url = urlparse(cfg.url)
        self._tls = url.scheme == "mqtts"
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or (8883 if self._tls else 1883)
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._inbox: deque[tuple[str, bytes]] = deque()
        self._acks: queue.Queue[int] = queue.Queue()
        self._outstanding: dict[int, int] = {}  # paho mid -> store message id (this connection)
        self._last_queued = 0  # highest store message id handed to the current connection
        self._connected = threading.Event()
        self._lost = False
        self._last_error = ""
        self._status_due = True
        self.counters = {
            "published": 0,
            "acked": 0,
            "triggers_in": 0,
            "malformed": 0,
            "connects": 0,
            "dropped_in": 0,
        }
        self._client: Any = None
        self._thread: threading.Thread | None = None

    # -- paho --------------------------------------------------------------------------------------
    def _make_client(self) -> Any:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.cfg.client_id or f"edge-ocr-{self.hub.station}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if self.cfg.username:
            client.username_pw_set(self.cfg.username, read_secret(self.cfg.password, self.cfg.password_file))
        if self._tls:
            client.tls_set(
                ca_certs=str(self.cfg.ca_file) if self.cfg.ca_file else None,
                certfile=str(self.cfg.cert_file) if self.cfg.cert_file else None,
                keyfile=str(self.cfg.key_file) if self.cfg.key_file else None,
            )
        client.will_set(self.topics["status"], self._status_payload("offline"), qos=1, retain=True)
        client.max_inflight_messages_set(50)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            self._last_error = f"connection refused: {reason}"
            logger.warning("mqtt %s:%d: %s", self._host, self._port, self._last_error)
            self._lost = True
            return
        self.counters["connects"] += 1
        self._connected.set()
        self._last_error = ""
        logger.info("mqtt: connected to %s:%d", self._host, self._port)
        client.subscribe([(self.topics["trigger"], 1), (self.topics["recipe_set"], 1)])
        self._status_due = True

    def _on_disconnect(
        self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None
    ) -> None:
        self._lost = True
        if self._connected.is_set() and not self._stop.is_set():
            self._last_error = f"disconnected: {reason}"
            logger.warning(
                "mqtt %s:%d: %s; reconnecting (results wait in the store)", self._host, self._port, reason
            )
        self._connected.clear()

    def _on_publish(
        self, _client: Any, _userdata: Any, mid: int, _reason: Any = None, _props: Any = None
    ) -> None:
        message_id = self._outstanding.pop(mid, None)
        if message_id is not None:
            self._acks.put(message_id)
            self.counters["acked"] += 1

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        if len(self._inbox) >= MAX_INBOX:  # a flood: answered busy, never queued without bound
            self.counters["dropped_in"] += 1
            if msg.topic == self.topics["trigger"]:
                self._reply(
                    self.topics["trigger_reply"], {"status": "busy", "reason": "too many messages queued"}
                )
            return
        self._inbox.append((msg.topic, bytes(msg.payload)))

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.hub.subscribe(self)
        self._thread = threading.Thread(target=self._run, name="line-mqtt", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Wait up to `timeout` for outstanding acknowledgements, say offline, disconnect."""
        self._stopping_deadline = time.monotonic() + timeout
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout + 5)
            if self._thread.is_alive():
                logger.error("mqtt: the channel did not stop")
        self._wake_r.close()
        self._wake_w.close()

    def wake(self) -> None:
        """New messages in the store, a state change, a hub event: look now (any thread)."""
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def take_acks(self) -> list[int]:
        """Store ids of messages the broker has acknowledged since the last call (the agent records them)."""
        out = []
        while True:
            try:
                out.append(self._acks.get_nowait())
            except queue.Empty:
                return out

    # -- hub listener: only wake -------------------------------------------------------------------
    def on_result(self, result: LineResult) -> None:
        self.wake()  # its messages are in the store already

    def on_state(self, state: VisionState, hub: LineHub) -> None:
        self._status_due = True
        self.wake()

    # -- the channel's thread ----------------------------------------------------------------------
    def _run(self) -> None:
        conn = None
        try:
            conn = open_connection(self._db_path, readonly=True)
            self._serve(conn)
        except Exception:
            logger.exception("mqtt: the channel stopped")
            self._last_error = "the channel stopped (see the log)"
        finally:
            self._close_client(say_offline=True)
            if conn is not None:
                conn.close()

    def _serve(self, conn: Any) -> None:
        backoff = 1.0
        retry_at = 0.0
        last_status = 0.0
        while not self._stop.is_set():
            client = self._client
            if client is None:
                if time.monotonic() < retry_at:
                    self._wait([], [], retry_at - time.monotonic())
                    continue
                if not self._connect():
                    retry_at, backoff = time.monotonic() + backoff, min(backoff * 2, 30.0)
                continue
            sock = client.socket()
            if sock is None:
                self._lost = True
            else:
                pending = getattr(sock, "pending", lambda: 0)()  # TLS: bytes already decrypted
                readable, writable = self._wait(
                    [sock], [sock] if client.want_write() else [], 0 if pending else 1.0
                )
                if pending or sock in readable:
                    client.loop_read()
                if sock in writable:
                    client.loop_write()
                client.loop_misc()
            if self._lost:
                self._close_client(say_offline=False)
                retry_at, backoff = time.monotonic() + backoff, min(backoff * 2, 30.0)
                continue
            if self._connected.is_set():
                backoff = 1.0
                self._answer_inbox()
                now = time.monotonic()
                if self._status_due or now - last_status > STATUS_INTERVAL_S:
                    self._status_due = False
                    self._publish_status()
                    last_status = now
                self._publish_from_store(conn)
        self._drain_on_stop(conn)

    def _wait(self, read: list[Any], write: list[Any], timeout: float) -> tuple[list[Any], list[Any]]:
        readable, writable, _ = select.select([*read, self._wake_r], write, [], max(0.0, timeout))
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError, OSError):
                self._wake_r.recv(4096)
        return readable, writable

    def _connect(self) -> bool:
        client = self._make_client()
        self._lost = False
        try:
            client.connect(self._host, self._port, keepalive=self.cfg.keepalive)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            if self._last_error != f"cannot connect: {reason}":
                logger.warning(
                    "mqtt %s:%d: cannot connect: %s; retrying (results wait in the store)",
                    self._host,
                    self._port,
                    reason,
                )
            self._last_error = f"cannot connect: {reason}"
            return False
        self._client = client
        self._outstanding.clear()
        self._last_queued = 0  # every unacknowledged message goes again, in order, on this connection
        return True

    def _close_client(self, *, say_offline: bool) -> None:
        client, self._client = self._client, None
        self._connected.clear()
        self._outstanding.clear()
        if client is None:
            return
        with contextlib.suppress(Exception):  # the connection may be gone already
            if say_offline and client.is_connected():
                client.publish(self.topics["status"], self._status_payload("offline"), qos=1, retain=True)
                self._flush(client, 2.0)
            client.disconnect()
            self._flush(client, 0.5)
        with contextlib.suppress(Exception):
            sock = client.socket()
            if sock is not None:
                sock.close()

    def _flush(self, client: Any, timeout: float) -> None:
        """Drive the connection until paho has written everything (and the acks came), or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and client.socket() is not None:
            sock = client.socket()
            readable, writable, _ = select.select([sock], [sock] if client.want_write() else [], [], 0.05)
            if readable:
                client.loop_read()
            if writable:
                client.loop_write()
            if not client.want_write() and not self._outstanding:
                return

    def _drain_on_stop(self, conn: Any) -> None:
        """Stopping: what is in the store goes out if the broker is there, within the stop timeout."""
        client = self._client
        if client is None or not self._connected.is_set():
            return
        deadline = getattr(self, "_stopping_deadline", time.monotonic())
        self._publish_from_store(conn)
        self._flush(client, max(0.0, deadline - time.monotonic()))

    def _publish_from_store(self, conn: Any) -> None:
        client = self._client
        room = MAX_OUTSTANDING - len(self._outstanding)
        if client is None or room <= 0:
            return
        for m in unacked_messages(conn, after_id=self._last_queued, limit=room):
            info = client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
            if m.qos == 0:  # nothing acknowledges it: written to the broker is as far as it goes
                self._acks.put(m.id)
            else:
                self._outstanding[info.mid] = m.id
            self._last_queued = m.id
            self.counters["published"] += 1

    def _status_payload(self, state: str) -> str:
        hub = self.hub
        body: dict[str, Any] = {"state": state, "station": hub.station, "at": utcnow()}
        if state == "online":
            body.update(
                {
                    "vision_state": hub.state.value,
                    "recipe": hub.active_recipe,
                    "queue": hub.queue_depth(),
                    **self._status_extra(),
                }
            )
        return json.dumps(body, sort_keys=True)

    def _publish_status(self) -> None:
        self._client.publish(self.topics["status"], self._status_payload("online"), qos=1, retain=True)
        self._client.publish(self.topics["recipe"], self.hub.active_recipe or "", qos=1, retain=True)

    def _reply(self, topic: str, body: dict[str, Any]) -> None:
        if self._client is not None:
            self._client.publish(topic, json.dumps(body, sort_keys=True), qos=1)

    def _answer_inbox(self) -> None:
        while self._inbox:
            topic, payload = self._inbox.popleft()
            if topic == self.topics["trigger"]:
                self._answer_trigger(payload)
            elif topic == self.topics["recipe_set"]:
                self._answer_recipe(payload)

    def _answer_trigger(self, payload: bytes) -> None:
        self.counters["triggers_in"] += 1
        try:
            fields = _parse(payload, ("request_id", "recipe", "meas_id", "part_id"))
        except ValueError as exc:
            self.counters["malformed"] += 1
            logger.warning("mqtt: malformed trigger refused: %s", exc)
            self._reply(
                self.topics["trigger_reply"], {"status": TriggerStatus.BAD_REQUEST.value, "reason": str(exc)}
            )
            return
        request = TriggerRequest(
            "mqtt",
            recipe=fields.get("recipe") or None,
            meas_id=fields.get("meas_id", ""),
            part_id=fields.get("part_id", ""),
        )
        reply = self.hub.trigger(request)
        if not reply.accepted:
            logger.info("mqtt: trigger %s: %s", reply.status.value, reply.reason)
        self._reply(self.topics["trigger_reply"], {"request_id": fields.get("request_id"), **reply.to_dict()})

    def _answer_recipe(self, payload: bytes) -> None:
        try:
            text = payload.decode("utf-8").strip()
            fields = _parse(payload, ("request_id", "recipe")) if text.startswith("{") else {"recipe": text}
            name = fields.get("recipe") or ""
            if not name:
                raise ValueError("no recipe name")
        except (ValueError, UnicodeDecodeError) as exc:
            self.counters["malformed"] += 1
            self._reply(
                self.topics["recipe_reply"], {"status": TriggerStatus.BAD_REQUEST.value, "reason": str(exc)}
            )
            return
        reply = self.hub.select_recipe(name)
        self._reply(
            self.topics["recipe_reply"],
            {"request_id": fields.get("request_id"), "recipe": name, **reply.to_dict()},
        )
        self._status_due = True

    def status(self) -> ChannelStatus:
        if self._connected.is_set():
            state = "connected"
        else:
            state = "down" if self._last_error else "connecting"
        return ChannelStatus(
            self.name,
            state,
            f"{'mqtts' if self._tls else 'mqtt'}://{self._host}:{self._port}",
            self._last_error,
            {**self.counters, "outstanding": len(self._outstanding)},
        )


def _parse(payload: bytes, keys: tuple[str, ...]) -> dict[str, str]:
    """An empty payload, or a JSON object whose known keys are strings (unknown keys refused)."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD} byte limit")
    if not payload.strip():
        return {}
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a JSON object: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError(f"expected a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(keys))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(keys)})")
    out = {}
    for k, v in body.items():
        if v is None:
            continue
        if not isinstance(v, str | int) or isinstance(v, bool) or len(str(v)) > 256:
            raise ValueError(f"{k} must be a string of at most 256 characters")
        out[k] = str(v)
    return out
