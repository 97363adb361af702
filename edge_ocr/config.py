"""The agent's configuration: frozen dataclasses loaded once from TOML and `EDGE_OCR_*` variables.

Precedence, lowest first: built-in defaults, the TOML file, environment variables, command-line
options. Unknown keys are errors that name the key. The result is never mutated; it is passed
explicitly to whatever needs it. The reference is docs/CONFIG.md.

This module stays whole past the house's ~500 lines (issue 14): it is one config schema with its
validation, which reads best (and is checked against docs/CONFIG.md) in one place.
"""

from __future__ import annotations

import enum
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from edge_ocr.errors import ConfigError
from edge_ocr.types import PrintProfile

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - 3.10
    import tomli as tomllib

ENV_PREFIX = "EDGE_OCR_"
ENV_CONFIG = "EDGE_OCR_CONFIG"
DEFAULT_IMAGE_GLOBS = ("*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff", "*.bmp", "*.webp", "*.gif", "*.pdf")
DEFAULT_EXCLUDE_GLOBS = (".*", "*~", "*.tmp", "*.part", "*.crdownload", "*.error.txt")


ENV_DB = "EDGE_OCR_DB"
#: what a recipe's `extract` can ask for, and the receipt fields its checks can name (edge_ocr.fields
#: holds the extraction; config sits below it, so the names are repeated here and a test keeps them equal)
EXTRACT_KINDS = ("receipt",)
RECEIPT_FIELD_NAMES = ("company", "date", "address", "total")
DATE_ORDERS = ("dmy", "mdy", "ymd")


def default_db_path() -> Path:
    """`$EDGE_OCR_DB`, else `edge-ocr.db` in the per-user data directory."""
    env = os.environ.get(ENV_DB)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("edge-ocr", appauthor=False)) / "edge-ocr.db"


class AfterSuccess(str, enum.Enum):
    """What the folder source does with a file once its result is committed."""

    KEEP = "keep"
    ARCHIVE = "archive"
    DELETE = "delete"


class Trigger(str, enum.Enum):
    """When a camera source turns frames into a record."""

    CONTINUOUS = "continuous"  # every `interval` seconds
    MOTION = "motion"  # once per object passing (presence tracking)
    HTTP = "http"  # on POST /trigger
    FILE = "file"  # when `trigger_file` appears
    LINE = "line"  # on a line trigger (OPC UA, MQTT, Modbus): the freshest frame after it


class FolderTrigger(str, enum.Enum):
    """When a folder source reads a file."""

    ARRIVAL = "arrival"  # every complete file, as it arrives
    LINE = "line"  # on a line trigger only: the newest complete file not read yet


class OpcUaSecurity(str, enum.Enum):
    """The OPC UA server's endpoints."""

    NONE = "none"  # anonymous, unsigned: for loopback and a first try
    BASIC256SHA256 = "basic256sha256"  # Sign and SignAndEncrypt, a user name and password required


class FieldType(str, enum.Enum):
    TEXT = "text"
    DATE = "date"
    GTIN = "gtin"  # digits with a GS1 mod-10 check digit


@dataclass(frozen=True)
class AgentConfig:
    db: Path | None = None  # default: default_db_path() (honours EDGE_OCR_DB)
    data_dir: Path | None = None  # default: per-user data dir; camera frames, archive, quarantine
    workers: int = 0  # 0 = one worker process per core
    queue_size: int = 64
    heartbeat: float = 5.0  # seconds between agent_status updates
    shutdown_grace: float = 20.0  # seconds to let in-flight jobs finish on SIGTERM/SIGINT


@dataclass(frozen=True)
class EngineConfig:
    name: str = "auto"
    variant: str = "fp32"
    threads: int | None = None  # per worker; default: cores / workers
    models_dir: Path | None = None
    cls: bool = False  # classify line orientation
    #: model family (ppocrv6-small, ppocrv6-tiny, ppocrv4-mobile); default: the installed default
    models: str | None = None


