"""Hostile chat templates: each costs one render a bounded time and bounded memory, never the process.

Every case here hung a render thread, held the GIL for seconds, or allocated gigabytes
before the sandbox bounded it (see the lead's issue #11).  Budgets in the asserts are
generous multiples: the machine that runs them is small and shared.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from typing import Any, Iterator

import pytest

from llama_ffi import ChatTemplate, TemplateError

MESSAGES = [{"role": "user", "content": "hi"}]
TIMEOUT = 2.0
PEAK_BYTES = 200 << 20  # none of these may allocate more than this on the way to its error

LOOPS = {  # work without allocation: timed, not traced (tracing would only slow them down)
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "filtered loop": "{% for i in range(100000) %}{% for j in range(100000) if false %}{% endfor %}{% endfor %}",
    "recursive loop": "{% for x in [[range(1000)] * 100] * 100 recursive %}{% if x is iterable %}{{ loop(x) }}"
                      "{% endif %}{% endfor %}",
}
HOSTILE = {
    "slices": "{{ [1]|slice(100000000)|list|length }}",
    # big integers
    "power tower": "{{ (((10**1024)**1024)**8) > 1 }}",
    "power": "{{ 10 ** (10 ** 10) }}",
    "product": "{% set ns = namespace(n=7) %}{% for i in range(64) %}{% set ns.n = ns.n * ns.n %}{% endfor %}",
    "int from hex": "{{ ('f' * 100000)|int(0, 16) }}",
    "round": "{{ 1.5|round(1000000000, 'floor') }}{{ 7|round(-1000000000) }}",
    # sizes from a number
    "center": "{{ 'a'|center(10**9) }}",
    "str.format width": "{{ '{0:>900000000}'.format(1) }}",
    "str.format precision": "{{ '{:.900000000f}'.format(1.5) }}",
    "format via attr": "{{ ('{0:>900000000}'|attr('format'))(1) }}",
    "markup format": "{{ ('{0:>900000000}'|safe).format('<') }}",
    "printf width": "{{ '%0900000000d' % 1 }}",
    "printf star": "{{ '%*d' % (900000000, 1) }}",
    "format filter": "{{ '%-900000000s'|format('x') }}",
    "string repeat": "{{ 'a' * 10**9 }}",
    "list repeat": "{{ ([1] * 10**9)|length }}",
    "tuple repeat": "{{ ((1,) * 10**9)|length }}",
    "ljust": "{{ 'a'.ljust(10**9) }}",
    "zfill": "{{ '1'.zfill(10**9) }}",
    "expandtabs": "{{ ('\\t' * 100000).expandtabs(100000) }}",
    "to_bytes": "{{ (1).to_bytes(10**9, 'big') }}",
    "batch fill": "{{ [1]|batch(10**9, 0)|list|length }}",
    "lipsum": "{{ lipsum(n=100000) }}",
    "strftime": "{{ strftime_now('%Y' * 100000) }}",
    "tojson indent": "{{ [[1]]|tojson(indent=10**9) }}",
    # sizes from the input
    "join method": "{{ ('x' * 100000).join(range(10000)|map('string')) }}",
    "join filter": "{{ range(10000)|map('string')|join('x' * 100000) }}",
    "replace": "{{ ('a' * 100000).replace('a', 'a' * 100000) }}",
    "replace empty": "{{ ('a' * 1000000).replace('', 'bbbbbbbbbbbbbbbbbbbb') }}",
    "replace filter": "{{ ('1' * 100000)|replace(1, '1' * 100000) }}",
    "split": "{{ ('ab ' * 2666666).split()|length }}",
    "title": "{{ ('ab ' * 2666666)|title|length }}",
    "translate": "{{ ('a' * 100000).translate({97: 'b' * 100000}) }}",
    "indent": "{{ ('x\\n' * 100000)|indent(100000) }}",
    "wordwrap": "{{ ('a ' * 100000)|wordwrap(1, wrapstring='x' * 100000) }}",
    "quadratic sum": "{{ (range(10000)|batch(1)|list)|sum(start=[])|length }}",
    "doubling": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    # structures: shared, deep, held at once
    "shared list": "{% set ns = namespace(x=[1]) %}{% for i in range(64) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}"
                   "{{ ns.x }}",
    "deep tuple": "{% set ns = namespace(x=1) %}{% for i in range(100000) %}{% set ns.x = (ns.x,) %}{% endfor %}"
                  "{{ {ns.x: 1} }}",
    "macro varargs": "{% macro f(n) %}{% if n %}{{ f(n - 1, varargs, varargs) }}{% endif %}{% endmacro %}"
                     "{{ f(200, 1) }}",
    "block output": "{% set x %}{% for i in range(20000) %}{{ 'y' * 5000 }}{% endfor %}{% endset %}{{ x|length }}",
    "macro output": "{% macro m() %}{% for i in range(10000) %}{{ 'y' * 1000 ~ i }}{% endfor %}{% endmacro %}"
                    "{{ m()|length }}",
    "many values": "{% set ns = namespace(a=[]) %}{% for i in range(1000) %}{% set ns.a = ns.a + ['x' * 7000000 ~ i] %}"
                   "{% endfor %}",
    "held values": "{% macro f(n) %}{% set s = 'x' * 7000000 ~ n %}{{ f(n + 1) if n < 200 }}{% endmacro %}{{ f(0) }}",
    "recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
}


def _render_hostile(template: ChatTemplate) -> tuple[float, int, str]:
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(TemplateError) as caught:
            template.render(MESSAGES)
        return time.monotonic() - started, tracemalloc.get_traced_memory()[1], str(caught.value)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("source", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_template_is_refused_in_bounded_time_and_memory(source: str) -> None:
    elapsed, peak, message = _render_hostile(ChatTemplate(source, timeout=TIMEOUT))
    assert elapsed < 3 * TIMEOUT, message
    assert peak < PEAK_BYTES, message
    assert message.startswith("chat template")


@pytest.mark.parametrize("source", LOOPS.values(), ids=LOOPS.keys())
def test_hostile_loops_are_refused_in_bounded_time(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError, match="1000000 loop iterations"):
        ChatTemplate(source, timeout=TIMEOUT).render(MESSAGES)
    assert time.monotonic() - started < 3 * TIMEOUT


@pytest.mark.parametrize(("source", "match"), [
    (HOSTILE["recursion"], "recursed too deeply"),
    (HOSTILE["macro output"], "a block's output would make"),
    (HOSTILE["power tower"], "integer of about"),
    (HOSTILE["center"], "'center' filter would make about 1,000,000,000 bytes"),
    (HOSTILE["str.format width"], "str.format"),
    (HOSTILE["string repeat"], "'\\*'"),
    (HOSTILE["lipsum"], "'lipsum' is undefined"),
    (HOSTILE["deep tuple"], "nested deeper than 100"),
    (HOSTILE["many values"], "would make|bytes of values"),
    (HOSTILE["held values"], "bytes of values in one render"),
])
def test_hostile_templates_say_which_limit(source: str, match: str) -> None:
    with pytest.raises(TemplateError, match=match):
        ChatTemplate(source).render(MESSAGES)


def test_limits_are_parameters() -> None:
    source = "{% for i in range(500) %}{% for j in range(1000) %}{% endfor %}{% endfor %}{{ 10 ** 50 }}"
    ChatTemplate(source).render(MESSAGES)
    with pytest.raises(TemplateError, match="more than 1000 loop iterations"):
        ChatTemplate(source, max_loop_iterations=1000).render(MESSAGES)
    with pytest.raises(TemplateError, match="integer"):
        ChatTemplate(source, max_int_digits=20).render(MESSAGES)
    with pytest.raises(TemplateError, match="limit is 100"):
        ChatTemplate("{{ 'a' * 101 }}", max_value_size=100).render(MESSAGES)
    assert ChatTemplate("{{ 'a' * 100 }}", max_value_size=100).render(MESSAGES) == "a" * 100
    with pytest.raises(ValueError):
        ChatTemplate("x", timeout=0)


def test_compiling_a_hostile_template_runs_none_of_it() -> None:
    # Jinja folds constant filter calls at compile time, outside any budget: not here.
    started = time.monotonic()
    tracemalloc.start()
    try:
        template = ChatTemplate("{{ 'a'|center(1000000000) }}{{ '%0900000000d' % 1 }}")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES and time.monotonic() - started < 3 * TIMEOUT
    with pytest.raises(TemplateError):
        template.render(MESSAGES)
    with pytest.raises(TemplateError, match="invalid chat template"):
        ChatTemplate("{{ 1" + "0" * 5000 + " }}")


# -- the wall-clock budget: renders that no size or loop limit stops are abandoned

SLOW = {
    # Python-level work inside one filter: nothing the sandbox sees until it returns
    "unique": "{{ ((range(100000)|list) * 60)|unique|list|length }}",
    "loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
}
UNBOUNDED = {"max_loop_iterations": 10**12, "max_value_size": 10**9, "max_total_size": 10**10}


@pytest.mark.parametrize("source", SLOW.values(), ids=SLOW.keys())
def test_render_past_its_time_is_abandoned(source: str) -> None:
    template = ChatTemplate(source, timeout=0.5, **UNBOUNDED)
    started = time.monotonic()
    with pytest.raises(TemplateError, match="longer than 0.5 s"):
        template.render(MESSAGES)
    assert time.monotonic() - started < 1.5
    deadline = time.monotonic() + 2.0  # the abandoned thread unwinds (its grace is 0.25 s)
    while _render_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _render_threads()
    ok = ChatTemplate("{{ messages[0].content }}!", timeout=0.5, **UNBOUNDED)
    assert ok.render(MESSAGES) == "hi!"  # and the same machinery serves the next render


def test_template_stays_usable_after_an_abandoned_render() -> None:
    source = "{% if messages[0].content == 'spin' %}{% for i in range(100000) %}{% for j in range(100000) %}" \
             "{% endfor %}{% endfor %}{% endif %}{{ messages[0].content }}"
    template = ChatTemplate(source, timeout=0.3, max_loop_iterations=10**12)
    with pytest.raises(TemplateError, match="longer than"):
        template.render([{"role": "user", "content": "spin"}])
    assert template.render(MESSAGES) == "hi"


def _render_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "chat-template-render"]


@pytest.fixture()
def ticker() -> Iterator[dict[str, float]]:
    """A thread that should keep getting scheduled (as /health would): its longest gap between ticks."""
    state = {"max_gap": 0.0}
    stop = threading.Event()

    def tick() -> None:
        last = time.monotonic()
        while not stop.wait(0.005):
            now = time.monotonic()
            state["max_gap"] = max(state["max_gap"], now - last)
            last = now

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    yield state
    stop.set()
    thread.join()


def test_other_threads_keep_running_during_hostile_renders(ticker: dict[str, float]) -> None:
    for source in (*(HOSTILE[name] for name in ("power tower", "center", "join method", "shared list")),
                   LOOPS["nested loops"]):
        with pytest.raises(TemplateError):
            ChatTemplate(source, timeout=TIMEOUT).render(MESSAGES)
    with pytest.raises(TemplateError):
        ChatTemplate(SLOW["unique"], timeout=0.5, **UNBOUNDED).render(MESSAGES)
    assert ticker["max_gap"] < 0.5


def test_renders_from_many_threads_at_once() -> None:
    template = ChatTemplate("{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}{% endfor %}"
                            "{% for i in range(1000) %}{% endfor %}")
    slow = ChatTemplate(LOOPS["nested loops"])  # one hostile render among them changes nothing
    results: dict[int, list[Any]] = {}

    def work(n: int) -> None:
        got = []
        for k in range(20):
            got.append(template.render([{"role": "user", "content": f" {n}-{k} "}]))
        if n == 0:
            try:
                slow.render(MESSAGES)
            except TemplateError as exc:
                got.append(exc)
        results[n] = got

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == list(range(6))
    for n, got in results.items():
        assert got[:20] == [f"<user>{n}-{k}" for k in range(20)]
    assert isinstance(results[0][20], TemplateError)


@pytest.mark.parametrize("name", ["messages", "add_generation_prompt", "tools", "bos_token", "eos_token",
                                  "self", "raise_exception", "namespace"])
def test_reserved_variable_names_are_template_errors(name: str) -> None:
    template = ChatTemplate("{{ messages|length }}")
    with pytest.raises(TemplateError, match=f"'{name}' cannot be passed"):
        template.render(MESSAGES, variables={name: 1})
    if name not in ("add_generation_prompt", "tools"):  # keyword parameters of render itself
        with pytest.raises(TemplateError, match=f"'{name}' cannot be passed"):
            template.render(MESSAGES, **{name: 1})
    with pytest.raises(TemplateError, match="must be strings"):
        template.render(MESSAGES, variables={1: 1})
    assert template.render(MESSAGES, variables={"enable_thinking": False}) == "1"
