"""GET /docs: the OpenAPI document rendered as one plain HTML page, on the server.

Why not Swagger UI or ReDoc: both are a megabyte of JavaScript loaded from a CDN, and a
jobledger server often has no internet; vendoring them would put that megabyte in the
repository. The page here is built from the same document as /openapi.json, needs no
script, and shows what a reader needs: each endpoint with its parameters, body and
answers, and each schema's fields with their types and limits.
"""

from __future__ import annotations

from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .auth import PUBLIC
from .openapi import Endpoint, Reply, routes_of, served_spec

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
code,.path{font-family:ui-monospace,monospace}
table{border-collapse:collapse;width:100%;margin:.5em 0 1em}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f5f5f5}
.method{font-weight:bold;display:inline-block;min-width:4.5em}
section{border-top:1px solid #ccc;margin-top:1.5em}
"""
_CONSTRAINTS = (
    ("minimum", ">= {}"), ("exclusiveMinimum", "> {}"), ("maximum", "<= {}"),
    ("exclusiveMaximum", "< {}"), ("minLength", "length >= {}"), ("maxLength", "length <= {}"),
    ("minItems", "items >= {}"), ("maxItems", "items <= {}"), ("format", "{}"),
)


def render(spec: dict[str, Any]) -> str:
    """The whole page. Everything taken from the spec is HTML-escaped."""
    info = spec["info"]
    operations = [(path, method, op) for path, ops in spec["paths"].items()
                  for method, op in ops.items()]
    parts = [
        (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(info['title'])} API"
         f"</title><style>{_STYLE}</style></head><body>"),
        f"<h1>{escape(info['title'])} API <small>{escape(info['version'])}</small></h1>",
        (f"<p>{escape(info.get('description', ''))} The machine-readable document is "
         "<a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>"),
        "<h2>Endpoints</h2><table><tr><th>method</th><th>path</th><th>does</th></tr>",
        *(f"<tr><td class='method'>{m.upper()}</td><td class='path'><a href='#{_anchor(op)}'>"
          f"{escape(p)}</a></td><td>{escape(op.get('summary', ''))}</td></tr>"
          for p, m, op in operations),
        "</table>",
        *(_operation(p, m, op) for p, m, op in operations),
        "<section><h2>Schemas</h2>",
        *(_schema(name, schema) for name, schema in spec["components"]["schemas"].items()),
        "</section></body></html>",
    ]
    return "".join(parts)


def _anchor(op: dict[str, Any]) -> str:
    return "op-" + escape(op["operationId"])


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    parts = [(
        f"<section id='{_anchor(op)}'><h3><span class='method'>{method.upper()}</span> "
        f"<span class='path'>{escape(path)}</span></h3><p>{escape(op.get('summary', ''))}. "
        f"{escape(op.get('description', ''))}</p>"
    )]
    if op.get("parameters"):
        parts.append("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th>"
                     "<th>required</th><th>meaning</th></tr>")
        parts.extend(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{p['in']}</td>"
            f"<td>{type_text(p['schema'])}</td><td>{'yes' if p.get('required') else 'no'}</td>"
            f"<td>{escape(p.get('description', ''))}</td></tr>"
            for p in op["parameters"]
        )
        parts.append("</table>")
    body = op.get("requestBody")
    if body:
        for media, content in body["content"].items():
            parts.append(f"<h4>Body</h4><p><code>{escape(media)}</code>: "
                         f"{type_text(content['schema'])}</p>")
    parts.append("<h4>Answers</h4><table><tr><th>status</th><th>when</th><th>body</th></tr>")
    for status, reply in op["responses"].items():
        bodies = ", ".join(f"<code>{escape(media)}</code> {type_text(c['schema'])}"
                           for media, c in reply.get("content", {}).items())
        parts.append(f"<tr><td>{escape(status)}</td><td>{escape(reply['description'])}</td>"
                     f"<td>{bodies or 'none'}</td></tr>")
    parts.append("</table></section>")
    return "".join(parts)


def _schema(name: str, schema: dict[str, Any]) -> str:
    parts = [f"<h3 id='schema-{escape(name)}'>{escape(name)}</h3>"]
    if schema.get("description"):
        parts.append(f"<p>{escape(schema['description'])}</p>")
    props = schema.get("properties")
    if props is None:
        parts.append(f"<p>{type_text(schema)}</p>")
        return "".join(parts)
    required = set(schema.get("required", ()))
    parts.append("<table><tr><th>field</th><th>type</th><th>required</th><th>default</th>"
                 "<th>meaning</th></tr>")
    for field, prop in props.items():
        default = escape(repr(prop["default"])) if "default" in prop else ""
        parts.append(
            f"<tr><td><code>{escape(field)}</code></td><td>{type_text(prop)}</td>"
            f"<td>{'yes' if field in required else 'no'}</td><td>{default}</td>"
            f"<td>{escape(_description(prop))}</td></tr>"
        )
    if schema.get("additionalProperties") is False:
        parts.append("<tr><td colspan='5'>other fields are refused</td></tr>")
    parts.append("</table>")
    return "".join(parts)


def _description(schema: dict[str, Any]) -> str:
    if "description" in schema:
        return str(schema["description"])
    return next((str(o["description"]) for o in schema.get("anyOf", ()) if "description" in o), "")


def type_text(schema: dict[str, Any]) -> str:
    """A JSON Schema as short HTML: `integer (>= 0, <= 255)`, `array of TaskSummary`,
    `string | null`; a $ref links to the schema's section."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"<a href='#schema-{escape(name)}'>{escape(name)}</a>"
    if "anyOf" in schema:
        return " | ".join(type_text(option) for option in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(f"<code>{escape(str(v))}</code>" for v in schema["enum"])
    kind = schema.get("type")
    if kind is None:
        return "any JSON"
    if kind == "array":
        text = f"array of {type_text(schema.get('items', {}))}"
    elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        text = f"object of {type_text(schema['additionalProperties'])}"
    else:
        text = escape(kind if isinstance(kind, str) else " | ".join(kind))
    limits = [rule.format(schema[key]) for key, rule in _CONSTRAINTS if key in schema]
    return f"{text} ({escape(', '.join(limits))})" if limits else text


async def docs(request: Request) -> Response:
    return HTMLResponse(render(await served_spec(request)))


endpoints = [
    Endpoint("GET", "/docs", docs, "This API's documentation as a web page", tag="docs",
             replies={200: Reply("the page", str, media_type="text/html")}, access=PUBLIC),
]
routes = routes_of(endpoints)