@dataclass(frozen=True)
class FolderSourceConfig:
    path: Path
    recursive: bool = True
    include: tuple[str, ...] = DEFAULT_IMAGE_GLOBS
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE_GLOBS
    polling: bool = False  # PollingObserver, for network shares without inotify
    poll_interval: float = 2.0
    settle_seconds: float = 0.5  # size and mtime must stay unchanged this long before reading
    after: AfterSuccess = AfterSuccess.KEEP
    archive_dir: Path | None = None  # default: <data_dir>/archive/<folder name>
    quarantine_dir: Path | None = None  # default: <data_dir>/quarantine/<folder name>
    max_attempts: int = 3
    recipe: str | None = None
    station: str | None = None
    print: PrintProfile | None = None  # this station's print; overrides the recipe's (None: the recipe's)
    trigger: FolderTrigger = FolderTrigger.ARRIVAL

    @property
    def source_name(self) -> str:
        return f"folder:{self.path}"


@dataclass(frozen=True)
class Roi:
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class CameraSourceConfig:
    name: str = "camera"
    device: int | None = None
    url: str | None = None
    file: Path | None = None
    fps_cap: float = 0.0  # 0 = no cap (a video file is read as fast as it decodes)
    trigger: Trigger = Trigger.MOTION
    interval: float = 2.0  # continuous trigger period, seconds
    http_host: str = "127.0.0.1"
    http_port: int = 0  # 0 = any free port (logged)
    trigger_file: Path | None = None
    rois: tuple[Roi, ...] = ()
    consensus_frames: int = 3  # frames OCR'd and voted per record
    motion_threshold: float = 0.02  # fraction of changed pixels that means "something is there"
    min_frames: int = 3  # frames an object must be present to count
    reconnect_max: float = 30.0  # seconds, backoff ceiling
    loop: bool = False  # restart a video file at its end
    recipe: str | None = None
    station: str | None = None
    print: PrintProfile | None = None  # this station's print; overrides the recipe's (None: the recipe's)

    @property
    def source_name(self) -> str:
        return f"camera:{self.name}"


@dataclass(frozen=True)
class FieldSpec:
    """One field on a label: found by `regex` (group 1, else the whole match) and/or inside `region`
    ([x0, y0, x1, y1] as fractions of the image), checked against `format` (a mask: 9 digit, A letter,
    X letter or digit, anything else literal; or a regex when `format_regex` is true)."""

    name: str
    regex: str | None = None
    region: tuple[float, float, float, float] | None = None
    format: str | None = None
    type: FieldType = FieldType.TEXT
    date_formats: tuple[str, ...] = ()  # strptime formats; default: the common ones (rules_dates.py)
    required: bool = True
    expected: str | None = None  # may use {today:%y%m%d}-style strftime templates
    correct_confusables: bool = True


@dataclass(frozen=True)
class ChecksSpec:
    production: str | None = None  # name of the production-date field
    expiry: str | None = None  # name of the expiry-date field; must be after production
    not_expired: bool = True  # expiry must not be before today
    min_confidence: float = 0.0  # below this mean confidence the verdict is "unreadable"
    # receipt checks (recipes with extract = "receipt")
    max_total: float | None = None  # a total above this fails
    future_date: bool = False  # true: a receipt dated after today fails
    require: tuple[str, ...] = ()  # receipt fields that must be found (company, date, address, total)


@dataclass(frozen=True)
class RecipeConfig:
    name: str
    fields: tuple[FieldSpec, ...] = ()
    checks: ChecksSpec = field(default_factory=ChecksSpec)
    print: PrintProfile = PrintProfile.AUTO  # how the label's codes are printed
    extract: str | None = None  # "receipt": read the page's receipt fields (company, date, address, total)
    date_order: str = "dmy"  # how an ambiguous numeric date is read: dmy, mdy or ymd


@dataclass(frozen=True)
class OutputsConfig:
    webhook: str | None = None  # URL receiving one POST per verdict
    webhook_timeout: float = 5.0
    webhook_retries: int = 5
    jsonl: str | None = None  # file path, or "-" for stdout


@dataclass(frozen=True)
class RetentionConfig:
    max_age_days: float | None = None
    max_images_mb: float | None = None  # for images the agent stored (camera frames)
    max_rows: int | None = None
    interval: float = 3600.0  # seconds between retention passes


@dataclass(frozen=True)
class OpcUaConfig:
    """The station's OPC UA server (docs/LINE.md)."""

    endpoint: str = "opc.tcp://127.0.0.1:4840/edge-ocr/"
    security: OpcUaSecurity = OpcUaSecurity.NONE
    username: str | None = None  # required with security; anonymous is refused then
    password: str | None = None
    password_file: Path | None = None
    certificate_dir: Path | None = None  # default: <data_dir>/opcua (made on first start)


