"""Checks of the production line's channels: the MQTT broker answers and takes the login, the OPC UA
and Modbus ports are free (or held by this station's running agent), the OPC UA certificate is
readable and not expiring, the password files are readable."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from edge_ocr.config import Config, MqttConfig, OpcUaSecurity
from edge_ocr.ops.doctor.findings import DoctorOptions, Finding, Status, ok

logger = logging.getLogger(__name__)

CHECK = "line"
CERT_WARN_DAYS = 30


def check_line(cfg: Config, opts: DoctorOptions) -> list[Finding]:
    line = cfg.line
    if not line.enabled:
        return [
            Finding(
                CHECK, Status.INFO, "no line channel configured ([line.opcua], [line.mqtt], [line.modbus])"
            )
        ]
    out: list[Finding] = []
    held = _channels_of_running_agent(cfg)
    if line.mqtt is not None:
        out += _check_mqtt(line.mqtt, cfg.station_name(), opts.timeout)
    if line.opcua is not None:
        url = urlparse(line.opcua.endpoint)
        out.append(_check_port("OPC UA", url.hostname or "127.0.0.1", url.port or 4840, held.get("opcua")))
        out += _check_secret("OPC UA", line.opcua.password_file)
        if line.opcua.security is OpcUaSecurity.BASIC256SHA256:
            out.append(_check_certificate(line.opcua.certificate_dir or cfg.data_dir() / "opcua"))
    if line.modbus is not None:
        out.append(_check_port("Modbus", line.modbus.host, line.modbus.port, held.get("modbus")))
    return out


def _channels_of_running_agent(cfg: Config) -> dict[str, dict[str, Any]]:
    """The channels a running agent of this station reports in its heartbeat (by name)."""
    from edge_ocr.errors import EdgeOcrError
    from edge_ocr.store.agents import read_agent_status
    from edge_ocr.store.db import open_connection

    path = cfg.db_path()
    if not path.is_file():
        return {}
    try:
        conn = open_connection(path, readonly=True)
    except EdgeOcrError:
        return {}
    try:
        agents = read_agent_status(conn)
    except Exception:  # a damaged store is the database check's to report
        return {}
    finally:
        conn.close()
    for agent in agents:
        if agent.get("state") in ("stopped", None) or agent.get("host") != socket.gethostname():
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
            os.kill(int(agent.get("pid") or 0), 0)
            line = agent.get("details", {}).get("line", {})
            return {ch["name"]: {**ch, "pid": agent.get("pid")} for ch in line.get("channels", [])}
    return {}


def _check_port(what: str, host: str, port: int, held: dict[str, Any] | None) -> Finding:
    if port == 0:
        return ok(CHECK, f"{what}: any free port (port 0)")
    if held is not None and held.get("state") == "listening":
        return ok(CHECK, f"{what}: {host}:{port} is served by the running agent (pid {held.get('pid')})")
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return Finding(
            CHECK,
            Status.FAIL,
            f"{what}: cannot listen on {host}:{port}: {reason}",
            f"stop what holds the port (`ss -ltnp 'sport = :{port}'`), or choose another port in [line]",
        )
    return ok(CHECK, f"{what}: {host}:{port} is free")


def _check_secret(what: str, path: Path | None) -> list[Finding]:
    if path is None:
        return []
    try:
        path.read_text(encoding="utf-8")
    except OSError as exc:
        return [
            Finding(
                CHECK,
                Status.FAIL,
                f"{what}: password file {path}: {exc.strerror or exc}",
                "create it, readable by the agent's user only (chmod 600)",
            )
        ]
    if path.stat().st_mode & 0o077:
        return [
            Finding(
                CHECK, Status.WARN, f"{what}: password file {path} is readable by others", f"chmod 600 {path}"
            )
        ]
    return []


def _check_certificate(folder: Path) -> Finding:
    cert = folder / "server-cert.der"
    if not cert.exists():
        return Finding(
            CHECK,
            Status.INFO,
            f"OPC UA: no certificate in {folder} yet; the agent makes one at its first start",
        )
    try:
        from cryptography import x509

        parsed = x509.load_der_x509_certificate(cert.read_bytes())
    except (OSError, ValueError) as exc:
        return Finding(
            CHECK,
            Status.FAIL,
            f"OPC UA: certificate {cert} cannot be read: {exc}",
            f"delete {cert} and {folder / 'server-key.pem'}; the agent makes new ones at its next start "
            "(clients must trust the new one)",
        )
    left = parsed.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
    if left.total_seconds() <= 0:
        return Finding(
            CHECK,
            Status.FAIL,
            f"OPC UA: certificate {cert} expired on {parsed.not_valid_after_utc:%Y-%m-%d}",
            "restart the agent: it renews an expired certificate (clients must trust the new one)",
        )
    if left.days < CERT_WARN_DAYS:
        return Finding(
            CHECK,
            Status.WARN,
            f"OPC UA: certificate {cert} expires in {left.days} day(s)",
            "restart the agent before then: it renews it",
        )
    return ok(CHECK, f"OPC UA: certificate valid until {parsed.not_valid_after_utc:%Y-%m-%d}")


def _check_mqtt(cfg: MqttConfig, station: str, timeout: float) -> list[Finding]:
    """A real MQTT connection with the configured login and TLS: CONNACK or why not."""
    import paho.mqtt.client as mqtt

    out = _check_secret("MQTT", cfg.password_file)
    if any(f.status is Status.FAIL for f in out):
        return out
    url = urlparse(cfg.url)
    host, port = url.hostname or "127.0.0.1", url.port or (8883 if url.scheme == "mqtts" else 1883)
    done = threading.Event()
    answer: list[str] = []
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-ocr-doctor-{station}", clean_session=True
    )
    if cfg.username:
        password = (
            cfg.password
            if cfg.password_file is None
            else cfg.password_file.read_text(encoding="utf-8").strip()
        )
        client.username_pw_set(cfg.username, password)
    try:
        if url.scheme == "mqtts":
            client.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
            )
    except (OSError, ValueError) as exc:
        return [
            Finding(
                CHECK,
                Status.FAIL,
                f"MQTT: TLS files: {exc}",
                "check ca_file, cert_file and key_file in [line.mqtt]",
            )
        ]

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        answer.append("" if not reason.is_failure else str(reason))
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=10)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return [
            Finding(
                CHECK,
                Status.FAIL,
                f"MQTT: broker {host}:{port} unreachable: {reason}",
                "start the broker or fix [line.mqtt] url; results wait in the store until it answers",
            )
        ]
    client.loop_start()
    try:
        answered = done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    if not answered:
        return [
            Finding(
                CHECK,
                Status.FAIL,
                f"MQTT: broker {host}:{port} did not answer within {timeout:g} s",
                "check the broker and the url's scheme (mqtt:// or mqtts://)",
            )
        ]
    if answer[0]:
        return [
            Finding(
                CHECK,
                Status.FAIL,
                f"MQTT: broker {host}:{port} refused the connection: {answer[0]}",
                "check username and password (or password_file) in [line.mqtt]",
            )
        ]
    return [*out, ok(CHECK, f"MQTT: broker {host}:{port} accepted the connection")]
