#!/usr/bin/env python3
"""Build the Lambda package for `template.yaml` (CodeUri: build/lambda/).

    python packaging/serverless/build_lambda.py [--models-dir DIR] [--wheelhouse DIR] [--offline]

Steps: install the runtime wheels for the function's runtime (python3.12, x86_64,
binary manylinux wheels up to glibc 2.28) into build/lambda/ with `pip install --target`; copy the `edge_ocr` and `sync`
sources; copy the active onnx/fp32 model set from the models directory (with a manifest that
lists only it); prune caches and test folders; check the unzipped size against Lambda's 250 MB
limit; zip it to build/edge-ocr-lambda.zip; optionally import it and run OCR with a local
python3.12 (`--check-python`).

Offline: `--download` once fills the wheelhouse from the package registry; later builds with
`--offline` install from it with no network (`pip --no-index --find-links`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RUNTIME_PYTHON = "3.12"  # template.yaml: Runtime: python3.12
# python3.12 on Lambda runs on Amazon Linux 2023 (glibc 2.34): manylinux_2_28 wheels run there
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux2014_x86_64")
LAMBDA_UNZIPPED_LIMIT = 262_144_000  # 250 MB, code and layers, unzipped
MODEL_SET = ("onnx", "fp32")
MODELS_SUBDIR = "model-sets"  # EDGE_OCR_MODELS_DIR=/var/task/model-sets in template.yaml (not an import name)
#: import name -> folder in the repository (the endpoint imports `edge_ocr_sync`, the repo's sync/)
SOURCE_PACKAGES = {"edge_ocr": "edge_ocr", "edge_ocr_sync": "sync"}
SOURCE_EXCLUDE = ("synth", "evaluation", "commands")  # edge_ocr subpackages the endpoint never imports
PRUNE_DIRS = {"__pycache__", "tests", "testing"}
# installed as dependencies but never imported by the endpoint (onnxruntime's optional tools)
PRUNE_PATHS = (
    "sympy",
    "mpmath",
    "google",
    "cv2/data",
    "numpy/f2py",
    "onnxruntime/transformers",
    "onnxruntime/quantization",
    "onnxruntime/tools",
    "onnxruntime/datasets",
    # Powertools: the endpoint uses Metrics only (the package's __init__ also loads logging,
    # tracing and utilities.jmespath_utils)
    "aws_lambda_powertools/event_handler",
    *(
        f"aws_lambda_powertools/utilities/{u}"
        for u in (
            "parser",
            "data_classes",
            "auth_alpha",
            "idempotency",
            "parameters",
            "kafka",
            "circuit_breaker",
            "feature_flags",
            "data_masking",
            "streaming",
            "batch",
            "validation",
        )
    ),
    "numpy/_core/include",  # C headers and the static npymath library: for building extensions only
    "numpy/_core/lib",
)
KEEP_TEST_DIRS = {"numpy/testing"}  # numpy imports numpy.testing lazily from some paths


def pip_platform_args() -> list[str]:
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    return [
        *platforms,
        "--implementation",
        "cp",
        "--python-version",
        RUNTIME_PYTHON,
        "--only-binary=:all:",
    ]


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def download(wheelhouse: Path, requirements: Path) -> None:
    wheelhouse.mkdir(parents=True, exist_ok=True)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-d",
            str(wheelhouse),
            *pip_platform_args(),
            "-r",
            str(requirements),
        ]
    )


def check_wheelhouse(wheelhouse: Path | None, offline: bool) -> None:
    """Before anything is removed or written: an offline build needs a wheelhouse with wheels."""
    if not offline:
        return
    if wheelhouse is None:
        raise SystemExit(
            "error: --offline installs only from a wheelhouse: add --wheelhouse DIR (fill it once, "
            "online, with --wheelhouse DIR --download)"
        )
    if not wheelhouse.is_dir() or not any(wheelhouse.glob("*.whl")):
        raise SystemExit(
            f"error: the wheelhouse {wheelhouse} has no wheels: fill it once, online, with "
            f"--wheelhouse {wheelhouse} --download"
        )


def install_deps(target: Path, requirements: Path, wheelhouse: Path | None, offline: bool) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--target", str(target), "--no-compile", "--upgrade"]
    # pip checks Requires-Python against the interpreter running it, not --python-version; the
    # cp312 platform tags and the pins in requirements-lambda.txt choose the wheels instead
    cmd += [*pip_platform_args(), "--ignore-requires-python"]
    if wheelhouse is not None:
        cmd += ["--find-links", str(wheelhouse)]
    if offline:
        cmd += ["--no-index"]
    cmd += ["-r", str(requirements)]
    try:
        run(cmd)
    except subprocess.CalledProcessError:
        where = f"the wheelhouse {wheelhouse}" if offline else "the package registry"
        raise SystemExit(
            f"error: pip could not install {requirements.name} from {where} (pip's message above names "
            "the missing wheel)"
            + (
                f"; fill the wheelhouse again, online, with --wheelhouse {wheelhouse} --download"
                if offline
                else ""
            )
        ) from None


def copy_sources(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
    for pkg, folder in SOURCE_PACKAGES.items():
        src = REPO / folder
        dest = target / pkg
        shutil.copytree(src, dest, ignore=ignore, dirs_exist_ok=True)
        if pkg == "edge_ocr":
            for sub in SOURCE_EXCLUDE:
                shutil.rmtree(dest / sub, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def copy_models(models_dir: Path, target: Path) -> dict:
    """Copy the active onnx/fp32 set and write a manifest that lists only it."""
    manifest_path = models_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except OSError as exc:
        raise SystemExit(
            f"no model manifest at {manifest_path}: build the models first ({exc.strerror})"
        ) from None
    engine, variant = MODEL_SET
    sets = [
        (sid, s)
        for sid, s in manifest.get("sets", {}).items()
        if s.get("engine") == engine and s.get("variant") == variant and s.get("target", "x86") == "x86"
    ]
    active = [(sid, s) for sid, s in sets if s.get("active")]
    if not active:
        raise SystemExit(f"{models_dir}: no active {engine}/{variant} model set; run `edge-ocr models build`")
    set_id, entry = active[0]
    out_dir = target / MODELS_SUBDIR
    files = {}
    for role in ("det", "rec", "cls", "dict"):
        src = models_dir / entry["files"][role]["path"]
        if not src.is_file():
            raise SystemExit(f"{src} is missing (model set {set_id}); rebuild the models")
        rel = f"{engine}/{variant}/{src.name}"
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
        files[role] = {"path": rel, "sha256": _sha256(dest)}
    new_entry = {k: v for k, v in entry.items() if k != "files"}
    new_entry.update({"files": files, "active": True})
    doc = {
        "schema": manifest.get("schema", 1),
        "built_at": manifest.get("built_at"),
        "sets": {set_id: new_entry},
    }
    (out_dir / "manifest.json").write_text(json.dumps(doc, indent=2))
    return doc


def prune(target: Path) -> int:
    removed = 0
    for path in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        rel = path.relative_to(target).as_posix()
        if path.is_dir() and path.name in PRUNE_DIRS and rel not in KEEP_TEST_DIRS:
            if rel.startswith(tuple(SOURCE_PACKAGES)) and path.name != "__pycache__":
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        elif path.is_file() and path.suffix in (".pyc", ".pyo"):
            path.unlink()
            removed += 1
    for extra in ("bin", *PRUNE_PATHS):  # "bin": console scripts pip installs for the target platform
        if (target / extra).exists():
            shutil.rmtree(target / extra)
            removed += 1
    for stub in target.rglob("*.pyi"):
        stub.unlink()
    return removed


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def make_zip(target: Path, zip_path: Path) -> int:
    zip_path.unlink(missing_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for p in sorted(target.rglob("*")):
            if p.is_file():
                info = zipfile.ZipInfo(p.relative_to(target).as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = (0o755 if os.access(p, os.X_OK) else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with p.open("rb") as fh:
                    zf.writestr(info, fh.read())
    return zip_path.stat().st_size


SMOKE = r"""
import json, os, sys
import numpy as np
import cv2
from edge_ocr_sync.endpoint import lambda_handler  # imports the handler as Lambda does
from edge_ocr_sync.endpoint.ocr_runner import OcrRunner
img = np.full((64, 360, 3), 255, np.uint8)
cv2.putText(img, "LOT 4711", (10, 45), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (0, 0, 0), 3)
png = cv2.imencode(".png", img)[1].tobytes()
result = OcrRunner("onnx").run(png, "smoke.png")  # decode (Pillow) + ONNX pipeline, as /v1/ocr does
from edge_ocr_sync.endpoint.schema import BodyError, parse_json, validate  # jsonschema, as every body is checked
try:
    validate(parse_json(b'{"sha256": "00", "size": 1, "content_type": ["image/png"]}'), "UploadRequest", "upload")
    raise SystemExit("an invalid upload request passed the schema")