@dataclass(frozen=True)
class MqttConfig:
    """The station's MQTT client: results out, triggers and recipe changes in (docs/LINE.md)."""

    url: str = "mqtt://127.0.0.1:1883"  # mqtts:// for TLS
    prefix: str = "edge-ocr"  # topics: <prefix>/<station>/result, .../verdict, .../status, ...
    qos: int = 1
    client_id: str | None = None  # default: edge-ocr-<station>
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None  # TLS: the broker's CA (default: the system's)
    cert_file: Path | None = None  # TLS client certificate
    key_file: Path | None = None
    keepalive: int = 30


@dataclass(frozen=True)
class ModbusConfig:
    """The station's Modbus TCP server (register map: docs/LINE.md)."""

    host: str = "127.0.0.1"
    port: int = 5020
    unit: int = 1  # the slave/unit id the PLC addresses


@dataclass(frozen=True)
class LineConfig:
    """The production line's channels. Off unless a channel is configured."""

    station: str | None = None  # the station's name in topics and nodes (default: the host name)
    source: str | None = None  # the source triggers read (default: the one with trigger = "line")
    recipe: str | None = None  # the recipe active at start (default: the triggered source's)
    max_queued: int = 4  # triggers queued or running; one more is answered "busy"
    job_timeout: float = 30.0  # seconds a triggered job may wait for its image before it is a no-read
    opcua: OpcUaConfig | None = None
    mqtt: MqttConfig | None = None
    modbus: ModbusConfig | None = None

    @property
    def enabled(self) -> bool:
        return any(c is not None for c in (self.opcua, self.mqtt, self.modbus))


