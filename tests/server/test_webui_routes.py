"""The web UI's routes over HTTP (no browser, no model needed): the built-in page, --path,
/completion.js, --no-ui, --api-prefix, and that none of them hides the API or its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from server_helpers import error_of, in_process

from llamaserver import LlamaServer
from llamaserver._webui import UI_DIR
from llamaserver.cli import parse_args


async def test_builtin_page_and_assets() -> None:
    async with in_process(LlamaServer().asgi) as c:
        page = await c.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="app.js">' in page.text
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy
        assert (await c.get("/index.html")).text == page.text
        for asset in ("app.js", "style.css", "markdown.js", "favicon.svg"):
            r = await c.get("/" + asset)
            assert r.status_code == 200 and r.content == (UI_DIR / asset).read_bytes()
        module = await c.get("/completion.js")
        assert "javascript" in module.headers["content-type"]
        for name in ("llama", "llamaEventTarget", "llamaPromise", "llamaComplete"):
            assert f"export async function* {name}(" in module.text or \
                f"export function {name}(" in module.text or \
                f"export async function {name}(" in module.text
        error_of(await c.get("/no-such-page"), 404, "not_found_error")
        error_of(await c.get("/completion"), 405, "invalid_request_error")  # API not shadowed
        health = await c.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "loading model"


async def test_no_ui_serves_no_page() -> None:
    async with in_process(LlamaServer(webui=False).asgi) as c:
        error_of(await c.get("/"), 404, "not_found_error")
        error_of(await c.get("/completion.js"), 404, "not_found_error")
        error_of(await c.get("/app.js"), 404, "not_found_error")


async def test_api_prefix_moves_the_page() -> None:
    async with in_process(LlamaServer(api_prefix="/llama").asgi) as c:
        assert "app.js" in (await c.get("/llama/")).text
        assert (await c.get("/llama/completion.js")).status_code == 200
        bare = await c.get("/llama")
        assert bare.status_code == 308 and bare.headers["location"].endswith("/llama/")
        error_of(await c.get("/"), 404, "not_found_error")
        error_of(await c.get("/app.js"), 404, "not_found_error")
        assert (await c.get("/llama/health")).json()["status"] == "loading model"


async def test_path_folder_replaces_the_page_but_keeps_completion_js(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>mine</h1>")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.css").write_text("b{}")
    async with in_process(LlamaServer(path=tmp_path).asgi) as c:
        assert (await c.get("/")).text == "<h1>mine</h1>"
        assert "content-security-policy" not in (await c.get("/")).headers  # the user's page
        assert (await c.get("/sub/x.css")).text == "b{}"
        assert (await c.get("/completion.js")).content == (UI_DIR / "completion.js").read_bytes()
        error_of(await c.get("/app.js"), 404, "not_found_error")  # the built-in page is gone
        error_of(await c.get("/../etc/passwd"), 404, "not_found_error")
        error_of(await c.get("/completion"), 405, "invalid_request_error")
        error_of(await c.get("/v1/chat/completions"), 405, "invalid_request_error")
    (tmp_path / "completion.js").write_text("export const mine = 1;")
    async with in_process(LlamaServer(path=tmp_path).asgi) as c:
        assert (await c.get("/completion.js")).text == "export const mine = 1;"


def test_missing_path_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a directory"):
        LlamaServer(path=tmp_path / "missing")
    cmd = [sys.executable, "-m", "llamaserver", "--path", str(tmp_path / "missing"), "--port", "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("llamaserver: error: --path: not a directory")
    assert "listening" not in done.stdout


async def test_path_catch_all_keeps_api_paths_private(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>mine</h1>")
    async with in_process(LlamaServer(path=tmp_path, api_key=["k"]).asgi) as c:
        assert (await c.get("/")).text == "<h1>mine</h1>"  # the page itself is public
        assert (await c.get("/completion.js")).status_code == 200
        error_of(await c.get("/completion"), 401, "authentication_error")
        error_of(await c.get("/completion", headers={"Authorization": "Bearer k"}), 405,
                 "invalid_request_error")
        error_of(await c.get("/missing.txt"), 404, "not_found_error")


@pytest.mark.parametrize(("argv", "environ", "expected"), [
    ([], {}, True),
    (["--no-ui"], {}, False),
    (["--no-webui"], {}, False),
    (["--webui"], {"LLAMA_ARG_UI": "0"}, True),
    ([], {"LLAMA_ARG_UI": "false"}, False),
])
def test_ui_flags(argv: list[str], environ: dict[str, str], expected: bool) -> None:
    assert parse_args(argv, environ).webui is expected
