"""The seed's custom front end (--path with `import { llama } from '/completion.js'`) and a
server started with --api-key, each in a real browser against a real server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import serve_in_thread
from ui_helpers import (Watched, configure, health, last_answer, request_json, send,
                        wait_answer_done, wait_ready)

from llamaserver import LlamaServer

# The example page at the end of the seed's README, as it is written there.
SEED_EXAMPLE = """<html>
  <body>
    <pre>
      <script type="module">
        import { llama } from '/completion.js'

        const prompt = `### Instruction:
Write dad jokes, each one paragraph.
You can use html formatting if needed.

### Response:`

        for await (const chunk of llama(prompt)) {
          document.write(chunk.data.content)
        }
      </script>
    </pre>
  </body>
</html>
"""
KEY = "browser-test-key"


@pytest.fixture(scope="module")
def seed_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("seed-site")
    (folder / "index.html").write_text(SEED_EXAMPLE)
    # -n 16 caps the example's n_predict of 500: the page still gets a whole completion
    running = serve_in_thread(LlamaServer(path=folder, n_predict=16).app)
    yield running.url
    running.stop()


@pytest.fixture(scope="module")
def keyed() -> Iterator[str]:
    """A server with an API key, under an --api-prefix: the page and its requests follow it."""
    server = LlamaServer(api_key=[KEY], api_prefix="/llama", n_predict=400)
    running = serve_in_thread(server.app, ready_path="/llama/health")
    yield running.url + "/llama"
    running.stop()


def test_seed_example_page_prints_a_completion(browser: Any, seed_site: str,
                                               screenshots: Path) -> None:
    context = browser.new_context()
    watched = Watched.open(context)
    page = watched.page
    with page.expect_request("**/completion") as caught:
        page.goto(seed_site + "/", wait_until="commit")
    body = request_json(caught.value)
    assert body["prompt"].startswith("### Instruction:")
    assert body["n_predict"] == 500 and body["stream"] is True  # completion.js's seed-era defaults
    # document.write replaced the page with the streamed text: no script left, text there
    page.wait_for_function("() => !document.querySelector('script') && "
                           "document.body && document.body.textContent.trim().length > 0",
                           timeout=60_000)
    deadline = time.monotonic() + 30
    while health(seed_site)["slots_idle"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    text = page.evaluate("document.body.textContent")
    assert "llama(" not in text and text.strip()
    page.screenshot(path=str(screenshots / "seed-example.png"))
    # the seed's page has no icon: the browser's own /favicon.ico probe is the only miss
    assert [e for e in watched.errors if "favicon.ico" not in e] == []
    context.close()


def test_page_asks_for_the_key_then_works(browser: Any, keyed: str, screenshots: Path) -> None:
    context = browser.new_context()
    page = Watched.open(context).page
    page.goto(keyed + "/")  # the page itself is public; its first API call answers 401
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")
    page.fill("#key-input", "wrong-key")
    page.press("#key-input", "Enter")
    page.wait_for_function("document.querySelector('#key-reason').textContent.includes('refused')")
    assert dialog.is_visible()
    page.screenshot(path=str(screenshots / "api-key.png"))
    page.fill("#key-input", KEY)
    page.get_by_role("button", name="Use this key").click()
    wait_ready(page)
    assert dialog.is_hidden()

    configure(page, max_tokens="4")
    with page.expect_request("**/llama/v1/chat/completions") as caught:
        send(page, "Hello")
    wait_answer_done(page)
    assert caught.value.headers["authorization"] == f"Bearer {KEY}"
    assert last_answer(page).locator(".message-body").inner_text().strip()
    assert not last_answer(page).locator(".message-error").count()

    page.reload()  # kept in the browser: no question this time
    wait_ready(page)
    assert dialog.is_hidden()
    with page.expect_request("**/llama/completion") as caught:
        page.click("[data-mode=completion]")
        page.fill("#pg-prompt", "Hello")
        page.fill("#pg-nprobs", "0")
        page.click("#pg-run")
    page.wait_for_selector("#pg-run:not([hidden])")
    assert caught.value.headers["authorization"] == f"Bearer {KEY}"
    assert page.inner_text("#pg-stats").endswith("tokens/s")
    context.close()



def test_completion_js_api(browser: Any, keyed: str) -> None:
    """The module's functions against a keyed server under a prefix: config.api_key, the
    default api_url (the module's own folder), config.controller, and the seed-era helpers."""
    context = browser.new_context()
    watched = Watched.open(context)
    page = watched.page
    page.goto(keyed + "/completion.js")  # any page of that origin; the module comes by import
    result = page.evaluate("""async (key) => {
      const m = await import('./completion.js');
      const config = { api_key: key };
      const out = {};
      let chunks = 0;
      const gen = m.llama('The capital of France is', { n_predict: 4, temperature: 0 }, config);
      for (;;) {
        const step = await gen.next();
        if (step.done) { out.generated = step.value; break; }
        chunks += 1;
        out.last = step.value.data;
      }
      out.chunks = chunks;
      out.promise = await m.llamaPromise('The capital of France is', { n_predict: 4, temperature: 0 }, config);
      out.events = await new Promise((resolve) => {
        const seen = [];
        const target = m.llamaEventTarget('Hi', { n_predict: 2 }, config);
        for (const name of ['message', 'timings', 'generation_settings']) target.addEventListener(name, () => seen.push(name));
        target.addEventListener('done', (e) => resolve({ seen, content: e.detail.content }));
        target.addEventListener('error', (e) => resolve({ error: String(e.detail) }));
      });
      out.settings = await m.llamaModelInfo(config);
      try {
        await m.llamaPromise('Hi', { n_predict: 2 }, {});
      } catch (error) {
        out.refused = { name: error.name, status: error.status, type: error.type };
      }
      const controller = new AbortController();
      let got = '';
      for await (const chunk of m.llama('Sing', { n_predict: 400, grammar: 'root ::= "la " root' }, { ...config, controller })) {
        got += chunk.data.content;
        if (got.length > 6) controller.abort();
      }
      out.aborted = got;
      return out;
    }""", KEY)
    assert result["chunks"] >= 2 and result["last"]["stop"] is True
    assert result["generated"] == result["promise"]  # greedy: the same text both ways
    assert result["generated"].strip()
    assert result["events"]["seen"][0] == "message" and "timings" in result["events"]["seen"]
    assert result["events"]["content"]
    assert result["settings"]["n_ctx"] > 0
    assert result["refused"] == {"name": "LlamaError", "status": 401, "type": "authentication_error"}
    assert result["aborted"].startswith("la la") and len(result["aborted"]) < 100
    deadline = time.monotonic() + 5
    while health(keyed)["slots_idle"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health(keyed)["slots_idle"] == 1  # the aborted request freed its slot
    context.close()
