"""Monitoring (issue 17 item 4): the local endpoint's counters in the Prometheus text format and
`edge-ocr endpoint stats` reading them; on Lambda, one EMF record per request (Powertools) that
CloudWatch (moto, fed the records as CloudWatch ingests them) gives back to `stats --cloudwatch`;
the template's alarms and reserved concurrency."""

from __future__ import annotations

import json

import httpx
import pytest
from test_sync_endpoint import batch_body, png_bytes
from test_sync_lambda import Context, http_event, signed
from test_sync_service import main

from edge_ocr_sync.endpoint.metrics import parse_prometheus, summarize


def test_the_local_endpoint_counts_requests_per_route(post, endpoint, device_id, capsys, cli_logging):
    for _ in range(3):
        assert post("/v1/health", method="GET", sign=False).status_code == 200
    body, _ = batch_body(device_id, "metrics-batch-1")
    assert post("/v1/batches", body).status_code == 200
    assert post("/v1/batches", body).status_code == 200  # duplicate
    assert post("/v1/batches", body, sign=False).status_code == 401
    assert post("/v1/ocr", png_bytes(), headers={"content-type": "image/png"}).status_code == 200
    assert post("/v1/ocr", png_bytes(), headers={"content-type": "image/png"}).status_code == 200
    assert post("/v1/nothing/here", b"").status_code == 404
    r = httpx.get(endpoint.url + "/v1/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = parse_prometheus(r.text)
    requests = {(lab["route"], lab["status"]): v for lab, v in samples["edge_ocr_endpoint_requests_total"]}
    assert requests[("/v1/batches", "200")] == 2 and requests[("/v1/batches", "401")] == 1
    assert requests[("/v1/health", "200")] == 3 and requests[("other", "404")] == 1
    assert {lab["result"]: v for lab, v in samples["edge_ocr_endpoint_ocr_cache_total"]} == {
        "miss": 1,
        "hit": 1,
    }
    assert samples["edge_ocr_endpoint_cold_starts_total"][0][1] == 1
    assert samples["edge_ocr_endpoint_memory_used_bytes"][0][1] > 10 * 1024 * 1024
    counts = {lab["route"]: v for lab, v in samples["edge_ocr_endpoint_request_seconds_count"]}
    assert counts["/v1/ocr"] == 2
    # the CLI reads the same figures
    assert main(["endpoint", "stats", "--url", endpoint.url, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["source"] == "local" and stats["cold_starts"] == 1
    assert stats["routes"]["/v1/batches"]["requests"] == 3 and stats["routes"]["/v1/batches"]["errors"] == 0
    assert stats["routes"]["/v1/ocr"]["mean_ms"] > 0 and stats["routes"]["/v1/health"]["per_second"] > 0
    assert main(["endpoint", "stats", "--url", endpoint.url]) == 0
    text = capsys.readouterr().out
    assert "/v1/batches" in text and "cold starts 1" in text


def test_stats_says_when_no_endpoint_answers(capsys, cli_logging):
    assert main(["endpoint", "stats", "--url", "http://127.0.0.1:9"]) == 7


def test_a_server_error_is_counted_as_an_error(endpoint):
    core = endpoint.core
    core.metrics.observe("/v1/batches", 503, 0.01)
    s = summarize(parse_prometheus(core.metrics.render()))
    assert s["routes"]["/v1/batches"]["errors"] == 1


def _emf_records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def _ingest(cloudwatch, records: list[dict]) -> None:
    """What CloudWatch does with EMF log lines: each declared metric becomes a datapoint with the
    declared dimensions."""
    from datetime import datetime, timezone

    for rec in records:
        meta = rec["_aws"]
        when = datetime.fromtimestamp(meta["Timestamp"] / 1000, tz=timezone.utc)
        for directive in meta["CloudWatchMetrics"]:
            for dimset in directive["Dimensions"]:
                dims = [{"Name": d, "Value": rec[d]} for d in dimset]
                data = [
                    {
                        "MetricName": m["Name"],
                        "Dimensions": dims,
                        "Timestamp": when,
                        "Values": rec[m["Name"]],
                        "Unit": m.get("Unit", "None"),
                    }
                    for m in directive["Metrics"]
                ]
                cloudwatch.put_metric_data(Namespace=directive["Namespace"], MetricData=data)


@pytest.fixture
def lambda_env(aws, monkeypatch):
    from edge_ocr_sync.endpoint import lambda_handler

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "edge-ocr-endpoint")
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", aws.url)
    lambda_handler.reset()
    yield lambda_handler
    lambda_handler.reset()


def test_lambda_requests_become_emf_metrics_that_stats_reads_back(
    lambda_env, aws, device_id, device_secret, capsys, cli_logging
):
    import boto3

    handler = lambda_env.handler
    assert handler(http_event("GET", "/v1/health"), Context())["statusCode"] == 200
    body, _ = batch_body(device_id, "emf-batch-0001")
    assert (
        handler(signed("POST", "/v1/batches", body, device_id, device_secret), Context())["statusCode"] == 200
    )
    assert handler(http_event("POST", "/v1/batches", body), Context())["statusCode"] == 401
    assert handler({"action": "reprocess", "max_images": 5}, Context())["done"]
    records = _emf_records(capsys.readouterr().out)
    assert [r["route"] for r in records] == ["/v1/health", "/v1/batches", "/v1/batches", "schedule"]
    assert all(r["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "EdgeOCR" for r in records)
    assert [r.get("ColdStart") for r in records] == [[1.0], None, None, None]  # the instance's first only
    assert [r["ClientErrors"] for r in records] == [[0.0], [0.0], [1.0], [0.0]]
    assert all(r["MemoryUsed"][0] > 10 and r["Duration"][0] >= 0 for r in records)
    cloudwatch = boto3.client("cloudwatch", endpoint_url=aws.url, region_name="us-east-1")
    _ingest(cloudwatch, records)
    cloudwatch.put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": "Throttles",
                "Dimensions": [{"Name": "FunctionName", "Value": "edge-ocr-endpoint"}],
                "Value": 2,
                "Unit": "Count",
            }
        ],
    )
    assert main(["endpoint", "stats", "--cloudwatch", "--function", "edge-ocr-endpoint", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["source"] == "cloudwatch"
    assert stats["routes"]["/v1/batches"]["requests"] == 2
    assert stats["routes"]["/v1/batches"]["client_errors"] == 1
    assert stats["routes"]["/v1/health"]["requests"] == 1 and stats["routes"]["schedule"]["requests"] == 1
    assert stats["cold_starts"] == 1 and stats["memory_used_mb"] > 10 and stats["throttles"] == 2


def test_the_template_alarms_on_error_rate_and_throttles_and_reserves_concurrency():
    from cfnlint.decode import decode
    from test_sync_packaging import TEMPLATE

    tpl, _ = decode(str(TEMPLATE))
    res = tpl["Resources"]
    fn = res["EndpointFunction"]["Properties"]
    assert fn["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}
    alarms = {k: v["Properties"] for k, v in res.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) == {"ApiErrorRateAlarm", "FunctionErrorRateAlarm", "ThrottlesAlarm"}
    for name in ("ApiErrorRateAlarm", "FunctionErrorRateAlarm"):
        rate = [m for m in alarms[name]["Metrics"] if m.get("ReturnData")]
        assert rate[0]["Expression"].startswith("100 * errors /")
        assert alarms[name]["Threshold"] == {"Ref": "ErrorRatePercent"}
    assert alarms["ThrottlesAlarm"]["MetricName"] == "Throttles"
    assert all(a["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms.values())
