"""What the page says about the server (loading, busy, unreachable) and the completion mode,
against one real server with a single slot and no queue.  The tests run in file order: the
server starts unloaded, gets loaded, is kept busy, and is finally stopped."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from server_helpers import ThreadedServer
from ui_helpers import (Watched, configure, health, last_answer, request_json, send,
                        wait_answer_done, wait_ready)

from llamaserver import LlamaServer

SCRIPT = "<script>alert(2)</script>"
NEVER_ENDING = 'root ::= "la " root'


class Unstarted:
    """The server's ASGI app without lifespan events: it listens with the model unloaded
    (GET /health says "loading model") until the test calls :meth:`load`."""

    def __init__(self, server: LlamaServer) -> None:
        self.server = server
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.server.asgi(scope, receive, send)
            return
        self.loop = asyncio.get_running_loop()
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await self.server.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def load(self) -> None:
        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(self.server.startup(), self.loop).result(120)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Unstarted, ThreadedServer]]:
    app = Unstarted(LlamaServer(parallel=1, queue_size=0, ctx_size=1024, n_predict=400))
    running = ThreadedServer(app, ready_path="/completion.js").start()
    yield app, running
    if running._thread.is_alive():  # the last test stops it itself
        running.stop()


@pytest.fixture(scope="module")
def page(browser: Any, served: tuple[Unstarted, ThreadedServer]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    watched = Watched.open(context)
    yield watched.page
    context.close()


def test_loading_then_ready(page: Any, served: tuple[Unstarted, ThreadedServer], screenshots: Any) -> None:
    app, running = served
    page.goto(running.url + "/")
    page.wait_for_selector("#status[data-state=loading]")
    assert "loading the model" in page.inner_text("#banner")
    page.screenshot(path=str(screenshots / "state-loading.png"))
    app.load()
    wait_ready(page)  # the page polled /health and found it ready on its own
    assert page.locator("#banner").is_hidden()
    assert page.get_attribute("#status", "data-state") == "ok"


def test_completion_mode_probabilities_and_plain_text(page: Any, screenshots: Any) -> None:
    configure(page, temperature="0", max_tokens="16", constraint="grammar",
              constraint_text=f'root ::= "{SCRIPT}"')
    page.click("[data-mode=completion]")
    page.fill("#pg-prompt", f"Repeat exactly: {SCRIPT}\n")
    page.fill("#pg-nprobs", "3")
    with page.expect_request("**/completion") as caught:
        page.press("#pg-prompt", "Control+Enter")
    body = request_json(caught.value)
    page.wait_for_selector("#pg-run:not([hidden])")
    assert body["n_probs"] == 3 and body["grammar"] == f'root ::= "{SCRIPT}"'
    assert body["n_predict"] == 16 and body["stream"] is True
    output = page.locator("#pg-output")
    generated = output.inner_text()[len(f"Repeat exactly: {SCRIPT}\n"):]
    assert generated == SCRIPT  # shown as text
    assert output.locator("script").count() == 0
    tokens = output.locator(".tok")
    assert tokens.count() >= 5 and "".join(tokens.all_inner_texts()) == SCRIPT
    tokens.nth(1).hover()
    popover = page.locator("#probs")
    popover.wait_for(state="visible")
    rows = popover.locator("li")
    assert 1 <= rows.count() <= 3 and rows.first.inner_text().strip().endswith("%")
    assert popover.locator("li.chosen").count() == 1  # greedy picked one of the candidates
    page.screenshot(path=str(screenshots / "completion-probs.png"))
    assert page.inner_text("#pg-stats").endswith("tokens/s")
    page.click("#pg-append")
    assert page.input_value("#pg-prompt") == f"Repeat exactly: {SCRIPT}\n{SCRIPT}"
    page.click("#open-settings")
    page.click("#reset-settings")
    page.get_by_role("button", name="Done").click()


def test_shared_system_prompt_with_names(page: Any, served: tuple[Unstarted, ThreadedServer]) -> None:
    _, running = served
    configure(page, max_tokens="8", temperature="0")
    page.click("[data-mode=completion]")
    page.click(".pg-system summary")
    page.fill("#pg-system-prompt", "A dialog between a User and a helpful Assistant.\n")
    page.fill("#pg-user-name", "User:")
    page.fill("#pg-assistant-name", "Assistant:")
    page.fill("#pg-prompt", "User: Hello!\nAssistant:")
    page.fill("#pg-nprobs", "0")
    with page.expect_request("**/completion") as caught:
        page.click("#pg-run")
    page.wait_for_selector("#pg-run:not([hidden])")
    body = request_json(caught.value)
    assert body["system_prompt"] == {"prompt": "A dialog between a User and a helpful Assistant.\n",
                                     "anti_prompt": "User:", "assistant_name": "Assistant:"}
    assert body["stop"] == ["User:"]
    props = httpx.get(running.url + "/props", timeout=10).json()
    assert (props["user_name"], props["assistant_name"]) == ("User:", "Assistant:")
    page.reload()  # the names now come from GET /props
    wait_ready(page)
    assert page.input_value("#pg-user-name") == "User:"
    assert page.input_value("#pg-assistant-name") == "Assistant:"
    with page.expect_request("**/completion") as caught:
        page.click("#pg-run")
    page.wait_for_selector("#pg-run:not([hidden])")
    assert "system_prompt" not in request_json(caught.value)  # unchanged: not sent again
    page.click("[data-mode=chat]")


def test_busy_server_then_unreachable(page: Any, served: tuple[Unstarted, ThreadedServer],
                                      screenshots: Any) -> None:
    _, running = served
    release = threading.Event()

    def hold_the_only_slot() -> None:
        body = {"prompt": "Sing", "grammar": NEVER_ENDING, "stream": True}
        with httpx.stream("POST", running.url + "/completion", json=body, timeout=60) as r:
            for _ in r.iter_lines():
                if release.is_set():
                    return  # closing the connection frees the slot

    holder = threading.Thread(target=hold_the_only_slot, daemon=True)
    holder.start()
    deadline = time.monotonic() + 30
    while health(running.url)["slots_processing"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    configure(page, max_tokens="4")
    send(page, "Hello")
    wait_answer_done(page)
    error = last_answer(page).locator(".message-error").inner_text()
    assert "busy" in error and "Try again in" in error
    page.screenshot(path=str(screenshots / "state-busy.png"))
    release.set()
    holder.join(30)

    while health(running.url)["slots_idle"] != 1 and time.monotonic() < deadline + 30:
        time.sleep(0.05)
    page.click(".regenerate")  # the server is free again: the answer comes
    wait_answer_done(page)
    assert last_answer(page).locator(".message-error").count() == 0
    assert last_answer(page).locator(".message-body").inner_text().strip()

    running.stop()
    page.click(".regenerate")
    wait_answer_done(page)
    assert "cannot be reached" in last_answer(page).locator(".message-error").inner_text()
    page.wait_for_selector("#status[data-state=unreachable]")
    assert "cannot be reached" in page.inner_text("#banner")
    page.screenshot(path=str(screenshots / "state-unreachable.png"))
