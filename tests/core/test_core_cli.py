"""The CLI as users run it: ocr, synth, eval, bench, engine auto."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_ocr.cli import build_parser, main
from edge_ocr.ocr.engines.auto import CACHE_NAME, choose_engine

README = Path(__file__).resolve().parents[2] / "README.md"


def test_synth_then_eval_rec_and_e2e(tmp_path, capsys, model_store):
    assert main(["synth", str(tmp_path / "set"), "--count", "3", "--seed", "11"]) == 0
    assert (tmp_path / "set" / "det_gt.txt").is_file()
    assert (tmp_path / "set" / "rec" / "rec_gt.txt").is_file()
    capsys.readouterr()
    assert (
        main(["eval", "--json", "--engine", "onnx", str(tmp_path / "set"), str(tmp_path / "set" / "rec")])
        == 0
    )
    e2e, rec = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert e2e["kind"] == "e2e" and e2e["n"] == 3
    assert e2e["metrics"]["det_hmean"] > 0.9
    assert set(e2e["metrics"]) >= {"det_precision", "det_recall", "det_hmean", "e2e_hmean", "word_f"}
    assert rec["kind"] == "rec" and rec["n"] >= 9
    assert rec["metrics"]["cer"] < 0.15
    assert e2e["engine"] == "onnx" and e2e["model"] == f"{model_store.default_family()}/onnx/fp32"


def test_ocr_in_worker_processes_keeps_order_and_text(tmp_path, capsys, model_store):
    """Several inputs are read by one process per core (--jobs): the output is the same, in the
    same order, as one process gives; a worker that cannot open its models is an error, not a hang."""
    main(["synth", str(tmp_path / "set"), "--count", "4", "--seed", "5"])
    images = tmp_path / "set" / "images"
    capsys.readouterr()
    runs = []
    for jobs in ("1", "2"):
        assert main(["ocr", "--json", "--engine", "onnx", "--jobs", jobs, str(images)]) == 0
        runs.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    one, two = runs
    assert [o["image"] for o in two] == sorted(str(p) for p in images.iterdir())
    assert [o["data"]["text"] for o in two] == [o["data"]["text"] for o in one]
    assert (
        main(["ocr", "--json", "--engine", "onnx", "--jobs", "2", "--models", "no-such-family", str(images)])
        == 3
    )


def test_ocr_folder_json_contract(tmp_path, capsys, model_store):
    main(["synth", str(tmp_path / "set"), "--count", "2", "--seed", "3"])
    capsys.readouterr()
    assert main(["ocr", "--json", "--engine", "onnx", str(tmp_path / "set" / "images")]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(objs) == 2
    for o in objs:
        assert set(o) >= {"image", "status", "data", "timestamp", "engine", "timings_ms"}
        assert o["status"] == "success" and o["engine"] == "onnx"
        assert o["data"]["text"] == "\n".join(line["text"] for line in o["data"]["lines"])
        for line in o["data"]["lines"]:
            assert len(line["box"]) == 4 and all(len(p) == 2 for p in line["box"])
            assert 0 <= line["confidence"] <= 1


def test_plain_output_and_subprocess_entry_point(tmp_path, model_store):
    main(["synth", str(tmp_path / "set"), "--count", "1"])
    img = next((tmp_path / "set" / "images").glob("*.png"))
    exe = Path(sys.executable).with_name("edge-ocr")
    proc = subprocess.run(
        [str(exe), "ocr", "--engine", "onnx", str(img)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"== {img}: ")


def test_unknown_model_variant_is_a_clear_error(tmp_path, capsys):
    code = main(
        ["ocr", "--engine", "onnx", "--model-variant", "int16", "--models-dir", str(tmp_path), "x.png"]
    )
    assert code == 3
    assert "edge-ocr models build" in capsys.readouterr().err


def test_auto_picks_and_caches_and_explains(model_store):
    choice = choose_engine(model_store, "fp32", refresh=True)
    assert choice.engine in {"lite", "onnx", "paddle"}
    assert choice.engine in choice.reason and "matched the reference" in choice.reason
    assert choice.images_per_s[choice.engine] == max(choice.images_per_s.values())
    assert (model_store.root / CACHE_NAME).is_file()
    again = choose_engine(model_store, "fp32")
    assert again.cached and again.engine == choice.engine


def test_models_auto_command_shows_the_choice(model_store, capsys):
    choice = choose_engine(model_store, "fp32")
    assert main(["models", "auto", "--models-dir", str(model_store.root), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["engine"] == choice.engine and shown["cached"] is True
    assert main(["models", "auto", "--models-dir", str(model_store.root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"auto -> {choice.engine} (cached)")
    assert all(name in out for name in choice.images_per_s)


def test_bench_smoke(tmp_path, capsys, model_store):
    doc = tmp_path / "B.md"
    doc.write_text("# Benchmarks\n\n<!-- bench:start -->\nold\n<!-- bench:end -->\ntail\n")
    code = main(
        [
            "bench",
            "--engines",
            "onnx",
            "--variants",
            "fp32",
            "--models",
            "ppocrv6-small",
            "--no-receipts",
            "--images",
            "1",
            "--repeat",
            "1",
            "--write",
            str(doc),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    row = "| ppocrv6-small onnx | fp32 |"
    # both peers with their defaults, in the same run; ratios against RapidOCR 3.10
    assert row in out and "RapidOCR 3.10 (peer, defaults)" in out and "rapidocr-onnxruntime 1.4.4" in out
    assert "vs RapidOCR 3.10" in out
    # the same engine with `--raw` gives the cost of our post-processing, in the same run
    assert out.count(row) == 1 and "Post-processing cost (ppocrv6-small onnx fp32" in out
    text = doc.read_text()
    assert "old" not in text and row in text and text.endswith("tail\n")


def test_every_command_is_documented_in_readme():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    readme = README.read_text()
    missing = [name for name in sub.choices if f"edge-ocr {name}" not in readme]
    assert not missing, f"commands not shown in README.md: {missing}"


@pytest.mark.parametrize("args", [["--help"], ["ocr", "--help"], ["eval", "--help"], ["bench", "--help"]])
def test_help(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0


@pytest.mark.lite
def test_arm_boards_resolve_the_arm_model_sets(model_store, monkeypatch):
    """On an ARM board the Lite engine finds the ARM .nb files (they are inactive until checked
    there, and say so); on x86 it finds the x86 ones."""
    import platform

    from edge_ocr.errors import ModelError

    assert model_store.resolve("lite", "fp32").det.parts[-3:] == ("lite", "fp32", "det.nb")
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    with pytest.raises(ModelError, match="lite/fp32@arm is not active: ARM model"):
        model_store.resolve("lite", "fp32")


def test_paddle_engine_leaves_logging_alone():
    """Importing paddle adds a root handler and sets INFO; the engine must undo both."""
    import logging

    code = (
        "import logging\n"
        "from edge_ocr.ocr.engines.paddle import _import_inference\n"
        "root = logging.getLogger()\n"
        "_import_inference()\n"
        "print(len(root.handlers), root.level)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.split()[-2:] == ["0", str(logging.WARNING)]


def test_bench_worker_reports_its_own_peak_memory_not_its_parents(tmp_path, model_store):
    """A worker started by a 600 MB parent reports its own peak RSS: Linux's ru_maxrss would carry
    the parent's across fork and exec (every worker of a big `edge-ocr bench` showed the bench's)."""
    import cv2

    from edge_ocr.synth import standard_label

    cv2.imwrite(str(tmp_path / "label.png"), standard_label(seed=0).image)
    code = (
        "import json, subprocess, sys\n"
        "ballast = bytearray(600 * 2**20)\n"  # touched: 600 MB resident in the parent
        "out = subprocess.run([sys.executable, '-m', 'edge_ocr.benchmarks.worker', '--engine', 'onnx',"
        " '--variant', 'fp32', '--models', 'ppocrv6-tiny', '--threads', '1', '--images', sys.argv[1],"
        " '--repeat', '1'], capture_output=True, text=True, check=True).stdout\n"
        "print(json.loads(out.splitlines()[-1])['peak_rss_mb'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=600, check=True
    )
    worker_peak = float(proc.stdout.split()[-1])
    assert 50 < worker_peak < 500, worker_peak


def test_auto_with_one_runnable_engine_picks_it_without_timing(model_store, tmp_path, monkeypatch):
    """A store with only ONNX sets (an ARM board): `auto` takes onnx at once and says why; timing
    one engine against nothing took minutes under emulation."""
    from edge_ocr.ocr.engines import auto
    from edge_ocr.ocr.modelstore import ModelStore

    manifest = json.loads(model_store.manifest_path.read_text())
    manifest["sets"] = {k: v for k, v in manifest["sets"].items() if v["engine"] == "onnx"}
    for entry in model_store.root.iterdir():  # the same files, seen through links
        if entry.name != model_store.manifest_path.name and not entry.name.startswith(CACHE_NAME):
            (tmp_path / entry.name).symlink_to(entry)
    (tmp_path / model_store.manifest_path.name).write_text(json.dumps(manifest))

    def no_timing(*args, **kwargs):
        raise AssertionError("one engine must not be timed")

    monkeypatch.setattr(auto, "_measure", no_timing)
    choice = choose_engine(ModelStore(tmp_path), "fp32")
    assert choice.engine == "onnx" and not choice.cached
    assert "the only engine here" in choice.reason and "not considered: " in choice.reason
    assert choice.images_per_s == {}
