"""Data protection (issue 17 item 6): one command deletes everything stored for a device, on both
storages; local expiry by age; the bucket's lifecycle rules in the template."""

from __future__ import annotations

import hashlib
import os
import time

from test_sync_endpoint import batch_body, png_bytes
from test_sync_service import main

from edge_ocr_sync.auth import sign_headers


def _image(core, device: str, data: bytes) -> str:
    key = f"images/{device}/{hashlib.sha256(data).hexdigest()}.png"
    core.storage.put_object(key, data, "image/png")
    core.on_object_created(key, data)  # result beside it + cache entry
    return key


def _sign_batch(post, device: str, secret: bytes, batch_id: str):
    body, _ = batch_body(device, batch_id)
    return post(
        "/v1/batches", body, sign=False, headers=sign_headers(secret, device, "POST", "/v1/batches", body)
    )


def test_delete_device_removes_its_data_and_nothing_else(
    post, endpoint, backend, device_id, device_secret, capsys, cli_logging
):
    other, other_secret = "line2-cam1", b"other-secret-0123456789abcdef0123"
    endpoint.core.secrets = {device_id: device_secret, other: other_secret}
    for i in range(2):
        assert _sign_batch(post, device_id, device_secret, f"erase-mine-{i:04d}").status_code == 200
    assert _sign_batch(post, other, other_secret, "erase-other-0001").status_code == 200
    core = endpoint.core
    shared = png_bytes(300, 60)  # the same label photographed on both lines
    mine_only = png_bytes(310, 60)
    _image(core, device_id, shared)
    _image(core, device_id, mine_only)
    theirs = _image(core, other, shared)
    before = backend.objects()
    assert any(k.startswith(f"images/{device_id}/") for k in before)
    assert main(["endpoint", "delete-device", device_id]) == 0  # without --yes: says what would go
    assert "would delete 4 image objects and 2 batches" in capsys.readouterr().out
    assert backend.objects() == before
    assert main(["endpoint", "delete-device", device_id, "--yes"]) == 0
    out = capsys.readouterr().out
    assert "4 images" in out and "2 batches" in out and "1 cache" in out
    left = backend.objects()
    assert not [k for k in left if f"/{device_id}/" in k or f"device={device_id}/" in k]
    assert theirs in left and theirs + ".ocr.json" in left
    assert [i["device_id"] for i in backend.batch_items()] == [other]
    cache = [k for k in left if k.startswith("cache/")]
    assert len(cache) == 1 and cache[0].endswith(hashlib.sha256(shared).hexdigest() + ".json")  # still theirs
    assert backend.nonce_count() == 1  # the other device's request
    # idempotent; and its next batch is stored afresh
    assert main(["endpoint", "delete-device", device_id, "--yes"]) == 0
    assert _sign_batch(post, device_id, device_secret, "erase-mine-0000").json()["status"] == "stored"


def test_delete_device_refuses_a_path_as_device_id(backend, capsys, cli_logging):
    assert main(["endpoint", "delete-device", "../etc", "--yes"]) == 2


def test_expire_deletes_what_is_older_than_the_days(backend, capsys, cli_logging):
    if backend.kind != "local":
        return  # on S3 the lifecycle rules do it (the template test below)
    from edge_ocr_sync.endpoint.core import build_core

    core = build_core(secrets={})
    try:
        old_key = _image(core, "line1-cam1", png_bytes(320, 60))
        new_key = _image(core, "line1-cam1", png_bytes(330, 60))
        core.storage.put_object(
            "batches/line1-cam1/b-00000001/" + "a" * 64 + ".json.gz", b"x", "application/json"
        )
        long_ago = time.time() - 40 * 86400
        for key in (old_key, old_key + ".ocr.json", "batches/line1-cam1/b-00000001/" + "a" * 64 + ".json.gz"):
            os.utime(core.storage.objects_dir / key, (long_ago, long_ago))
    finally:
        core.close()
    assert main(["endpoint", "expire", "--images-days", "30", "--payloads-days", "30"]) == 0
    assert "2 images, 1 batches" in capsys.readouterr().out
    left = backend.objects()
    assert old_key not in left and new_key in left and not [k for k in left if k.startswith("batches/")]
    assert main(["endpoint", "expire", "--images-days", "nan", "--payloads-days", "30"]) == 2


def test_the_bucket_expires_images_payloads_and_cache_by_parameters():
    from cfnlint.decode import decode
    from test_sync_packaging import TEMPLATE

    tpl, _ = decode(str(TEMPLATE))
    rules = {
        r["Id"]: r for r in tpl["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    }
    expected = {
        "expire-images": ("images/", "ImagesRetentionDays"),
        "expire-payloads": ("batches/", "PayloadsRetentionDays"),
        "expire-fleet-records": ("results/", "PayloadsRetentionDays"),
        "expire-result-cache": ("cache/", "CacheRetentionDays"),
    }
    for rule_id, (prefix, param) in expected.items():
        assert rules[rule_id]["Prefix"] == prefix and rules[rule_id]["ExpirationInDays"] == {"Ref": param}
        assert tpl["Parameters"][param]["MinValue"] == 1
