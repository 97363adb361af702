"""Modbus TCP for PLCs that speak nothing else (pymodbus): a trigger coil, status coils, counters.

The register map (docs/LINE.md has it with the PLC's sequence). Addresses are 0-based, unit id from
`[line.modbus] unit` (0: every unit id is answered).

Coils (function codes 1, 5, 15):

    0  TRIGGER      write 1: read a part now. The write is answered once the trigger is recorded
                    (its job id is then in input registers 8-9); exception 06 (device busy) when
                    the trigger queue is full, 04 (device failure) when the station refuses (halted,
                    in error, continuous). Reads back 0.
    1  BUSY         read: a trigger is queued or running
    2  PASS         read: the last result passed       (cleared when a trigger is taken)
    3  FAIL         read: the last result failed: reject the part
    4  NO_READ      read: nothing legible in the last result
    5  ERROR        read: the last job could not be read (a broken image, an internal error)
    6  REFUSED      read: the last trigger was refused (busy or refused); cleared by the next one taken
    7  CONTINUOUS   read/write: continuous execution (1 starts, 0 stops)
    8  HALT         read/write: 1 halts (no new job), 0 resets

Input registers (function code 4):

    0  RESULT_COUNT    results since start, modulo 65536: a change means a new result
    1  JOB_ID_HI       job id of the last result (32 bits: 1 high word, 2 low word)
    2  JOB_ID_LO
    3  VERDICT         of the last result: 0 none, 1 pass, 2 fail, 3 no-read, 4 error
    4  STATE           0 Preoperational, 1 Ready, 2 SingleExecution, 3 ContinuousExecution, 4 Halted, 5 Error
    5  QUEUE           triggers queued or running
    6  BUSY_COUNT      triggers answered busy since start (modulo 65536)
    7  CONFIDENCE      of the last result, x1000
    8  TRIGGER_JOB_HI  job id given to the last accepted trigger
    9  TRIGGER_JOB_LO

Holding registers (function codes 3, 6, 16):

    0  RECIPE          1-based index of the active recipe in the sorted list of the station's recipes
                       (docs/LINE.md lists them); write to select one; 0 = none
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from edge_ocr.config import ModbusConfig
from edge_ocr.line.hub import LineHub
from edge_ocr.line.model import (
    ChannelStatus,
    LineResult,
    LineVerdict,
    TriggerRequest,
    TriggerStatus,
    VisionState,
)

logger = logging.getLogger(__name__)

COILS = ("TRIGGER", "BUSY", "PASS", "FAIL", "NO_READ", "ERROR", "REFUSED", "CONTINUOUS", "HALT")
COIL = {name: i for i, name in enumerate(COILS)}
WRITABLE_COILS = (COIL["TRIGGER"], COIL["CONTINUOUS"], COIL["HALT"])
INPUTS = (
    "RESULT_COUNT",
    "JOB_ID_HI",
    "JOB_ID_LO",
    "VERDICT",
    "STATE",
    "QUEUE",
    "BUSY_COUNT",
    "CONFIDENCE",
    "TRIGGER_JOB_HI",
    "TRIGGER_JOB_LO",
)
INPUT = {name: i for i, name in enumerate(INPUTS)}
HOLDING = ("RECIPE",)
BLOCK = 16  # registers (and coils) defined per table; addresses beyond answer "illegal address"

# function codes
READ_COILS, READ_DISCRETE, READ_HOLDING, READ_INPUT = 1, 2, 3, 4
WRITE_COIL, WRITE_REGISTER, WRITE_COILS, WRITE_REGISTERS = 5, 6, 15, 16


@dataclass
class _Image:
    """What the PLC reads, kept by the hub listener, read by the server's loop (under a lock)."""

    coils: list[bool] = field(default_factory=lambda: [False] * BLOCK)
    inputs: list[int] = field(default_factory=lambda: [0] * BLOCK)
    recipe_index: int = 0


def _words(value: int) -> tuple[int, int]:
    value &= 0xFFFFFFFF
    return value >> 16, value & 0xFFFF


