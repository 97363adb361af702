"""File operations by directory handle: the only way the agent touches entries of a watched folder
(and of its archive and quarantine folders).

A path is never handed to the system as a string that a link could redirect. Each operation opens
the folder it works in component by component from the root's handle, every step with
`O_DIRECTORY | O_NOFOLLOW`, then acts on the last name relative to that handle (`os.rename(...,
src_dir_fd=, dst_dir_fd=)`, `os.unlink(name, dir_fd=)`, `os.stat(name, dir_fd=,
follow_symlinks=False)`, `os.open(name, O_NOFOLLOW, dir_fd=)`). A sub-folder swapped for a symbolic
link to somewhere else is refused at the step that meets it (`LinkInTheWay`), whenever the swap
happened: nothing outside the root is ever opened, moved, renamed or removed.

The roots themselves are the configured folders (the agent resolves them when it starts), opened
as configured: links there are the administrator's choice, links under them are not followed.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
NAME_MAX = 255  # bytes in one name, where the file system does not say
FOLDER_MODE = 0o750

Parts = tuple[str, ...]


class LinkInTheWay(OSError):
    """A folder on the way is a symbolic link (or no folder at all): not followed."""

    def __init__(self, name: str, what: str = "a symbolic link") -> None:
        shown = os.fsencode(name).decode("utf-8", "backslashreplace")
        super().__init__(errno.ELOOP, f"{what} on the way ({shown}); not followed")
        self.filename = name


class NotUnderRoot(OSError):
    """The path is not inside the folder it was to be found in."""

    def __init__(self, path: str | os.PathLike[str], root: str | os.PathLike[str]) -> None:
        super().__init__(errno.EXDEV, "not inside the folder it belongs to; left where it is")
        self.filename = os.fspath(path)
        self.filename2 = os.fspath(root)


class EntryChanged(OSError):
    """The entry is not the one that was read (replaced or rewritten since): left where it is."""

    def __init__(self, name: str) -> None:
        super().__init__(errno.ESTALE, "changed since it was read; left where it is to be read again")
        self.filename = name


@dataclass(frozen=True)
class Identity:
    """Which entry a name held when it was looked at: its inode, size and modification time."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def parts_under(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> Parts:
    """The names leading from `root` (as written, or resolved) to `path`, found lexically: nothing
    under the root is resolved. Raises NotUnderRoot."""
    for base in (Path(root), Path(os.path.realpath(root))):
        try:
            parts = Path(path).relative_to(base).parts
        except ValueError:
            continue
        if parts and not any(p in ("..", ".") for p in parts):
            return parts
    raise NotUnderRoot(path, root)


def _open_step(name: str, fd: int) -> int:
    try:
        return os.open(name, FOLDER_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        try:  # Linux answers ENOTDIR for a link opened with O_DIRECTORY | O_NOFOLLOW
            link = stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
        except OSError:
            link = exc.errno == errno.ELOOP
        raise LinkInTheWay(name, "a symbolic link" if link else "something that is not a folder") from None


def _open_root(root: str | os.PathLike[str], create: bool) -> int:
    """The configured folder itself, as configured (a link there is the administrator's choice)."""
    if create:
        Path(root).mkdir(parents=True, exist_ok=True)  # a folder the agent owns (archive, quarantine)
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


@contextmanager
def folder(root: str | os.PathLike[str], parts: Sequence[str] = (), *, create: bool = False) -> Iterator[int]:
    """A handle on `root/parts...`, opened one component at a time without following links;
    `create` makes the missing ones (and the root). Closed on exit."""
    fd = _open_root(root, create)
    try:
        for name in parts:
            try:
                step = _open_step(name, fd)
            except FileNotFoundError:
                if not create:
                    raise
                with suppress(FileExistsError):
                    os.mkdir(name, FOLDER_MODE, dir_fd=fd)
                step = _open_step(name, fd)
            os.close(fd)
            fd = step
        yield fd
    finally:
        os.close(fd)


def lstat(root: str | os.PathLike[str], parts: Parts) -> os.stat_result:
    """The entry itself (a link is not followed), found from `root`."""
    with folder(root, parts[:-1]) as fd:
        return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)


def readlink(root: str | os.PathLike[str], parts: Parts) -> str:
    with folder(root, parts[:-1]) as fd:
        return os.readlink(parts[-1], dir_fd=fd)


