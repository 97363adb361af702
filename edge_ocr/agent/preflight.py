"""What `edge-ocr run` checks before it starts, beyond parsing the file (`load_config`): folders
that exist and do not overlap, the background services' sections (`[sync]`), validated by the
packages that provide them, and the line channels' libraries and secret files. `edge-ocr doctor --only config` calls the same function, so the
pre-start check and `run` never disagree.
"""

from __future__ import annotations

from pathlib import Path

from edge_ocr.agent.services import check_services
from edge_ocr.config import Config
from edge_ocr.errors import ConfigError
from edge_ocr.line.channels import require


def check_runnable(cfg: Config, *, base_dir: Path) -> None:
    """Raise ConfigError for anything `run` would refuse. `base_dir`: the config file's folder
    (relative paths in service sections are taken from it)."""
    check_folders(cfg)
    check_services({"sync": cfg.sync}, base_dir=base_dir)
    check_line(cfg)


def check_line(cfg: Config) -> None:
    """The configured line channels' libraries are installed, and their secret files readable."""
    for name, module in (("mqtt", "paho.mqtt"), ("opcua", "asyncua"), ("modbus", "pymodbus")):
        if getattr(cfg.line, name) is not None:
            require(module, f"[line.{name}]")
    for name in ("mqtt", "opcua"):
        section = getattr(cfg.line, name)
        path = getattr(section, "password_file", None) if section is not None else None
        if path is not None and not path.is_file():
            raise ConfigError(f"line.{name}.password_file: {path} does not exist")


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def check_folders(cfg: Config) -> None:
    """Refuse folders that overlap: an input inside (or holding) another input, or an archive or
    quarantine folder. Raises ConfigError naming both."""
    inputs = [(f, f.path.expanduser().resolve()) for f in cfg.folders]
    for f, p in inputs:
        if not p.is_dir():
            raise ConfigError(f"{f.source_name}: {p} is not a folder; create it or fix sources.folder.path")
    outputs = []
    for f, _ in inputs:
        outputs.append((f"archive folder of {f.source_name}", cfg.archive_dir(f).expanduser().resolve()))
        outputs.append(
            (f"quarantine folder of {f.source_name}", cfg.quarantine_dir(f).expanduser().resolve())
        )
    for i, (f, p) in enumerate(inputs):
        for _g, q in inputs[i + 1 :]:
            if _inside(p, q) or _inside(q, p):
                raise ConfigError(f"input folders overlap: {p} and {q}; watch each folder once")
        for what, q in outputs:
            if _inside(p, q) or _inside(q, p):
                raise ConfigError(
                    f"{f.source_name}: input {p} overlaps the {what} {q}; "
                    "choose archive_dir/quarantine_dir outside every input folder"
                )
