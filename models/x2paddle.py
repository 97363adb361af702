"""PP-OCRv6 (and any family pinned as ONNX only) -> legacy Paddle programs, through X2Paddle.

Nobody publishes PP-OCRv6 in the legacy program format Paddle Lite's opt and our Paddle engine
read, so the build converts the pinned ONNX files (docs/ARCHITECTURE.md, "Model families"):

1. `edge_ocr_models.onnx_fix` freezes run-time reshape targets, drops Identity nodes, cleans names
   (project environment: onnx + onnxruntime);
2. X2Paddle 1.6.0's ``onnx2paddle`` writes ``model.pdmodel`` + ``model.pdiparams``. It needs
   paddlepaddle 2.6.2 (3.x cannot write a legacy program with ``gelu``: ``gelu(): argument must be
   Value, but got Variable``) and numpy < 2, so it runs as a child process in a tool virtualenv
   made once per models directory from `TOOL_REQUIREMENTS` (cached under ``.tools/``, keyed by
   the requirements and the Python version), with shims for onnx >= 1.16 (``onnx.mapping`` is gone)
   and its feedback call switched off.

The programs are cached under ``.derived/<family>/<key>/`` with ``recipe.json`` (inputs' sha256,
steps, tool versions); the key hashes everything they depend on, so a second build reuses them.
Failures raise `DerivedSetError` (a ModelError): the build records the reason and goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_ocr.errors import ModelError
from edge_ocr_models.manifest import utc_now
from edge_ocr_models.onnx_fix import fix_onnx
from edge_ocr_models.program import MODEL_FILE, PARAMS_FILE

logger = logging.getLogger(__name__)

#: the conversion tool environment, exact versions (verified on CPython 3.10, x86-64)
TOOL_REQUIREMENTS = (
    "paddlepaddle==2.6.2",
    "numpy==1.26.4",
    "x2paddle==1.6.0",
    "onnx==1.23.2",
    "protobuf==7.36.2",
    "sympy==1.14.0",
    "six==1.17.0",
    "requests==2.34.2",
)
#: bump when a change here or in models/onnx_fix.py changes the programs
CONVERT_VERSION = 1
TOOLS_DIR = ".tools"
DERIVED_DIR = ".derived"
PIP_TIMEOUT_S = 1800
CONVERT_TIMEOUT_S = 900
#: environment variable naming an existing tool env's python (tests, offline machines)
PYTHON_ENV = "EDGE_OCR_X2PADDLE_PYTHON"
#: a failed tool-environment creation is not retried by every build for this long (--force does)
RETRY_AFTER_S = 24 * 3600

Progress = Callable[[str], None]


class DerivedSetError(ModelError):
    """Converting ONNX into a Paddle program failed; the sets made from it stay inactive."""


_DRIVER = r"""
import json, sys, types
import numpy as np
import onnx, onnx.helper
try:
    import onnx.version  # noqa: x2paddle's version check needs it imported
except ImportError:
    pass
if not hasattr(onnx, "mapping"):  # removed in onnx 1.16; x2paddle 1.6.0 imports it
    m = types.ModuleType("onnx.mapping")
    m.TENSOR_TYPE_TO_NP_TYPE = {}
    for k in onnx.TensorProto.DataType.values():
        try:
            m.TENSOR_TYPE_TO_NP_TYPE[int(k)] = onnx.helper.tensor_dtype_to_np_dtype(k)
        except Exception:
            pass
    sys.modules["onnx.mapping"] = m
    onnx.mapping = m
