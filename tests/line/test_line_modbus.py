"""Modbus TCP (issue 20): a PLC's whole sequence with pymodbus's own client against the agent's
server: trigger coil, busy, the result counter, pass/fail/no-read coils, the job id registers, the
recipe register, and the exceptions a PLC gets for busy and for bad requests."""

from __future__ import annotations

import time
from dataclasses import replace

from linekit import free_port, held, line_config
from support import query, running_agent, wait_for, write_label

from edge_ocr.config import CameraSourceConfig, ModbusConfig, Trigger
from edge_ocr.line.modbus import COIL, INPUT

UNIT = 1


def _client(agent):
    from pymodbus.client import ModbusTcpClient

    port = wait_for(lambda: agent.line.channels.modbus.port, what="the Modbus server listening")
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=10)
    assert client.connect()
    return client


def _inputs(client) -> list[int]:
    return client.read_input_registers(0, count=10, device_id=UNIT).registers


def _coils(client) -> dict[str, bool]:
    bits = client.read_coils(0, count=9, device_id=UNIT).bits
    return {name: bits[i] for name, i in COIL.items()}


def _new_result(client, before: int) -> list[int] | None:
    regs = _inputs(client)
    return regs if regs[INPUT["RESULT_COUNT"]] != before else None


def _job(hi: int, lo: int) -> int:
    return hi << 16 | lo


def test_the_plc_sequence_over_modbus(dirs) -> None:
    cfg = line_config(dirs, triggered=True, recipes=True, modbus=ModbusConfig(port=0))
    with running_agent(cfg) as agent:
        client = _client(agent)
        try:
            assert _inputs(client)[INPUT["STATE"]] == 1  # Ready
            assert client.read_holding_registers(0, count=1, device_id=UNIT).registers == [1]  # "any"
            verdicts = []
            for i, recipe in enumerate((1, 2)):  # "any" passes, "never" fails
                write_label(dirs["in"] / f"p{i}.png", f"LOT {i}2345", i)
                wait_for(lambda: held(agent), what="a file held")
                assert not client.write_register(0, recipe, device_id=UNIT).isError()
                before = _inputs(client)[INPUT["RESULT_COUNT"]]
                assert not client.write_coil(COIL["TRIGGER"], True, device_id=UNIT).isError()
                regs = _inputs(client)
                job = _job(regs[INPUT["TRIGGER_JOB_HI"]], regs[INPUT["TRIGGER_JOB_LO"]])
                regs = wait_for(lambda b=before: _new_result(client, b), what="the result counter")
                assert _job(regs[INPUT["JOB_ID_HI"]], regs[INPUT["JOB_ID_LO"]]) == job
                coils = _coils(client)
                verdicts.append(
                    (
                        job,
                        regs[INPUT["VERDICT"]],
                        coils["PASS"],
                        coils["FAIL"],
                        coils["BUSY"],
                        coils["TRIGGER"],
                    )
                )
            # nothing new in the folder: a no-read, still one result for the trigger
            before = _inputs(client)[INPUT["RESULT_COUNT"]]
            assert not client.write_coil(COIL["TRIGGER"], True, device_id=UNIT).isError()
            wait_for(lambda: _inputs(client)[INPUT["RESULT_COUNT"]] != before, what="the no-read")
            last = (_inputs(client)[INPUT["VERDICT"]], _coils(client)["NO_READ"])
        finally:
            client.close()
    assert verdicts == [(1, 1, True, False, False, False), (2, 2, False, True, False, False)]
    assert last == (3, True)
    assert query(dirs["db"], "SELECT id, origin, recipe, verdict FROM line_jobs") == [
        (1, "modbus", "any", "pass"),
        (2, "modbus", "never", "fail"),
        (3, "modbus", "never", "no-read"),
    ]


def test_a_full_queue_answers_device_busy_and_halt_answers_device_failure(dirs) -> None:
    camera = CameraSourceConfig(name="cam", url=f"http://127.0.0.1:{free_port()}/none.mjpg", trigger=Trigger.LINE,
                                reconnect_max=0.5, consensus_frames=1)  # fmt: skip
    cfg = line_config(dirs, modbus=ModbusConfig(port=0), max_queued=1, job_timeout=2.0)
    cfg = replace(cfg, folders=(), cameras=(camera,))
    with running_agent(cfg) as agent:
        client = _client(agent)
        try:
            first = client.write_coil(COIL["TRIGGER"], True, device_id=UNIT)
            busy_coil = _coils(client)["BUSY"]
            second = client.write_coil(COIL["TRIGGER"], True, device_id=UNIT)
            refused_coil = _coils(client)["REFUSED"]
            busy_count = _inputs(client)[INPUT["BUSY_COUNT"]]
            wait_for(lambda: _inputs(client)[INPUT["RESULT_COUNT"]] == 1, what="the timed-out job's result")
            no_read = _inputs(client)[INPUT["VERDICT"]]
            client.write_coil(COIL["HALT"], True, device_id=UNIT)
            state = _inputs(client)[INPUT["STATE"]]
            halted = client.write_coil(COIL["TRIGGER"], True, device_id=UNIT)
            client.write_coil(COIL["HALT"], False, device_id=UNIT)
            resumed = _inputs(client)[INPUT["STATE"]]
        finally:
            client.close()
    assert not first.isError() and busy_coil
    assert second.isError() and second.exception_code == 6 and refused_coil and busy_count == 1
    assert no_read == 3
    assert state == 4 and halted.isError() and halted.exception_code == 4 and resumed == 1


def test_bad_requests_get_exceptions_and_the_station_keeps_going(dirs) -> None:
    cfg = line_config(dirs, recipes=True, modbus=ModbusConfig(port=0))
    with running_agent(cfg) as agent:
        client = _client(agent)
        try:
            read_only = client.write_coil(COIL["FAIL"], True, device_id=UNIT)
            out_of_map = client.read_input_registers(200, count=2, device_id=UNIT)
            bad_recipe = client.write_register(0, 99, device_id=UNIT)
            bad_register = client.write_register(5, 1, device_id=UNIT)
            # a raw client that sends garbage and goes away
            import socket

            with socket.create_connection(("127.0.0.1", agent.line.channels.modbus.port)) as raw:
                raw.sendall(b"\x00\x01\x00\x00\x00\xff" + b"\xff" * 40)
                time.sleep(0.2)
            write_label(dirs["in"] / "a.png", "LOT 12345", 1)
            wait_for(
                lambda: _inputs(client)[INPUT["RESULT_COUNT"]] == 1, what="a result after the bad requests"
            )
            ok = _coils(client)["PASS"]
        finally:
            client.close()
    assert read_only.isError() and read_only.exception_code == 2
    assert out_of_map.isError() and out_of_map.exception_code == 2
    assert bad_recipe.isError() and bad_recipe.exception_code == 3
    assert bad_register.isError() and bad_register.exception_code == 2
    assert ok
