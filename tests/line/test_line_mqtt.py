"""MQTT (issue 20): results out, the verdict alone, a retained status with a last will, triggers and
recipe changes in, and nothing lost or sent twice when the broker goes away, the connection drops
mid-publish or the agent restarts. A real Mosquitto broker and real paho clients."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from linekit import Broker, Subscriber, free_port, held, line_config
from support import query, running_agent, wait_for, write_label

from edge_ocr.config import CameraSourceConfig, MqttConfig, Trigger

T = "edge-ocr/st1"


def job_ids(sub: Subscriber) -> list[int]:
    """Job ids of the results received, first arrivals only: a broker may deliver a QoS 1 message to a
    subscriber twice when it restarts before the subscriber's acknowledgement (MQTT's own rule), so
    consumers drop repeats by job id. What the agent sent is counted in the broker's log."""
    seen: list[int] = []
    for r in sub.json_on(f"{T}/result"):
        if r["job_id"] not in seen:
            seen.append(r["job_id"])
    return seen


def sent_by_agent(broker: Broker, topic: str) -> int:
    """PUBLISH packets the broker received from the agent on `topic` (each counted once, dup or not)."""
    return sum(
        1
        for line in broker.log().splitlines()
        if "Received PUBLISH from edge-ocr-st1" in line and f"'{topic}'" in line
    )


def test_watch_with_mqtt_publishes_one_message_per_dropped_label(
    dirs, broker: Broker, tmp_path: Path
) -> None:
    """The issue's own command: `edge-ocr watch IN --db DB --mqtt mqtt://127.0.0.1:PORT`."""
    sub = Subscriber(broker.port, [f"edge-ocr/{socket.gethostname()}/#"])
    station = f"edge-ocr/{socket.gethostname()}"
    env = {**os.environ, "EDGE_OCR_DATA_DIR": str(dirs["data"])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_ocr.cli", "watch", str(dirs["in"]), "--db", str(dirs["db"]),
         "--engine", "fake", "--workers", "1", "--mqtt", broker.url],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for(
            lambda: b'"online"' in b"".join(sub.on(f"{station}/status")), timeout=120, what="status online"
        )
        for i in range(4):
            write_label(dirs["in"] / f"label{i}.png", f"LOT {i}", i)
        wait_for(lambda: len(sub.on(f"{station}/result")) >= 4, timeout=120, what="four results")
        time.sleep(0.5)  # nothing more comes
    finally:
        proc.terminate()
        out = proc.communicate(timeout=60)[0]
        sub.close()
    results = sub.json_on(f"{station}/result")
    assert len(results) == 4, out[-3000:]
    assert sorted(Path(r["image"]).name for r in results) == [f"label{i}.png" for i in range(4)]
    assert len({r["job_id"] for r in results}) == 4 and all(r["verdict"] == "pass" for r in results)
    assert all(len(r["image_sha256"]) == 64 and r["text"] and r["model"] for r in results)
    assert sub.on(f"{station}/verdict") == [b"pass"] * 4
    # the last will said nothing: the agent said "offline" itself on the way out, retained
    last_status = json.loads(sub.on(f"{station}/status")[-1])
    assert last_status["state"] == "offline", out[-2000:]
    assert query(dirs["db"], "SELECT count(*) FROM line_messages WHERE acked_at IS NULL") == [(0,)]


def test_a_broker_outage_and_an_agent_restart_lose_nothing_and_send_nothing_twice(
    dirs, broker: Broker
) -> None:
    sub = Subscriber(broker.port, [f"{T}/result", f"{T}/verdict"])
    cfg = line_config(dirs, mqtt=MqttConfig(url=broker.url))
    try:
        with running_agent(cfg):
            for i in range(3):
                write_label(dirs["in"] / f"a{i}.png", f"A {i}", i)
            wait_for(lambda: len(job_ids(sub)) == 3, what="three results while the broker is up")
            broker.stop()  # the plant's broker restarts
            for i in range(3):
                write_label(dirs["in"] / f"b{i}.png", f"B {i}", 10 + i)
            wait_for(
                lambda: query(dirs["db"], "SELECT count(*) FROM line_jobs")[0][0] == 6, what="six jobs stored"
            )
            unsent = query(dirs["db"], "SELECT count(*) FROM line_messages WHERE acked_at IS NULL")[0][0]
            assert unsent == 6  # three results and three verdicts wait in the store
            broker.start()
            wait_for(
                lambda: len(job_ids(sub)) == 6, timeout=60, what="the three held results after the outage"
            )
            broker.stop()
            for i in range(2):
                write_label(dirs["in"] / f"c{i}.png", f"C {i}", 20 + i)
            wait_for(
                lambda: query(dirs["db"], "SELECT count(*) FROM line_jobs")[0][0] == 8,
                what="eight jobs stored",
            )
        # the agent stopped with the broker away: its messages are in the store, not lost
        assert query(dirs["db"], "SELECT count(*) FROM line_messages WHERE acked_at IS NULL") == [(4,)]
        broker.start()
        with running_agent(cfg):
            wait_for(lambda: len(job_ids(sub)) == 8, timeout=60, what="the results an agent restart kept")
            time.sleep(1.0)
    finally:
        sub.close()
    assert job_ids(sub) == list(range(1, 9))  # every result, in job order
    # ... and the agent sent each exactly once, across the outage and its own restart
    assert sent_by_agent(broker, f"{T}/result") == 8 and sent_by_agent(broker, f"{T}/verdict") == 8
    assert query(dirs["db"], "SELECT count(*) FROM line_messages WHERE acked_at IS NULL") == [(0,)]