class ModbusChannel:
    """A Modbus TCP server in a thread with its own event loop."""

    name = "modbus"

    def __init__(self, cfg: ModbusConfig, hub: LineHub) -> None:
        self.cfg = cfg
        self.hub = hub
        self._lock = threading.Lock()
        self._image = _Image()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.port: int | None = None
        self.counters = {"requests": 0, "triggers_in": 0, "refused_writes": 0}
        self._results = 0
        self._recipes = hub.recipes
        self._set_recipe_index(hub.active_recipe)

    # -- hub listener: only update the image -------------------------------------------------------
    def on_result(self, result: LineResult) -> None:
        with self._lock:
            self._results += 1
            img = self._image
            img.coils[COIL["PASS"]] = result.verdict is LineVerdict.PASS
            img.coils[COIL["FAIL"]] = result.verdict is LineVerdict.FAIL
            img.coils[COIL["NO_READ"]] = result.verdict is LineVerdict.NO_READ
            img.coils[COIL["ERROR"]] = result.verdict is LineVerdict.ERROR
            img.inputs[INPUT["RESULT_COUNT"]] = self._results & 0xFFFF
            img.inputs[INPUT["JOB_ID_HI"]], img.inputs[INPUT["JOB_ID_LO"]] = _words(result.job_id)
            img.inputs[INPUT["VERDICT"]] = result.verdict.code
            img.inputs[INPUT["CONFIDENCE"]] = max(0, min(1000, round(result.confidence * 1000)))
        self._refresh()

    def on_state(self, state: VisionState, hub: LineHub) -> None:
        self._refresh()

    def _refresh(self) -> None:
        hub = self.hub
        state, queued, counters = hub.state, hub.queue_depth(), hub.counters
        with self._lock:
            img = self._image
            img.coils[COIL["BUSY"]] = queued > 0
            img.coils[COIL["CONTINUOUS"]] = state is VisionState.CONTINUOUS_EXECUTION
            img.coils[COIL["HALT"]] = state is VisionState.HALTED
            img.inputs[INPUT["STATE"]] = state.code
            img.inputs[INPUT["QUEUE"]] = min(queued, 0xFFFF)
            img.inputs[INPUT["BUSY_COUNT"]] = counters.busy & 0xFFFF
        self._set_recipe_index(hub.active_recipe)

    def _set_recipe_index(self, recipe: str | None) -> None:
        with self._lock:
            self._image.recipe_index = self._recipes.index(recipe) + 1 if recipe in self._recipes else 0

    # -- requests (on the server's loop) -----------------------------------------------------------
    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> Any:
        from pymodbus.constants import ExcCodes

        self.counters["requests"] += 1
        if set_values is not None:
            if function_code in (WRITE_COIL, WRITE_COILS):
                code = await self._write_coils(address, [bool(v) for v in set_values])
            elif function_code in (WRITE_REGISTER, WRITE_REGISTERS):
                code = await self._write_holding(address, [int(v) for v in set_values])
            else:
                code = ExcCodes.ILLEGAL_FUNCTION
            if code is not None:
                self.counters["refused_writes"] += 1
                return code
        # every access, read or write, answers from the image: the action owns the values
        with self._lock:
            img = self._image
            if function_code in (READ_COILS, WRITE_COIL, WRITE_COILS):
                bits = img.coils
                packed = sum(1 << i for i, b in enumerate(bits) if b)
                for i in range(len(registers)):
                    registers[i] = packed if i == 0 else 0
                if set_values is not None:  # what the write leaves: the image, not the request
                    set_values[:] = [bits[address + i] for i in range(len(set_values))]
            elif function_code == READ_INPUT:
                registers[:] = img.inputs[start_address : start_address + len(registers)]
            elif function_code in (READ_HOLDING, WRITE_REGISTER, WRITE_REGISTERS):
                values = [img.recipe_index] + [0] * (BLOCK - 1)
                registers[:] = values[start_address : start_address + len(registers)]
                if set_values is not None:
                    set_values[:] = values[address : address + len(set_values)]
        return None

    async def _write_coils(self, address: int, values: list[bool]) -> Any:
        from pymodbus.constants import ExcCodes

        for offset, value in enumerate(values):
            coil = address + offset
            if coil not in WRITABLE_COILS:
                return ExcCodes.ILLEGAL_ADDRESS
            loop = asyncio.get_running_loop()
            if coil == COIL["TRIGGER"]:
                if not value:
                    continue
                self.counters["triggers_in"] += 1
                with self._lock:
                    results_before = self._results
                reply = await loop.run_in_executor(None, self.hub.trigger, TriggerRequest("modbus"))
                with self._lock:
                    self._image.coils[COIL["REFUSED"]] = not reply.accepted
                    if reply.accepted and self._results == results_before:
                        # the last verdict is cleared for this part, unless its result came already
                        for name in ("PASS", "FAIL", "NO_READ", "ERROR"):
                            self._image.coils[COIL[name]] = False
                        hi, lo = _words(reply.job_id or 0)
                        self._image.inputs[INPUT["TRIGGER_JOB_HI"]] = hi
                        self._image.inputs[INPUT["TRIGGER_JOB_LO"]] = lo
                self._refresh()
                if reply.status is TriggerStatus.BUSY:
                    return ExcCodes.DEVICE_BUSY
                if not reply.accepted:
                    logger.info("modbus: trigger %s: %s", reply.status.value, reply.reason)
                    return ExcCodes.DEVICE_FAILURE
            elif coil == COIL["CONTINUOUS"]:
                reply = await loop.run_in_executor(
                    None, self.hub.start_continuous if value else self.hub.stop
                )
                if not reply.accepted:
                    return ExcCodes.DEVICE_FAILURE
            elif coil == COIL["HALT"]:
                await loop.run_in_executor(None, self.hub.halt if value else self.hub.reset)
        return None

    async def _write_holding(self, address: int, values: list[int]) -> Any:
        from pymodbus.constants import ExcCodes

        if address != 0 or len(values) != 1:
            return ExcCodes.ILLEGAL_ADDRESS
        index = values[0]
        if not 1 <= index <= len(self._recipes):
            return ExcCodes.ILLEGAL_VALUE
        reply = self.hub.select_recipe(self._recipes[index - 1])
        if not reply.accepted:
            return ExcCodes.ILLEGAL_VALUE
        self._set_recipe_index(self._recipes[index - 1])
        return None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        self.hub.subscribe(self)
        self._thread = threading.Thread(target=self._run, name="line-modbus", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("the Modbus server did not start")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(), or logged when it happens later
            self._error = exc
            if not self._started.is_set():
                self._started.set()
            else:
                logger.exception("modbus: the server stopped")
        finally:
            loop.close()

    async def _serve(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        def bits() -> list[SimData]:
            return [SimData(0, count=BLOCK, values=False, datatype=DataType.BITS)]

        def registers() -> list[SimData]:
            return [SimData(0, count=BLOCK, values=0, datatype=DataType.REGISTERS)]

        # unit 0 answers every unit id
        device = SimDevice(
            self.cfg.unit, simdata=(bits(), bits(), registers(), registers()), action=self._action
        )
        self._server = ModbusTcpServer(device, address=(self.cfg.host, self.cfg.port))
        await self._server.serve_forever(background=True)
        self.port = self._server.transport.sockets[0].getsockname()[1]
        logger.info("modbus: listening on %s:%d (unit %d)", self.cfg.host, self.port, self.cfg.unit)
        self._refresh()
        self._started.set()
        await self._server.serving

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._server is not None and not self._loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(timeout)
            except (RuntimeError, TimeoutError, asyncio.TimeoutError) as exc:
                logger.warning("modbus: stop: %s", exc)
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> ChannelStatus:
        alive = self._thread is not None and self._thread.is_alive() and self._error is None
        return ChannelStatus(
            self.name,
            "listening" if alive else "down",
            f"modbus://{self.cfg.host}:{self.port or self.cfg.port}",
            "" if self._error is None else str(self._error),
            dict(self.counters),
        )
