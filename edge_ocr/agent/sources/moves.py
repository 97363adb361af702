"""What happens to a file in a watched folder once it is finished: kept, archived, deleted, or
moved to the quarantine folder with `<name>.error.txt` beside it.

A quarantined symbolic link is moved as a link: its target is never opened.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from edge_ocr.config import AfterSuccess, FolderSourceConfig
from edge_ocr.store.files import clean_text, display_path


def _unique_target(target: Path) -> Path:
    if not target.exists() and not target.is_symlink():
        return target
    stem, suffix = target.stem, target.suffix
    for n in range(1, 10_000):
        candidate = target.with_name(f"{stem}.{n}{suffix}")
        if not candidate.exists() and not candidate.is_symlink():
            return candidate
    raise FileExistsError(target)


def _move_under(path: Path, root: Path, dest_root: Path) -> Path:
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = Path(path.name)
    target = _unique_target(dest_root / rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), str(target))  # a rename: a link stays a link
    return target


def after_success(folder: FolderSourceConfig, path: Path, archive_dir: Path) -> Path | None:
    """Keep, archive or delete a finished file. Returns where the file now is (None: deleted or gone)."""
    if not path.exists():
        return None
    if folder.after is AfterSuccess.KEEP:
        return path
    if folder.after is AfterSuccess.DELETE:
        path.unlink(missing_ok=True)
        return None
    return _move_under(path, folder.path, archive_dir)


def quarantine(folder: FolderSourceConfig, path: Path, quarantine_dir: Path, error: str) -> Path | None:
    """Move a bad file (or link) to the quarantine folder with `<name>.error.txt` beside it."""
    if not path.exists() and not path.is_symlink():
        return None
    target = _move_under(path, folder.path, quarantine_dir)
    note = target.with_name(target.name + ".error.txt")
    note.write_text(
        f"{display_path(path)}\n{clean_text(error)}\nquarantined at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n",
        encoding="utf-8",
    )
    return target