@dataclass(frozen=True)
class Config:
    agent: AgentConfig = field(default_factory=AgentConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    folders: tuple[FolderSourceConfig, ...] = ()
    cameras: tuple[CameraSourceConfig, ...] = ()
    recipes: Mapping[str, RecipeConfig] = field(default_factory=dict)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    line: LineConfig = field(default_factory=LineConfig)
    # Placeholder for the sync engineer: accepted and passed through unvalidated for now.
    sync: Mapping[str, Any] = field(default_factory=dict)

    def data_dir(self) -> Path:
        if self.agent.data_dir is not None:
            return self.agent.data_dir
        env = os.environ.get("EDGE_OCR_DATA_DIR")
        if env:
            return Path(env).expanduser()
        from platformdirs import user_data_dir

        return Path(user_data_dir("edge-ocr", appauthor=False))

    def db_path(self) -> Path:
        if self.agent.db is not None:
            return self.agent.db
        return default_db_path()

    def archive_dir(self, folder: FolderSourceConfig) -> Path:
        return folder.archive_dir or self.data_dir() / "archive" / _slug(folder.path)

    def quarantine_dir(self, folder: FolderSourceConfig) -> Path:
        return folder.quarantine_dir or self.data_dir() / "quarantine" / _slug(folder.path)

    def station_name(self) -> str:
        """The station's name on the line (topics, OPC UA, status)."""
        if self.line.station:
            return self.line.station
        import socket

        return socket.gethostname()

    def line_sources(self) -> list[FolderSourceConfig | CameraSourceConfig]:
        """Sources that read on line triggers."""
        return [f for f in self.folders if f.trigger is FolderTrigger.LINE] + [
            c for c in self.cameras if c.trigger is Trigger.LINE
        ]

    def triggered_source(self) -> FolderSourceConfig | CameraSourceConfig | None:
        """The source a line trigger reads (validated: at most one, or the one `[line] source` names)."""
        candidates = self.line_sources()
        if self.line.source is not None:
            return next((s for s in candidates if s.source_name == self.line.source), None)
        return candidates[0] if len(candidates) == 1 else None

    def print_profile(
        self, source: FolderSourceConfig | CameraSourceConfig, recipe_name: str | None = None
    ) -> PrintProfile:
        """The print a source's images are read with: the station's own `print`, else its recipe's
        (`recipe_name`, a line trigger's recipe, else the source's), else auto."""
        if source.print is not None:
            return source.print
        name = recipe_name or source.recipe
        recipe = self.recipes.get(name) if name else None
        return recipe.print if recipe is not None else PrintProfile.AUTO


def _slug(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(path).strip("/")) or "root"


# -- parsing ------------------------------------------------------------------------------


_ENUMS: dict[str, type[enum.Enum]] = {
    "AfterSuccess": AfterSuccess,
    "Trigger": Trigger,
    "FolderTrigger": FolderTrigger,
    "OpcUaSecurity": OpcUaSecurity,
    "FieldType": FieldType,
    "PrintProfile": PrintProfile,
}


def _convert(value: Any, annotation: str, where: str) -> Any:
    """Coerce a TOML (or env string) value to the dataclass field's annotated type."""
    optional = annotation.endswith("| None")
    base = annotation.removesuffix(" | None").strip()
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required")
    try:
        if base == "bool":
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if base == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not math.isfinite(number):
                raise ConfigError(f"{where}: {value!r} is not a finite number")
            return number
        if base == "str":
            if not isinstance(value, str):
                raise ValueError(value)
            return value
        if base == "Path":
            if not isinstance(value, str) or not value:
                raise ValueError(value)
            return Path(value).expanduser()
        if base == "tuple[str, ...]":
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(value)
            return tuple(value)
        if base == "tuple[float, float, float, float]":
            if not isinstance(value, list) or len(value) != 4:
                raise ValueError(value)
            out = tuple(float(v) for v in value)
            if not (0 <= out[0] < out[2] <= 1 and 0 <= out[1] < out[3] <= 1):
                raise ValueError(value)
            return out
        if base in _ENUMS:
            return _ENUMS[base](value)
    except (TypeError, ValueError):
        if base in _ENUMS:
            known = ", ".join(repr(m.value) for m in _ENUMS[base])
            raise ConfigError(f"{where}: invalid value {value!r} (expected one of {known})") from None
        raise ConfigError(f"{where}: invalid value {value!r} (expected {base})") from None
    raise AssertionError(f"no converter for {annotation}")  # pragma: no cover


# (lowest, highest, lowest excluded) per numeric key: durations are never negative, counts sane.
_RANGES: dict[tuple[type, str], tuple[float, float, bool]] = {
    (AgentConfig, "workers"): (0, 64, False),
    (AgentConfig, "queue_size"): (1, 100_000, False),
    (AgentConfig, "heartbeat"): (0, 3600, True),
    (AgentConfig, "shutdown_grace"): (0, 3600, False),
    (EngineConfig, "threads"): (1, 256, False),
    (FolderSourceConfig, "poll_interval"): (0, 3600, True),
    (FolderSourceConfig, "settle_seconds"): (0, 3600, False),
    (FolderSourceConfig, "max_attempts"): (1, 100, False),
    (CameraSourceConfig, "device"): (0, 255, False),
    (CameraSourceConfig, "fps_cap"): (0, 1000, False),
    (CameraSourceConfig, "interval"): (0, 86_400, True),
    (CameraSourceConfig, "http_port"): (0, 65_535, False),
    (CameraSourceConfig, "consensus_frames"): (1, 100, False),
    (CameraSourceConfig, "motion_threshold"): (0, 1, True),
    (CameraSourceConfig, "min_frames"): (1, 10_000, False),
    (CameraSourceConfig, "reconnect_max"): (0, 86_400, True),
    (ChecksSpec, "min_confidence"): (0, 1, False),
    (ChecksSpec, "max_total"): (0, 1e15, False),
    (OutputsConfig, "webhook_timeout"): (0, 3600, True),
    (OutputsConfig, "webhook_retries"): (0, 100, False),
    (RetentionConfig, "max_age_days"): (0, 365_000, True),
    (RetentionConfig, "max_images_mb"): (0, 1e9, False),
    (RetentionConfig, "max_rows"): (0, 1e12, False),
    (RetentionConfig, "interval"): (1, 86_400 * 30, False),
    (LineConfig, "max_queued"): (1, 1000, False),
    (LineConfig, "job_timeout"): (0, 3600, True),
    (MqttConfig, "qos"): (0, 2, False),
    (MqttConfig, "keepalive"): (5, 3600, False),
    (ModbusConfig, "port"): (0, 65_535, False),
    (ModbusConfig, "unit"): (0, 255, False),
}


def _check_range(cls: type, key: str, value: Any, where: str) -> None:
    bounds = _RANGES.get((cls, key))
    if bounds is None or value is None:
        return
    lo, hi, open_low = bounds
    if value < lo or (open_low and value == lo) or value > hi:
        low = f"above {lo:g}" if open_low else f"at least {lo:g}"
        raise ConfigError(f"{where}: {value!r} is out of range (must be {low} and at most {hi:g})")


def _build(cls: type, raw: Mapping[str, Any], where: str, *, skip: tuple[str, ...] = ()) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table, got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls) if f.name not in skip}
    kwargs = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(
                f"{where}: unknown key {key!r} (known: {', '.join(sorted({*known, *skip}))}); see docs/CONFIG.md"
            )
        kwargs[key] = _convert(value, str(known[key].type), f"{where}.{key}")
        _check_range(cls, key, kwargs[key], f"{where}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _camera(raw: Mapping[str, Any], where: str, index: int) -> CameraSourceConfig:
    raw = dict(raw)
    rois_raw = raw.pop("rois", [])
    cam = _build(CameraSourceConfig, raw, where, skip=("rois",))
    if "name" not in raw:
        cam = replace(cam, name=f"camera{index}")
    rois = []
    for j, r in enumerate(rois_raw if isinstance(rois_raw, list) else [None]):
        if not (isinstance(r, list) and len(r) == 4 and all(isinstance(v, int) and v >= 0 for v in r)):
            raise ConfigError(f"{where}.rois[{j}]: expected [x, y, width, height] in pixels, got {r!r}")
        if r[2] == 0 or r[3] == 0:
            raise ConfigError(f"{where}.rois[{j}]: width and height must be positive")
        rois.append(Roi(*r))
    cam = replace(cam, rois=tuple(rois))
    inputs = [k for k in ("device", "url", "file") if getattr(cam, k) is not None]
    if len(inputs) != 1:
        raise ConfigError(f"{where}: set exactly one of device, url, file (got {inputs or 'none'})")
    if cam.trigger is Trigger.LINE and "consensus_frames" not in raw:
        cam = replace(cam, consensus_frames=1)  # a line waits for the verdict: one fresh frame
    if cam.trigger is Trigger.FILE and cam.trigger_file is None:
        raise ConfigError(f"{where}: trigger = 'file' needs trigger_file")
    if cam.consensus_frames < 1:
        raise ConfigError(f"{where}.consensus_frames: must be at least 1")
    return cam


def _recipe(name: str, raw: Mapping[str, Any]) -> RecipeConfig:
    where = f"recipes.{name}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table")
    unknown = set(raw) - {"fields", "checks", "print", "extract", "date_order"}
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {sorted(unknown)[0]!r} (known: checks, date_order, extract, fields, print)"
        )
    specs = []
    for i, f in enumerate(raw.get("fields", [])):
        spec = _build(FieldSpec, f, f"{where}.fields[{i}]")
        if spec.regex is None and spec.region is None:
            raise ConfigError(f"{where}.fields[{i}] ({spec.name}): set regex, region or both")
        if spec.regex is not None:
            try:
                re.compile(spec.regex)
            except re.error as exc:
                raise ConfigError(f"{where}.fields[{i}].regex: {exc}") from None
        specs.append(spec)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: field names must be unique")
    checks = _build(ChecksSpec, raw.get("checks", {}), f"{where}.checks")
    for ref in (checks.production, checks.expiry):
        if ref is not None and ref not in names:
            raise ConfigError(f"{where}.checks: no field named {ref!r}")
    print_profile = _convert(raw.get("print", PrintProfile.AUTO.value), "PrintProfile", f"{where}.print")
    extract = _convert(raw.get("extract"), "str | None", f"{where}.extract")
    if extract is not None and extract not in EXTRACT_KINDS:
        raise ConfigError(
            f"{where}.extract: {extract!r} is not a kind of fields (known: {', '.join(EXTRACT_KINDS)})"
        )
    date_order = _convert(raw.get("date_order", "dmy"), "str", f"{where}.date_order")
    if date_order not in DATE_ORDERS:
        raise ConfigError(f"{where}.date_order: {date_order!r} (expected one of {', '.join(DATE_ORDERS)})")
    receipt_checks = checks.max_total is not None or checks.future_date or checks.require
    if receipt_checks and extract is None:
        raise ConfigError(
            f'{where}.checks: max_total, future_date and require check receipt fields; set extract = "receipt"'
        )
    bad = [n for n in checks.require if n not in RECEIPT_FIELD_NAMES]
    if bad:
        raise ConfigError(
            f"{where}.checks.require: {bad[0]!r} is not a receipt field (known: {', '.join(RECEIPT_FIELD_NAMES)})"
        )
    return RecipeConfig(
        name=name,
        fields=tuple(specs),
        checks=checks,
        print=print_profile,
        extract=extract,
        date_order=date_order,
    )


