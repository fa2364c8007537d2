"""GET /docs: the OpenAPI document as one static HTML page (no script, no CDN: works offline).

Each operation lists its parameters, its request body and its answers, with links to the
schemas; each schema lists its fields (type, required, constraints, description).  Every
string from the document is escaped.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

_CSS = """
body{font:15px/1.45 system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;
color:#1d1d1f;background:#fff}
@media (prefers-color-scheme:dark){body{color:#e6e6e6;background:#161618}a{color:#8ab4f8}
table,th,td{border-color:#444!important}code{background:#2a2a2e!important}}
h2{margin-top:2.5rem;border-bottom:1px solid #8884}
.op{margin:1.5rem 0 2.5rem}.m{font:bold 13px monospace;padding:2px 6px;border-radius:4px;
color:#fff;background:#2f6fbd}.m.post{background:#2e8b57}
table{border-collapse:collapse;margin:.4rem 0;width:100%}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top;font-size:14px}
code{font-family:ui-monospace,monospace;background:#f2f2f4;padding:0 3px;border-radius:3px}
.req{color:#c0392b;font-weight:bold}
"""

_CONSTRAINTS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
                "maxLength", "minItems", "maxItems")


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def type_html(schema: Any) -> str:
    """A schema in a few words, with links to the named schemas it uses."""
    if not isinstance(schema, dict):
        return "any"
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(type_html(s) for s in schema[key])
    if "const" in schema:
        return f"<code>{escape(json.dumps(schema['const']))}</code>"
    if "enum" in schema:
        return " | ".join(f"<code>{escape(json.dumps(v))}</code>" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"array of {type_html(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {type_html(schema['additionalProperties'])}"
    if "contentSchema" in schema:
        return f"JSON text: {type_html(schema['contentSchema'])}"
    if isinstance(kind, list):
        return " | ".join(escape(str(k)) for k in kind)
    return escape(str(kind)) if kind else "any"


def _notes(schema: dict[str, Any]) -> str:
    parts = [escape(schema.get("description", ""))] if schema.get("description") else []
    limits = [f"{k} {schema[k]}" for k in _CONSTRAINTS if k in schema]
    for sub in schema.get("anyOf", ()):  # Optional[int] carries its bounds on the branch
        if isinstance(sub, dict):
            limits += [f"{k} {sub[k]}" for k in _CONSTRAINTS if k in sub]
    if limits:
        parts.append(escape(", ".join(limits)))
    if "default" in schema:
        parts.append(f"default <code>{escape(json.dumps(schema['default']))}</code>")
    return "; ".join(parts)


def _fields_table(schema: dict[str, Any]) -> str:
    props = schema.get("properties")
    if not props:
        return f"<p>{type_html(schema)}</p>"
    required = set(schema.get("required", ()))
    rows = "".join(
        f"<tr><td><code>{escape(name)}</code>"
        f"{' <span class=req>required</span>' if name in required else ''}</td>"
        f"<td>{type_html(prop)}</td><td>{_notes(prop) if isinstance(prop, dict) else ''}</td>"
        "</tr>" for name, prop in props.items())
    extra = schema.get("additionalProperties")
    tail = "<p>Other fields are accepted.</p>" if extra is True else ""
    return f"<table><tr><th>field</th><th>type</th><th>notes</th></tr>{rows}</table>{tail}"


def _content_html(content: dict[str, Any]) -> str:
    return "".join(f"<div><code>{escape(media)}</code>: {type_html(obj.get('schema'))}</div>"
                   for media, obj in content.items())


def _resolve_response(doc: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in response:
        return doc["components"]["responses"][_ref_name(response["$ref"])]
    return response


def _operation_html(doc: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> str:
    out = [f'<div class=op id="op-{escape(op["operationId"])}"><h3>'
           f'<span class="m {method}">{method.upper()}</span> <code>{escape(path)}</code></h3>',
           f"<p><b>{escape(op.get('summary', ''))}</b></p>"]
    if op.get("description"):
        out.append(f"<p>{escape(op['description'])}</p>")
    params = op.get("parameters", [])
    if params:
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code> ({escape(p['in'])})"
            f"{' <span class=req>required</span>' if p.get('required') else ''}</td>"
            f"<td>{type_html(p.get('schema'))}</td><td>{escape(p.get('description', ''))}</td>"
            "</tr>" for p in params)
        out.append("<h4>Parameters</h4><table><tr><th>name</th><th>type</th><th>notes</th>"
                   f"</tr>{rows}</table>")
    body = op.get("requestBody")
    if body:
        required = " (required)" if body.get("required") else " (optional)"
        out.append(f"<h4>Request body{required}</h4>{_content_html(body['content'])}")
    out.append("<h4>Responses</h4><table><tr><th>status</th><th>body</th></tr>")
    for status, response in op.get("responses", {}).items():
        response = _resolve_response(doc, response)
        out.append(f"<tr><td>{escape(status)}</td><td>{escape(response.get('description', ''))}"
                   f"{_content_html(response.get('content', {}))}</td></tr>")
    out.append("</table></div>")
    return "".join(out)


def render_html(doc: dict[str, Any]) -> str:
    """The whole reference page of an OpenAPI document made by ``_openapi``."""
    info = doc.get("info", {})
    title = escape(info.get("title", "API"))
    ops = [(path, method, op) for path, item in doc.get("paths", {}).items()
           for method, op in item.items()]
    toc = "".join(
        f'<li><a href="#op-{escape(op["operationId"])}"><span class="m {method}">'
        f"{method.upper()}</span> <code>{escape(path)}</code></a> {escape(op.get('summary', ''))}"
        "</li>" for path, method, op in ops)
    auth = ""
    if doc.get("components", {}).get("securitySchemes"):
        auth = ("<p>This server needs an API key: <code>Authorization: Bearer KEY</code> or "
                "<code>X-Api-Key: KEY</code> (only <code>/health</code> is public).</p>")
    schemas = doc.get("components", {}).get("schemas", {})
    schema_html = "".join(
        f'<div id="schema-{escape(name)}"><h3>{escape(name)}</h3>'
        f"{'<p>' + escape(s['description']) + '</p>' if s.get('description') else ''}"
        f"{_fields_table(s)}</div>" for name, s in schemas.items())
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<title>{title} API reference</title><style>{_CSS}</style></head><body>"
            f"<h1>{title} <small>{escape(info.get('version', ''))}</small></h1>"
            f"<p>{escape(info.get('description', ''))}</p>{auth}"
            '<p>The machine-readable document: <a href="openapi.json">openapi.json</a> '
            f"(OpenAPI {escape(doc.get('openapi', ''))}).</p>"
            f"<h2>Routes</h2><ul>{toc}</ul>"
            f"<h2>Operations</h2>{''.join(_operation_html(doc, *o) for o in ops)}"
            f"<h2>Schemas</h2>{schema_html}</body></html>")
