"""Debian roots for the container tests: built once with debootstrap, booted with systemd as PID 1
under systemd-nspawn (no host systemd needed), or entered with chroot (arm64 under qemu-user).

    tarball = ensure_root(cache_dir(), "bookworm")            # debootstrap once, cached .tar.zst
    with overlay_root(unpacked(tarball), tmp_path / "ovl") as root, Container(root) as box:
        box.run(["systemctl", "enable", "--now", "x.service"], check=True)
        box.reboot()

Every subprocess has a timeout; `Container.stop()` (run by the context manager) leaves no process
of the container and no mount below its root. Commands run inside with `nsenter -t PID1 -a` and
a clean environment (the host's PIP_*, PATH with shims ... must not leak in).
Used by tests/ops/test_ops_systemd_real.py and scripts/arm64_check.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

MIRROR = "http://deb.debian.org/debian"
#: what a booted root needs: systemd as init, logind (lingering users), a Python with venv
BOOT_INCLUDE = (
    "systemd", "systemd-sysv", "dbus", "libpam-systemd",
    "python3", "python3-venv", "python3-pip", "ca-certificates",
)  # fmt: skip
#: a root that is only entered (chroot): a Python with venv
CHROOT_INCLUDE = ("python3", "python3-venv", "python3-pip", "ca-certificates")
HOST_PACKAGES = ("debootstrap", "systemd-container", "zstd")
EMULATION_PACKAGES = ("qemu-user-static", "binfmt-support")
CLEAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "HOME": "/root",
}
TAR_FLAGS = ("--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls")
QEMU_NAMES = {"arm64": "aarch64"}
PIP_PLATFORMS = {
    "x86_64": ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
               "manylinux2014_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64"),
    "aarch64": ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64",
                "manylinux2014_aarch64"),
}  # fmt: skip


class NspawnError(RuntimeError):
    """A root could not be built, booted, entered or cleaned up."""


def cache_dir() -> Path:
    """Outside the clone, so a fresh CI checkout on the same machine reuses the roots."""
    base = os.environ.get("EDGE_OCR_TEST_CACHE") or Path.home() / ".cache" / "edge-ocr-tests"
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- host ---------------------------------------------------------------------------------------


def missing_packages(packages: Iterable[str]) -> list[str]:
    out = []
    for pkg in packages:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, timeout=60
        )
        if "install ok installed" not in proc.stdout:
            out.append(pkg)
    return out


def ensure_host_packages(packages: Iterable[str]) -> None:
    """apt-get install what is missing (CI machines start without debootstrap and nspawn)."""
    missing = missing_packages(packages)
    if not missing:
        return
    logger.info("installing %s with apt", " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        if proc.returncode:
            raise NspawnError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")


def ensure_binfmt(arch: str) -> None:
    """Make the kernel run `arch` binaries through qemu-user-static (F flag: no qemu in the root)."""
    if arch == host_arch():
        return
    ensure_host_packages(EMULATION_PACKAGES)
    qemu = QEMU_NAMES[arch]
    mnt = Path("/proc/sys/fs/binfmt_misc")
    if not (mnt / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(mnt)], timeout=30, check=True)
    entry = mnt / f"qemu-{qemu}"
    if not entry.exists():
        subprocess.run(["update-binfmts", "--enable", f"qemu-{qemu}"], timeout=60, check=True)
    text = entry.read_text()
    flags = text.split("flags: ", 1)[1].split()[0] if "flags: " in text else ""
    if "enabled" not in text or "F" not in flags:
        raise NspawnError(f"binfmt entry {entry} is not enabled with the F flag: {text}")


def host_arch() -> str:
    proc = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, timeout=30, check=True
    )
    return proc.stdout.strip()


# -- roots --------------------------------------------------------------------------------------


def root_key(suite: str, arch: str, include: Iterable[str], mirror: str = MIRROR) -> str:
    """The recipe's digest: another package list or suite builds (and caches) another root."""
    return hashlib.sha256(repr((suite, arch, sorted(set(include)), mirror)).encode()).hexdigest()[:10]


