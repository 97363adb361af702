"""Fleet-wide queries (issue 17 item 5): every stored record lands once in the partitioned JSON
Lines layout on both storages; the documented queries run on the local storage with DuckDB; the
template's Glue table is accepted by the Glue API (moto) and matches the layout."""

from __future__ import annotations

import json

import pytest
from test_sync_service import main

from edge_ocr_sync.auth import sign_headers
from edge_ocr_sync.endpoint.fleet import QUERIES
from edge_ocr_sync.payload import encode_document

DEVICES = {
    "line1-cam1": b"s3cr3t-for-line1-cam1-0123456789abcdef",
    "line2-cam1": b"other-secret-0123456789abcdef0123",
}


def _records(device: str, day: str, start: int) -> list[dict]:
    """Two labels read on `day`: results and their verdicts (one fails on line 2)."""
    recs = []
    for i in range(2):
        rid = start + i
        lot = "L2311A" if i == 0 else f"L99{rid}"
        text = f"LOT {lot}\nEXP 2027-01" if not (device == "line2-cam1" and i == 1) else ""
        recs.append(
            {
                "seq": 2 * rid,
                "kind": "result",
                "ref_id": rid,
                "created_at": f"{day}T08:00:0{i}.000Z",
                "payload": {
                    "result_id": rid,
                    "created_at": f"{day}T08:00:0{i}.000Z",
                    "station": device.split("-")[0],
                    "recipe": "yoghurt-125g",
                    "engine": "onnx",
                    "model": "ppocrv6-small/onnx/fp32",
                    "text": text,
                    "confidence": 0.95 if text else 0.0,
                    "lines": [],
                },
            }
        )
        recs.append(
            {
                "seq": 2 * rid + 1,
                "kind": "verdict",
                "ref_id": rid,
                "created_at": f"{day}T08:00:0{i}.000Z",
                "payload": {
                    "verdict_id": rid,
                    "result_id": rid,
                    "recipe": "yoghurt-125g",
                    "status": "pass" if text else "fail",
                    "reasons": [] if text else ["lot: not found"],
                    "fields": {"lot": {"value": lot if text else None, "found": bool(text)}},
                },
            }
        )
    return recs


@pytest.fixture
def fleet(post, endpoint, backend):
    endpoint.core.secrets = DEVICES
    n = 0
    for device, secret in DEVICES.items():
        for d, day in enumerate(("2026-11-26", "2026-11-27")):
            body, _ = encode_document(
                {
                    "schema": 1,
                    "device_id": device,
                    "batch_id": f"fleet-{device}-{d}",
                    "created_at": day,
                    "records": _records(device, day, 100 * (d + 1) + (10 if device == "line2-cam1" else 0)),
                }
            )
            h = sign_headers(secret, device, "POST", "/v1/batches", body)
            assert post("/v1/batches", body, sign=False, headers=h).json()["status"] == "stored"
            n += 4
            # a retry stores nothing twice
            h = sign_headers(secret, device, "POST", "/v1/batches", body)
            assert post("/v1/batches", body, sign=False, headers=h).json()["status"] == "duplicate"
    return n


def test_every_record_lands_once_in_the_partitioned_layout(fleet, backend):
    keys = [k for k in backend.objects() if k.startswith("results/")]
    assert len(keys) == 4
    rows = []
    for key in keys:
        _, dt, device, name = key.split("/")
        assert dt in ("dt=2026-11-26", "dt=2026-11-27") and device in (
            "device=line1-cam1",
            "device=line2-cam1",
        )
        assert name.endswith(".jsonl")
        for line in backend.read(key).decode().splitlines():
            row = json.loads(line)
            assert f"device={row['device_id']}" == device and row["created_at"].startswith(dt[3:])
            assert set(row) == {"device_id", "batch_id", "seq", "kind", "ref_id", "created_at", "payload"}
            rows.append((row["device_id"], row["seq"]))
    assert len(rows) == fleet and len(set(rows)) == fleet