# value_info with an undefined type (incomplete shape inference) would be a KeyError
onnx.mapping.TENSOR_TYPE_TO_NP_TYPE.setdefault(0, np.dtype("float32"))
from x2paddle.convert import onnx2paddle
import importlib.metadata as md
onnx2paddle(sys.argv[1], sys.argv[2], disable_feedback=True)
print("X2P_VERSIONS " + json.dumps({p: md.version(p) for p in ("paddlepaddle", "x2paddle", "onnx", "numpy", "protobuf")}))
"""

_PROBE = "import paddle, x2paddle, onnx, numpy; print(paddle.__version__, numpy.__version__)"


def requirements_key() -> str:
    blob = json.dumps({"req": TOOL_REQUIREMENTS, "python": sys.version_info[:2]})
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def tool_env_dir(models_dir: Path) -> Path:
    return Path(models_dir) / TOOLS_DIR / f"x2paddle-{requirements_key()}"


def _tail(text: str, n: int = 4) -> str:
    return " / ".join(line.strip() for line in text.strip().splitlines()[-n:])


def ensure_tool_env(models_dir: Path, progress: Progress, *, force: bool = False) -> Path:
    """The python of the conversion tool environment; made (once) when missing. A failure is
    remembered for a day (``<env>.failed``) so that an offline machine's builds stay fast."""
    override = os.environ.get(PYTHON_ENV)
    if override:
        return Path(override)
    env = tool_env_dir(models_dir)
    python = env / "bin" / "python"
    if (env / "ready.json").is_file() and python.exists():
        return python
    failed = env.with_name(env.name + ".failed")
    if not force and failed.is_file() and time.time() - failed.stat().st_mtime < RETRY_AFTER_S:
        raise DerivedSetError(
            f"{failed.read_text(encoding='utf-8').strip()} (remembered from {utc_now_of(failed)}; "
            "`edge-ocr models build --force` tries again now)"
        )
    try:
        return _create_tool_env(env, progress)
    except DerivedSetError as exc:
        failed.parent.mkdir(parents=True, exist_ok=True)
        failed.write_text(str(exc), encoding="utf-8")
        raise


def utc_now_of(path: Path) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))