except BodyError as exc:
    refused = str(exc)
from edge_ocr_sync.endpoint.metrics import RequestRecord, emit_emf  # Powertools, pruned as shipped
emit_emf(RequestRecord("/v1/ocr", 200, 0.5, True), "smoke")
print(json.dumps({"python": sys.version.split()[0], "text": result.text, "confidence": result.confidence,
                  "refused": refused}))
"""


def smoke_test(python: str, target: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(target),
        "PYTHONNOUSERSITE": "1",
        "EDGE_OCR_MODELS_DIR": str(target / MODELS_SUBDIR),
        "HOME": os.environ.get("HOME", "/tmp"),
    }
    run_env = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
    print(f"+ {python} (package smoke test)", flush=True)
    out = subprocess.run(
        [python, "-c", SMOKE], env=run_env, check=True, capture_output=True, text=True, cwd="/"
    )
    print(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="built models (default: $EDGE_OCR_MODELS_DIR or per-user)",
    )
    ap.add_argument(
        "--out", type=Path, default=HERE / "build", help="output folder (default: packaging/serverless/build)"
    )
    ap.add_argument("--requirements", type=Path, default=HERE / "requirements-lambda.txt")
    ap.add_argument(
        "--wheelhouse", type=Path, default=None, help="local wheels (e.g. packaging/serverless/wheelhouse)"
    )
    ap.add_argument("--download", action="store_true", help="fill --wheelhouse from the registry, then build")
    ap.add_argument("--offline", action="store_true", help="install only from --wheelhouse (no network)")
    ap.add_argument("--skip-deps", action="store_true", help="sources and models only (tests)")
    ap.add_argument("--no-zip", action="store_true", help="leave the folder, skip the zip")
    ap.add_argument(
        "--check-python", default=None, help="a python3.12 to import the package and run OCR with"
    )
    args = ap.parse_args(argv)

    models_dir = args.models_dir
    if models_dir is None:
        sys.path.insert(0, str(REPO))
        from edge_ocr.ocr.modelstore import default_models_dir

        models_dir = default_models_dir()
    if args.download and args.wheelhouse is None:
        raise SystemExit("error: --download fills a wheelhouse: add --wheelhouse DIR")
    if not args.download:
        check_wheelhouse(args.wheelhouse, args.offline and not args.skip_deps)
    target = args.out / "lambda"
    # the default is git-ignored and is the template's CodeUri (docs/DEPLOY.md)
    print(f"building in {target} (--out to change; the template's CodeUri is {HERE / 'build' / 'lambda'})")
    if args.download:
        download(args.wheelhouse, args.requirements)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    if not args.skip_deps:
        install_deps(target, args.requirements, args.wheelhouse, args.offline)
    copy_sources(target)
    manifest = copy_models(models_dir, target)
    pruned = prune(target)
    size = tree_size(target)
    print(f"package: {target} ({size / 1e6:.1f} MB unzipped; {pruned} caches/test folders pruned)")
    print(f"model set: {', '.join(manifest['sets'])}")
    if size > LAMBDA_UNZIPPED_LIMIT:
        print(f"error: over Lambda's {LAMBDA_UNZIPPED_LIMIT / 1e6:.0f} MB unzipped limit", file=sys.stderr)
        return 1
    if not args.no_zip:
        zsize = make_zip(target, args.out / "edge-ocr-lambda.zip")
        print(f"zip: {args.out / 'edge-ocr-lambda.zip'} ({zsize / 1e6:.1f} MB)")
    if args.check_python:
        smoke_test(args.check_python, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
