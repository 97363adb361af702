"""OPC UA (issue 20): the station as an OPC 40100-1-style vision system, driven by asyncua's own
client against the agent's server on a free loopback port: state, StartSingleJob with the job id its
result event carries, recipes, last-result variables, stable node ids, wrong arguments, security."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from linekit import free_port, held, line_config
from support import query, running_agent, wait_for, write_label

from edge_ocr.config import OpcUaConfig, OpcUaSecurity
from edge_ocr.line.opcua import NAMESPACE, node_id

START_TIMEOUT = 300  # asyncua builds its standard address space first: seconds, more on a loaded machine


def endpoint(port: int) -> str:
    return f"opc.tcp://127.0.0.1:{port}/edge-ocr/"


class Events:
    """A subscription handler: every ResultReady event, as (JobId, Verdict, Text)."""

    def __init__(self) -> None:
        self.got: list[Any] = []

    def event_notification(self, event: Any) -> None:
        self.got.append(event)


async def _connect(url: str, **security: Any) -> Any:
    from asyncua import Client

    client = Client(url, timeout=30)
    if security:
        await client.set_security_string(security["string"])
        client.set_user(security.get("user"))
        client.set_password(security.get("password"))
    await client.connect()
    return client


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def _ready(agent: Any) -> Any:
    ch = agent.line.channels.opcua
    assert ch.wait_started(START_TIMEOUT), "the OPC UA server did not start"
    return ch


async def _nodes(client: Any) -> tuple[int, Any]:
    from asyncua import ua

    idx = await client.get_namespace_index(NAMESPACE)
    return idx, lambda *path: client.get_node(ua.NodeId(node_id(*path), idx))


def test_watch_with_opcua_a_client_sees_the_last_result_change(dirs) -> None:
    """The issue's command: `edge-ocr watch IN --db DB --opcua opc.tcp://127.0.0.1:PORT`."""
    port = free_port()
    env = {**os.environ, "EDGE_OCR_DATA_DIR": str(dirs["data"])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_ocr.cli", "watch", str(dirs["in"]), "--db", str(dirs["db"]), "--engine", "fake",
         "--workers", "1", "--opcua", f"opc.tcp://127.0.0.1:{port}", "--station", "st1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    async def scenario() -> tuple[list[str], list[str]]:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                client = await _connect(f"opc.tcp://127.0.0.1:{port}")
                break
            except (OSError, asyncio.TimeoutError, TimeoutError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                await asyncio.sleep(0.5)
        try:
            _, node = await _nodes(client)
            text, job = (
                node("ResultManagement", "LastResult", "Text"),
                node("ResultManagement", "LastResult", "JobId"),
            )
            seen_text, seen_jobs = [], []
            for i in range(3):
                write_label(dirs["in"] / f"l{i}.png", f"LOT {i}", i)
                for _ in range(600):
                    value = await job.read_value()
                    if value and value not in seen_jobs:
                        seen_jobs.append(value)
                        seen_text.append(await text.read_value())
                        break
                    await asyncio.sleep(0.1)
            state = (await node("VisionStateMachine", "CurrentState").read_value()).Text
            assert state == "ContinuousExecution"
            return seen_text, seen_jobs
        finally:
            await client.disconnect()

    try:
        texts, jobs = run(scenario())
    finally:
        proc.terminate()
        out = proc.communicate(timeout=60)[0]
    assert jobs == ["1", "2", "3"], out[-3000:]
    stored = [t for (t,) in query(dirs["db"], "SELECT text FROM results ORDER BY id")]
    assert texts == stored


def test_start_single_job_answers_the_job_id_that_its_result_event_and_variables_carry(dirs) -> None:
    cfg = line_config(dirs, triggered=True, recipes=True, opcua=OpcUaConfig(endpoint=endpoint(0)))
    with running_agent(cfg) as agent:
        ch = _ready(agent)
        write_label(dirs["in"] / "a.png", "LOT 12345", 1)
        wait_for(lambda: held(agent), what="the file held")

        async def scenario() -> dict[str, Any]:
            from asyncua import ua

            client = await _connect(ch.endpoint)
            try:
                idx, node = await _nodes(client)
                sm, root = node("VisionStateMachine"), node()
                events = Events()
                sub = await client.create_subscription(20, events)
                await sub.subscribe_events(root, node("ResultReadyEventType"))
                states = [(await node("VisionStateMachine", "CurrentState").read_value()).Text]
                call = lambda name, *a: sm.call_method(ua.QualifiedName(name, idx), *a)  # noqa: E731
                first = await call("StartSingleJob", "M-7", "P-3", "", "")
                for _ in range(600):
                    if events.got:
                        break
                    await asyncio.sleep(0.05)
                second = await call("StartSingleJob", "", "", "", "")  # nothing new in the folder
                unknown = await call("StartSingleJob", "", "", "no-such-recipe", "")
                prepare = await node("RecipeManagement").call_method(
                    ua.QualifiedName("PrepareRecipe", idx), "never"
                )
                errors = {}
                for label, args in (
                    ("missing", ("x",)),
                    ("extra", ("a", "b", "c", "d", "e")),
                    ("type", (1, 2, 3, 4)),
                ):
                    try:
                        await call("StartSingleJob", *args)
                    except ua.UaStatusCodeError as exc:
                        errors[label] = exc.code
                halt = await call("Halt")
                halted = (await node("VisionStateMachine", "CurrentState").read_value()).Text
                refused = await call("StartSingleJob", "", "", "", "")
                reset = await call("Reset")
                for _ in range(600):
                    if len(events.got) == 2:
                        break
                    await asyncio.sleep(0.05)
                recipes = [
                    (await n.read_browse_name()).Name
                    for n in await node("RecipeManagement", "Recipes").get_children()
                ]
                last = {
                    name: await node("ResultManagement", "LastResult", name).read_value()
                    for name in ("JobId", "Verdict", "MeasId")
                }
                states.append((await node("VisionStateMachine", "CurrentState").read_value()).Text)
                active = await node("RecipeManagement", "ActiveRecipe").read_value()
                return dict(
                    first=first, second=second, unknown=unknown, prepare=prepare, errors=errors, halt=halt,
                    halted=halted, refused=refused, reset=reset, events=[(e.JobId, e.Verdict, e.Text, e.MeasId) for e in events.got],
                    recipes=recipes, last=last, states=states, active=active,
                )  # fmt: skip
            finally:
                await client.disconnect()

        got = run(scenario())
    from asyncua import ua

    assert got["first"][1] == 0 and got["first"][0] == "1"
    job, verdict, text, meas = got["events"][0]
    assert (job, verdict, meas) == ("1", "pass", "M-7") and text
    assert got["second"] == ["2", 0]  # accepted; its result says why nothing was read
    assert got["events"][1][:2] == ("2", "no-read")
    assert got["unknown"] == ["", -3] and got["prepare"] == 0 and got["active"] == "never"
    assert got["errors"] == {
        "missing": ua.StatusCodes.BadArgumentsMissing,
        "extra": ua.StatusCodes.BadTooManyArguments,
        "type": ua.StatusCodes.BadInvalidArgument,
    }
    assert (got["halt"], got["halted"], got["refused"], got["reset"]) == (0, "Halted", ["", -2], 0)
    assert got["recipes"] == ["any", "never"]
    assert got["last"] == {"JobId": "2", "Verdict": "no-read", "MeasId": ""}
    assert got["states"] == ["Ready", "Ready"]
    assert query(dirs["db"], "SELECT id, origin, meas_id, part_id, verdict FROM line_jobs") == [
        (1, "opcua", "M-7", "P-3", "pass"),
        (2, "opcua", "", "", "no-read"),
    ]


def _browse_ids(url: str) -> list[str]:
    async def walk() -> list[str]:
        client = await _connect(url)
        try:
            idx, node = await _nodes(client)
            out: list[str] = []

            async def visit(n: Any) -> None:
                for child in await n.get_children():
                    if child.nodeid.NamespaceIndex == idx:
                        out.append(str(child.nodeid.Identifier))
                        await visit(child)

            await visit(node())
            return sorted(out)
        finally:
            await client.disconnect()

    return run(walk())


def test_node_ids_are_stable_across_restarts_and_documented(dirs) -> None:
    port = free_port()
    cfg = line_config(dirs, triggered=True, recipes=True, opcua=OpcUaConfig(endpoint=endpoint(port)))
    ids = []
    for _ in range(2):
        with running_agent(cfg) as agent:
            _ready(agent)
            ids.append(_browse_ids(endpoint(port)))
    assert ids[0] == ids[1] and len(ids[0]) > 30
    assert "EdgeOcr.VisionStateMachine.StartSingleJob" in ids[0]
    doc = (Path(__file__).resolve().parents[2] / "docs" / "LINE.md").read_text(encoding="utf-8")
    # every node by its string id (the methods' InputArguments/OutputArguments properties are numbered)
    named = [i for i in ids[0] if i.startswith("EdgeOcr") and ".Recipes." not in i and ".Fields." not in i]
    missing = [i for i in named if f"`{i}`" not in doc]
    assert not missing, f"docs/LINE.md does not list {missing}"


def test_a_secured_endpoint_refuses_anonymous_and_wrong_passwords_and_accepts_the_user(
    dirs, tmp_path: Path
) -> None:
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    port = free_port()
    (tmp_path / "pw").write_text("plc-Pa55\n")
    opcua = OpcUaConfig(
        endpoint=endpoint(port),
        security=OpcUaSecurity.BASIC256SHA256,
        username="plc",
        password_file=tmp_path / "pw",
        certificate_dir=tmp_path / "server-pki",
    )
    client_key, client_cert = tmp_path / "client-key.pem", tmp_path / "client-cert.der"
    run(
        setup_self_signed_certificate(
            client_key, client_cert, "urn:test:client", "localhost",
            [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "test client"},
        )
    )  # fmt: skip
    cfg = line_config(dirs, opcua=opcua)
    secure = f"Basic256Sha256,SignAndEncrypt,{client_cert},{client_key}"
    sign_only = f"Basic256Sha256,Sign,{client_cert},{client_key}"
    with running_agent(cfg) as agent:
        _ready(agent)
        outcomes = {}

        async def attempt(label: str, **kw: Any) -> None:
            try:
                client = await _connect(endpoint(port), **kw) if kw else await _connect(endpoint(port))
            except Exception as exc:  # what a PLC sees: a refusal
                outcomes[label] = type(exc).__name__
                return
            try:
                _, node = await _nodes(client)
                outcomes[label] = await node("Station").read_value()
            finally:
                await client.disconnect()

        run(attempt("anonymous"))
        run(attempt("wrong", string=secure, user="plc", password="guess"))
        run(attempt("user", string=secure, user="plc", password="plc-Pa55"))
        run(attempt("sign", string=sign_only, user="plc", password="plc-Pa55"))
    assert outcomes["user"] == "st1" and outcomes["sign"] == "st1"
    assert outcomes["anonymous"] != "st1" and outcomes["wrong"] != "st1", outcomes
    pki = tmp_path / "server-pki"
    assert (pki / "server-cert.der").is_file() and (pki / "server-key.pem").stat().st_mode & 0o077 == 0
    # the certificate made on the first start is kept at the next
    before = (pki / "server-cert.der").read_bytes()
    with running_agent(cfg) as agent:
        _ready(agent)
    assert (pki / "server-cert.der").read_bytes() == before


def test_a_client_that_subscribes_and_never_reads_does_not_hold_up_the_station(dirs) -> None:
    """One client subscribes to result events and then stops reading its socket (its event loop is
    frozen); another keeps triggering: every job is read, stored and announced to the live client."""
    cfg = line_config(dirs, triggered=True, opcua=OpcUaConfig(endpoint=endpoint(0)), max_queued=8)
    with running_agent(cfg) as agent:
        ch = _ready(agent)
        frozen = threading.Event()
        release = threading.Event()

        def stalled_client() -> None:
            async def stall() -> None:
                client = await _connect(ch.endpoint)
                _, node = await _nodes(client)
                sub = await client.create_subscription(10, Events())
                await sub.subscribe_events(node(), node("ResultReadyEventType"))
                frozen.set()
                release.wait(300)  # blocks the loop: no reads, no publish requests, no keep-alives

            asyncio.run(stall())

        thread = threading.Thread(target=stalled_client, name="stalled-client")
        thread.start()
        try:
            assert frozen.wait(120)

            async def live() -> list[str]:
                from asyncua import ua

                client = await _connect(ch.endpoint)
                try:
                    idx, node = await _nodes(client)
                    events = Events()
                    sub = await client.create_subscription(20, events)
                    await sub.subscribe_events(node(), node("ResultReadyEventType"))
                    for i in range(6):
                        write_label(dirs["in"] / f"p{i}.png", f"LOT {i}0000", i)
                        for _ in range(400):
                            if held(agent):
                                break
                            await asyncio.sleep(0.05)
                        await node("VisionStateMachine").call_method(
                            ua.QualifiedName("StartSingleJob", idx), "", "", "", ""
                        )
                        for _ in range(600):
                            if len(events.got) == i + 1:
                                break
                            await asyncio.sleep(0.05)
                    return [e.Verdict for e in events.got]
                finally:
                    await client.disconnect()

            verdicts = run(live())
        finally:
            release.set()
            thread.join(60)
    assert verdicts == ["pass"] * 6
    assert query(dirs["db"], "SELECT count(*) FROM line_jobs WHERE verdict = 'pass'") == [(6,)]


def test_opcua_port_in_use_is_reported_and_the_station_keeps_reading(dirs) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        cfg = line_config(dirs, opcua=OpcUaConfig(endpoint=endpoint(port)))
        with running_agent(cfg) as agent:
            ch = agent.line.channels.opcua
            with pytest.raises(OSError):
                ch.wait_started(START_TIMEOUT)
            write_label(dirs["in"] / "a.png", "LOT 1", 1)
            wait_for(lambda: query(dirs["db"], "SELECT count(*) FROM results")[0][0] == 1, what="read anyway")
            status = agent.line.status()
    assert status["channels"][0]["state"] == "down" and "address" in status["channels"][0]["detail"].lower()


def test_state_follows_the_agent_from_preoperational_to_continuous(dirs) -> None:
    """A watched folder (no triggered source) is in continuous execution once its workers are ready;
    StartContinuous is then accepted as a no-op and Stop refused with the reason."""
    cfg = line_config(dirs, opcua=OpcUaConfig(endpoint=endpoint(0)))
    cfg = replace(cfg, agent=replace(cfg.agent, workers=1))
    with running_agent(cfg) as agent:
        ch = _ready(agent)

        async def scenario() -> tuple[str, Any, Any]:
            from asyncua import ua

            client = await _connect(ch.endpoint)
            try:
                idx, node = await _nodes(client)
                state = (await node("VisionStateMachine", "CurrentState").read_value()).Text
                sm = node("VisionStateMachine")
                cont = await sm.call_method(ua.QualifiedName("StartContinuous", idx), "", "", "", "")
                stop = await sm.call_method(ua.QualifiedName("Stop", idx))
                return state, cont, stop
            finally:
                await client.disconnect()

        state, cont, stop = run(scenario())
    assert state == "ContinuousExecution" and cont == ["", 0] and stop == -2
