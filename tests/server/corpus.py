"""The bad-input corpus (``tests/server/corpus/*.jsonl``): loading and expanding its cases.

One JSON object a line::

    {"id": "n_predict-string", "method": "POST", "path": "/completion",
     "json": {...} | "raw": "text" or [piece, ...] | "raw_hex": "ff fe",
     "status": 400, "type": "invalid_request_error", "names": "n_predict", "headers": {...}}

- ``json`` is sent as JSON with ASCII escapes, so a ``"\\ud800"`` in the file travels as the
  raw escape ``\\ud800``; ``raw`` is sent as written (UTF-8); ``raw_hex`` as bytes.
- ``status`` defaults to 400 and ``type`` to the usual one of the status; ``names`` is text
  the error message must contain (the field).
- Big inputs are written as macros, expanded here:
  in ``json``, ``{"$repeat": X, "times": N}`` is X*N for a string X, else a list of N X's;
  ``{"$ref_chain": N}`` a schema whose ``$ref``s chain through N definitions;
  ``{"$alternations": N, "leaf": S}`` N definitions each ``anyOf`` the next one twice (2^N
  paths), the last one S (default: an array of the first);
  ``{"$enum": N}`` a schema with an enum of N strings; ``{"$properties": N}`` an object
  schema with N optional properties;
  in ``raw``, a piece ``{"repeat": "[", "times": N}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CORPUS_DIR = Path(__file__).parent / "corpus"

# Routes that stream with "stream": true: their JSON-object cases run in both modes.
STREAMING = frozenset({"/completion", "/completions", "/infill", "/v1/completions",
                       "/v1/chat/completions", "/chat/completions", "/v1/messages",
                       "/v1/responses", "/responses"})


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    body: bytes
    status: int
    names: str
    type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    json_object: dict[str, Any] | None = None  # the body, when it is a JSON object

    def streamed(self) -> Case | None:
        """The same request with ``"stream": true``, where the route streams."""
        if self.path.split("?")[0] not in STREAMING or self.json_object is None \
                or "stream" in self.json_object:
            return None
        streamed = {**self.json_object, "stream": True}
        return Case(self.id + "+stream", self.method, self.path, _dumps(streamed), self.status,
                    self.names, self.type, self.headers, streamed)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode("ascii")


def _expand(node: Any) -> Any:
    if isinstance(node, list):
        return [_expand(v) for v in node]
    if not isinstance(node, dict):
        return node
    if "$repeat" in node:
        item, times = _expand(node["$repeat"]), node["times"]
        return item * times if isinstance(item, str) else [item] * times
    if "$ref_chain" in node:
        n = node["$ref_chain"]
        defs = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(n)}
        defs[f"d{n}"] = {"type": "string"}
        return {"$ref": "#/$defs/d0", "$defs": defs}
    if "$alternations" in node:
        n = node["$alternations"]
        defs = {f"a{i}": {"anyOf": [{"$ref": f"#/$defs/a{i + 1}"}] * 2} for i in range(n)}
        defs[f"a{n}"] = node.get("leaf", {"type": "array", "items": {"$ref": "#/$defs/a0"}})
        return {"$ref": "#/$defs/a0", "$defs": defs}
    if "$enum" in node:
        return {"enum": [f"value-{i}" for i in range(node["$enum"])]}
    if "$properties" in node:
        return {"type": "object", "properties": {f"p{i}": {"type": "string"}
                                                 for i in range(node["$properties"])}}
    return {k: _expand(v) for k, v in node.items()}


def _raw(raw: str | list[Any]) -> bytes:
    if isinstance(raw, str):
        return raw.encode("utf-8")
    return b"".join(p.encode("utf-8") if isinstance(p, str)
                    else p["repeat"].encode("utf-8") * p["times"] for p in raw)


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(CORPUS_DIR.glob("*.jsonl")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip() or line.startswith("//"):
                continue
            spec = json.loads(line)
            obj = None
            if "json" in spec:
                value = _expand(spec["json"])
                obj = value if isinstance(value, dict) else None
                body = _dumps(value)
            elif "raw_hex" in spec:
                body = bytes.fromhex(spec["raw_hex"])
            else:
                body = _raw(spec.get("raw", ""))
            cases.append(Case(f"{path.stem}:{spec['id']}", spec.get("method", "POST"),
                              spec["path"], body, spec.get("status", 400), spec["names"],
                              spec.get("type"), spec.get("headers", {}), obj))
    ids = [c.id for c in cases]
    duplicated = {i for i in ids if ids.count(i) > 1}
    assert not duplicated, f"corpus ids used twice: {sorted(duplicated)}"
    return cases