def test_the_documented_queries_run_on_the_local_storage(fleet, backend, capsys, cli_logging):
    if backend.kind != "local":
        pytest.skip("Athena runs them on AWS (moto's Athena runs no SQL)")
    assert main(["endpoint", "query", "--example", "read-rate", "--json"]) == 0
    rates = json.loads(capsys.readouterr().out)
    assert [(r["dt"], r["device_id"], r["station"], r["results"], r["read_rate"]) for r in rates] == [
        ("2026-11-26", "line1-cam1", "line1", 2, 1.0),
        ("2026-11-26", "line2-cam1", "line2", 2, 0.5),
        ("2026-11-27", "line1-cam1", "line1", 2, 1.0),
        ("2026-11-27", "line2-cam1", "line2", 2, 0.5),
    ]
    assert main(["endpoint", "query", "--example", "failed-verdicts", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"recipe": "yoghurt-125g", "failed": 2}]
    assert main(["endpoint", "query", "--example", "lot", "--json"]) == 0
    lots = json.loads(capsys.readouterr().out)
    assert [(r["device_id"], r["dt"], r["lot"]) for r in lots] == [
        ("line1-cam1", "2026-11-26", "L2311A"),
        ("line1-cam1", "2026-11-27", "L2311A"),
        ("line2-cam1", "2026-11-26", "L2311A"),
        ("line2-cam1", "2026-11-27", "L2311A"),
    ]
    assert main(["endpoint", "query", "SELECT count(*) AS n FROM results WHERE dt = '2026-11-27'"]) == 0
    assert capsys.readouterr().out.split() == ["n", "8"]
    assert main(["endpoint", "query", "SELECT nonsense FROM results"]) == 2  # one line, exit code


def test_the_docs_show_the_queries():
    from test_sync_packaging import REPO

    text = (REPO / "docs" / "DEPLOY.md").read_text()
    for sql in QUERIES.values():
        assert sql in text


def test_the_glue_table_matches_the_layout_and_the_glue_api_takes_it(moto_server, monkeypatch, tmp_path):
    import boto3
    from cfnlint.decode import decode
    from conftest import aws_env
    from test_sync_packaging import TEMPLATE

    for k, v in aws_env(moto_server, tmp_path).items():
        monkeypatch.setenv(k, v)
    tpl, _ = decode(str(TEMPLATE))
    table = tpl["Resources"]["FleetRecordsTable"]["Properties"]["TableInput"]
    assert [p["Name"] for p in table["PartitionKeys"]] == ["dt"]
    assert table["Parameters"]["projection.dt.format"] == "yyyy-MM-dd"
    assert table["Parameters"]["storage.location.template"]["Fn::Sub"].endswith("/results/dt=${!dt}/")
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert list(columns) == ["device_id", "batch_id", "seq", "kind", "ref_id", "created_at", "payload"]
    for field in ("station:string", "text:string", "confidence:double", "status:string", "recipe:string"):
        assert field in columns["payload"]
    assert (
        "fields:map<string,struct<value:string,found:boolean,text:string,confidence:double,currency:string>>"
        in columns["payload"]
    )

    def resolve(v):  # the template's !Sub values, as CloudFormation would fill them in
        if isinstance(v, dict) and "Fn::Sub" in v:
            return v["Fn::Sub"].replace("${AWS::StackName}-data-${AWS::AccountId}-${AWS::Region}", "bucket")
        if isinstance(v, dict):
            return {k: resolve(x) for k, x in v.items()}
        if isinstance(v, list):
            return [resolve(x) for x in v]
        return v

    glue = boto3.client("glue", endpoint_url=moto_server, region_name="us-east-1")
    glue.create_database(DatabaseInput={"Name": "edge_ocr"})
    glue.create_table(DatabaseName="edge_ocr", TableInput=resolve(table))
    got = glue.get_table(DatabaseName="edge_ocr", Name="results")["Table"]
    assert got["StorageDescriptor"]["Location"] == "s3://bucket/results/"
    assert (
        got["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    )