def open_file(root: str | os.PathLike[str], parts: Parts) -> int:
    """A read-only descriptor on a regular entry (never through a link, nor blocking on a FIFO).
    The caller closes it."""
    with folder(root, parts[:-1]) as fd:
        try:
            return os.open(parts[-1], READ_FLAGS, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LinkInTheWay(parts[-1], "a symbolic link") from None
            raise


def _check(fd: int, name: str, expect: Identity | None) -> os.stat_result:
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    if expect is not None and Identity.of(st) != expect:
        raise EntryChanged(name)
    return st


def unlink(root: str | os.PathLike[str], parts: Parts, *, expect: Identity | None = None) -> None:
    """Remove an entry (a link is removed as a link). `expect`: only if it is still that entry."""
    with folder(root, parts[:-1]) as fd:
        _check(fd, parts[-1], expect)
        os.unlink(parts[-1], dir_fd=fd)


# -- names ---------------------------------------------------------------------------------------------


def name_max(fd: int) -> int:
    try:
        return int(os.fpathconf(fd, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return NAME_MAX


def fit_name(name: str, suffix: str = "", limit: int = NAME_MAX) -> str:
    """`name + suffix`, shortened when longer than `limit` bytes: the start of the name (cut at a
    character boundary), `~`, 8 hex digits of the whole name's hash (different names stay
    different), and the suffix."""
    raw, tail = os.fsencode(name), os.fsencode(suffix)
    if len(raw) + len(tail) <= limit:
        return name + suffix
    digest = hashlib.sha256(raw).hexdigest()[:8].encode()
    keep = max(0, limit - len(tail) - len(digest) - 1)
    head = raw[:keep]
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        pass  # bytes that are no text: cut anywhere
    else:  # text stays text: the cut drops a partial character at the end
        head = head.decode("utf-8", "ignore").encode("utf-8")
    return os.fsdecode(head + b"~" + digest + tail)


def _candidates(name: str, limit: int) -> Iterator[str]:
    yield fit_name(name, "", limit)
    stem, dot, ext = name.rpartition(".")
    if not stem:
        stem, dot, ext = name, "", ""
    for n in range(1, 10_000):
        yield fit_name(stem, f".{n}{dot}{ext}", limit)


# -- moving ----------------------------------------------------------------------------------------------

RENAME_NOREPLACE = 1
try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    _renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
except (AttributeError, OSError):  # not glibc >= 2.28
    _renameat2 = None


def _rename_noreplace(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    """Rename without ever replacing what `dst` names (FileExistsError instead)."""
    if _renameat2 is not None:
        if _renameat2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):  # EINVAL: the file system has no NOREPLACE
            raise OSError(err, os.strerror(err), src, None, dst)
    try:  # only the agent writes in its archive and quarantine folders: check, then rename
        os.stat(dst, dir_fd=dst_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)


def _copy_across(src_fd: int, src: str, st: os.stat_result, dst_fd: int, dst: str) -> None:
    """Another file system: copy the entry (a link as a link, a file with its mode and times)."""
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src, dir_fd=src_fd), dst, dir_fd=dst_fd)
        return
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file; not copied", src)
    fin = os.open(src, READ_FLAGS, dir_fd=src_fd)
    try:
        if (os.fstat(fin).st_dev, os.fstat(fin).st_ino) != (st.st_dev, st.st_ino):
            raise EntryChanged(src)
        fout = os.open(dst, NEW_FILE_FLAGS, 0o600, dir_fd=dst_fd)
        try:
            with open(fin, "rb", closefd=False) as r, open(fout, "wb", closefd=False) as w:
                while block := r.read(1 << 20):
                    w.write(block)
            os.fchmod(fout, stat.S_IMODE(st.st_mode))
            os.utime(fout, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.fsync(fout)
        except BaseException:
            os.unlink(dst, dir_fd=dst_fd)
            raise
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def move(
    src_root: str | os.PathLike[str],
    src_parts: Parts,
    dst_root: str | os.PathLike[str],
    dst_parts: Parts,
    *,
    expect: Identity | None = None,
) -> Parts:
    """Move an entry (a link stays a link) from under `src_root` to under `dst_root`, creating the
    destination's folders, never replacing anything there: a taken name gets `.1`, `.2`... before
    its extension, and a name too long for the file system is shortened (`fit_name`). `expect`:
    only if it is still that entry. Returns the parts of where it went, under `dst_root`."""
    with folder(src_root, src_parts[:-1]) as sfd, folder(dst_root, dst_parts[:-1], create=True) as dfd:
        src = src_parts[-1]
        st = _check(sfd, src, expect)
        for name in _candidates(dst_parts[-1], name_max(dfd)):
            try:
                _rename_noreplace(sfd, src, dfd, name)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                try:
                    _copy_across(sfd, src, st, dfd, name)
                except FileExistsError:
                    continue
                _check(sfd, src, Identity.of(st))  # still the entry that was copied
                os.unlink(src, dir_fd=sfd)
            return (*dst_parts[:-1], name)
        raise FileExistsError(errno.EEXIST, "no free name", dst_parts[-1])


def write_new(root: str | os.PathLike[str], parent: Parts, name: str, suffix: str, data: bytes) -> Parts:
    """Create `name + suffix` in `root/parent...` (never through a link, never over an existing
    entry) holding `data`; the name is shortened to fit the file system, keeping the suffix.
    Returns its parts."""
    with folder(root, parent, create=True) as fd:
        name = fit_name(name, suffix, name_max(fd))
        out = os.open(name, NEW_FILE_FLAGS, 0o640, dir_fd=fd)
        try:
            with open(out, "wb", closefd=False) as fh:
                fh.write(data)
        except BaseException:
            os.unlink(name, dir_fd=fd)
            raise
        finally:
            os.close(out)
        return (*parent, name)
