"""Read-only view of the installed models: where they are and which sets are active.

The build and `edge-ocr models-admin` write `<models_dir>/manifest.json` through one writer
(`edge_ocr_models.manifest`: atomically, the previous one kept as `manifest.prev.json`); the agent
only reads it.

Manifest layout (schema 1)::

    {
      "schema": 1,
      "built_at": "2026-11-24T22:00:00Z",
      "default_family": "ppocrv6-small",
      "sets": {
        "onnx/fp32": {
          "engine": "onnx", "variant": "fp32", "target": "x86", "family": "ppocrv4-mobile",
          "files": {"det": {"path": "onnx/fp32/det.onnx", "sha256": "..."}, "rec": {...},
                    "cls": {...}, "dict": {...}},
          "source": {...}, "tools": {...},
          "accuracy": {...}, "active": true, "reason": "..."
        },
        ...
      }
    }

PP-OCRv4 mobile's sets have the ids they had before families existed (`onnx/fp32`); the other
families' are `<family>/<engine>/<variant>`. A manifest written before families names no family:
its sets are PP-OCRv4 mobile's, and its default family is that one.

Paths are relative to the models directory. Paddle-format models point at a folder that
holds `inference.pdmodel` and `inference.pdiparams`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_ocr.errors import HashMismatchError, ModelError, ModelNotFoundError
from edge_ocr.ocr.engine import ModelFiles

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
#: the manifest before the last change, kept by the one writer (`edge_ocr_models.manifest`) for a rollback
PREV_MANIFEST_NAME = "manifest.prev.json"
MANIFEST_SCHEMA = 1
ENV_MODELS_DIR = "EDGE_OCR_MODELS_DIR"
LEGACY_FAMILY = "ppocrv4-mobile"
#: family ids as older builds wrote them
FAMILY_ALIASES = {"ppocrv4-mobile-ch": LEGACY_FAMILY}


def _family_rank(family: str) -> tuple[int, str]:
    """Newer generations first (ppocrv6-* before ppocrv4-*)."""
    digits = "".join(ch for ch in family.split("-")[0] if ch.isdigit())
    return (-int(digits or 0), family)


def family_of(entry: dict[str, Any]) -> str:
    fid = entry.get("family") or LEGACY_FAMILY
    return FAMILY_ALIASES.get(fid, fid)


def default_models_dir() -> Path:
    """`$EDGE_OCR_MODELS_DIR`, else the per-user data directory."""
    env = os.environ.get(ENV_MODELS_DIR)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("edge-ocr", appauthor=False)) / "models"


def host_target() -> str:
    """The model target this machine runs: "arm" on ARM boards, else "x86"."""
    import platform

    return "arm" if platform.machine().lower() in ("aarch64", "arm64", "armv7l", "armv8l") else "x86"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: Path) -> str:
    """Hash of a file, or of a folder's files (names and contents, sorted)."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(b"\0")
        h.update(sha256_file(f).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class ModelSetInfo:
    set_id: str
    engine: str
    variant: str
    target: str
    active: bool
    files: dict[str, dict[str, Any]]
    accuracy: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    family: str = LEGACY_FAMILY


#: engines whose model files are compiled for one target (Paddle Lite's .nb: ARM or x86 kernels);
#: the others' files (ONNX, Paddle programs) are the same everywhere, so a set built on x86 runs on ARM
TARGET_BOUND_ENGINES = frozenset({"lite"})


def runs_on(info: ModelSetInfo, target: str) -> bool:
    """Whether a set's files can run on `target` ("x86" or "arm")."""
    return info.target == target or info.engine not in TARGET_BOUND_ENGINES


class ModelStore:
    """The models directory and its manifest."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_models_dir()

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict[str, Any]:
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelNotFoundError(
                f"no models installed in {self.root}; run `edge-ocr models build` "
                f"(or set {ENV_MODELS_DIR} to a folder that has them)"
            ) from None
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"model manifest {self.manifest_path} is unreadable ({exc}); "
                "run `edge-ocr models build` to rebuild it"
            ) from exc
        if data.get("schema") != MANIFEST_SCHEMA:
            raise ModelError(
                f"model manifest {self.manifest_path} has schema {data.get('schema')!r}, expected 1"
            )
        return data

    def sets(self) -> list[ModelSetInfo]:
        out = []
        for set_id, s in sorted(self.manifest().get("sets", {}).items()):
            out.append(
                ModelSetInfo(
                    set_id=set_id,
                    engine=s["engine"],
                    variant=s["variant"],
                    target=s.get("target", "x86"),
                    active=bool(s.get("active")),
                    files=s["files"],
                    accuracy=s.get("accuracy", {}),
                    reason=s.get("reason", ""),
                    raw=s,
                    family=family_of(s),
                )
            )
        return out

    def default_family(self) -> str:
        """The family `--models` defaults to: the one the build made the default (the catalogue's
        default once its sets passed their checks), PP-OCRv4 mobile for older manifests."""
        fid = self.manifest().get("default_family") or LEGACY_FAMILY
        return FAMILY_ALIASES.get(fid, fid)

    def families(self) -> list[str]:
        return sorted({s.family for s in self.sets()})

    def family_for(self, engine: str, variant: str, target: str | None = None) -> str:
        """The family an engine reads when none is asked for: the default one when this engine has
        an active set of it, else the newest family it has one of (Paddle Lite and Paddle Inference
        read PP-OCRv4 only: no registry carries PP-OCRv6 in Paddle's format)."""
        target = target or host_target()
        default = self.default_family()
        sets = [s for s in self.sets() if s.engine == engine and s.variant == variant and runs_on(s, target)]
        # prefer a family whose set is active; else one that has the set at all, so that opening
        # it says why it is inactive (an ARM set on an unchecked board) rather than "not found"
        have = [s.family for s in sets if s.active] or [s.family for s in sets]
        if default in have or not have:
            return default
        chosen = sorted(set(have), key=_family_rank)[0]
        logger.info("%s has no active %s %s set; reading with %s", default, engine, variant, chosen)
        return chosen

    def find(
        self, engine: str, variant: str, target: str | None = None, family: str | None = None
    ) -> ModelSetInfo:
        target = target or host_target()
        family = FAMILY_ALIASES.get(family, family) if family else self.family_for(engine, variant, target)
        candidates = [
            s
            for s in self.sets()
            if s.engine == engine and s.variant == variant and runs_on(s, target) and s.family == family
        ]
        candidates.sort(key=lambda s: s.target != target)  # a set made for this target first
        if not candidates:
            have = ", ".join(s.set_id for s in self.sets()) or "none"
            raise ModelNotFoundError(
                f"no {engine} model set of {family} with variant {variant!r} for {target} in {self.root} "
                f"(installed: {have}); run `edge-ocr models build`, or choose another with --models/--engine"
            )
        active = [s for s in candidates if s.active]
        if not active:
            why = candidates[0].reason or "it failed its accuracy check"
            raise ModelError(f"model set {candidates[0].set_id} is not active: {why}")
        return active[0]

    def resolve(
        self,
        engine: str,
        variant: str,
        *,
        verify: bool = False,
        target: str | None = None,
        family: str | None = None,
    ) -> ModelFiles:
        info = self.find(engine, variant, target, family)
        paths: dict[str, Path] = {}
        for role in ("det", "rec", "cls", "dict"):
            entry = info.files.get(role)
            if entry is None:
                raise ModelError(
                    f"model set {info.set_id} lists no {role} file; rebuild with `edge-ocr models build`"
                )
            path = self.root / entry["path"]
            if not path.exists():
                raise ModelNotFoundError(
                    f"{path} is missing (model set {info.set_id}); run `edge-ocr models build` to restore it"
                )
            if verify:
                got = sha256_tree(path)
                if got != entry["sha256"]:
                    raise HashMismatchError(
                        f"{path} has sha256 {got}, manifest says {entry['sha256']}; "
                        "the file is corrupt: run `edge-ocr models build --force`"
                    )
            paths[role] = path
        return ModelFiles(
            set_id=info.set_id,
            engine=engine,
            variant=variant,
            det=paths["det"],
            rec=paths["rec"],
            cls=paths["cls"],
            rec_dict=paths["dict"],
            family=info.family,
            model_config=info.raw.get("model_config") or {},
        )