class _Proxy:
    """A TCP proxy between the agent and the broker that the test can cut, as a flaky network does."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, name="proxy")]
        self.threads[0].start()

    def _accept(self) -> None:
        self.server.settimeout(0.1)
        while not self.stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=self._pipe, args=(a, b), name="proxy-pipe")
                t.start()
                self.threads.append(t)

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        for s in list(self.conns):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.conns.clear()

    def close(self) -> None:
        self.stop.set()
        self.cut()
        self.server.close()
        for t in self.threads:
            t.join(10)


def test_a_connection_cut_mid_publish_loses_nothing(dirs, broker: Broker) -> None:
    proxy = _Proxy(broker.port)
    sub = Subscriber(broker.port, [f"{T}/result"])
    cfg = line_config(dirs, mqtt=MqttConfig(url=f"mqtt://127.0.0.1:{proxy.port}"))
    try:
        with running_agent(cfg):
            for i in range(12):
                write_label(dirs["in"] / f"x{i}.png", f"X {i}", i)
                if i % 3 == 2:
                    proxy.cut()  # while results are being published
            wait_for(lambda: len(set(job_ids(sub))) == 12, timeout=90, what="twelve results through the cuts")
            wait_for(
                lambda: (
                    query(dirs["db"], "SELECT count(*) FROM line_messages WHERE acked_at IS NULL")[0][0] == 0
                ),
                what="every message acknowledged",
            )
    finally:
        sub.close()
        proxy.close()
    assert sorted(set(job_ids(sub))) == list(range(1, 13))


def test_triggers_over_mqtt_read_the_newest_file_and_are_answered_on_the_reply_topic(
    dirs, broker: Broker
) -> None:
    sub = Subscriber(broker.port, [f"{T}/#"])
    cfg = line_config(dirs, triggered=True, recipes=True, mqtt=MqttConfig(url=broker.url))
    try:
        with running_agent(cfg) as agent:
            write_label(dirs["in"] / "old.png", "OLD 1", 1)
            os.utime(dirs["in"] / "old.png", (time.time() - 60, time.time() - 60))
            write_label(dirs["in"] / "new.png", "NEW 2", 2)
            wait_for(lambda: held(agent, 2), what="both files settled and held")
            time.sleep(0.5)  # none is read without a trigger
            assert query(dirs["db"], "SELECT count(*) FROM results") == [(0,)]
            sub.publish(f"{T}/trigger", json.dumps({"request_id": "r1", "meas_id": "M-1", "part_id": "P-9"}))
            wait_for(lambda: len(sub.json_on(f"{T}/result")) == 1, what="the first trigger's result")
            sub.publish(f"{T}/recipe/set", "never")
            wait_for(lambda: sub.json_on(f"{T}/recipe/reply"), what="the recipe change answered")
            sub.publish(f"{T}/trigger", "")
            wait_for(lambda: len(sub.json_on(f"{T}/result")) == 2, what="the second trigger's result")
            sub.publish(f"{T}/trigger", json.dumps({"request_id": "r3"}))
            wait_for(lambda: len(sub.json_on(f"{T}/result")) == 3, what="the third trigger's result")
            sub.publish(f"{T}/trigger", json.dumps({"request_id": "r4", "recipe": "nope"}))
            wait_for(lambda: len(sub.json_on(f"{T}/trigger/reply")) == 4, what="four trigger replies")
    finally:
        sub.close()
    replies = sub.json_on(f"{T}/trigger/reply")
    results = sub.json_on(f"{T}/result")
    assert [r["status"] for r in replies] == ["accepted", "accepted", "accepted", "bad-request"]
    assert replies[0]["request_id"] == "r1" and "unknown recipe 'nope'" in replies[3]["reason"]
    assert [r["job_id"] for r in results] == [r["job_id"] for r in replies[:3]]
    first, second, third = results
    assert Path(first["image"]).name == "new.png" and first["verdict"] == "pass" and first["recipe"] == "any"
    assert (first["meas_id"], first["part_id"], first["origin"]) == ("M-1", "P-9", "mqtt")
    assert (
        Path(second["image"]).name == "old.png"
        and second["recipe"] == "never"
        and second["verdict"] == "fail"
    )
    assert third["verdict"] == "no-read" and "no new image" in third["reasons"][0] and third["image"] is None
    assert sub.json_on(f"{T}/recipe/reply")[0]["status"] == "accepted"
    assert sub.on(f"{T}/recipe")[-1] == b"never"
    jobs = query(dirs["db"], "SELECT id, origin, state, verdict FROM line_jobs ORDER BY id")
    assert [(o, s, v) for _, o, s, v in jobs] == [
        ("mqtt", "done", "pass"),
        ("mqtt", "done", "fail"),
        ("mqtt", "done", "no-read"),
    ]


def test_a_full_trigger_queue_answers_busy_and_every_accepted_trigger_still_gets_a_result(
    dirs, broker: Broker
) -> None:
    """A line camera that gives no frame (its stream is not there): triggers queue up to the bound,
    the next is answered busy and counted, and each queued one ends as a no-read after job_timeout."""
    sub = Subscriber(broker.port, [f"{T}/#"])
    camera = CameraSourceConfig(name="cam", url=f"http://127.0.0.1:{free_port()}/none.mjpg", trigger=Trigger.LINE,
                                reconnect_max=0.5, consensus_frames=1)  # fmt: skip
    cfg = line_config(dirs, mqtt=MqttConfig(url=broker.url), max_queued=2, job_timeout=3.0)
    cfg = replace(cfg, folders=(), cameras=(camera,))
    try:
        with running_agent(cfg) as agent:
            for i in range(4):
                sub.publish(f"{T}/trigger", json.dumps({"request_id": f"t{i}"}))
            wait_for(lambda: len(sub.json_on(f"{T}/trigger/reply")) == 4, what="four answers")
            wait_for(lambda: len(sub.json_on(f"{T}/result")) == 2, timeout=30, what="two no-reads")
            status = agent.line.status()  # what the heartbeat writes
    finally:
        sub.close()
    statuses = sorted(r["status"] for r in sub.json_on(f"{T}/trigger/reply"))
    assert statuses == ["accepted", "accepted", "busy", "busy"]
    busy = [r for r in sub.json_on(f"{T}/trigger/reply") if r["status"] == "busy"]
    assert all(r["job_id"] is None and "2 trigger(s) already queued" in r["reason"] for r in busy)
    results = sub.json_on(f"{T}/result")
    assert {r["verdict"] for r in results} == {"no-read"} and all(
        "within 3 s" in r["reasons"][0] for r in results
    )
    assert status["counters"]["busy"] == 2


@pytest.mark.parametrize(
    "payload,reason",
    [
        (b"not json", "not a JSON object"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"recipe": {"x": 1}}', "recipe must be a string"),
        (b'{"shoe": "size"}', "unknown key 'shoe'"),
        (b"\xff\xfe", "not a JSON object"),
        (b"x" * 70_000, "over the 65536 byte limit"),
    ],
)
def test_malformed_triggers_get_bad_request_and_the_agent_stays_up(
    dirs, broker: Broker, payload, reason
) -> None:
    sub = Subscriber(broker.port, [f"{T}/#"])
    cfg = line_config(dirs, triggered=True, mqtt=MqttConfig(url=broker.url))
    try:
        with running_agent(cfg) as agent:
            sub.publish(f"{T}/trigger", payload)
            wait_for(lambda: sub.json_on(f"{T}/trigger/reply"), what="an answer")
            write_label(dirs["in"] / "a.png", "LOT 12345", 1)
            wait_for(lambda: held(agent), what="the file held")
            sub.publish(f"{T}/trigger", b"")
            wait_for(lambda: len(sub.json_on(f"{T}/result")) == 1, what="a good trigger after the bad one")
    finally:
        sub.close()
    bad = sub.json_on(f"{T}/trigger/reply")[0]
    assert bad["status"] == "bad-request" and reason in bad["reason"]
    assert sub.json_on(f"{T}/result")[0]["verdict"] == "pass", sub.json_on(f"{T}/result")[0]


def test_tls_and_a_password(dirs, tmp_path: Path) -> None:
    """mqtts:// with the broker's CA, a user name and a password file; a wrong password is refused."""
    from certs import make_ca_and_server

    tls = make_ca_and_server(tmp_path / "tls")
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "line", "s3cret"], check=True)
    secured = Broker(tmp_path / "secure", tls=tls, extra=f"allow_anonymous false\npassword_file {passwd}")
    secured.start()
    (tmp_path / "pw").write_text("s3cret\n")
    try:
        sub = Subscriber(secured.port, [f"{T}/result"], ca=tls["ca"], username="line", password="s3cret")
        mqtt = MqttConfig(url=f"mqtts://127.0.0.1:{secured.port}", ca_file=tls["ca"], username="line",
                          password_file=tmp_path / "pw")  # fmt: skip
        try:
            with running_agent(line_config(dirs, mqtt=mqtt)):
                write_label(dirs["in"] / "a.png", "A 1", 1)
                wait_for(lambda: len(sub.on(f"{T}/result")) == 1, what="a result over TLS")
            wrong = replace(mqtt, password_file=None, password="wrong")
            with running_agent(line_config(dirs, mqtt=wrong)) as agent:
                wait_for(lambda: "refused" in agent.line.status()["channels"][0]["detail"], what="refused")
        finally:
            sub.close()
    finally:
        secured.stop()
    assert "line" in secured.log()