def _create_tool_env(env: Path, progress: Progress) -> Path:
    python = env / "bin" / "python"
    tmp = env.with_name(env.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    progress(f"creating the X2Paddle tool environment in {env} (once per models directory)")
    t0 = time.perf_counter()
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(tmp)], capture_output=True, text=True, check=True, timeout=300
        )
        # the venv is moved after install, so call pip through the venv's python by path
        proc = subprocess.run(
            [str(tmp / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
             "--no-input", "--quiet", "--retries", "2", "--timeout", "30", *TOOL_REQUIREMENTS],
            capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise DerivedSetError(
                "cannot create the X2Paddle tool environment (pip install "
                f"{' '.join(TOOL_REQUIREMENTS)}): {_tail(proc.stderr or proc.stdout)}; "
                "it needs PyPI (network) once; rerun `edge-ocr models build` when online"
            )
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DerivedSetError(f"cannot create the X2Paddle tool environment: {exc}") from exc
    except DerivedSetError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(env, ignore_errors=True)
    os.replace(tmp, env)
    env.with_name(env.name + ".failed").unlink(missing_ok=True)
    # venv scripts hold absolute paths: rebuild them at the final place (pip already installed)
    subprocess.run([sys.executable, "-m", "venv", "--upgrade", str(env)], capture_output=True, check=False)
    probe = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        shutil.rmtree(env, ignore_errors=True)
        raise DerivedSetError(f"the X2Paddle tool environment does not import: {_tail(probe.stderr)}")
    freeze = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--disable-pip-version-check"], capture_output=True, text=True
    )
    (env / "ready.json").write_text(
        json.dumps(
            {
                "requirements": list(TOOL_REQUIREMENTS),
                "freeze": freeze.stdout.split(),
                "created_at": utc_now(),
                "seconds": round(time.perf_counter() - t0, 1),
            },
            indent=1,
        )
    )
    return python


def derived_key(onnx_sha256: dict[str, str]) -> str:
    return hashlib.sha256(
        json.dumps(
            {"convert": CONVERT_VERSION, "tools": TOOL_REQUIREMENTS, "onnx": onnx_sha256}, sort_keys=True
        ).encode()
    ).hexdigest()[:16]


def _run_x2paddle(python: Path, fixed: Path, out: Path, log: Path) -> dict[str, str]:
    env = {**os.environ, "GLOG_minloglevel": "2", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.run(
            [str(python), "-c", _DRIVER, str(fixed), str(out)],
            capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S, check=False, env=env, cwd=out.parent,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DerivedSetError(f"X2Paddle did not finish on {fixed.name}: {exc}") from exc
    log.write_text(proc.stdout + "\n" + proc.stderr)
    model = out / "inference_model" / "model.pdmodel"
    if proc.returncode != 0 or not model.is_file():
        raise DerivedSetError(
            f"X2Paddle failed on {fixed.name} (log {log}): {_tail(proc.stderr or proc.stdout)}"
        )
    versions = [ln for ln in proc.stdout.splitlines() if ln.startswith("X2P_VERSIONS ")]
    return json.loads(versions[-1].split(" ", 1)[1]) if versions else {}


def convert_family(
    models_dir: Path,
    family_id: str,
    onnx_files: dict[str, Path],
    onnx_sha256: dict[str, str],
    progress: Progress,
    *,
    force: bool = False,
) -> dict[str, tuple[Path, Path]]:
    """Legacy Paddle programs of the family's ONNX files: role -> (pdmodel, pdiparams), cached."""
    root = Path(models_dir) / DERIVED_DIR / family_id
    out = root / derived_key(onnx_sha256)
    result = {role: (out / role / MODEL_FILE, out / role / PARAMS_FILE) for role in onnx_files}
    if (out / "recipe.json").is_file() and all(m.is_file() and p.is_file() for m, p in result.values()):
        return result
    python = ensure_tool_env(models_dir, progress, force=force)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    recipe: dict[str, Any] = {
        "family": family_id,
        "convert_version": CONVERT_VERSION,
        "tool_requirements": list(TOOL_REQUIREMENTS),
        "tool_python": str(python),
        "steps": [
            "models/onnx_fix.py: drop Identity, identifier names, freeze run-time Reshape targets (ORT probes), DCE",
            "x2paddle 1.6.0 onnx2paddle (paddlepaddle 2.6.2, onnx.mapping shim, feedback off)",
        ],
        "roles": {},
    }
    try:
        for role, src in onnx_files.items():
            progress(f"converting {family_id} {role} ONNX into a Paddle program (X2Paddle)")
            t0 = time.perf_counter()
            work = tmp / "work" / role
            work.mkdir(parents=True)
            try:
                fix = fix_onnx(src, work / "fixed.onnx", role)
            except ModelError as exc:
                raise DerivedSetError(f"preparing {family_id} {role} for X2Paddle failed: {exc}") from exc
            versions = _run_x2paddle(
                python, work / "fixed.onnx", work / "x2paddle", tmp / f"x2paddle-{role}.log"
            )
            dst = tmp / role
            dst.mkdir()
            shutil.copyfile(work / "x2paddle" / "inference_model" / "model.pdmodel", dst / MODEL_FILE)
            shutil.copyfile(work / "x2paddle" / "inference_model" / "model.pdiparams", dst / PARAMS_FILE)
            recipe["roles"][role] = {
                "onnx": src.name,
                "onnx_sha256": onnx_sha256[role],
                "onnx_fix": fix.as_dict(),
                "tools": versions,
                "pdmodel_sha256": hashlib.sha256((dst / MODEL_FILE).read_bytes()).hexdigest(),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        shutil.rmtree(tmp / "work")
        recipe["converted_at"] = utc_now()
        (tmp / "recipe.json").write_text(json.dumps(recipe, indent=1))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # older conversions of this family are dropped
    for old in root.iterdir():
        if old != out and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return result


def derived_recipe(models_dir: Path, family_id: str, onnx_sha256: dict[str, str]) -> dict[str, Any] | None:
    path = Path(models_dir) / DERIVED_DIR / family_id / derived_key(onnx_sha256) / "recipe.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
