"""The page's Markdown renderer (llamaserver/webui/markdown.js) in the browser: what chat
models write renders as expected, and hostile text never becomes markup, a script, a
non-web link or a fetched image, nor costs unbounded time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from server_helpers import serve_in_thread
from ui_helpers import Watched

from llamaserver import LlamaServer

ALLOWED_TAGS = {"P", "BR", "STRONG", "EM", "DEL", "CODE", "PRE", "A", "H1", "H2", "H3", "H4",
                "H5", "H6", "UL", "OL", "LI", "BLOCKQUOTE", "HR", "TABLE", "THEAD", "TBODY",
                "TR", "TH", "TD", "DIV", "SPAN", "BUTTON", "INPUT"}

RENDER = """async (source) => {
  const { renderMarkdown } = await import('./markdown.js');
  const host = document.createElement('div');
  const started = performance.now();
  host.append(renderMarkdown(source, { copy: () => {} }));
  const ms = performance.now() - started;
  const nodes = [...host.querySelectorAll('*')];
  return {
    ms,
    html: host.innerHTML,
    text: host.textContent,
    tags: [...new Set(nodes.map((n) => n.tagName))],
    attrs: [...new Set(nodes.flatMap((n) => [...n.attributes].map((a) => a.name)))],
    hrefs: [...host.querySelectorAll('a')].map((a) => a.getAttribute('href')),
  };
}"""


@pytest.fixture(scope="module")
def page(browser: Any) -> Iterator[Any]:
    running = serve_in_thread(LlamaServer(ctx_size=512).app)
    context = browser.new_context()
    watched = Watched.open(context)
    watched.page.goto(running.url + "/")
    yield watched.page
    assert watched.errors == []
    context.close()
    running.stop()


def render(page: Any, source: str) -> dict[str, Any]:
    return page.evaluate(RENDER, source)


@pytest.mark.parametrize(("source", "html"), [
    ("**bold** *em* ~~del~~ `a<b>`", "<p><strong>bold</strong> <em>em</em> <del>del</del> "
                                     "<code>a&lt;b&gt;</code></p>"),
    ("# Title\ntext", "<h1>Title</h1><p>text</p>"),
    ("one\ntwo", "<p>one<br>two</p>"),
    ("- a\n- b\n  - c", "<ul><li><p>a</p></li><li><p>b</p><ul><li><p>c</p></li></ul></li></ul>"),
    ("3. x\n4. y", '<ol start="3"><li><p>x</p></li><li><p>y</p></li></ol>'),
    ("> quoted", "<blockquote><p>quoted</p></blockquote>"),
    ("snake_case_name", "<p>snake_case_name</p>"),
    ("| a | b |\n|---|--:|\n| 1 | 2 |",
     '<div class="table-wrap"><table><thead><tr><th>a</th><th class="align-right">b</th></tr>'
     '</thead><tbody><tr><td>1</td><td class="align-right">2</td></tr></tbody></table></div>'),
])
def test_common_markdown(page: Any, source: str, html: str) -> None:
    assert render(page, source)["html"] == html


def test_code_blocks_keep_their_text_and_get_a_copy_button(page: Any) -> None:
    out = render(page, "```html\n<script>alert(1)</script>\n  indented\n```\nafter")
    assert '<code class="language-html">&lt;script&gt;alert(1)&lt;/script&gt;\n  indented</code>' in out["html"]
    assert "Copy" in out["text"] and out["html"].endswith("<p>after</p>")
    unclosed = render(page, "```\nstill streaming")  # mid-answer: shown as code so far
    assert "<code>still streaming</code>" in unclosed["html"]


@pytest.mark.parametrize("source", [
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    '<a href="javascript:alert(1)">x</a>',
    "[click](javascript:alert(1)) [data](data:text/html,<script>alert(1)</script>) "
    "[vb](vbscript:msgbox) [spaced](  javascript:alert(1))",
    "![pixel](https://tracker.example/p.png) ![x](javascript:alert(1))",
    "<iframe src=https://example.com></iframe><style>body{display:none}</style>",
    "**<b onmouseover=alert(1)>x</b>** `<svg onload=alert(1)>`",
    "| <img src=x> | b |\n|---|---|\n| <script>x</script> | [j](javascript:1) |",
    "```\n</code></pre><img src=x onerror=alert(1)>\n```",
    "<https://ok.example/?a=<script>> and https://ok.example/\"onmouseover=\"alert(1)",
])
def test_hostile_text_stays_text(page: Any, source: str) -> None:
    out = render(page, source)
    assert set(out["tags"]) <= ALLOWED_TAGS, out["html"]
    assert set(out["attrs"]) <= {"href", "target", "rel", "class", "type", "aria-label",
                                 "start", "disabled"}, out["html"]
    for href in out["hrefs"]:
        assert href.startswith(("https://", "http://", "mailto:")), href
    assert "<img" not in out["html"] and "<script" not in out["html"]
    if "<" in source and "```" not in source:
        assert "<" in out["text"]  # the markup shows, as characters


def test_links_are_web_links_that_open_apart(page: Any) -> None:
    out = render(page, "[docs](https://example.com/a_b) and https://example.com/x.")
    assert out["hrefs"] == ["https://example.com/a_b", "https://example.com/x"]
    assert 'rel="noopener noreferrer nofollow"' in out["html"] and 'target="_blank"' in out["html"]


@pytest.mark.parametrize("source", ["*" * 20000, "_a" * 10000, "[" * 5000 + "](x)",
                                    "> " * 3000 + "deep", "`" * 9999, "- " * 2000 + "x"])
def test_pathological_input_is_bounded(page: Any, source: str) -> None:
    out = render(page, source)
    assert out["ms"] < 2000
    assert set(out["tags"]) <= ALLOWED_TAGS
