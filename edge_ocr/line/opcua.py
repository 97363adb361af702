"""OPC UA: the station as a vision system, modelled on the subset of OPC 40100-1 (OPC UA for Machine
Vision) a line needs (asyncua, in a thread with its own event loop).

Every node has a string NodeId in the namespace `urn:edge-ocr:line` (the namespace index is
looked up by that URI; it is 2 on a fresh server), stable across restarts (docs/LINE.md lists them):

    EdgeOcr                                         the vision system (emits ResultReady events)
      Station                                       String
      VisionStateMachine
        CurrentState                                LocalizedText: Preoperational, Ready, ...
        CurrentStateNumber                          Int32 (0..5, as the Modbus STATE register)
        StartSingleJob(MeasId, PartId, RecipeId, ProductId) -> (JobId, Error)
        StartContinuous(MeasId, PartId, RecipeId, ProductId) -> (JobId, Error)
        Stop() -> Error          Halt() -> Error          Reset() -> Error
      RecipeManagement
        ActiveRecipe                                String
        Recipes/<name>                              one object per recipe, with Fields (String[])
        PrepareRecipe(ExternalId) -> Error          selects the recipe triggers read with
      ResultManagement
        ResultCount                                 UInt32
        LastResult
          JobId ImageSha256 Text Verdict VerdictCode Reasons Confidence Timestamp ModelSet Recipe
          ResultId MeasId PartId FieldsJson, and Fields/<field> for every field of every recipe
      Status
        QueueDepth  Busy  TriggersBusy  TriggersRefused
    ResultReadyEventType (subtype of BaseEventType), with the last result's values as properties

`Error` follows OPC 40100-1: 0 OK, negative for this station's own errors: -1 busy (the trigger
queue is full), -2 refused (halted, in error, no triggered source, continuous execution), -3 bad
request (an unknown recipe). Arguments of the wrong type or number are refused by the stack
(BadInvalidArgument / BadArgumentsMissing / BadTooManyArguments).

Security: `none` is anonymous and unsigned (for loopback); `basic256sha256` offers Sign and
SignAndEncrypt with a certificate generated on first start (kept in `certificate_dir`), and only
the configured user name and password: anonymous clients and other passwords are refused.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from edge_ocr.config import OpcUaConfig, OpcUaSecurity
from edge_ocr.line.hub import LineHub
from edge_ocr.line.model import (
    ChannelStatus,
    LineResult,
    LineVerdict,
    TriggerReply,
    TriggerRequest,
    TriggerStatus,
    VisionState,
)

logger = logging.getLogger(__name__)

NAMESPACE = "urn:edge-ocr:line"
ROOT = "EdgeOcr"
#: the last result's variables: (browse name, variant type name, value of the result)
_RESULT_VARS: tuple[tuple[str, str], ...] = (
    ("JobId", "String"),
    ("ImageSha256", "String"),
    ("Text", "String"),
    ("Verdict", "String"),
    ("VerdictCode", "Int32"),
    ("Reasons", "String"),  # an array of String
    ("Confidence", "Double"),
    ("Timestamp", "DateTime"),
    ("ModelSet", "String"),
    ("Recipe", "String"),
    ("ResultId", "Int64"),
    ("MeasId", "String"),
    ("PartId", "String"),
    ("FieldsJson", "String"),
)
#: how many pending result events and state changes the channel keeps for a stalled server loop
MAX_PENDING = 1000


def node_id(*path: str) -> str:
    """The string NodeId of a node, e.g. node_id("VisionStateMachine", "CurrentState")."""
    return ".".join((ROOT, *path))


def _result_values(result: LineResult) -> dict[str, Any]:
    return {
        "JobId": str(result.job_id),
        "ImageSha256": result.image_sha256 or "",
        "Text": result.text,
        "Verdict": result.verdict.value,
        "VerdictCode": result.verdict.code,
        "Reasons": list(result.reasons),
        "Confidence": float(result.confidence),
        "Timestamp": _parse_time(result.at),
        "ModelSet": result.model or "",
        "Recipe": result.recipe or "",
        "ResultId": int(result.result_id or 0),
        "MeasId": result.meas_id,
        "PartId": result.part_id,
        "FieldsJson": json.dumps(result.fields, ensure_ascii=False, sort_keys=True),
    }


def _parse_time(iso: str) -> datetime:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(timezone.utc)


class OpcUaChannel:
    """The station's OPC UA server."""

    name = "opcua"

    def __init__(
        self,
        cfg: OpcUaConfig,
        hub: LineHub,
        *,
        recipe_fields: dict[str, tuple[str, ...]],
        certificate_dir: Path,
    ) -> None:
        self.cfg = cfg
        self.hub = hub
        self.recipe_fields = recipe_fields
        self.certificate_dir = certificate_dir
        url = urlparse(cfg.endpoint)
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port if url.port is not None else 4840
        self._path = url.path or "/"
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._nodes: dict[str, Any] = {}
        self._server: Any = None
        self._event: Any = None
        self._results = 0
        self._pending = 0
        self.counters = {"calls": 0, "events": 0, "dropped": 0}

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self._host}:{self.port or self._port}{self._path}"

    # -- hub listener: only schedule on the server's loop ------------------------------------------
    def _schedule(self, coro_fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or not self._started.is_set():
            return
        if self._pending >= MAX_PENDING:  # the server's loop is stalled: drop, count, never block the agent
            self.counters["dropped"] += 1
            return
        self._pending += 1
        try:
            loop.call_soon_threadsafe(self._spawn, coro_fn, args)
        except RuntimeError:  # the loop closed between the check and the call
            self._pending -= 1

    def _spawn(self, coro_fn: Any, args: tuple[Any, ...]) -> None:
        task = asyncio.ensure_future(coro_fn(*args))
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._pending -= 1
        if not task.cancelled() and task.exception() is not None:
            logger.error("opcua: update failed: %s", task.exception())

    def on_result(self, result: LineResult) -> None:
        self._schedule(self._write_result, result)

    def on_state(self, state: VisionState, hub: LineHub) -> None:
        self._schedule(self._write_state)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the server in its thread. asyncua builds the standard address space first (seconds,
        longer on a small board), so this returns at once; `wait_started` waits for it."""
        self.hub.subscribe(self)
        self._thread = threading.Thread(target=self._run, name="line-opcua", daemon=True)
        self._thread.start()

    def wait_started(self, timeout: float) -> bool:
        """True once the server listens; raises what stopped it from starting."""
        if not self._started.wait(timeout):
            return False
        if self._error is not None:
            raise self._error
        return True

    def stop(self, timeout: float = 10.0) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("opcua: the server did not stop within %.0f s", timeout)

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
                logger.exception("opcua: the server stopped")
        finally:
            loop.close()

    async def _serve(self) -> None:
        from asyncua import Server

        self._stopping = asyncio.Event()
        server = Server(user_manager=_users(self.cfg))
        await server.init()
        self._server = server
        server.set_server_name(f"edge-ocr {self.hub.station}")
        await server.set_application_uri(f"urn:edge-ocr:{socket.gethostname()}:{self.hub.station}")
        await self._secure(server)
        server.set_endpoint(f"opc.tcp://{self._host}:{self._port}{self._path}")
        await self._build(server)
        async with server:
            self.port = _bound_port(server) or self._port
            logger.info("opcua: listening on %s (%s)", self.endpoint, self.cfg.security.value)
            await self._write_state()
            self._started.set()
            await self._stopping.wait()

    async def _secure(self, server: Any) -> None:
        from asyncua import ua

        if self.cfg.security is OpcUaSecurity.NONE:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            server.set_identity_tokens([ua.AnonymousIdentityToken])
            return
        from asyncua.crypto.cert_gen import setup_self_signed_certificate
        from cryptography.x509.oid import ExtendedKeyUsageOID

        self.certificate_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key, cert = self.certificate_dir / "server-key.pem", self.certificate_dir / "server-cert.der"
        # made on the first start, kept (and remade when it is missing, invalid or expired)
        await setup_self_signed_certificate(
            key,
            cert,
            f"urn:edge-ocr:{socket.gethostname()}:{self.hub.station}",
            socket.gethostname(),
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            {"commonName": f"edge-ocr {self.hub.station}", "organizationName": "edge-ocr"},
        )
        key.chmod(0o600)
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        server.set_security_policy(
            [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt, ua.SecurityPolicyType.Basic256Sha256_Sign]
        )
        server.set_identity_tokens([ua.UserNameIdentityToken])

    async def _build(self, server: Any) -> None:
        from asyncua import ua

        idx = await server.register_namespace(NAMESPACE)

        def nid(*path: str) -> Any:
            return ua.NodeId(node_id(*path), idx)

        def qn(name: str) -> Any:
            return ua.QualifiedName(name, idx)

        async def var(
            parent: Any, path: tuple[str, ...], value: Any, vtype: str, *, writable: bool = False
        ) -> Any:
            node = await parent.add_variable(
                nid(*path), qn(path[-1]), value, varianttype=getattr(ua.VariantType, vtype)
            )
            if writable:
                await node.set_writable()
            self._nodes[".".join(path)] = node
            return node

        out_args = [_argument("JobId", ua.ObjectIds.String), _argument("Error", ua.ObjectIds.Int32)]
        err_only = [_argument("Error", ua.ObjectIds.Int32)]
        start_in = [_argument(n, ua.ObjectIds.String) for n in ("MeasId", "PartId", "RecipeId", "ProductId")]

        root = await server.nodes.objects.add_object(nid(), qn(ROOT))
        await root.set_event_notifier([ua.EventNotifier.SubscribeToEvents])
        await var(root, ("Station",), self.hub.station, "String")
        sm = await root.add_object(nid("VisionStateMachine"), qn("VisionStateMachine"))
        await var(
            sm, ("VisionStateMachine", "CurrentState"), ua.LocalizedText("Preoperational"), "LocalizedText"
        )
        await var(sm, ("VisionStateMachine", "CurrentStateNumber"), 0, "Int32")
        await sm.add_method(
            nid("VisionStateMachine", "StartSingleJob"),
            qn("StartSingleJob"),
            self._start_single_job,
            start_in,
            out_args,
        )
        await sm.add_method(
            nid("VisionStateMachine", "StartContinuous"),
            qn("StartContinuous"),
            self._start_continuous,
            start_in,
            out_args,
        )
        for name, fn in (("Stop", self.hub.stop), ("Halt", self.hub.halt), ("Reset", self.hub.reset)):
            await sm.add_method(nid("VisionStateMachine", name), qn(name), self._control(fn), [], err_only)

        recipes = await root.add_object(nid("RecipeManagement"), qn("RecipeManagement"))
        await var(recipes, ("RecipeManagement", "ActiveRecipe"), self.hub.active_recipe or "", "String")
        folder = await recipes.add_folder(nid("RecipeManagement", "Recipes"), qn("Recipes"))
        for name in self.hub.recipes:
            node = await folder.add_object(nid("RecipeManagement", "Recipes", name), qn(name))
            await node.add_variable(
                nid("RecipeManagement", "Recipes", name, "Fields"),
                qn("Fields"),
                list(self.recipe_fields.get(name, ())),
                varianttype=ua.VariantType.String,
            )
        await recipes.add_method(
            nid("RecipeManagement", "PrepareRecipe"),
            qn("PrepareRecipe"),
            self._prepare_recipe,
            [_argument("ExternalId", ua.ObjectIds.String)],
            err_only,
        )

        results = await root.add_object(nid("ResultManagement"), qn("ResultManagement"))
        await var(
            results, ("ResultManagement", "ResultCount"), ua.Variant(0, ua.VariantType.UInt32), "UInt32"
        )
        last = await results.add_object(nid("ResultManagement", "LastResult"), qn("LastResult"))
        # no result yet: empty strings and zeros, not a job 0
        empty = {
            **_result_values(LineResult(0, self.hub.station, "", "", LineVerdict.NO_READ)),
            "JobId": "",
            "Verdict": "",
            "VerdictCode": 0,
        }
        for name, vtype in _RESULT_VARS:
            value = empty[name] if name != "Reasons" else ua.Variant([], ua.VariantType.String)
            await var(last, ("ResultManagement", "LastResult", name), value, vtype)
        fields = await last.add_object(nid("ResultManagement", "LastResult", "Fields"), qn("Fields"))
        for field_name in sorted({f for names in self.recipe_fields.values() for f in names}):
            await var(fields, ("ResultManagement", "LastResult", "Fields", field_name), "", "String")

        status = await root.add_object(nid("Status"), qn("Status"))
        await var(status, ("Status", "QueueDepth"), ua.Variant(0, ua.VariantType.UInt32), "UInt32")
        await var(status, ("Status", "Busy"), False, "Boolean")
        await var(status, ("Status", "TriggersBusy"), ua.Variant(0, ua.VariantType.UInt32), "UInt32")
        await var(status, ("Status", "TriggersRefused"), ua.Variant(0, ua.VariantType.UInt32), "UInt32")

        etype = await server.nodes.base_event_type.add_object_type(
            nid("ResultReadyEventType"), qn("ResultReadyEventType")
        )
        for name, vtype in _RESULT_VARS:
            await etype.add_property(
                nid("ResultReadyEventType", name),
                qn(name),
                ua.Variant([], ua.VariantType.String)
                if name == "Reasons"
                else ua.get_default_value(getattr(ua.VariantType, vtype)),
                varianttype=getattr(ua.VariantType, vtype),
            )
        self._event = await server.get_event_generator(etype, root)

    # -- methods (on the server's loop) ------------------------------------------------------------
    async def _call(self, fn: Any, *args: Any) -> TriggerReply:
        """Run a hub call (it may wait for the agent) off the server's loop."""
        self.counters["calls"] += 1
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def _start_single_job(self, parent: Any, *args: Any) -> Any:
        from asyncua import ua

        values = _string_args(args, 4)
        if not isinstance(values, list):
            return values
        request = TriggerRequest("opcua", recipe=values[2] or None, meas_id=values[0], part_id=values[1])
        reply = await self._call(self.hub.trigger, request)
        if not reply.accepted:
            logger.info("opcua: StartSingleJob %s: %s", reply.status.value, reply.reason)
        return [
            ua.Variant(str(reply.job_id or ""), ua.VariantType.String),
            ua.Variant(reply.status.error_code, ua.VariantType.Int32),
        ]

    async def _start_continuous(self, parent: Any, *args: Any) -> Any:
        from asyncua import ua

        values = _string_args(args, 4)
        if not isinstance(values, list):
            return values
        reply = TriggerReply(TriggerStatus.ACCEPTED)
        if values[2]:
            reply = await self._call(self.hub.select_recipe, values[2])
        if reply.accepted:
            reply = await self._call(self.hub.start_continuous)
        return [
            ua.Variant("", ua.VariantType.String),
            ua.Variant(reply.status.error_code, ua.VariantType.Int32),
        ]

    def _control(self, fn: Any) -> Any:
        async def method(parent: Any, *args: Any) -> Any:
            from asyncua import ua

            values = _string_args(args, 0)
            if not isinstance(values, list):
                return values
            reply = await self._call(fn)
            return [ua.Variant(reply.status.error_code, ua.VariantType.Int32)]

        return method

    async def _prepare_recipe(self, parent: Any, *args: Any) -> Any:
        from asyncua import ua

        values = _string_args(args, 1)
        if not isinstance(values, list):
            return values
        reply = await self._call(self.hub.select_recipe, values[0])
        await self._set("RecipeManagement.ActiveRecipe", self.hub.active_recipe or "", "String")
        return [ua.Variant(reply.status.error_code, ua.VariantType.Int32)]

    # -- updates (on the server's loop) ------------------------------------------------------------
    async def _set(self, key: str, value: Any, vtype: str) -> None:
        from asyncua import ua

        node = self._nodes.get(key)
        if node is not None:
            await node.write_value(ua.DataValue(ua.Variant(value, getattr(ua.VariantType, vtype))))

    async def _write_state(self) -> None:
        from asyncua import ua

        hub = self.hub
        state = hub.state
        await self._set("VisionStateMachine.CurrentState", ua.LocalizedText(state.value), "LocalizedText")
        await self._set("VisionStateMachine.CurrentStateNumber", state.code, "Int32")
        await self._set("RecipeManagement.ActiveRecipe", hub.active_recipe or "", "String")
        await self._set("Status.QueueDepth", hub.queue_depth(), "UInt32")
        await self._set("Status.Busy", hub.busy(), "Boolean")
        await self._set("Status.TriggersBusy", hub.counters.busy, "UInt32")
        await self._set("Status.TriggersRefused", hub.counters.refused, "UInt32")

    async def _write_result(self, result: LineResult) -> None:
        values = _result_values(result)
        for name, vtype in _RESULT_VARS:
            await self._set(f"ResultManagement.LastResult.{name}", values[name], vtype)
        for field_name, value in result.fields.items():
            await self._set(f"ResultManagement.LastResult.Fields.{field_name}", value or "", "String")
        self._results += 1
        await self._set("ResultManagement.ResultCount", self._results, "UInt32")
        event = self._event
        if event is not None:
            for name, _ in _RESULT_VARS:
                setattr(event.event, name, values[name])
            event.event.Severity = 500 if result.verdict.value == "pass" else 700
            await event.trigger(message=f"job {result.job_id}: {result.verdict.value}")
            self.counters["events"] += 1
        await self._write_state()

    def status(self) -> ChannelStatus:
        alive = self._thread is not None and self._thread.is_alive() and self._error is None
        state = ("listening" if self._started.is_set() else "starting") if alive else "down"
        return ChannelStatus(
            self.name,
            state,
            self.endpoint,
            "" if self._error is None else str(self._error),
            dict(self.counters),
        )


def _argument(name: str, data_type: int) -> Any:
    from asyncua import ua

    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ua.NodeId(data_type)
    arg.ValueRank = -1
    arg.ArrayDimensions = []
    arg.Description = ua.LocalizedText(name)
    return arg


def _string_args(args: tuple[Any, ...], expected: int) -> Any:
    """The values of `expected` String arguments (a Null one is ""), or the status code a call with
    missing, extra or non-String arguments gets (the stack itself does not check them)."""
    from asyncua import ua

    if len(args) < expected:
        return ua.StatusCode(ua.StatusCodes.BadArgumentsMissing)
    if len(args) > expected:
        return ua.StatusCode(ua.StatusCodes.BadTooManyArguments)
    values, results = [], []
    for arg in args:
        value = getattr(arg, "Value", arg)
        vtype = getattr(arg, "VariantType", None)
        ok = value is None or (isinstance(value, str) and vtype in (None, ua.VariantType.String))
        values.append(value or "" if ok else "")
        results.append(ua.StatusCode(ua.StatusCodes.Good if ok else ua.StatusCodes.BadTypeMismatch))
    if all(r.is_good() for r in results):
        return values
    res = ua.CallMethodResult()
    res.StatusCode = ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
    res.InputArgumentResults = results
    return res


def _bound_port(server: Any) -> int | None:
    """The port the server listens on (port 0 in the endpoint: any free one)."""
    try:
        return int(server.bserver._server.sockets[0].getsockname()[1])
    except (AttributeError, IndexError, TypeError):
        return None


def _users(cfg: OpcUaConfig) -> Any:
    """Only the configured user, when security is on; anyone (anonymous) when it is off."""
    from asyncua.crypto.permission_rules import User, UserRole
    from asyncua.server.user_managers import PermissiveUserManager, UserManager

    if cfg.security is OpcUaSecurity.NONE:
        return PermissiveUserManager()
    secret = (
        cfg.password if cfg.password_file is None else cfg.password_file.read_text(encoding="utf-8").strip()
    )

    class ConfiguredUser(UserManager):
        def get_user(
            self,
            iserver: Any,
            username: str | None = None,
            password: str | None = None,
            certificate: Any = None,
        ) -> Any:
            if username is None or password is None:
                return None
            ok = hmac.compare_digest(
                username.encode(), (cfg.username or "").encode()
            ) and hmac.compare_digest(password.encode(), (secret or "").encode())
            if not ok:
                logger.warning("opcua: refused user %r (wrong user name or password)", username)
                return None
            return User(role=UserRole.User)

    return ConfiguredUser()
