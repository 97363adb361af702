"""The SAM template lints clean and matches the code; the Lambda build step lays out the package."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVERLESS = REPO / "packaging" / "serverless"
TEMPLATE = SERVERLESS / "template.yaml"


@pytest.fixture(scope="module")
def template() -> dict:
    from cfnlint.decode import decode

    tpl, matches = decode(str(TEMPLATE))
    assert not matches
    return tpl


@pytest.fixture(scope="module")
def build_module():
    spec = importlib.util.spec_from_file_location("build_lambda", SERVERLESS / "build_lambda.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cfn_lint_passes():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    out = subprocess.run([str(cfn_lint), "--version"], capture_output=True, text=True, check=True)
    version = tuple(int(x) for x in out.stdout.split()[-1].split(".")[:2])
    assert version >= (1, 58)
    res = subprocess.run([str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_template_matches_the_code_and_the_rules(template, build_module):
    res = template["Resources"]
    fn = res["EndpointFunction"]["Properties"]
    runtime = template["Globals"]["Function"]["Runtime"]
    assert runtime == f"python{build_module.RUNTIME_PYTHON}"
    module, func = fn["Handler"].rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), func))
    assert fn["MemorySize"] >= 2048 and 30 <= fn["Timeout"] <= 900
    env = fn["Environment"]["Variables"]
    assert env["EDGE_OCR_MODELS_DIR"] == f"/var/task/{build_module.MODELS_SUBDIR}"
    assert env["EDGE_OCR_OCR_ENGINE"] == "onnx" and env["EDGE_OCR_BUCKET"] and env["EDGE_OCR_TABLE"]
    assert "EDGE_OCR_NONCE_STORE" not in env  # nonces live in the table (settings refuse the old variable)
    assert fn["CodeUri"] == "build/lambda/"
    # encryption at rest, logs kept 90 days
    assert res["DataBucket"]["Properties"]["BucketEncryption"]
    assert res["IndexTable"]["Properties"]["SSESpecification"]["SSEEnabled"] is True
    assert res["IndexTable"]["Properties"]["TimeToLiveSpecification"]["AttributeName"] == "expires_at"
    logs = [r for r in res.values() if r["Type"] == "AWS::Logs::LogGroup"]
    assert logs and all(r["Properties"]["RetentionInDays"] == 90 for r in logs)
    # least privilege: no wildcard actions or resources
    for stmt in fn["Policies"][0]["Statement"]:
        assert all("*" not in a for a in stmt["Action"])
        assert stmt["Resource"] != "*"
    events = fn["Events"]
    assert events["Api"]["Type"] == "HttpApi"
    s3_suffixes = {
        rule["Value"]
        for e in events.values()
        if e["Type"] == "S3"
        for rule in e["Properties"]["Filter"]["S3Key"]["Rules"]
        if rule["Name"] == "suffix"
    }
    from edge_ocr_sync.endpoint.layout import IMAGE_TYPES, RESULT_SUFFIX

    assert s3_suffixes == set(IMAGE_TYPES.values())
    assert not RESULT_SUFFIX.endswith(tuple(s3_suffixes))  # results never re-trigger OCR


def test_build_step_lays_out_the_package(tmp_path, build_module):
    models = tmp_path / "models"
    (models / "onnx").mkdir(parents=True)
    for name in ("det.onnx", "rec.onnx", "cls.onnx", "keys.txt"):
        (models / "onnx" / name).write_bytes(name.encode())
    files = {
        r: {"path": f"onnx/{n}", "sha256": ""}
        for r, n in (("det", "det.onnx"), ("rec", "rec.onnx"), ("cls", "cls.onnx"), ("dict", "keys.txt"))
    }
    manifest = {
        "schema": 1,
        "sets": {
            "onnx/fp32": {"engine": "onnx", "variant": "fp32", "active": True, "files": files},
            "paddle/fp32": {"engine": "paddle", "variant": "fp32", "active": True, "files": files},
        },
    }
    (models / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "build"
    assert build_module.main(["--models-dir", str(models), "--out", str(out), "--skip-deps"]) == 0
    pkg = out / "lambda"
    assert (pkg / "edge_ocr_sync" / "endpoint" / "lambda_handler.py").is_file()
    assert (pkg / "edge_ocr" / "ocr" / "reader.py").is_file()
    assert (
        pkg / "edge_ocr_sync" / "endpoint" / "openapi.json"
    ).is_file()  # served and used to validate bodies
    assert not (pkg / "edge_ocr" / "synth").exists()
    assert not list(pkg.rglob("__pycache__"))
    shipped = json.loads((pkg / "model-sets" / "manifest.json").read_text())
    assert list(shipped["sets"]) == ["onnx/fp32"]  # never paddle
    assert (
        pkg / "model-sets" / shipped["sets"]["onnx/fp32"]["files"]["det"]["path"]
    ).read_bytes() == b"det.onnx"
    # the shipped model store resolves as the function will see it
    from edge_ocr.ocr.modelstore import ModelStore

    resolved = ModelStore(pkg / "model-sets").resolve("onnx", "fp32", verify=True)
    assert resolved.det.name == "det.onnx"
    with zipfile.ZipFile(out / "edge-ocr-lambda.zip") as zf:
        names = zf.namelist()
    assert "edge_ocr_sync/endpoint/lambda_handler.py" in names and "model-sets/manifest.json" in names


def test_build_refuses_a_models_dir_without_an_active_onnx_set(tmp_path, build_module):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.json").write_text(json.dumps({"schema": 1, "sets": {}}))
    with pytest.raises(SystemExit, match="no active onnx/fp32"):
        build_module.main(["--models-dir", str(tmp_path / "m"), "--out", str(tmp_path / "b"), "--skip-deps"])


def _build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SERVERLESS / "build_lambda.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_an_offline_build_without_wheels_says_what_is_missing_and_keeps_the_last_build(tmp_path):
    """Issue 21 item 8: `--offline` with no wheelhouse, an empty one, or one missing a wheel ends
    with one line naming what to do (no traceback), and the last build is still there."""
    out = tmp_path / "build"
    (out / "lambda").mkdir(parents=True)
    (out / "lambda" / "last-build").write_text("kept")
    empty = tmp_path / "wheelhouse"
    empty.mkdir()
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "nothing_useful-1.0-py3-none-any.whl").write_bytes(b"not a wheel")
    cases = [
        ((), "add --wheelhouse DIR"),
        (("--wheelhouse", str(empty)), f"the wheelhouse {empty} has no wheels"),
        (("--wheelhouse", str(tmp_path / "missing")), "has no wheels"),
        (
            ("--wheelhouse", str(partial)),
            f"pip could not install requirements-lambda.txt from the wheelhouse {partial}",
        ),
    ]
    for extra, says in cases:
        proc = _build("--offline", "--out", str(out), "--no-zip", *extra)
        assert proc.returncode != 0, proc.stdout
        assert says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        if "pip could not" not in says:
            assert (out / "lambda" / "last-build").read_text() == "kept"
    assert f"building in {out / 'lambda'}" in proc.stdout


def test_the_default_build_folder_is_git_ignored_and_is_the_template_code_uri(template):
    proc = subprocess.run(
        ["git", "check-ignore", "-q", str(SERVERLESS / "build" / "lambda" / "x.py")], cwd=REPO, check=False
    )
    assert proc.returncode == 0, "packaging/serverless/build/ must stay out of git"
    uri = template["Resources"]["EndpointFunction"]["Properties"]["CodeUri"]
    assert uri == "build/lambda/"


def test_the_deploy_guide_lists_the_rights_the_template_grants(template):
    """Issue 21 item 8: docs/DEPLOY.md left out the role's rights on `results/`, and did not say
    that uploads to an on-premises S3 service are read only by `endpoint reprocess`."""
    import re

    doc = (REPO / "docs" / "DEPLOY.md").read_text()
    rights = doc.split("an IAM role limited to", 1)[1].split("Bucket and table are retained", 1)[0]
    policy = template["Resources"]["EndpointFunction"]["Properties"]["Policies"][0]["Statement"]
    for statement in policy:
        for action in statement["Action"]:
            if not action.startswith("s3:") or action == "s3:ListBucket":
                continue
            for resource in statement["Resource"]:
                prefix = re.search(r"/([a-z]+)/\*$", str(resource["Fn::Sub"]))
                assert prefix, resource
                assert f"`{prefix.group(1)}/`" in rights, (
                    f"{action} on {prefix.group(1)}/ is not in DEPLOY.md"
                )
    on_prem = [line for line in doc.splitlines() if line.startswith("| on premises, S3-compatible")]
    assert on_prem and "`edge-ocr endpoint reprocess`" in on_prem[0]