_SCALAR_SECTIONS = {
    "agent": AgentConfig,
    "engine": EngineConfig,
    "outputs": OutputsConfig,
    "retention": RetentionConfig,
}
_TOP_KEYS = set(_SCALAR_SECTIONS) | {"sources", "recipes", "sync", "line"}

# Short environment names kept for compatibility with the rest of edge-ocr.
_ENV_ALIASES = {
    "EDGE_OCR_DB": ("agent", "db"),
    "EDGE_OCR_DATA_DIR": ("agent", "data_dir"),
    "EDGE_OCR_MODELS_DIR": ("engine", "models_dir"),
}


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, (section, key) in _ENV_ALIASES.items():
        if env.get(name):
            out.setdefault(section, {})[key] = env[name]
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        for section, cls in _SCALAR_SECTIONS.items():
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1 :]
                if key not in {f.name for f in fields(cls)}:
                    raise ConfigError(f"environment variable {name}: unknown key {key!r} in [{section}]")
                out.setdefault(section, {})[key] = value
    return out


_LINE_CHANNELS: dict[str, type] = {"opcua": OpcUaConfig, "mqtt": MqttConfig, "modbus": ModbusConfig}


def parse_line_table(raw: Any) -> LineConfig:
    """[line] with its [line.opcua], [line.mqtt] and [line.modbus] tables."""
    if not isinstance(raw, Mapping):
        raise ConfigError("line: expected a table")
    raw = dict(raw)
    channels = {name: raw.pop(name) for name in _LINE_CHANNELS if name in raw}
    line = _build(LineConfig, raw, "line", skip=tuple(_LINE_CHANNELS))
    built = {name: _build(_LINE_CHANNELS[name], table, f"line.{name}") for name, table in channels.items()}
    line = replace(line, **built)
    if line.opcua is not None:
        _check_opcua(line.opcua)
    if line.mqtt is not None:
        _check_mqtt(line.mqtt)
    return line


