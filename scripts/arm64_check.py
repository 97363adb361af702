#!/usr/bin/env python3
"""arm64 under emulation (issue 16 item 4): does the device install read like x86 on an ARM board?

On an x86-64 Debian host, as root, with the project's venv and built models (scripts/setup.sh):

    sudo .venv/bin/python scripts/arm64_check.py [--count 2] [--json report.json]

1. an arm64 Debian 12 root (debootstrap under qemu-user-static, built once and cached as a tarball
   in ~/.cache/edge-ocr-tests, like the container tests'), entered with chroot (/proc only: with
   /sys, onnxruntime's cpuinfo crashes under emulation);
2. `packaging/install.sh --extras onnx --models-from ...` in it, offline: the locked aarch64
   wheels of the device extras are downloaded here (hashes checked) and the project's wheel is
   built here; the models are the ONNX sets built on this x86 machine, plus the ARM .nb sets;
3. `edge-ocr synth` makes a few labels here; `edge-ocr ocr --engine onnx --models FAMILY --json`
   reads them here and in the arm64 root, for each ONNX family: the texts must be equal;
4. the agent in the root reads a watched folder (`edge-ocr run --once`, the config install.sh
   wrote), and `edge-ocr models list` there says why the ARM .nb sets are inactive.

Emulation is some 200x slower than native: few images. Exit status 0 when everything matched.
Not installed with the package; its results are in docs/BENCHMARKS.md ("arm64 under emulation").
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "packaging" / "lock" / "onnx.txt"
PYTHON = "3.11.2"  # Debian 12's python3 (arm64 too)
SRC = Path("/opt/edge-ocr-src")  # in the root


def load_nspawn():
    """The roots and chroot helpers the container tests use (tests/ops/nspawn.py), loaded by path:
    this script is not part of the package and tests/ is not importable."""
    spec = importlib.util.spec_from_file_location("nspawn", ROOT / "tests" / "ops" / "nspawn.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["nspawn"] = module
    spec.loader.exec_module(module)
    return module


def models_for_arm(dest: Path, models_root: Path) -> list[str]:
    """The ONNX sets built here (portable) and the ARM .nb sets, with a manifest of only those."""
    manifest = json.loads((models_root / "manifest.json").read_text())
    keep = {
        name: s
        for name, s in manifest["sets"].items()
        if (s["engine"] == "onnx" and s["active"]) or (s["engine"] == "lite" and s["target"] == "arm")
    }
    manifest["sets"] = keep
    for s in keep.values():
        for f in s["files"].values():
            (dest / f["path"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(models_root / f["path"], dest / f["path"])
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return sorted({s["family"] for s in keep.values() if s["engine"] == "onnx"})


def texts_of(json_lines: str) -> dict[str, str]:
    """image name -> text, from `edge-ocr ocr --json` output."""
    out = {}
    for line in json_lines.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            out[Path(rec["image"]).name] = (
                rec["data"]["text"] if rec["status"] == "success" else rec["status"]
            )
    return out


class Step:
    """Times a step and prints it."""

    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> Step:
        print(f"-- {self.name}", flush=True)
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timings[self.name] = round(time.monotonic() - self.started, 1)
        print(f"   {self.timings[self.name]} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2, help="generated labels (default 2)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--json", type=Path, help="write the result here too")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (debootstrap, chroot, binfmt)")
    nspawn = load_nspawn()
    from edge_ocr.ocr.modelstore import ModelStore

    edge_ocr = Path(sys.executable).with_name("edge-ocr")
    store = ModelStore()
    if not store.exists():
        parser.error(f"no models in {store.root}: run scripts/setup.sh first")
    timings: dict[str, float] = {}
    report: dict[str, object] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.release()}",
        "timings_s": timings,
    }
    cache = nspawn.cache_dir()
    work = Path(tempfile.mkdtemp(prefix="arm64-check-", dir=cache))
    ok = True
    try:
        with Step(timings, "arm64 root (debootstrap once, cached)"):
            nspawn.ensure_binfmt("arm64")
            lower = nspawn.unpacked(nspawn.ensure_root(cache, "bookworm", "arm64", nspawn.CHROOT_INCLUDE))
        with Step(timings, "host: aarch64 wheelhouse, project wheel, models, labels"):
            digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:10]
            wheels = nspawn.download_wheelhouse(
                LOCK, cache / f"wheels-cp311-aarch64-{digest}", PYTHON, "aarch64"
            )
            kit = work / "kit"
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(kit / "dist"), str(ROOT)],
                check=True, timeout=600,
            )  # fmt: skip
            families = models_for_arm(kit / "models", store.root)
            subprocess.run(
                [str(edge_ocr), "synth", str(kit / "labels"), "--count", str(args.count), "--seed", str(args.seed)],
                check=True, timeout=300, capture_output=True,
            )  # fmt: skip
        labels = sorted(p.name for p in (kit / "labels" / "images").glob("*.png"))
        x86: dict[str, dict[str, str]] = {}
        with Step(timings, "x86: edge-ocr ocr per family"):
            for family in families:
                proc = subprocess.run(
                    [str(edge_ocr), "ocr", "--engine", "onnx", "--models", family, "--json",
                     str(kit / "labels" / "images")],
                    check=True, timeout=600, capture_output=True, text=True,
                )  # fmt: skip
                x86[family] = texts_of(proc.stdout)
        with nspawn.overlay_root(lower, work / "overlay") as root, nspawn.Chroot(root) as arm:
            src = root / SRC.relative_to("/")
            shutil.copytree(ROOT / "packaging", src / "packaging")
            shutil.copytree(ROOT / "scripts", src / "scripts")
            for name, path in (("wheelhouse", wheels), ("dist", kit / "dist"), ("models", kit / "models"),
                               ("labels", kit / "labels" / "images")):  # fmt: skip
                shutil.copytree(path, src / name)
            wheel = next((src / "dist").glob("edge_ocr-*.whl")).name
            report["machine_in_root"] = arm.run(["uname", "-m"], check=True).stdout.strip()
            with Step(timings, "arm64: install.sh --extras onnx --models-from (offline)"):
                proc = arm.run(
                    [str(SRC / "packaging/install.sh"), "--extras", "onnx", "--source", str(SRC / "dist" / wheel),
                     "--models-from", str(SRC / "models"), "--no-service"],
                    env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(SRC / "wheelhouse")}, timeout=3600,
                )  # fmt: skip
                print(proc.stderr[-3000:])
                if proc.returncode:
                    raise SystemExit(f"install.sh failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
            exe = "/opt/edge-ocr/venv/bin/edge-ocr"
            env = {
                "EDGE_OCR_MODELS_DIR": "/var/lib/edge-ocr/models",
                "EDGE_OCR_DATA_DIR": "/var/lib/edge-ocr",
            }
            report["versions"] = arm.run(
                ["/opt/edge-ocr/venv/bin/python", "-c",
                 "import platform, numpy, cv2, onnxruntime; print(platform.python_version(), "
                 "'numpy', numpy.__version__, 'opencv', cv2.__version__, 'onnxruntime', onnxruntime.__version__)"],
                check=True, timeout=600,
            ).stdout.strip()  # fmt: skip
            with Step(timings, "arm64: edge-ocr models list"):
                listing = arm.run([exe, "models", "list"], env=env, check=True, timeout=600).stdout
                print(listing)
                report["models_list"] = listing
            arm_texts: dict[str, dict[str, str]] = {}
            matches: dict[str, bool] = {}
            for family in families:
                with Step(timings, f"arm64: edge-ocr ocr --models {family} ({len(labels)} labels)"):
                    proc = arm.run(
                        [exe, "ocr", "--engine", "onnx", "--models", family, "--json", str(SRC / "labels")],
                        env=env, check=True, timeout=3600,
                    )  # fmt: skip
                arm_texts[family] = texts_of(proc.stdout)
                matches[family] = arm_texts[family] == x86[family] and len(x86[family]) == len(labels)
                print(f"   {family}: {'same text as x86' if matches[family] else 'DIFFERS'}")
                if not matches[family]:
                    print(f"   x86:   {x86[family]}\n   arm64: {arm_texts[family]}")
            report["families"] = {
                f: {"match": matches[f], "x86": x86[f], "arm64": arm_texts[f]} for f in families
            }
            with Step(timings, "arm64: the agent reads a watched folder (run --once)"):
                inbox = root / "srv/edge-ocr/in"
                for name in labels:
                    shutil.copyfile(src / "labels" / name, inbox / name)
                arm.run(["chown", "-R", "edge-ocr:edge-ocr", "/srv/edge-ocr/in"], check=True)
                proc = arm.run(
                    ["runuser", "-u", "edge-ocr", "--", "env", *(f"{k}={v}" for k, v in env.items()),
                     "EDGE_OCR_DB=/var/lib/edge-ocr/edge-ocr.db", exe, "-v", "run", "--once",
                     "--config", "/etc/edge-ocr/edge-ocr.toml"],
                    timeout=3600,
                )  # fmt: skip
                print(proc.stderr[-2000:])
                conn = sqlite3.connect(root / "var/lib/edge-ocr/edge-ocr.db")
                rows = conn.execute(
                    "SELECT c.source_path, r.engine, r.model, r.text FROM captures c "
                    "JOIN results r ON r.capture_id = c.id ORDER BY c.source_path"
                ).fetchall()
                conn.close()
            agent = {Path(path).name: text for path, _, _, text in rows}
            engines = sorted({f"{engine} {model}" for _, engine, model, _ in rows})
            default = store.default_family()
            report["agent"] = {"read": agent, "engines": engines, "exit": proc.returncode}
            agent_ok = proc.returncode == 0 and agent == x86.get(default, {})
            print(f"   agent: {len(agent)}/{len(labels)} files read with {engines}; "
                  f"{'same text as x86 ' + default if agent_ok else 'DIFFERS from x86 ' + default}")  # fmt: skip
            ok = all(matches.values()) and agent_ok
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            nspawn.remove_tree(work)
    report["ok"] = ok
    print(json.dumps({k: v for k, v in report.items() if k != "models_list"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print("ARM64 CHECK " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
