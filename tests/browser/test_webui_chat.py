"""The chat page in a real browser against a real server: loading, streaming, stop, settings,
persistence, safe rendering of model output, the phone and dark layouts, images."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import ThreadedServer, serve_in_thread
from ui_helpers import (Watched, configure, health, last_answer, request_json, send,
                        wait_answer_done, wait_ready)

from llamaserver import LlamaServer

SLOTS = 2
XSS_IMG = "<img src=x onerror=alert(1)>"
# 1x1 transparent PNG
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
                       "60e6kgAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    # n_predict bounds only the stop test's never-ending grammar; the others ask for <= 16
    server = LlamaServer(parallel=SLOTS, ctx_size=2048, n_predict=400)
    running: ThreadedServer = serve_in_thread(server.app)
    yield running.url
    running.stop()


@pytest.fixture()
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    yield ctx
    ctx.close()


@pytest.fixture()
def watched(context: Any, url: str) -> Watched:
    w = Watched.open(context)
    w.page.goto(url + "/")
    wait_ready(w.page)
    return w


def test_page_loads_ready_without_errors(watched: Watched, screenshots: Path) -> None:
    page = watched.page
    assert page.title().endswith("llamaserver")
    assert "SmolLM2" in page.inner_text("#model")  # from GET /v1/models
    assert page.locator("#attach").is_hidden()  # no projector: no image button
    assert page.locator("#settings-dialog [name=temperature]").get_attribute("placeholder") == "0.8"
    page.screenshot(path=str(screenshots / "chat-empty.png"))
    assert watched.errors == []


def test_answer_streams_token_by_token(watched: Watched, screenshots: Path) -> None:
    page = watched.page
    configure(page, max_tokens="16", temperature="0")
    # sample the answer's length on every animation frame while it streams
    page.evaluate("""() => {
        window.lengths = [];
        const tick = () => {
          const body = document.querySelector('#messages .message.assistant:last-child .message-body');
          if (body) window.lengths.push(body.textContent.length);
          if (!window.stopSampling) requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
    }""")
    send(page, "Count from 1 to 30, separated by commas.")
    wait_answer_done(page)
    lengths = page.evaluate("() => { window.stopSampling = true; return window.lengths; }")
    # Markdown may shorten the text for a moment (a "1." becomes a list item), so count the
    # distinct lengths seen and check that the first one was a beginning, not the whole
    seen = [n for n in lengths if n > 0]
    assert len(set(seen)) >= 3, f"the answer did not grow over several frames: {lengths}"
    assert seen[0] < seen[-1] / 2
    answer = last_answer(page)
    assert answer.locator(".message-body").inner_text().strip()
    assert answer.locator(".stats").inner_text().startswith("16 tokens · ")  # timings of the last chunk
    assert "tokens/s" in answer.locator(".stats").inner_text()
    page.screenshot(path=str(screenshots / "chat-answer.png"))
    assert watched.errors == []


def test_stop_ends_the_answer_and_frees_the_slot(watched: Watched, url: str) -> None:
    page = watched.page
    configure(page, constraint="grammar", constraint_text='root ::= "la " root')  # never ends
    send(page, "Sing.")
    page.wait_for_function("""() => (document.querySelector(
        '#messages .message.assistant:last-child .message-body')?.textContent ?? '').length > 12""")
    assert health(url)["slots_processing"] == 1
    page.click("#stop")
    wait_answer_done(page)
    assert last_answer(page).locator(".stats").inner_text() == "stopped"
    started = time.monotonic()
    while health(url)["slots_idle"] != SLOTS and time.monotonic() < started + 10:
        time.sleep(0.05)
    print(f"slot idle after {time.monotonic() - started:.3f}s")
    assert health(url)["slots_idle"] == SLOTS
    text = last_answer(page).locator(".message-body").inner_text()
    assert text.startswith("la la") and text.count("la") < 300  # cut well before n_predict
    assert watched.errors == []


def test_settings_change_the_request(watched: Watched) -> None:
    page = watched.page
    configure(page, system="You are terse.", temperature="0", top_k="7", top_p="0.5",
              min_p="0.1", max_tokens="4", repeat_penalty="1.1", seed="42",
              constraint="json_schema", constraint_text='{"type": "string", "maxLength": 5}')
    with page.expect_request("**/v1/chat/completions") as caught:
        send(page, "Hi")
    body = request_json(caught.value)
    wait_answer_done(page)
    assert body["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "Hi"}]
    assert body["stream"] is True
    assert {k: body[k] for k in ("temperature", "top_k", "top_p", "min_p", "max_tokens",
                                 "repeat_penalty", "seed")} == {
        "temperature": 0, "top_k": 7, "top_p": 0.5, "min_p": 0.1, "max_tokens": 4,
        "repeat_penalty": 1.1, "seed": 42}
    assert body["response_format"]["json_schema"]["schema"] == {"type": "string", "maxLength": 5}
    answer = last_answer(page).locator(".message-body").inner_text()
    assert answer.startswith('"')  # the schema held the answer to a JSON string

    page.click("#open-settings")
    page.click("#reset-settings")
    page.get_by_role("button", name="Done").click()
    page.click("#new-chat")
    with page.expect_request("**/v1/chat/completions") as caught:
        send(page, "Hi")
    body = request_json(caught.value)
    wait_answer_done(page)
    assert set(body) == {"messages", "stream"}  # server defaults: nothing else is sent
    assert watched.errors == []


def test_conversations_survive_reload_switch_and_delete(watched: Watched) -> None:
    page = watched.page
    configure(page, max_tokens="6", temperature="0")
    send(page, "Hello there")
    wait_answer_done(page)
    first_answer = last_answer(page).locator(".message-body").inner_text()
    page.click("#new-chat")
    assert page.locator("#messages .message").count() == 0
    send(page, "Name a colour")
    wait_answer_done(page)

    page.reload()
    wait_ready(page)
    titles = page.locator("#conversations .conversation-open")
    assert titles.all_inner_texts() == ["Name a colour", "Hello there"]  # newest first
    assert page.locator("#messages .message.user").inner_text() == "Name a colour"  # still open

    titles.nth(1).click()
    assert page.locator("#messages .message.user").inner_text() == "Hello there"
    assert last_answer(page).locator(".message-body").inner_text() == first_answer
    assert page.inner_text("#title") == "Hello there"

    page.locator("#conversations li").nth(1).locator(".conversation-delete").click()
    assert titles.all_inner_texts() == ["Name a colour"]
    assert page.locator("#messages .message").count() == 0  # the open one was deleted
    page.locator(".toast button", has_text="Undo").click()
    assert titles.all_inner_texts() == ["Hello there", "Name a colour"]
    page.reload()
    wait_ready(page)
    assert page.locator("#conversations li").count() == 2
    assert watched.errors == []


def test_model_output_is_never_markup(watched: Watched, screenshots: Path) -> None:
    page = watched.page
    # greedy, held by a grammar to the exact text, primed by the prompt to finish in 16 tokens
    configure(page, temperature="0", max_tokens="16", constraint="grammar",
              constraint_text=f'root ::= "{XSS_IMG}"')
    send(page, f"Repeat exactly: {XSS_IMG}")
    wait_answer_done(page)
    answer = last_answer(page).locator(".message-body")
    assert answer.inner_text() == XSS_IMG  # shown as text
    assert page.locator("#messages img").count() == 0
    assert page.evaluate("() => document.querySelectorAll('img[src=x], [onerror]').length") == 0
    page.wait_for_timeout(200)  # an onerror would have fired by now
    assert watched.dialogs == []
    page.screenshot(path=str(screenshots / "chat-xss-as-text.png"))
    assert watched.errors == []


def test_copy_buttons_copy_the_text(context: Any, watched: Watched) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = watched.page
    configure(page, temperature="0", max_tokens="16", constraint="grammar",
              constraint_text='root ::= "```py\\nprint(1)\\n```"')
    send(page, "Write print(1) in a Python code block.")
    wait_answer_done(page)
    block = last_answer(page).locator(".code-block")
    assert block.locator("code").inner_text() == "print(1)"
    block.locator(".copy-code").click()
    assert page.evaluate("navigator.clipboard.readText()") == "print(1)"
    last_answer(page).locator(".copy-message").click()
    assert page.evaluate("navigator.clipboard.readText()") == "```py\nprint(1)\n```"
    assert watched.errors == []


def test_dark_and_phone_layouts(browser: Any, url: str, screenshots: Path) -> None:
    dark = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="dark")
    page = Watched.open(dark).page
    page.goto(url + "/")
    wait_ready(page)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert _luminance(background) < 0.2
    page.screenshot(path=str(screenshots / "chat-dark.png"))
    page.click("#theme")  # auto -> light, whatever the system prefers
    assert _luminance(page.evaluate("getComputedStyle(document.body).backgroundColor")) > 0.8
    page.reload()
    wait_ready(page)
    assert _luminance(page.evaluate("getComputedStyle(document.body).backgroundColor")) > 0.8
    dark.close()

    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                has_touch=True)
    page = Watched.open(phone).page
    page.goto(url + "/")
    wait_ready(page)
    assert page.locator("#sidebar").is_hidden() and page.locator("#open-sidebar").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing spills over
    page.screenshot(path=str(screenshots / "chat-phone.png"))
    page.click("#open-sidebar")
    page.wait_for_function("() => getComputedStyle(document.getElementById('sidebar')).transform === 'none'")
    page.screenshot(path=str(screenshots / "chat-phone-list.png"))
    page.click("#new-chat")
    page.locator("#sidebar").wait_for(state="hidden")
    phone.close()


def test_images_go_as_content_parts_when_the_server_has_vision(watched: Watched) -> None:
    page = watched.page

    def with_vision(route: Any) -> None:  # the server answers; only its modalities are changed
        response = route.fetch()
        props = response.json()
        props["modalities"] = {"vision": True, "audio": False}
        route.fulfill(response=response, body=json.dumps(props))

    page.route("**/props", with_vision)
    page.reload()
    wait_ready(page)
    page.locator("#attach").wait_for(state="visible")
    page.set_input_files("#file", files=[{"name": "dot.png", "mimeType": "image/png", "buffer": PNG}])
    page.locator("#attachments img").wait_for(state="visible")
    with page.expect_request("**/v1/chat/completions") as caught:
        send(page, "What is this?")
    wait_answer_done(page)
    content = request_json(caught.value)["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What is this?"}
    assert content[1]["type"] == "image_url"
    assert content[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    # this server has no projector: its refusal is shown, nothing breaks
    assert "not supported" in last_answer(page).locator(".message-error").inner_text()
    assert page.locator("#messages .message.user img").count() == 1


def _luminance(css_color: str) -> float:
    r, g, b = (float(x) for x in re.findall(r"[\d.]+", css_color)[:3])  # rgb(r, g, b)
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255
