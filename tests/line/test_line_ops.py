"""Operating the line (issue 20): `doctor` checks the broker, the ports and the certificate through
the real CLI; `status` shows the line's state and channels from the running agent."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

from linekit import Broker, line_config
from support import running_agent, wait_for

from edge_ocr.cli import main
from edge_ocr.config import ModbusConfig, MqttConfig, OpcUaConfig, OpcUaSecurity


def doctor(capsys, config: Path) -> list[dict]:
    main(["doctor", "--config", str(config), "--only", "line", "--json", "--timeout", "5"])
    return json.loads(capsys.readouterr().out)["findings"]


def write(tmp_path: Path, body: str) -> Path:
    cfg = tmp_path / "station.toml"
    cfg.write_text(
        f'[agent]\ndb = "{tmp_path / "db.sqlite"}"\ndata_dir = "{tmp_path / "data"}"\n[engine]\nname = "fake"\n'
        f'[line]\nstation = "st1"\n{body}'
    )
    return cfg


def messages(findings: list[dict], status: str) -> list[str]:
    return [f["message"] for f in findings if f["status"] == status]


def test_doctor_checks_the_broker_and_its_login(capsys, tmp_path: Path, broker: Broker) -> None:
    ok = doctor(capsys, write(tmp_path, f'[line.mqtt]\nurl = "{broker.url}"\n'))
    assert any("accepted the connection" in m for m in messages(ok, "ok")), ok
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    down = doctor(capsys, write(tmp_path, f'[line.mqtt]\nurl = "mqtt://127.0.0.1:{closed}"\n'))
    (fail,) = [f for f in down if f["status"] == "fail"]
    assert "unreachable" in fail["message"] and "results wait in the store" in fail["fix"]
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "line", "right"], check=True)
    secured = Broker(tmp_path / "secured", extra=f"allow_anonymous false\npassword_file {passwd}")
    secured.start()
    try:
        (tmp_path / "pw").write_text("wrong\n")
        (tmp_path / "pw").chmod(0o600)
        body = f'[line.mqtt]\nurl = "{secured.url}"\nusername = "line"\npassword_file = "{tmp_path / "pw"}"\n'
        refused = doctor(capsys, write(tmp_path, body))
    finally:
        secured.stop()
    (fail,) = [f for f in refused if f["status"] == "fail"]
    assert "refused the connection" in fail["message"] and "password" in fail["fix"]


def test_doctor_checks_the_ports_and_knows_the_running_agent_holds_them(capsys, dirs, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        busy = doctor(capsys, write(tmp_path, f"[line.modbus]\nport = {port}\n"))
    (fail,) = [f for f in busy if f["status"] == "fail"]
    assert f"cannot listen on 127.0.0.1:{port}" in fail["message"] and "ss -ltnp" in fail["fix"]
    free = doctor(capsys, write(tmp_path, f"[line.modbus]\nport = {port}\n"))
    assert any(f"127.0.0.1:{port} is free" in m for m in messages(free, "ok"))
    # the station's own running agent listening there is not a problem
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = line_config(dirs, modbus=ModbusConfig(port=port))
    station = tmp_path / "running.toml"
    station.write_text(
        f'[agent]\ndb = "{dirs["db"]}"\ndata_dir = "{dirs["data"]}"\nheartbeat = 0.5\n[engine]\nname = "fake"\n'
        f"[line.modbus]\nport = {port}\n"
    )
    with running_agent(cfg) as agent:
        wait_for(lambda: agent.line.channels.modbus.port, what="modbus listening")
        wait_for(
            lambda: "modbus" in json.dumps(_status(capsys, dirs["db"])["line"]), what="a heartbeat with it"
        )
        held = doctor(capsys, station)
    assert any("served by the running agent" in m for m in messages(held, "ok")), held


def _status(capsys, db: Path) -> dict:
    main(["status", "--db", str(db), "--json"])
    return json.loads(capsys.readouterr().out)


def test_doctor_checks_the_opcua_certificate(capsys, dirs, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "pw").chmod(0o600)
    body = (
        f'[line.opcua]\nendpoint = "opc.tcp://127.0.0.1:0/edge-ocr/"\nsecurity = "basic256sha256"\n'
        f'username = "plc"\npassword_file = "{tmp_path / "pw"}"\ncertificate_dir = "{pki}"\n'
    )
    before = doctor(capsys, write(tmp_path, body))
    assert any("makes one at its first start" in f["message"] for f in before)
    opcua = OpcUaConfig(
        endpoint="opc.tcp://127.0.0.1:0/edge-ocr/",
        security=OpcUaSecurity.BASIC256SHA256,
        username="plc",
        password_file=tmp_path / "pw",
        certificate_dir=pki,
    )
    with running_agent(line_config(dirs, opcua=opcua)) as agent:
        assert agent.line.channels.opcua.wait_started(300)
    made = doctor(capsys, write(tmp_path, body))
    assert any("certificate valid until" in m for m in messages(made, "ok")), made
    (pki / "server-cert.der").write_bytes(b"not a certificate")
    broken = doctor(capsys, write(tmp_path, body))
    (fail,) = [f for f in broken if f["status"] == "fail"]
    assert "cannot be read" in fail["message"] and "delete" in fail["fix"]


def test_status_shows_the_line_and_its_channels(capsys, dirs, broker: Broker) -> None:
    cfg = line_config(dirs, triggered=True, modbus=ModbusConfig(port=0), mqtt=MqttConfig(url=broker.url))
    from dataclasses import replace

    cfg = replace(cfg, agent=replace(cfg.agent, heartbeat=0.3))
    with running_agent(cfg) as agent:
        wait_for(lambda: agent.line.channels.mqtt.status().state == "connected", what="mqtt connected")
        report = wait_for(
            lambda: (
                (r := _status(capsys, dirs["db"]))["line"].get("channels")
                and len(r["line"]["channels"]) == 2
                and r
            ),
            what="the line in the heartbeat",
        )
        main(["status", "--db", str(dirs["db"])])
        text = capsys.readouterr().out
    line = report["line"]
    assert line["state"] == "Ready" and line["max_queued"] == 4
    assert {c["name"]: c["state"] for c in line["channels"]} == {"mqtt": "connected", "modbus": "listening"}
    assert "line:       Ready" in text and "mqtt    connected" in text and "modbus  listening" in text
