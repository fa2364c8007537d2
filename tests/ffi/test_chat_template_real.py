"""Real templates render exactly as plain Jinja renders them, and fast, under the bounded sandbox.

The reference is Jinja's own ``ImmutableSandboxedEnvironment`` with the same settings and
Hugging Face's helpers; the bounded sandbox must not change one character of a real prompt.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2.ext
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llama_ffi import ChatTemplate, Model, builtin_template_names

TEMPLATES = Path(__file__).parent / "chat_templates"

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city, now.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search the web: returns snippets.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}},
]
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}}
CONVERSATIONS = {
    "plain": [
        {"role": "system", "content": "You are terse.  "},
        {"role": "user", "content": "Hi there, héllo <b>"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Name a colour"},
    ],
    "tools": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "content": '{"temp": 21}'},
        {"role": "tool", "content": '{"sky": "clear"}'},
        {"role": "assistant", "content": "<think>\nwarm\n</think>\n\nIt is 21 C and clear."},
        {"role": "user", "content": "Thanks"},
    ],
    "long": [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " * 40} for i in range(60)],
}


def _reference_env() -> ImmutableSandboxedEnvironment:
    class Generation(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body, lineno=lineno)

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols", Generation])
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f))
    env.filters["tojson"] = lambda v, indent=None, separators=None, sort_keys=False, ensure_ascii=False: json.dumps(
        v, indent=indent, separators=tuple(separators) if separators else None, sort_keys=sort_keys,
        ensure_ascii=ensure_ascii)
    return env


def _reference(source: str, messages: list[dict[str, Any]], **variables: Any) -> str:
    context = {"bos_token": "<s>", "eos_token": "</s>", "add_generation_prompt": True, **variables,
               "messages": messages}
    return _reference_env().from_string(source).render(**context)


def _cases() -> list[tuple[str, str, dict[str, Any]]]:
    cases = []
    for name in ("llama31_tools", "qwen25_tools", "reasoning"):
        for conversation in CONVERSATIONS:
            cases.append((name, conversation, {}))
            cases.append((name, conversation, {"tools": TOOLS}))
    cases += [
        ("llama31_tools", "plain", {"tools": TOOLS, "tools_in_user_message": False, "date_string": "1 Jan 2025"}),
        ("llama31_tools", "plain", {"builtin_tools": ["brave_search", "wolfram_alpha"]}),
        ("reasoning", "tools", {"enable_thinking": False, "add_generation_prompt": False}),
    ]
    return cases


@pytest.mark.parametrize(("name", "conversation", "variables"), _cases())
def test_real_templates_render_as_plain_jinja(name: str, conversation: str, variables: dict[str, Any]) -> None:
    source = (TEMPLATES / f"{name}.jinja").read_text()
    messages = CONVERSATIONS[conversation]
    expected = _reference(source, messages, **variables)
    extra = dict(variables)
    tools = extra.pop("tools", None)
    add = extra.pop("add_generation_prompt", True)
    template = ChatTemplate(source, bos_token="<s>", eos_token="</s>")
    assert template.render(messages, add_generation_prompt=add, tools=tools, variables=extra) == expected
    assert len(expected) > 100


GRAB_BAG = """\
{%- macro row(name, width=6) -%}[{{ name|center(width) }}|{{ varargs|join(',') }}|{{ kwargs|dictsort }}]{%- endmacro -%}
{%- macro boxed() -%}<{{ caller() }}>{%- endmacro -%}
{{ row('a', 8, 1, 2, k='v') }} {{ '%-5s|%05.1f|%x' % ('ab', 3.14159, 255) }} {{ '{:>6}|{:^7}|{:,}'.format('r', 'c', 1234567) }}
{{ 'x'|indent(2, true) }} {{ 'one two three four five six'|wordwrap(9) }} {{ 'abcabc'|replace('b', 'BB', 1) }}
{{ [1, 2, 3, 4, 5]|batch(2, 0)|list }} {{ [1, 2, 3, 4, 5]|slice(2)|list }} {{ [[1], [2, 3]]|sum(start=[]) }}
{{ messages|map(attribute='role')|unique|list }} {{ messages|selectattr('role', 'equalto', 'user')|list|length }}
{{ messages|groupby('role')|map(attribute='grouper')|join('/') }} {{ (messages|sort(attribute='content'))[0].content }}
{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ loop.cycle('o', 'e') }}{{ ',' if not loop.last }}{% endfor %}
{% for node in tree recursive %}({{ node.n }}{{ loop(node.kids) if node.kids }}){% endfor %}
{% set block %}{% for i in range(3) %}{{ i * 2 ** 3 }}{% endfor %}{% endset %}{{ block ~ '!' }} {% call boxed() %}in{% endcall %}
{% filter upper %}shout {{ 'it'|title }}{% endfilter %} {{ 'long sentence here'|truncate(9, true, '..', 0) }}
{{ [3, 1, 2]|max }} {{ 7 // 2 }} {{ 7 / 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 'ab' * 3 }} {{ [0] * 3 + [1] }} {{ (1, 2) + (3,) }}
{{ {'b': 1, 'a': [1, {'c': 'd'}]}|tojson }} {{ {'b': 1}|tojson(indent=2) }} {{ messages[1:3]|length }} {{ 'héllo'[::-1] }}
{{ '%s and %s'|format('x', 'y') }} {{ ', '.join(['p', 'q']) }} {{ 'a-b'.split('-') }} {{ 'Tab\\tbed'.expandtabs(4) }}
{{ '7'.zfill(3) }} {{ 'k'.ljust(3, '.') }}{{ 'k'.rjust(3, '.') }} {{ 'ab'.translate({97: 'A'}) }} {{ 255|string|length }}
{{ range(10)|list|random is number }} {{ (1).to_bytes(2, 'big') }} {{ '{0[role]}'.format(messages[0]) }}
{%- set ns = namespace(total=0) %}{% for i in range(5) %}{% set ns.total = ns.total + i %}{% endfor %} {{ ns.total }}
"""


def test_filters_methods_and_operators_render_as_plain_jinja() -> None:
    tree = [{"n": 1, "kids": [{"n": 2, "kids": []}, {"n": 3, "kids": [{"n": 4, "kids": []}]}]}]
    messages = CONVERSATIONS["plain"]
    expected = _reference(GRAB_BAG, messages, tree=tree)
    template = ChatTemplate(GRAB_BAG, bos_token="<s>", eos_token="</s>")
    assert template.render(messages, variables={"tree": tree}) == expected
    assert "(1(2)(3(4)))" in expected and "[   a    |1,2|[('k', 'v')]]" in expected


def test_model_and_builtin_templates(model: Model) -> None:
    smol = ChatTemplate.from_model(model)
    messages = CONVERSATIONS["long"]
    assert smol.render(messages) == _reference(smol.source, messages, bos_token=smol.bos_token,
                                               eos_token=smol.eos_token)
    for name in builtin_template_names():  # libllama's own renderer: untouched by the sandbox
        text = ChatTemplate.from_model(model, name).render(CONVERSATIONS["plain"])
        assert "Name a colour" in text, name


def test_real_templates_render_fast() -> None:
    # Generous: a render is ~1-3 ms here; the budget is for a loaded 2-core machine.
    source = (TEMPLATES / "llama31_tools.jinja").read_text()
    template = ChatTemplate(source)
    messages = CONVERSATIONS["long"]
    template.render(messages, tools=TOOLS)
    started = time.monotonic()
    for _ in range(20):
        template.render(messages, tools=TOOLS)
    assert (time.monotonic() - started) / 20 < 0.25
