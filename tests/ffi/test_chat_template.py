"""ChatTemplate: the model's template, built-ins, and the sandbox's limits."""

from __future__ import annotations

import time

import pytest

from llama_ffi import ChatTemplate, Model, TemplateError, builtin_template_names

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Name a colour"},
]


def test_model_template(model: Model) -> None:
    template = ChatTemplate.from_model(model)
    assert not template.is_builtin and "im_start" in template.source
    text = template.render(MESSAGES)
    assert text.startswith("<|im_start|>system\nYou are terse.<|im_end|>\n")
    assert "<|im_start|>user\nName a colour<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert not template.render(MESSAGES, add_generation_prompt=False).endswith("<|im_start|>assistant\n")


def test_builtin_templates(model: Model) -> None:
    names = builtin_template_names()
    assert {"chatml", "llama3", "gemma"} <= set(names)
    chatml = ChatTemplate.from_model(model, "chatml")
    assert chatml.is_builtin and chatml.name == "chatml"
    assert chatml.render(MESSAGES) == ChatTemplate.from_model(model).render(MESSAGES)
    llama3 = ChatTemplate.from_model(model, "llama3").render(MESSAGES[1:2])
    assert "<|start_header_id|>user<|end_header_id|>" in llama3 and "Hi there" in llama3
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert "ab" in chatml.render(parts)
    with pytest.raises(TemplateError):
        ChatTemplate.builtin("no-such-template")
    with pytest.raises(TemplateError, match="unknown chat template"):
        ChatTemplate.from_model(model, "chatml2")
    with pytest.raises(TemplateError):
        chatml.render(MESSAGES, tools=[{"type": "function"}])


def test_jinja_override_and_helpers(model: Model) -> None:
    source = (
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content | tojson }}\n{% endfor %}"
        "{% if tools %}{{ tools | tojson(indent=1) }}{% endif %}"
        "{{ strftime_now('%Y') }}{% if add_generation_prompt %}>{% endif %}"
    )
    template = ChatTemplate.from_model(model, source)
    text = template.render([{"role": "user", "content": "héllo <b>"}], tools=[{"name": "f"}])
    assert '[user] "héllo <b>"' in text  # no ASCII or HTML escaping, like Hugging Face's tojson
    assert '"name": "f"' in text
    assert str(time.gmtime().tm_year) in text and text.endswith(">")
    assert text.startswith(template.bos_token)


def test_raise_exception_is_a_template_error() -> None:
    template = ChatTemplate("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(TemplateError, match="roles must alternate"):
        template.render(MESSAGES)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__.__init__.__globals__ }}",
        "{% set x = messages.append({'role': 'x'}) %}",
        "{{ cycler.__init__.__globals__.os }}",
    ],
)
def test_sandbox_blocks_escapes(source: str) -> None:
    with pytest.raises(TemplateError):
        ChatTemplate(source).render(MESSAGES)


def test_syntax_errors_are_template_errors() -> None:
    with pytest.raises(TemplateError):
        ChatTemplate("{% for m in messages %}unclosed")
    with pytest.raises(TemplateError):
        ChatTemplate("{{ messages[0].content | no_such_filter }}")


def test_output_is_bounded() -> None:
    big = ChatTemplate("{% for i in range(100000) %}0123456789{% endfor %}", max_output_chars=10_000)
    with pytest.raises(TemplateError, match="exceeds"):
        big.render(MESSAGES)
    with pytest.raises(TemplateError, match="limit"):
        ChatTemplate("{{ 'x' * 1000000000 }}").render(MESSAGES)
    doubling = (
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"
    )
    with pytest.raises(TemplateError):
        ChatTemplate(doubling, max_output_chars=100_000).render(MESSAGES)
    with pytest.raises(TemplateError):
        ChatTemplate("{{ 7 ** 99999999 }}").render(MESSAGES)


def test_render_time_is_bounded() -> None:
    slow = ChatTemplate(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        timeout=0.3, max_loop_iterations=10**12,
    )
    started = time.monotonic()
    with pytest.raises(TemplateError, match="longer than 0.3 s"):
        slow.render(MESSAGES)
    assert time.monotonic() - started < 3.0
    with pytest.raises(TemplateError, match="loop iterations"):  # with the default loop budget
        ChatTemplate(slow.source).render(MESSAGES)


def test_bad_messages() -> None:
    template = ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}")
    with pytest.raises(TemplateError):
        template.render("not a list")  # type: ignore[arg-type]
    with pytest.raises(TemplateError):
        template.render([1, 2])  # type: ignore[list-item]
