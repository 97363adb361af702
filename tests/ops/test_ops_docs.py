"""The operations docs name only commands that exist, and every operations command is documented."""

from __future__ import annotations

import re
from pathlib import Path

from edge_ocr.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / "USER_GUIDE.md", ROOT / "docs" / "TROUBLESHOOTING.md"]
OPS_COMMANDS = {"doctor", "service", "models-admin", "status"}


def subcommands() -> set[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return set(sub.choices)


def test_docs_name_real_commands() -> None:
    known = subcommands() | {"models", "gui", "sync"}  # plugins (may be missing from a partial install)
    for doc in DOCS:
        text = doc.read_text()
        code = "\n".join(re.findall(r"```(?:sh|toml)?\n(.*?)```", text, re.S))
        used = set(re.findall(r"`edge-ocr(?: -v)? ([a-z][a-z-]+)", text))
        used |= set(re.findall(r"(?:^|&& |/bin/)edge-ocr(?: -v)? ([a-z][a-z-]+)", code, re.M))
        unknown = used - known
        assert not unknown, f"{doc.name} mentions unknown commands {unknown}"


def test_ops_commands_are_documented() -> None:
    guide = DOCS[0].read_text()
    for cmd in OPS_COMMANDS:
        assert cmd in subcommands()
        assert f"edge-ocr {cmd}" in guide, cmd
    for sub in ("install", "uninstall", "status"):
        assert f"edge-ocr service {sub}" in guide
    for sub in ("verify", "activate", "deactivate", "rollback"):
        assert f"edge-ocr models-admin {sub}" in guide


def test_every_doc_a_doc_names_exists() -> None:
    """Issue 21 item 8: docs/CONFIG.md sent readers to docs/SYNC.md, which never existed."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        for name in set(re.findall(r"docs/([A-Za-z_]+\.md)", text)):
            assert (ROOT / "docs" / name).is_file(), f"{page.name} names docs/{name}, which does not exist"
        for target in set(re.findall(r"\]\(([A-Za-z_/.]+\.md)(?:#[^)]*)?\)", text)):
            assert (page.parent / target).is_file(), f"{page.name} links {target}, which does not exist"


def test_every_sync_key_is_in_the_config_reference() -> None:
    from dataclasses import fields

    from edge_ocr_sync.config import SyncConfig

    doc = (ROOT / "docs" / "CONFIG.md").read_text()
    section = doc.split("## `[sync]`", 1)[1].split("\n## ", 1)[0]
    for f in fields(SyncConfig):
        assert f"`{f.name}`" in section, f"[sync] {f.name} is not in docs/CONFIG.md"
