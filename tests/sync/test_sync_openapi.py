"""The OpenAPI document: valid, served by the endpoint, and the endpoint's answers conform to it;
schemathesis fuzzes every operation with signed requests (valid and invalid bodies) and finds
no 5xx (issue 13 item 8, issue 17 item 7)."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from edge_ocr_sync.auth import sign_headers
from edge_ocr_sync.endpoint.schema import openapi_document


def test_the_document_is_valid_openapi_3_1():
    from openapi_spec_validator import validate

    validate(openapi_document())


def test_the_endpoint_serves_its_document_unsigned(post):
    r = post("/v1/openapi.json", method="GET", sign=False)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == openapi_document()


def test_every_route_the_core_serves_is_documented(tmp_path):
    from edge_ocr_sync.endpoint.core import EndpointCore
    from edge_ocr_sync.endpoint.local_storage import LocalStorage
    from edge_ocr_sync.endpoint.settings import EndpointSettings

    core = EndpointCore(EndpointSettings(data_dir=tmp_path), LocalStorage(tmp_path), {})
    try:
        paths = openapi_document()["paths"]
        for method, path in core._routes:
            assert method.lower() in paths[path], (method, path)
    finally:
        core.close()
    assert "get" in paths["/v1/health"] and "put" in paths["/v1/objects/{key}"]


def _sign_and_send(client: httpx.Client, case, device_id: str, secret: bytes) -> httpx.Response:
    kw = case.as_transport_kwargs(base_url=str(client.base_url).rstrip("/"))
    headers = {k: str(v) for k, v in (kw.get("headers") or {}).items()}
    if "json" in kw:
        doc = kw["json"]
        if (
            case.operation.path == "/v1/batches"
            and isinstance(doc, dict)
            and isinstance(doc.get("device_id"), str)
        ):
            doc["device_id"] = device_id  # a batch is refused unless it names its signer: let some through
        body = json.dumps(doc).encode()
        headers.setdefault("Content-Type", "application/json")
    else:
        raw = kw.get("data", kw.get("content", b""))
        body = raw.encode() if isinstance(raw, str) else (raw or b"")
    url = httpx.URL(kw["url"], params=kw.get("params") or None)
    if case.operation.path not in ("/v1/health", "/v1/openapi.json", "/v1/objects/{key}"):
        for h in [h for h in headers if h.lower().startswith("x-edgeocr-")]:
            del headers[h]
        headers.update(sign_headers(secret, device_id, kw["method"], url.path, body))
    return client.request(kw["method"], url, content=body, headers=headers)


def test_schemathesis_finds_no_server_error_and_every_answer_conforms(
    endpoint, backend, device_id, device_secret
):
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    if backend.kind == "aws":
        pytest.skip("fuzzed once, on the local storage (the AWS storage runs every other endpoint test)")
    schema = schemathesis.openapi.from_url(endpoint.url + "/v1/openapi.json")
    operations = [op.ok() for op in schema.get_all_operations()]
    strategy = st.one_of(
        [op.as_strategy(generation_mode=mode) for op in operations for mode in GenerationMode]
    )
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    seen: dict[str, set[int]] = {}
    client = httpx.Client(base_url=endpoint.url, timeout=30)

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def fuzz(case) -> None:
        try:
            resp = _sign_and_send(client, case, device_id, device_secret)
        except httpx.LocalProtocolError:  # a generated header value no HTTP client may send
            reject()
        seen.setdefault(f"{case.method} {case.operation.path}", set()).add(resp.status_code)
        assert resp.status_code < 500, resp.text
        case.validate_response(resp, checks=checks)

    try:
        fuzz()
    finally:
        client.close()
    assert set(seen) == {f"{op.method.upper()} {op.path}" for op in operations}, operations
    statuses = set().union(*seen.values())
    assert 200 in statuses and 400 in statuses  # valid and invalid bodies both got through signing
    print("\nschemathesis:", {k: sorted(v) for k, v in sorted(seen.items())})