def ensure_root(
    cache: Path,
    suite: str = "bookworm",
    arch: str = "amd64",
    include: Iterable[str] = BOOT_INCLUDE,
    mirror: str = MIRROR,
    timeout: float = 3600,
) -> Path:
    """A .tar.zst of a debootstrapped root, built once (flock against concurrent builders;
    the tarball appears by rename, so a crash never leaves half of one)."""
    include = sorted(set(include))
    tarball = cache / f"{suite}-{arch}-{root_key(suite, arch, include, mirror)}.tar.zst"
    if tarball.exists():
        return tarball
    ensure_host_packages(HOST_PACKAGES)
    with open(cache / f".{tarball.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.exists():
            return tarball
        ensure_binfmt(arch)
        build = Path(tempfile.mkdtemp(prefix=f".build-{suite}-{arch}-", dir=cache))
        try:
            log = cache / f"{tarball.name}.debootstrap.log"
            cmd = ["debootstrap", "--variant=minbase", f"--arch={arch}",
                   "--include=" + ",".join(include), suite, str(build), mirror]  # fmt: skip
            logger.info("building %s (debootstrap, a few minutes once)", tarball.name)
            with open(log, "w") as out:
                proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
            if proc.returncode:
                raise NspawnError(f"debootstrap failed ({proc.returncode}), see {log}")
            # mkdtemp made it 0700 and tar records "./": a 0700 / keeps dbus from starting
            os.chmod(build, 0o755)
            _slim(build)
            part = tarball.with_suffix(".part")
            _tar_create(build, part, timeout)
            os.replace(part, tarball)
        finally:
            remove_tree(build)
    return tarball


def _slim(root: Path) -> None:
    """Drop the .debs and apt lists (a test never needs them); a neutral hostname (debootstrap
    copies the host's)."""
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (root / sub).glob("*"):
            if path.is_file() and path.name != "lock":
                path.unlink()
    for path in (root / "var/cache/apt").glob("*.bin"):
        path.unlink()
    (root / "etc/hostname").write_text("debian\n")


def _tar_create(src: Path, out: Path, timeout: float) -> None:
    with open(out, "wb") as fh:
        tar = subprocess.Popen(["tar", "-C", str(src), *TAR_FLAGS, "-cf", "-", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        zstd = subprocess.run(["zstd", "-T0", "-3", "-q", "-c"], stdin=tar.stdout, stdout=fh, timeout=timeout)
        tar.stdout.close()
        if tar.wait(timeout=timeout) or zstd.returncode:
            raise NspawnError(f"tar of {src} failed")


def unpack(tarball: Path, dest: Path, timeout: float = 600) -> Path:
    """Unpack `tarball` into the new or empty folder `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise NspawnError(f"{dest} is not empty")
    zstd = subprocess.Popen(["zstd", "-dc", str(tarball)], stdout=subprocess.PIPE)
    assert zstd.stdout is not None
    tar = subprocess.run(
        ["tar", "-C", str(dest), *TAR_FLAGS, "-xpf", "-"], stdin=zstd.stdout, timeout=timeout
    )
    zstd.stdout.close()
    if zstd.wait(timeout=timeout) or tar.returncode:
        raise NspawnError(f"unpacking {tarball} failed")
    os.chmod(dest, 0o755)
    return dest


def unpacked(tarball: Path) -> Path:
    """The tarball unpacked once beside it (the read-only lower layer of `overlay_root`)."""
    dest = tarball.with_name(tarball.name.split(".tar")[0] + ".lower")
    if (dest / "usr/lib/os-release").exists():
        return dest
    with open(tarball.with_name(f".{tarball.name}.unpack.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / "usr/lib/os-release").exists():
            return dest
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
        try:
            unpack(tarball, tmp)
            os.replace(tmp, dest)
        finally:
            remove_tree(tmp)
    return dest


@contextlib.contextmanager
def overlay_root(lower: Path, work: Path) -> Iterator[Path]:
    """A writable root at work/merged over `lower` (mounts in ~0.05 s; writes go to work/upper)."""
    for sub in ("upper", "work", "merged"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    merged = work / "merged"
    options = f"lowerdir={lower},upperdir={work / 'upper'},workdir={work / 'work'}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], timeout=30, check=True)
    try:
        os.chmod(merged, 0o755)
        yield merged
    finally:
        umount_below(merged)


def remove_tree(path: Path) -> None:
    """rm -rf a root, refusing to go through a mount (rm is much faster than shutil.rmtree here)."""
    if path.exists():
        umount_below(path)
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], timeout=600, check=True)


def mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve())
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            out.append(point)
    return out


def umount_below(path: Path, keep: Iterable[str] = ()) -> None:
    kept = set(keep)
    for point in sorted(set(mounts_below(path)) - kept, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], timeout=30, check=False)
    left = set(mounts_below(path)) - kept
    if left:
        raise NspawnError(f"still mounted below {path}: {sorted(left)}")


def install_host_ca(root: Path) -> None:
    """The host's CA bundle, for pip over HTTPS inside (outbound TLS may be intercepted by a CA
    that only the host trusts)."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.exists():
        (root / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
        shutil.copy2(bundle, root / "etc/ssl/certs/ca-certificates.crt")


# -- wheelhouse ---------------------------------------------------------------------------------


def locked_requirements(lock_text: str, python: str, machine: str) -> list[str]:
    """The lock's entries (name==version --hash ...) whose markers hold on CPython `python`
    (e.g. "3.11.2") on Linux `machine`: pip evaluates markers for the running interpreter only,
    so the host can download for another Python or machine with this list and --no-deps."""
    from packaging.markers import Marker

    env = {
        "python_version": ".".join(python.split(".")[:2]),
        "python_full_version": python,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": machine,
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    out = []
    for line in re.sub(r"\\\n\s*", " ", lock_text).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        spec, _, hashes = line.partition(" --hash")
        name, _, marker = spec.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate(env):
            continue
        out.append(f"{name.strip()} --hash{hashes}")
    return out


def download_wheelhouse(lock: Path, dest: Path, python: str, machine: str = "x86_64") -> Path:
    """Wheels of every locked dependency for CPython `python` on Linux `machine`, checked against
    the lock's hashes; built once per (lock, python, machine) into `dest` (renamed into place)."""
    if (dest / ".complete").exists():
        return dest
    tag = "".join(python.split(".")[:2])
    with tempfile.TemporaryDirectory(prefix=".wheels-", dir=dest.parent) as tmp:
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text("\n".join(locked_requirements(lock.read_text(), python, machine)) + "\n")
        platforms = [arg for p in PIP_PLATFORMS[machine] for arg in ("--platform", p)]
        cmd = [
            sys.executable, "-m", "pip", "download", "-q",
            "--disable-pip-version-check", "--no-deps", "--only-binary=:all:", "--require-hashes",
            "--implementation", "cp", "--python-version", python, "--abi", f"cp{tag}", "--abi", "abi3",
            "--abi", "none", *platforms, "--platform", "any", "-d", str(Path(tmp) / "wheels"), "-r", str(reqs),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        if proc.returncode:
            raise NspawnError(f"pip download for CPython {python} {machine} failed: {proc.stderr[-3000:]}")
        (Path(tmp) / "wheels" / ".complete").write_text(lock.read_text())
        remove_tree(dest)
        os.replace(Path(tmp) / "wheels", dest)
    return dest


# -- processes ----------------------------------------------------------------------------------


def run_killing_group(
    cmd: Sequence[str], timeout: float, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """subprocess.run, but on timeout the whole process group is killed: nsenter forks into the
    PID namespace, and killing nsenter alone would leave the command running inside."""
    proc = subprocess.Popen(
        list(cmd),
        env=env or CLEAN_ENV,
        text=True,
        start_new_session=True,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


def _checked(
    proc: subprocess.CompletedProcess[str], cmd: object, check: bool
) -> subprocess.CompletedProcess[str]:
    if check and proc.returncode:
        raise NspawnError(
            f"{cmd} exited {proc.returncode}\nstdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}"
        )
    return proc


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
    return out


def _pids_in_namespace(ns: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns/pid") == ns:
                    out.append(int(entry.name))
    return out


# -- chroot (foreign arches) --------------------------------------------------------------------


class Chroot:
    """Commands in a root without booting it: chroot with /proc (and /dev) only. Not /sys: under
    qemu-user, onnxruntime's cpuinfo crashes reading the host's /sys (and nspawn always mounts
    parts of it, so it is no alternative for arm64 here)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._mounted: list[Path] = []
        self._premounts: set[str] = set()

    def __enter__(self) -> Chroot:
        self._premounts = set(mounts_below(self.root))  # e.g. the overlay mounted on the root itself
        try:
            self._mount(self.root / "proc", "-t", "proc", "proc")
            self._mount(self.root / "dev", "--rbind", "/dev")
            subprocess.run(["mount", "--make-rslave", str(self.root / "dev")], timeout=30, check=True)
            resolv = self.root / "etc/resolv.conf"
            if resolv.is_symlink():
                resolv.unlink()
            shutil.copy2("/etc/resolv.conf", resolv)
            install_host_ca(self.root)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _mount(self, dest: Path, *args: str) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(dest)], timeout=30, check=True)
        self._mounted.append(dest)

    def run(
        self,
        cmd: Sequence[str] | str,
        timeout: float = 600,
        check: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        proc = run_killing_group(
            ["chroot", str(self.root), *argv], timeout, env=dict(CLEAN_ENV, **(env or {}))
        )
        return _checked(proc, cmd, check)

    def __exit__(self, *exc: object) -> None:
        for entry in Path("/proc").iterdir():  # leftovers whose root is ours
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and os.readlink(entry / "root") == str(self.root):
                    os.kill(int(entry.name), signal.SIGKILL)
        for dest in reversed(self._mounted):
            subprocess.run(["umount", "-R", "-l", str(dest)], timeout=30, check=False)
        self._mounted.clear()
        left = set(mounts_below(self.root)) - self._premounts
        if left:
            raise NspawnError(f"mounts left below {self.root}: {sorted(left)}")


# -- booted container ---------------------------------------------------------------------------


class Container:
    """A root booted with systemd as PID 1 by systemd-nspawn, unregistered (no machined), with
    only a loopback network unless `network` is true."""

    def __init__(
        self, root: Path, log_dir: Path, *, network: bool = False, boot_timeout: float = 120
    ) -> None:
        self.root = root.resolve()
        self.log_dir = log_dir
        self.name = f"edge-{uuid.uuid4().hex[:8]}"
        self.network = network
        self.boot_timeout = boot_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None  # host PID of the container's PID 1
        self.boots = 0
        self._pidns: str | None = None
        self._premounts: set[str] | None = None

    def __enter__(self) -> Container:
        try:
            self.boot()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def boot(self) -> None:
        """Start systemd-nspawn -b and wait until the system is running (or degraded)."""
        if self.proc is not None and self.proc.poll() is None:
            raise NspawnError("already booted")
        self.boots += 1
        if self._premounts is None:  # e.g. the overlay mounted on the root itself
            self._premounts = set(mounts_below(self.root))
        cmd = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "-b", "-D", str(self.root),
               f"--machine={self.name}", "--console=passive", "--link-journal=no",
               "--resolv-conf=copy-host", "--timezone=off"]  # fmt: skip
        if self.network:
            install_host_ca(self.root)
        else:
            cmd.append("--private-network")
        with open(self.log_dir / f"{self.name}.boot{self.boots}.log", "w") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=CLEAN_ENV,
            )  # fmt: skip
        deadline = time.monotonic() + self.boot_timeout
        self._find_leader(deadline)
        self._wait_running(deadline)

    def _find_leader(self, deadline: float) -> None:
        assert self.proc is not None
        ours = os.readlink("/proc/self/ns/pid")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NspawnError(f"systemd-nspawn exited {self.proc.returncode}: {self.boot_log()[-2000:]}")
            for pid in _children(self.proc.pid):
                with contextlib.suppress(OSError):
                    ns = os.readlink(f"/proc/{pid}/ns/pid")
                    if ns != ours and Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        self.leader, self._pidns = pid, ns
                        return
            time.sleep(0.05)
        raise NspawnError(f"the container's PID 1 did not appear: {self.boot_log()[-2000:]}")

    def _wait_running(self, deadline: float) -> None:
        while (left := deadline - time.monotonic()) > 0:
            try:
                state = self.run(["systemctl", "is-system-running", "--wait"], timeout=left).stdout.strip()
            except subprocess.TimeoutExpired:
                break
            if state in ("running", "degraded"):
                return
            # "offline": systemctl reached no manager yet (seen once on a loaded machine, early in
            # the boot): wait like for "starting", until the deadline
            if state not in ("", "initializing", "starting", "offline"):
                raise NspawnError(f"system state {state!r}: {self.run(['systemctl', '--failed']).stdout}")
            time.sleep(0.2)  # the bus is not up in the first instants
        raise NspawnError(f"the container did not reach 'running': {self.boot_log()[-2000:]}")

    def boot_log(self) -> str:
        path = self.log_dir / f"{self.name}.boot{self.boots}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def run(
        self,
        cmd: Sequence[str] | str,
        timeout: float = 120,
        check: bool = False,
        user: str | None = None,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` (a list, or a str for sh -c) in the container, as root or as `user` (with
        XDG_RUNTIME_DIR set, so `systemctl --user` reaches the user's manager)."""
        if not self.leader or self.proc is None or self.proc.poll() is not None:
            raise NspawnError("the container is not running")
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        assigns = [f"{k}={v}" for k, v in dict(CLEAN_ENV, **(env or {})).items()]
        if user:
            entry = self.run(["getent", "passwd", user], check=True).stdout.strip().split(":")
            assigns += [f"XDG_RUNTIME_DIR=/run/user/{entry[2]}", f"USER={user}", f"HOME={entry[5]}"]
            inner = ["runuser", "-u", user, "--", "env", "-i", *assigns, *argv]
        else:
            inner = ["env", "-i", *assigns, *argv]
        full = ["nsenter", "-t", str(self.leader), "-a", "--root", "--wd", *inner]
        return _checked(run_killing_group(full, timeout, input), cmd, check)

    def poweroff(self, timeout: float = 90) -> None:
        """`systemctl poweroff` inside, then wait for nspawn to exit (killed after `timeout`)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired, NspawnError):
            self.run(["systemctl", "poweroff", "--no-block"], timeout=15)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(timeout=5)
            raise NspawnError(f"the container did not power off within {timeout} s (killed)") from None
        self._reap()

    def reboot(self) -> None:
        self.poweroff()
        self.boot()

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to nspawn (a clean halt), SIGKILL to PID 1 and nspawn's group after `timeout`;
        then no process of the container and no mount it added may remain. Idempotent."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                if self.leader:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.leader, signal.SIGKILL)  # takes the PID namespace with it
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        self._reap()

    def _reap(self) -> None:
        deadline = time.monotonic() + 10
        while self._pidns and (left := _pids_in_namespace(self._pidns)) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        if self._pidns and _pids_in_namespace(self._pidns):
            raise NspawnError(f"processes left in the container: {_pids_in_namespace(self._pidns)}")
        umount_below(self.root, keep=self._premounts or ())
        self.leader = None
        self._pidns = None