def _check_opcua(c: OpcUaConfig) -> None:
    from urllib.parse import urlparse

    url = urlparse(c.endpoint)
    if url.scheme != "opc.tcp" or not url.hostname:
        raise ConfigError(f"line.opcua.endpoint: {c.endpoint!r} is not an opc.tcp://HOST:PORT/ URL")
    try:
        url.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(f"line.opcua.endpoint: {c.endpoint!r} has an invalid port") from None
    if c.password is not None and c.password_file is not None:
        raise ConfigError("line.opcua: set password or password_file, not both")
    if c.security is OpcUaSecurity.BASIC256SHA256 and (
        not c.username or (c.password is None and c.password_file is None)
    ):
        raise ConfigError(
            "line.opcua: security = 'basic256sha256' needs username and password (or password_file): "
            "anonymous clients are refused then"
        )
    if c.security is OpcUaSecurity.NONE and c.username:
        raise ConfigError(
            "line.opcua: username needs security = 'basic256sha256' (passwords are never sent in clear)"
        )


def _check_mqtt(c: MqttConfig) -> None:
    from urllib.parse import urlparse

    url = urlparse(c.url)
    if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
        raise ConfigError(f"line.mqtt.url: {c.url!r} is not an mqtt://HOST:PORT or mqtts://HOST:PORT URL")
    try:
        url.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(f"line.mqtt.url: {c.url!r} has an invalid port") from None
    if not re.fullmatch(r"[^#+/\x00][^#+\x00]*", c.prefix) or c.prefix.endswith("/"):
        raise ConfigError(
            f"line.mqtt.prefix: {c.prefix!r} is not a topic prefix (no #, +, leading or trailing /)"
        )
    if c.password is not None and c.password_file is not None:
        raise ConfigError("line.mqtt: set password or password_file, not both")
    if (c.cert_file is None) != (c.key_file is None):
        raise ConfigError("line.mqtt: a TLS client certificate needs both cert_file and key_file")
    if url.scheme == "mqtt" and any(v is not None for v in (c.ca_file, c.cert_file)):
        raise ConfigError("line.mqtt: ca_file and cert_file need an mqtts:// URL")


