"""Holding real answers to the server's own /openapi.json (used by test_openapi.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from server_helpers import sse_events


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
        assert any(m.split(";")[0] == media for m in content), (
            f"{where}: the document lists {sorted(content)}")
        entry = next(v for m, v in content.items() if m.split(";")[0] == media)
        if media == "application/json":
            body = response.json()
            self._validate(entry["schema"], body, where)
            return body
        if media == "text/event-stream":
            events = sse_events(response.text)
            data = entry["schema"]["properties"]["data"]
            for i, event in enumerate(events):
                if event == "[DONE]":
                    assert {"const": "[DONE]"} in data.get("anyOf", []), f"{where}: [DONE]"
                    continue
                json_data = next(d for d in data.get("anyOf", [data]) if "contentSchema" in d)
                self._validate(json_data["contentSchema"], event, f"{where} event {i}")
            return events
        return response.text


def load(client: httpx.Client) -> Document:
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    return Document(json.loads(r.text))
