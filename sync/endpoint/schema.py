"""The endpoint's OpenAPI document (`openapi.json` beside this module) and request-body validation
against its schemas with `jsonschema`: the document the endpoint serves is the one it checks
bodies with.

JSON is parsed defensively first: nesting past the interpreter's recursion limit, integers
longer than `MAX_INT_DIGITS` digits and the non-JSON constants NaN/Infinity are refused with a
`BodyError` (a 400), never a `RecursionError` or `ValueError` escaping as a 500.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from functools import cache
from importlib import resources
from typing import Any

MAX_INT_DIGITS = 40
MAX_MESSAGE = 300
MAX_ERRORS = 3


class BodyError(Exception):
    """A request body the endpoint refuses: `status` (400 or 413) and a message for the client."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@cache
def openapi_document() -> dict[str, Any]:
    return json.loads(
        resources.files("edge_ocr_sync.endpoint").joinpath("openapi.json").read_text(encoding="utf-8")
    )


@cache
def openapi_bytes() -> bytes:
    return json.dumps(openapi_document(), separators=(",", ":")).encode("utf-8")


@cache
def _validator(name: str):
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    doc = openapi_document()
    root = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry = Registry().with_resource("urn:edge-ocr:openapi", root)
    schema = {"$ref": f"urn:edge-ocr:openapi#/components/schemas/{name}"}
    return Draft202012Validator(schema, registry=registry)


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BodyError(f"an integer of {len(text)} digits; at most {MAX_INT_DIGITS} are accepted")
    return int(text)


def _parse_constant(name: str) -> Any:
    raise BodyError(f"{name} is not JSON; send numbers as finite values or strings")


def parse_json(raw: bytes) -> Any:
    """Parse a request body as JSON, refusing what the stdlib parser would crash on."""
    try:
        return json.loads(raw, parse_int=_parse_int, parse_constant=_parse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BodyError(f"malformed JSON: {exc}") from None
    except RecursionError:  # the C parser stops at the interpreter's recursion limit
        raise BodyError("JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer over the interpreter's conversion limit
        raise BodyError(f"malformed JSON: {str(exc)[:MAX_MESSAGE]}") from None


def validate(doc: Any, schema_name: str, what: str) -> dict[str, Any]:
    """Check a parsed body against `#/components/schemas/<schema_name>`; BodyError names the
    first problem (where it is and what is wrong), without echoing large values."""
    from jsonschema.exceptions import relevance

    try:
        errors = sorted(_validator(schema_name).iter_errors(doc), key=relevance)[:MAX_ERRORS]
        if not errors:
            return doc
        if errors[0].json_path == "$" and errors[0].validator == "type":
            raise BodyError(f"{what} must be a JSON object")
        problems = "; ".join(
            f"{e.json_path}: {_describe(e)}" for e in sorted(errors, key=lambda e: e.json_path)
        )
    except RecursionError:  # an error message that repr()s a deeply nested value
        raise BodyError(f"invalid {what}: nested too deeply") from None
    raise BodyError(f"invalid {what}: {problems}")


def _describe(error) -> str:
    v, expected = error.validator, error.validator_value
    if v == "type":
        return f"must be of type {expected}"
    if v == "enum":
        return "must be one of " + ", ".join(map(str, expected))
    if v == "const":
        return f"must be {json.dumps(expected)}"
    if v == "required":
        return error.message[:MAX_MESSAGE]
    if v == "pattern":
        return f"must match {expected}"
    if v in ("minItems", "minLength") and expected == 1:
        return "must be non-empty"
    if v in ("minimum", "maximum", "minItems", "maxItems", "minLength", "maxLength"):
        return f"fails {v} {expected}"
    if v == "additionalProperties":
        return error.message[:MAX_MESSAGE]
    return f"fails {v}"


#: the time stamps a batch may carry: none before this, none more than `MAX_CLOCK_AHEAD` after the
#: endpoint's clock (a device clock a little ahead is allowed; dt=9999-12-31 partitions are not)
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_CLOCK_AHEAD = timedelta(days=1)


def check_times(doc: dict[str, Any], now: float) -> None:
    """The batch's and its records' `created_at` (a record without one: its payload's, which then
    names its day in the fleet layout) must be ISO 8601 date-times (or dates) from EARLIEST_TIME to a day past
    `now`; BodyError names the first that is not, and why."""
    latest = datetime.fromtimestamp(now, tz=timezone.utc) + MAX_CLOCK_AHEAD
    stamps = [("$.created_at", doc.get("created_at"))]
    for i, rec in enumerate(doc.get("records") or []):
        if "created_at" in rec:
            stamps.append((f"$.records[{i}].created_at", rec["created_at"]))
        elif isinstance(rec.get("payload"), dict) and "created_at" in rec["payload"]:
            stamps.append((f"$.records[{i}].payload.created_at", rec["payload"]["created_at"]))
    for where, value in stamps:
        if value is None:
            continue
        when = _parse_time(value)
        if when is None:
            raise BodyError(
                f"{where}: {str(value)[:40]!r} is not an ISO 8601 date-time (2026-01-31T12:00:00Z)"
            )
        if not EARLIEST_TIME <= when <= latest:
            raise BodyError(
                f"{where}: {str(value)[:40]} is out of range: time stamps from {EARLIEST_TIME:%Y-%m-%d} to "
                f"a day past the endpoint's clock ({latest:%Y-%m-%dT%H:%M}Z) are accepted; check the device's clock"
            )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