def parse_config(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Validate a config mapping (a parsed TOML document) plus environment overrides."""
    env = os.environ if env is None else env
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(
            f"unknown top-level key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_TOP_KEYS))})"
        )
    sections: dict[str, Any] = {}
    overrides = _env_overrides(env)
    for section, cls in _SCALAR_SECTIONS.items():
        merged = dict(raw.get(section, {}))
        merged.update(overrides.get(section, {}))
        sections[section] = _build(cls, merged, section)
    sources = raw.get("sources", {})
    if not isinstance(sources, Mapping):
        raise ConfigError("sources: expected a table holding [[sources.folder]] / [[sources.camera]]")
    unknown = set(sources) - {"folder", "camera"}
    if unknown:
        raise ConfigError(f"sources: unknown source type {sorted(unknown)[0]!r} (known: camera, folder)")
    folders = tuple(
        _build(FolderSourceConfig, f, f"sources.folder[{i}]") for i, f in enumerate(sources.get("folder", []))
    )
    cameras = tuple(_camera(c, f"sources.camera[{i}]", i) for i, c in enumerate(sources.get("camera", [])))
    recipes_raw = raw.get("recipes", {})
    if not isinstance(recipes_raw, Mapping):
        raise ConfigError("recipes: expected a table of [recipes.NAME] tables")
    recipes = {name: _recipe(name, r) for name, r in recipes_raw.items()}
    sync = raw.get("sync", {})
    if not isinstance(sync, Mapping):
        raise ConfigError("sync: expected a table")
    cfg = Config(
        agent=sections["agent"],
        engine=sections["engine"],
        folders=folders,
        cameras=cameras,
        recipes=recipes,
        outputs=sections["outputs"],
        retention=sections["retention"],
        line=parse_line_table(raw.get("line", {})),
        sync=dict(sync),
    )
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Cross-field checks. Raises ConfigError."""
    if cfg.agent.workers < 0 or cfg.agent.queue_size < 1 or cfg.agent.heartbeat <= 0:
        raise ConfigError("agent: workers must be >= 0, queue_size >= 1 and heartbeat > 0")
    names = [c.name for c in cfg.cameras]
    if len(set(names)) != len(names):
        raise ConfigError("sources.camera: camera names must be unique")
    for src in (*cfg.folders, *cfg.cameras):
        if src.recipe is not None and src.recipe not in cfg.recipes:
            raise ConfigError(
                f"{src.source_name}: recipe {src.recipe!r} is not defined; add a [recipes.{src.recipe}] table"
            )
    for f in cfg.folders:
        if f.max_attempts < 1 or f.settle_seconds < 0:
            raise ConfigError(f"{f.source_name}: max_attempts must be >= 1 and settle_seconds >= 0")
    if cfg.outputs.webhook is not None and not re.match(r"https?://", cfg.outputs.webhook):
        raise ConfigError(f"outputs.webhook: {cfg.outputs.webhook!r} is not an http(s) URL")
    _validate_line(cfg)


def _validate_line(cfg: Config) -> None:
    """Which source line triggers read, and the recipe they start with."""
    line = cfg.line
    triggered = cfg.line_sources()
    names = [s.source_name for s in triggered]
    if triggered and not line.enabled:
        raise ConfigError(
            f"{names[0]}: trigger = 'line' needs a line channel to take triggers: add [line.opcua], "
            "[line.mqtt] or [line.modbus] (docs/LINE.md)"
        )
    if line.source is not None and line.source not in names:
        raise ConfigError(
            f"line.source: {line.source!r} is not a source with trigger = 'line' (those: {', '.join(names) or 'none'})"
        )
    if line.source is None and len(triggered) > 1:
        raise ConfigError(
            f"line: {len(triggered)} sources read on triggers ({', '.join(names)}); name the one triggers "
            "read with line.source"
        )
    if line.recipe is not None and line.recipe not in cfg.recipes:
        raise ConfigError(
            f"line.recipe: recipe {line.recipe!r} is not defined; add a [recipes.{line.recipe}] table"
        )


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate a TOML file (or only defaults and env when `path` is None)."""
    env = os.environ if env is None else env
    if path is None and env.get(ENV_CONFIG):
        path = Path(env[ENV_CONFIG])
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path).expanduser()
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return parse_config(raw, env)
    except ConfigError as exc:
        if path is not None:
            raise ConfigError(f"{path}: {exc}") from None
        raise
