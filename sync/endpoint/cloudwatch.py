"""Read the endpoint's figures back from CloudWatch (`edge-ocr endpoint stats --cloudwatch`): the
EdgeOCR metrics the function writes as EMF records (per route) and Lambda's own throttles."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

from edge_ocr.errors import ConfigError
from edge_ocr_sync.endpoint.metrics import NAMESPACE, SERVICE

# metric name -> the statistic that summarises it over the window
FIGURES = {
    "Requests": "Sum",
    "Errors": "Sum",
    "ClientErrors": "Sum",
    "ColdStart": "Sum",
    "Duration": "Average",
    "MemoryUsed": "Maximum",
}


def _client():
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    return boto3.client("cloudwatch", region_name=region)


def read_stats(*, hours: float = 1.0, function_name: str | None = None, client=None) -> dict[str, Any]:
    from botocore.exceptions import BotoCoreError, ClientError

    cw = client or _client()
    now = datetime.now(timezone.utc)
    start, end = now - timedelta(hours=hours), now + timedelta(minutes=1)  # the current minute too
    period = max(60, int(hours * 3600) // 60 * 60)
    try:
        routes = sorted(
            {
                d["Value"]
                for m in cw.get_paginator("list_metrics")
                .paginate(Namespace=NAMESPACE, MetricName="Requests")
                .build_full_result()["Metrics"]
                for d in m["Dimensions"]
                if d["Name"] == "route"
            }
        )
        queries = []
        for i, route in enumerate(routes):
            dims = [{"Name": "route", "Value": route}, {"Name": "service", "Value": SERVICE}]
            for name, stat in FIGURES.items():
                queries.append(
                    {
                        "Id": f"m{i}_{name.lower()}",
                        "MetricStat": {
                            "Metric": {"Namespace": NAMESPACE, "MetricName": name, "Dimensions": dims},
                            "Period": period,
                            "Stat": stat,
                        },
                        "ReturnData": True,
                    }
                )
        if function_name:
            queries.append(
                {
                    "Id": "throttles",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/Lambda",
                            "MetricName": "Throttles",
                            "Dimensions": [{"Name": "FunctionName", "Value": function_name}],
                        },
                        "Period": period,
                        "Stat": "Sum",
                    },
                    "ReturnData": True,
                }
            )
        values: dict[str, list[float]] = {}
        for chunk in range(0, len(queries), 500):
            resp = cw.get_metric_data(
                MetricDataQueries=queries[chunk : chunk + 500], StartTime=start, EndTime=end
            )
            for r in resp["MetricDataResults"]:
                values.setdefault(r["Id"], []).extend(r["Values"])
    except (ClientError, BotoCoreError) as exc:
        raise ConfigError(
            f"cannot read CloudWatch metrics: {exc}; check AWS_REGION and the credentials"
        ) from None

    def total(key: str) -> float:
        return sum(values.get(key, []))

    table: dict[str, dict[str, Any]] = {}
    cold = 0.0
    memory = 0.0
    for i, route in enumerate(routes):
        requests = total(f"m{i}_requests")
        durations = values.get(f"m{i}_duration", [])
        cold += total(f"m{i}_coldstart")
        memory = max([memory, *values.get(f"m{i}_memoryused", [])])
        table[route] = {
            "requests": int(requests),
            "errors": int(total(f"m{i}_errors")),
            "client_errors": int(total(f"m{i}_clienterrors")),
            "mean_ms": round(sum(durations) / len(durations), 2) if durations else 0.0,
            "per_second": round(requests / (hours * 3600), 4),
        }
    out: dict[str, Any] = {
        "source": "cloudwatch",
        "hours": hours,
        "routes": table,
        "cold_starts": int(cold),
        "memory_used_mb": round(memory, 1),
    }
    if function_name:
        out["throttles"] = int(total("throttles"))
    return out
