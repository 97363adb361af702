"""What an entry in a watched folder is, found without opening it: a regular file to read (through
a link only when the link stays inside the folder), gone, or something never read, with the reason
to record (a link out of the folder, a dangling link, a link loop, a FIFO or device, a folder named
like an image, a name reached through a linked folder).

Every look goes through `dirfd`, from the watched folder's handle: a folder on the way that is a
symbolic link is never followed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from edge_ocr.agent.sources import dirfd
from edge_ocr.store.files import display_path


@dataclass(frozen=True)
class Entry:
    """What a path is: a readable regular file (`key`, `source`, `ident`), gone, or rejected
    (`reason`; `move`: quarantine the entry itself, else leave it where it is)."""

    key: tuple[int, int] | None = None  # (size, mtime_ns) of what is read
    source: Path | None = None  # what to read when it is not the entry itself (a link inside)
    ident: dirfd.Identity | None = None  # the entry itself (the link, for a link)
    reason: str | None = None
    move: bool = True


def _link_target(path: Path, root: Path) -> tuple[Path, os.stat_result] | Entry:
    """Where a link inside the folder leads (resolved), and what is there; or why it is not read."""
    try:
        os.stat(path)  # only to tell a dangling link from a loop; nothing is opened
    except FileNotFoundError:
        target = display_path(os.readlink(path))
        return Entry(reason=f"is a symbolic link to {target}, which does not exist; not read")
    except OSError as exc:  # ELOOP and the like
        return Entry(reason=f"is a symbolic link that cannot be followed ({exc.strerror}); not read")
    real = Path(os.path.realpath(path))
    try:
        parts = dirfd.parts_under(real, os.path.realpath(root))
        return real, dirfd.lstat(root, parts)
    except dirfd.NotUnderRoot:
        return Entry(
            reason=f"is a symbolic link to {display_path(real)}, outside the watched folder; not read"
        )
    except FileNotFoundError:
        return Entry(reason=f"is a symbolic link to {display_path(real)}, which does not exist; not read")
    except OSError as exc:
        return Entry(reason=f"is a symbolic link that cannot be followed ({exc.strerror}); not read")


def inspect_entry(path: Path, root: Path) -> Entry:
    """Classify a path without opening it. `root` is the watched folder's real path."""
    try:
        parts = dirfd.parts_under(path, root)
        lst = dirfd.lstat(root, parts)
    except FileNotFoundError:
        return Entry()
    except dirfd.LinkInTheWay as exc:
        return Entry(reason=f"is reached through {exc.strerror}", move=False)
    except OSError as exc:
        return Entry(reason=f"cannot be inspected ({exc.strerror}); not read", move=False)
    if stat.S_ISDIR(lst.st_mode):
        return Entry(
            reason="is a folder named like an image; its contents are watched, it is not read", move=False
        )
    source = None
    st = lst
    if stat.S_ISLNK(lst.st_mode):
        found = _link_target(path, root)
        if isinstance(found, Entry):
            return found
        source, st = found
        if stat.S_ISLNK(st.st_mode):  # resolved a moment ago, a link now: changing under us
            return Entry(reason="is a symbolic link that keeps changing; not read")
    if stat.S_ISDIR(st.st_mode):
        return Entry(reason="is a link to a folder; not read")
    if not stat.S_ISREG(st.st_mode):
        return Entry(reason="is not a regular file (a FIFO, socket or device); not read")
    return Entry(key=(st.st_size, st.st_mtime_ns), source=source, ident=dirfd.Identity.of(lst))
