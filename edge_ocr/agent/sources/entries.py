"""What an entry in a watched folder is, found without opening it: a regular file to read (through
a link only when the link stays inside the folder), gone, or something never read, with the reason
to record (a link out of the folder, a dangling link, a link loop, a FIFO or device, a folder named
like an image)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from edge_ocr.store.files import display_path


@dataclass(frozen=True)
class Entry:
    """What a path is: a readable regular file (`key`, `source`), gone, or rejected (`reason`)."""

    key: tuple[int, int] | None = None
    source: Path | None = None
    reason: str | None = None
    move: bool = True


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def inspect_entry(path: Path, root: Path) -> Entry:
    """Classify a path without opening it. `root` is the watched folder's real path."""
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        return Entry()
    except OSError as exc:
        return Entry(reason=f"cannot be inspected ({exc.strerror}); not read", move=False)
    if stat.S_ISDIR(lst.st_mode):
        return Entry(
            reason="is a folder named like an image; its contents are watched, it is not read", move=False
        )
    real = Path(os.path.realpath(path))
    if stat.S_ISLNK(lst.st_mode):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return Entry(
                reason=f"is a symbolic link to {display_path(os.readlink(path))}, which does not exist; not read"
            )
        except OSError as exc:  # ELOOP and the like
            return Entry(reason=f"is a symbolic link that cannot be followed ({exc.strerror}); not read")
        if not _inside(real, root):
            return Entry(
                reason=f"is a symbolic link to {display_path(real)}, outside the watched folder; not read"
            )
    else:
        st = lst
        if not _inside(real, root):  # reached through a linked parent folder
            return Entry(reason=f"resolves to {display_path(real)}, outside the watched folder; not read")
    if stat.S_ISDIR(st.st_mode):
        return Entry(reason="is a link to a folder; not read")
    if not stat.S_ISREG(st.st_mode):
        return Entry(reason="is not a regular file (a FIFO, socket or device); not read")
    return Entry(key=(st.st_size, st.st_mtime_ns), source=real if real != path else None)
