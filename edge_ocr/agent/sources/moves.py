"""What happens to a file once it is handled: kept, archived, deleted, or moved to the quarantine
folder with `<name>.error.txt` beside it.

Every move and removal goes through `dirfd`: from a handle on the watched folder to a handle on the
archive or quarantine folder, never following a link on the way, and only when the entry is still
the one that was read (`expect`). A quarantined symbolic link is moved as a link: its target is
never opened.
"""

from __future__ import annotations

import time
from pathlib import Path

from edge_ocr.agent.sources import dirfd
from edge_ocr.config import AfterSuccess, FolderSourceConfig
from edge_ocr.store.files import clean_text, display_path

NOTE_SUFFIX = ".error.txt"


class NoteNotWritten(OSError):
    """The file went to quarantine, but the note beside it could not be written."""

    def __init__(self, target: Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.target = target


def after_success(
    folder: FolderSourceConfig, path: Path, archive_dir: Path, *, expect: dirfd.Identity | None = None
) -> Path | None:
    """Keep, archive or delete a finished file. Returns where the file now is (None: deleted or
    gone). Raises OSError (dirfd's refusals included) when it cannot; the file stays where it is."""
    if folder.after is AfterSuccess.KEEP:
        return path
    parts = dirfd.parts_under(path, folder.path)
    try:
        if folder.after is AfterSuccess.DELETE:
            dirfd.unlink(folder.path, parts, expect=expect)
            return None
        moved = dirfd.move(folder.path, parts, archive_dir, parts, expect=expect)
    except FileNotFoundError:
        return None
    return archive_dir.joinpath(*moved)


def quarantine(
    folder: FolderSourceConfig,
    path: Path,
    quarantine_dir: Path,
    error: str,
    *,
    expect: dirfd.Identity | None = None,
) -> Path | None:
    """Move a bad file (or link) to the quarantine folder with `<name>.error.txt` beside it (the
    note's name shortened when it would be too long). None when it is gone. Raises OSError when it
    cannot be moved, NoteNotWritten when only the note failed."""
    parts = dirfd.parts_under(path, folder.path)
    try:
        moved = dirfd.move(folder.path, parts, quarantine_dir, parts, expect=expect)
    except FileNotFoundError:
        return None
    target = quarantine_dir.joinpath(*moved)
    note = (
        f"{display_path(path)}\n{clean_text(error)}\nquarantined at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n"
        f"moved to {display_path(target)}\n"
    )
    data = note.encode("utf-8")
    try:
        try:
            dirfd.write_new(quarantine_dir, moved[:-1], moved[-1], NOTE_SUFFIX, data)
        except FileExistsError:  # a note left behind by an earlier file of that name: keep both
            dirfd.write_new(quarantine_dir, moved[:-1], f"{moved[-1]}.{time.time_ns()}", NOTE_SUFFIX, data)
    except OSError as exc:
        raise NoteNotWritten(target, exc) from exc
    return target
