"""Scheduled reprocessing (issue 17 item 2): stored images whose result an older model set made (or
that have none) are read again in bounded, resumable, idempotent batches, by the core on both
storages, by the Lambda's scheduled event (moto) and by `edge-ocr endpoint reprocess`."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from test_sync_cache import Counting, _runner
from test_sync_endpoint import png_bytes
from test_sync_lambda import Context
from test_sync_service import main

from edge_ocr_sync.endpoint.layout import RESULT_SUFFIX
from edge_ocr_sync.endpoint.reprocess import reprocess


def _store_images(storage, n: int, device: str = "line1-cam1", start: int = 0) -> list[str]:
    keys = []
    for i in range(start, start + n):
        data = png_bytes(150 + i, 50)
        key = f"images/{device}/{hashlib.sha256(data).hexdigest()}.png"
        storage.put_object(key, data, "image/png")
        keys.append(key)
    return sorted(keys)


def _result(storage, key: str) -> dict | None:
    from edge_ocr_sync.endpoint.storage import MissingObject

    try:
        return json.loads(storage.get_object(key + RESULT_SUFFIX, 10**7))
    except MissingObject:
        return None


def _core(counting: Counting):
    from edge_ocr_sync.endpoint.core import build_core

    core = build_core(secrets={})
    core.ocr = _runner(counting)
    return core


def test_only_images_read_by_another_model_set_or_never_are_read_again(backend):
    old = Counting(model_id="ppocrv4-mobile/onnx/fp32")
    core = _core(old)
    try:
        keys = _store_images(core.storage, 6)
        for key in keys[:3]:  # read by the old model set
            core.on_object_created(key, core.storage.get_object(key, 10**7))
        old_model = core.ocr.model_set_id()
    finally:
        core.close()
    new = Counting(model_id="ppocrv6-small/onnx/fp32")
    core = _core(new)
    try:
        core.on_object_created(keys[3], core.storage.get_object(keys[3], 10**7))  # already by the new one
        assert new.runs == 1
        first = reprocess(core, max_images=2)
        assert (first.reprocessed, first.done) == (2, False)
        assert first.cursor == keys[1]
    finally:
        core.close()
    core = _core(new)  # a later run (another process): goes on from the kept position
    try:
        second = reprocess(core, max_images=50)
        assert second.resumed_from == keys[1] and second.done
        assert (second.reprocessed, second.up_to_date) == (3, 1)
        assert new.runs == 1 + 5  # keys 0-2 (old model), 4-5 (none); key 3 was up to date
        new_model = core.ocr.model_set_id()
        assert new_model != old_model
        assert {_result(core.storage, k)["model"] for k in keys} == {new_model}
        assert all(_result(core.storage, k)["status"] == "success" for k in keys)
        third = reprocess(core, max_images=50)  # idempotent: a new pass finds nothing to do
        assert (third.reprocessed, third.up_to_date, third.done) == (0, 6, True)
        assert new.runs == 6
    finally:
        core.close()


def test_since_and_prefix_choose_the_images(backend):
    counting = Counting()
    core = _core(counting)
    try:
        a = _store_images(core.storage, 2, device="line1-cam1")
        b = _store_images(core.storage, 2, device="line2-cam1", start=10)
        report = reprocess(core, prefix="images/line2-cam1/", max_images=50)
        assert report.reprocessed == 2 and all(_result(core.storage, k) for k in b)
        assert not any(_result(core.storage, k) for k in a)
        future = reprocess(core, prefix="images/line1-cam1/", since=time.time() + 3600)
        assert future.reprocessed == 0 and future.skipped_older == 2
        with pytest.raises(ValueError, match="images/"):
            reprocess(core, prefix="batches/")
    finally:
        core.close()


def test_a_non_image_is_recorded_once_not_retried_forever(backend):
    counting = Counting()
    core = _core(counting)
    try:
        core.storage.put_object("images/line1-cam1/" + "0" * 64 + ".png", b"<html>", "image/png")
        assert reprocess(core).failed == 1
        again = reprocess(core)
        assert (again.reprocessed, again.up_to_date) == (0, 1)
    finally:
        core.close()


def test_the_scheduled_lambda_event_reprocesses_a_bounded_batch(aws, monkeypatch):
    from edge_ocr_sync.endpoint import lambda_handler

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "edge-ocr-endpoint")
    lambda_handler.reset()
    try:
        counting = Counting()
        core = lambda_handler.get_core()
        core.ocr = _runner(counting)
        keys = _store_images(core.storage, 5)
        # the template's schedule input
        event = {"action": "reprocess", "prefix": "images/", "max_images": 3}
        out = lambda_handler.handler(event, Context())
        assert (out["reprocessed"], out["done"]) == (3, False)
        # a plain EventBridge scheduled event goes on from there
        plain = {
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2026-11-28T20:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/edge-ocr-reprocess"],
            "detail": {},
        }
        out = lambda_handler.handler(plain, Context())
        assert (out["reprocessed"], out["done"]) == (2, True)
        assert counting.runs == 5
        assert all(_result(core.storage, k)["status"] == "success" for k in keys)
        # out of time: nothing started
        short = Context()
        short.get_remaining_time_in_millis = lambda: 5_000
        _store_images(core.storage, 1, start=20)
        assert lambda_handler.handler(event, short)["reprocessed"] == 0
    finally:
        lambda_handler.reset()


def test_the_template_schedules_reprocessing():
    from cfnlint.decode import decode
    from test_sync_packaging import TEMPLATE

    tpl, _ = decode(str(TEMPLATE))
    events = tpl["Resources"]["EndpointFunction"]["Properties"]["Events"]
    sched = events["Reprocess"]
    assert sched["Type"] == "Schedule"
    assert tpl["Parameters"]["ReprocessSchedule"]["Default"].startswith("rate(")
    assert '"action": "reprocess"' in sched["Properties"]["Input"]["Fn::Sub"]


def test_cli_reprocess_runs_batches_until_done(backend, capsys, cli_logging):
    counting = Counting()
    core = _core(counting)
    try:
        keys = _store_images(core.storage, 5)
    finally:
        core.close()
    assert main(["endpoint", "reprocess", "--batch", "2", "--json"]) == 0
    totals = json.loads(capsys.readouterr().out)
    assert totals["reprocessed"] == 5 and totals["batches"] == 3 and totals["done"]
    assert main(["endpoint", "reprocess", "--since", "2000-01-01"]) == 0
    assert "reprocessed 0 images" in capsys.readouterr().out
    core = _core(counting)
    try:
        assert all(_result(core.storage, k)["status"] == "success" for k in keys)
    finally:
        core.close()
    assert main(["endpoint", "reprocess", "--since", "yesterday"]) == 2
    assert main(["endpoint", "reprocess", "--prefix", "batches/"]) == 2


def test_cli_reprocess_is_documented():
    from test_sync_packaging import REPO

    assert "edge-ocr endpoint reprocess" in (REPO / "docs" / "DEPLOY.md").read_text()


def test_cli_reprocess_model_names_the_family_to_read_with(backend, monkeypatch, capsys, cli_logging):
    monkeypatch.setenv("EDGE_OCR_OCR_ENGINE", "onnx")
    assert main(["endpoint", "reprocess", "--model", "no-such-family"]) == 3  # a model error, one line
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.models
def test_cli_reprocess_with_the_real_onnx_models_reads_again_only_when_the_family_changes(
    backend, monkeypatch, capsys, cli_logging
):
    from edge_ocr_sync.endpoint.core import build_core

    monkeypatch.setenv("EDGE_OCR_OCR_ENGINE", "onnx")
    core = build_core(secrets={})
    try:
        (key,) = _store_images(core.storage, 1)
    finally:
        core.close()
    models = []
    for family, read in (("ppocrv4-mobile", 1), ("ppocrv4-mobile", 0), ("ppocrv6-small", 1)):
        assert main(["endpoint", "reprocess", "--model", family, "--json"]) == 0
        totals = json.loads(capsys.readouterr().out)
        assert totals["reprocessed"] == read and totals["model"].startswith(f"{family}/onnx/fp32@")
        core = build_core(secrets={})
        try:
            result = _result(core.storage, key)
        finally:
            core.close()
        assert result["status"] == "success" and result["model"] == totals["model"]
        models.append(totals["model"])
    assert models[0] == models[1] != models[2]
