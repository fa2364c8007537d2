"""Holding real answers to the server's own /openapi.json (used by test_openapi.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from server_helpers import sse_fields


class Document:
    """An OpenAPI document and the schemas of its operations' answers."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def operation(self, method: str, path: str) -> dict[str, Any]:
        """The operation that serves ``path`` (a concrete URL path, query left out)."""
        path = path.split("?")[0]
        for template, item in self.doc["paths"].items():
            pattern = "[^/]+".join(re.escape(part) for part in re.split(r"\{[^}]+\}", template))
            if re.fullmatch(pattern, path) and method.lower() in item:
                return item[method.lower()]
        raise AssertionError(f"{method} {path} is not in the document")

    def _response(self, op: dict[str, Any], status: int) -> dict[str, Any]:
        responses = op["responses"]
        assert str(status) in responses, (
            f"{op['operationId']} answered {status}, which the document does not list "
            f"({sorted(responses)})")
        response = responses[str(status)]
        if "$ref" in response:
            response = self.doc["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
        return response

    def _validate(self, schema: dict[str, Any], value: Any, where: str) -> None:
        validator = Draft202012Validator({**schema, "components": self.doc["components"]})
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        assert not errors, f"{where}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors[:5])

    def check(self, method: str, path: str, response: httpx.Response) -> Any:
        """Validate ``response`` (JSON, SSE or text) against the document; returns the body
        (the list of event payloads for a stream)."""
        op = self.operation(method, path)
        documented = self._response(op, response.status_code)
        media = response.headers["content-type"].split(";")[0].strip()
        content = documented.get("content", {})
        where = f"{method} {path} -> {response.status_code} {media}"
        matched = next((m for m in content if _matches(m, media)), None)
        assert matched is not None, f"{where}: the document lists {sorted(content)}"
        schema = content[matched]["schema"]
        if matched == "application/json":
            body = response.json()
            self._validate(schema, body, where)
            return body
        if matched == "text/event-stream":
            return self._check_events(schema, response.text, where)
        return response.text

    def _check_events(self, schema: dict[str, Any], text: str, where: str) -> list[Any]:
        """Each event's fields against the event schema, its data against the data's
        ``contentSchema``; a named event's name must be its data's type."""
        data = schema["properties"]["data"]
        json_data = next(d for d in data.get("anyOf", [data]) if "contentSchema" in d)
        events = []
        for i, fields in enumerate(sse_fields(text)):
            self._validate(schema, fields, f"{where} event {i}")
            if fields["data"] == "[DONE]":
                assert {"const": "[DONE]"} in data.get("anyOf", []), f"{where}: [DONE]"
                events.append("[DONE]")
                continue
            event = json.loads(fields["data"])
            self._validate(json_data["contentSchema"], event, f"{where} event {i}")
            if "event" in fields:
                assert fields["event"] == event.get("type"), f"{where} event {i}: {fields}"
            events.append(event)
        return events


def _matches(documented: str, media: str) -> bool:
    """A media type against a documented one, which may be a range (``*/*``, ``text/*``)."""
    kind, _, sub = documented.split(";")[0].strip().partition("/")
    got_kind, _, got_sub = media.partition("/")
    return kind in ("*", got_kind) and sub in ("*", got_sub)


def load(client: httpx.Client) -> Document:
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    return Document(json.loads(r.text))
